"""The machine a bench runs on, for the first line of its output.

Absolute figures say little across machines (or across loads on one shared machine); every bench prints
this line and a baseline measured in the same run, so its figures compare as ratios.

    from bench.machine import describe
    print(describe())
"""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cores() -> int:
    """Cores this process may run on (a container or taskset may allow fewer than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> str:
    if not hasattr(os, "getloadavg"):
        return "unknown"
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def describe() -> str:
    """One line: CPU model, cores, load average (1, 5, 15 min), OS and Python."""
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores ({usable_cores()} usable), "
        f"load average {load_average()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


if __name__ == "__main__":
    print(describe())
