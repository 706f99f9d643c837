"""The ``podium`` command (``entry``: the app or the headless command line) and the torchrun launcher behind it."""
