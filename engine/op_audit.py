"""Which ATen operators a piece of training code runs, and which of them would wait on a CUDA device.

On a GPU the training step's speed depends on the host queueing kernels ahead of the device.
Two things undo that, and both can be seen on any device, the CPU included, from the operators
the code dispatches:

- an operator that reads a device value on the host (``.item()``, ``bool(t)``, ``.tolist()``) or
  whose output size depends on the data (``nonzero``, ``masked_select``): the host waits until
  the device has run everything queued before it;
- a tensor made from host data (``torch.tensor(x, device=...)``, ``torch.from_numpy(a).to(device)``)
  and copied without ``non_blocking``: on CUDA a blocking copy, so a full synchronisation as well.
  The step's own batch is such data, copied from pinned memory without blocking; the functions
  that do that are named in ``host_data_in``.

Host tensors the device never sees (``host_tensors``, e.g. the optimizer's step counts, which
PyTorch keeps on the CPU) may be read on the host at no cost.

Each operator is also roughly one kernel launch on a GPU, so the count per step measures the
host's share of a step. Used by tests/test_step_sync.py and bench/overhead.py.
"""
from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNCHRONISING = {
    "aten._local_scalar_dense.default": "reads a device value on the host (.item(), bool(), float(), .tolist())",
    "aten.lift_fresh.default": "makes a tensor from host data (torch.tensor(...), torch.from_numpy(...)): "
                               "a blocking copy to a CUDA device",
    "aten.nonzero.default": "output size depends on the data",
    "aten.masked_select.default": "output size depends on the data",
    "aten._unique2.default": "output size depends on the data",
    "aten.unique_consecutive.default": "output size depends on the data",
    "aten.repeat_interleave.Tensor": "output size depends on the data",
    "aten.equal.default": "reads a device value on the host",
}
# Indexing with a boolean mask (x[mask], x[mask] = t) finds the mask's true places first.
MASK_INDEXED = {"aten.index.Tensor", "aten.index_put.default", "aten.index_put_.default"}
BOOLEAN_MASK = "output size depends on the data (indexing with a boolean mask)"


class OpAudit(TorchDispatchMode):
    """Counts the ATen operators dispatched inside ``with OpAudit() as audit:``."""

    def __init__(self, host_tensors: Iterable[torch.Tensor] = (), host_data_in: Iterable[str] = ()) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.host_pointers = {t.data_ptr() for t in host_tensors}
        self.host_data_in = set(host_data_in)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None) -> Any:
        name = str(func)
        if name in MASK_INDEXED and any(i is not None and i.dtype == torch.bool for i in args[1]):
            name += " (boolean mask)"
        elif name == "aten._local_scalar_dense.default" and args[0].data_ptr() in self.host_pointers:
            name += " (host tensor)"
        elif name == "aten.lift_fresh.default" and self._called_from_host_data_function():
            name += " (the batch)"
        self.ops[name] += 1
        return func(*args, **(kwargs or {}))

    def _called_from_host_data_function(self) -> bool:
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_name in self.host_data_in:
                return True
            frame = frame.f_back
        return False

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    def synchronising(self) -> dict[str, str]:
        """The operators seen that would make the host wait for a CUDA device, with the reason."""
        seen = {name: SYNCHRONISING[name] for name in self.ops if name in SYNCHRONISING}
        seen.update({name: BOOLEAN_MASK for name in self.ops if name.endswith("(boolean mask)")})
        return seen
