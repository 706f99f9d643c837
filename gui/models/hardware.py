"""How many processes a new run should use: GPUs found without torch, else CPU ranks."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Hardware:
    gpus: list[str]
    cpu_count: int
    how: str  # what found the GPUs (or why none)

    @property
    def default_nproc(self) -> int:
        # One rank per GPU; on CPU two ranks exercise DDP without starving
        # each rank of cores (the engine splits the cores between ranks).
        return len(self.gpus) if self.gpus else max(1, min(2, self.cpu_count // 2 or 1))

    @property
    def max_nproc(self) -> int:
        return max(len(self.gpus), self.cpu_count, 1)

    def describe(self) -> str:
        if self.gpus:
            return f"{len(self.gpus)} GPU(s) via {self.how}: " + ", ".join(self.gpus)
        return f"no GPU found ({self.how}); {self.cpu_count} CPU cores"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def detect() -> Hardware:
    """NVML first (fast, in-process, no CUDA context), then ``nvidia-smi -L``."""
    cpus = _cpu_count()
    try:
        import pynvml  # nvidia-ml-py: a thin ctypes binding, no torch

        pynvml.nvmlInit()
        try:
            names = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                names.append(name.decode() if isinstance(name, bytes) else str(name))
            return Hardware(names, cpus, "NVML")
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no library, no driver, no device: all mean "ask nvidia-smi"
        pass
    smi = shutil.which("nvidia-smi")
    if not smi:
        return Hardware([], cpus, "no NVIDIA driver")
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return Hardware([], cpus, f"nvidia-smi failed: {exc}")
    names = [line.split(":", 1)[1].split("(")[0].strip() for line in out.splitlines() if line.startswith("GPU ")]
    return Hardware(names, cpus, "nvidia-smi")
