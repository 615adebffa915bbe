"""core/sim."""
