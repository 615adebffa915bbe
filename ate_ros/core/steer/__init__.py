"""core/steer."""
