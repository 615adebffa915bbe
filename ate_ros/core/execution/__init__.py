"""core/execution."""
