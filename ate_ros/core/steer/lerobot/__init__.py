"""LeRobot policies behind our interfaces: fine-tuning, the run-time chunk policy, adapters."""
