"""core/align."""
