"""Choosing and applying mixed precision."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX).

    Without those instructions bf16 on the CPU is emulated and slower than
    fp32, so ``auto`` must not pick it.
    """
    if sys.platform.startswith("linux"):
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return sys.platform == "darwin" and torch.backends.mps.is_available()


def choose(requested: str, device: torch.device) -> tuple[str, str]:
    """The precision to use and why, for ``run_start``."""
    if requested != "auto":
        if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("run.precision: bf16 is not supported by this GPU; use fp16, fp32 or auto")
        return requested, "set in config"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", f"{torch.cuda.get_device_name(device)} supports bf16"
        return (
            "fp32",
            f"{torch.cuda.get_device_name(device)} lacks bf16; fp16 needs loss scaling, so choose it explicitly",
        )
    if cpu_has_native_bf16():
        return "bf16", "CPU has native bf16 instructions (avx512_bf16/amx)"
    return "fp32", "CPU lacks native bf16; emulated bf16 would be slower than fp32"


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])
