"""torchrun's own flags on ``podium run``: the ones passed through as given, and the ones podium sets itself.

``--nnodes``, ``--node-rank``, ``--master-addr/--master-port``, ``--rdzv-backend/-endpoint/-id`` and
``--max-restarts`` are podium's named options (they also shape the launch); the flags below go to
torchrun untouched. A flag podium must set itself is refused with what to use instead, rather than
argparse's bare "unrecognized arguments".
"""

from __future__ import annotations

import argparse
from typing import Any


def _signals(value: str) -> str:
    """``--signals-to-handle`` keeps SIGINT: podium's stop reaches the workers as SIGINT, torchrun's SIGTERM
    to them means a restart (engine/training/dispatcher.py)."""
    if "SIGINT" not in {name.strip().upper() for name in value.split(",")}:
        raise argparse.ArgumentTypeError(
            f"{value!r} leaves out SIGINT, which podium stops a run with: add it, e.g. SIGTERM,SIGINT,SIGUSR1"
        )
    return value


# flag -> (argparse keywords, help)
PASSED: dict[str, dict[str, Any]] = {
    "--rdzv-conf": {"metavar": "K=V,...", "help": "rendezvous settings, e.g. join_timeout=900,read_timeout=120"},
    "--monitor-interval": {"type": float, "metavar": "S", "help": "seconds between the agent's worker checks"},
    "--local-addr": {"metavar": "ADDR", "help": "this node's address as the other nodes reach it"},
    "--role": {"help": "the worker role name (torchrun's default: default)"},
    "--start-method": {"choices": ("spawn", "fork", "forkserver"), "help": "how the agent starts workers"},
    "--log-dir": {"metavar": "DIR", "help": "torchrun's per-rank log folder (engine.log still gets every line)"},
    "--local-ranks-filter": {"metavar": "RANKS", "help": "ranks whose output reaches engine.log, e.g. 0"},
    "--numa-binding": {"help": "NUMA binding of the workers (see torchrun --help)"},
    "--signals-to-handle": {"type": _signals, "metavar": "SIGS", "help": "signals the agent forwards; keep SIGINT"},
    "--shutdown-timeout": {"type": int, "metavar": "S", "help": "seconds between SIGTERM and SIGKILL at shutdown"},
}

REFUSED = {
    "--nproc-per-node": "use --nproc N (processes per node)",
    "--standalone": "podium runs a single node standalone by itself (on loopback only)",
    "--no-python": "podium starts its own engine in each worker",
    "--run-path": "podium starts its own engine in each worker",
    "--tee": "every worker's output goes to the run's engine.log",
    "--redirects": "every worker's output goes to the run's engine.log",
}


def add_arguments(group: argparse._ArgumentGroup) -> None:
    for flag, keywords in PASSED.items():
        group.add_argument(flag, **keywords)
    for flag, instead in REFUSED.items():
        group.add_argument(flag, nargs="?", action=_Refused, help=argparse.SUPPRESS, default=None, instead=instead)


def passthrough(args: argparse.Namespace) -> list[str]:
    """The pass-through flags the user gave, as torchrun arguments."""
    out = []
    for flag in PASSED:
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            out.append(f"{flag}={value}")
    return out


class _Refused(argparse.Action):
    def __init__(self, *args: Any, instead: str, **kwargs: Any):
        self.instead = instead
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        passed = ", ".join([*PASSED, "--nnodes", "--node-rank", "--master-addr", "--master-port", "--rdzv-*"])
        parser.error(f"{option_string} is torchrun's and podium sets it: {self.instead} (passed through: {passed})")
