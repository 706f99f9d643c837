"""What goes into and comes out of a checkpoint besides the files: host copies for background
saves, precision casts, random streams, architecture and config comparisons, library versions."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import torch

from engine.contract.manifest import (
    CheckpointInvalid,
)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class HostCopier:
    """Copies state into CPU memory for a background save; storage sharing is kept (tied weights stay tied).

    Buffers are reused from one save to the next (the manager takes a new copy
    only after the previous write finished). GPU storages go to pinned buffers
    by asynchronous copies: training's next kernels queue behind them on the
    same stream, so the host does not wait; the writer calls ``ready`` first.
    """

    def __init__(self):
        self._buffers: dict[tuple[str, int], list[torch.UntypedStorage]] = {}

    def copy(self, obj: Any) -> tuple[Any, Callable[[], None]]:
        free = {key: list(buffers) for key, buffers in self._buffers.items()}
        memo: dict[tuple, torch.UntypedStorage] = {}
        out = self._copy(obj, memo, free)
        if any(device.type == "cuda" for device, _ in memo):
            done = torch.cuda.Event()
            done.record()
            return out, done.synchronize
        return out, lambda: None

    def _buffer(self, device: torch.device, nbytes: int, free: dict) -> torch.UntypedStorage:
        key = (device.type, nbytes)
        if free.get(key):
            return free[key].pop(0)  # in allocation order: each tensor gets its buffer of last time
        if device.type == "cuda":
            buffer = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True).untyped_storage()
        else:
            buffer = torch.UntypedStorage(nbytes)
        self._buffers.setdefault(key, []).append(buffer)
        return buffer

    def _copy(self, obj: Any, memo: dict, free: dict) -> Any:
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            key = (obj.device, storage.data_ptr())
            copy = memo.get(key)
            if copy is None:
                copy = memo[key] = self._buffer(obj.device, storage.nbytes(), free)
                copy.copy_(storage, non_blocking=obj.device.type == "cuda")
            return torch.empty(0, dtype=obj.dtype).set_(copy, obj.storage_offset(), obj.size(), obj.stride())
        if isinstance(obj, dict):
            return {k: self._copy(v, memo, free) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self._copy(v, memo, free) for v in obj)
        return obj


def cast_floating(state: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """Floating tensors of a state dict in ``dtype``; views of one tensor stay one tensor (tied weights)."""
    memo: dict[tuple, torch.Tensor] = {}
    out = {}
    for key, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.size()), tuple(t.stride()))
            if ident not in memo:
                memo[ident] = t.detach().to(dtype)
            out[key] = memo[ident]
        else:
            out[key] = t
    return out


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every random stream of this process, as tensors and numbers (loads with weights_only=True)."""
    legacy_state = np.random.get_state(legacy=True)
    assert isinstance(legacy_state, tuple)  # the global generator is an MT19937: a tuple, not a dict
    kind, keys, pos, has_gauss, gauss = legacy_state
    version_, words, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        },
        "python": {"version": int(version_), "words": torch.tensor(words, dtype=torch.int64), "gauss_next": gauss_next},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state(
            ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
        )
    if "python" in state:
        p = state["python"]
        random.setstate((p["version"], tuple(int(w) for w in p["words"].tolist()), p["gauss_next"]))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def check_compatible(saved: dict[str, Any], expected: dict[str, Any], source: str) -> None:
    """Raise a clear error unless two model state dicts have the same keys and shapes."""
    problems = []
    for key in sorted(expected.keys() - saved.keys()):
        problems.append(f"missing {key}")
    for key in sorted(saved.keys() - expected.keys()):
        problems.append(f"unexpected {key}")
    for key in sorted(saved.keys() & expected.keys()):
        a, b = saved[key], expected[key]
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape != b.shape:
            problems.append(f"{key}: {tuple(a.shape)} here, {tuple(b.shape)} expected")
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise CheckpointInvalid(f"{source}: the model architecture differs: {shown}")


def versions() -> dict[str, str]:
    """Library versions written into every manifest."""
    out = {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__}
    for package in ("miditok", "zstandard"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


def metric_of(metrics: dict[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, list]:
    """Config fields that differ between a checkpoint's run and this one: ``{"optim.lr": [old, new]}``."""
    before, after = _flatten(old or {}), _flatten(new)
    return {
        key: [before.get(key), after.get(key)]
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    }
