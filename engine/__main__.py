"""``python -m engine``: the ``podium`` command, and how every engine child process is started."""

import sys

from engine.launcher.entry import main

if __name__ == "__main__":
    sys.exit(main())
