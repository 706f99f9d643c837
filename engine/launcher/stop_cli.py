"""``podium stop RUN [--signal TERM|KILL]``: a signal to a run's launcher, on the machine it runs on.

What Stop escalates to when the engine does not answer its stop command. The app does it itself for a
run on its own machine; for a run on a server it runs this there over SSH, so the check that matters
happens where the process is: launcher.json must name a live process that is verifiably that launcher
(:meth:`engine.contract.rundir.RunDir.launcher_process`), else nothing is signalled. SIGTERM lets the
launcher stop torchrun's process group (a second one makes it kill the group); SIGKILL ends the launcher itself.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import psutil

from engine.contract.commandline import UsageError
from engine.contract.rundir import RunDir

SIGNALS = {"TERM": signal.SIGTERM, "KILL": signal.SIGKILL}


def add_parser(sub: Any) -> None:
    stop = sub.add_parser(
        "stop", help="signal a run's launcher (checked against launcher.json first); for a stop command: control"
    )
    stop.add_argument("run_dir", type=Path)
    stop.add_argument("--signal", choices=sorted(SIGNALS), default="TERM", help="TERM (default) or KILL")


def cmd_stop(args: Any) -> int:
    run = RunDir(args.run_dir)
    if not run.exists():
        raise UsageError(f"{args.run_dir}: not a run directory (no config.yaml or events.jsonl)")
    sig = SIGNALS[args.signal]
    proc = run.launcher_process()
    if proc is None:
        print(
            f"{run.root}: {sig.name} not sent: launcher.json does not name a live process that is verifiably "
            "this run's launcher (launcher.json your own file, writable by you alone; the process 'podium run' "
            "of this folder, as it recorded)",
            file=sys.stderr,
        )
        return 1
    try:
        proc.send_signal(sig)
    except psutil.Error as exc:  # gone meanwhile, or not ours to signal
        print(f"{run.root}: {sig.name} to pid {proc.pid} failed: {exc}", file=sys.stderr)
        return 1
    print(f"sent {sig.name} to pid {proc.pid}")
    return 0
