"""``python main.py`` in a checkout: the ``podium`` command (engine/launcher/entry.py). Not installed."""

import sys

from engine.launcher.entry import main

if __name__ == "__main__":
    sys.exit(main())
