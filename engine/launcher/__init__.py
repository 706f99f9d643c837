"""The headless command line and the torchrun launcher behind ``podium run``."""
