"""Which ATen operators a piece of training code runs, and which of them would wait on a CUDA device.

On a GPU the training step's speed depends on the host queueing kernels ahead of the device.
These undo that, and show in the operators the code dispatches:

- reading a device value on the host (``.item()``, ``bool(t)``, ``float(t)``) or an operator
  whose output size depends on the data (``nonzero``, ``masked_select``, ``x[mask]``): the host
  waits until the device has run everything queued before it;
- a tensor made from host data (``torch.tensor(x)``, ``torch.from_numpy(a)``): moved to a CUDA
  device, a blocking copy, so a full synchronisation as well (hence the step's batch is written
  into a pinned tensor and copied without blocking);
- on CUDA, a copy between host and device that blocks (``.cpu()``, ``.tolist()``, ``.to(cuda)``
  of pageable memory or without ``non_blocking``).

On the CPU the last kind dispatches nothing, so there only the first two can be seen; the tests
run there, bench/overhead.py also on CUDA (with torch's own sync debug mode beside it). Host
tensors the device never sees (``host_tensors``, e.g. Adam's step counts, which PyTorch keeps on
the CPU unless the optimizer is fused) may be read at no cost.

Each operator is also about one kernel launch on a GPU, so the count per step measures the
host's share of a step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

DATA_DEPENDENT = "output size depends on the data"
READS = "reads a device value on the host"
SYNCHRONISING = {
    "aten._local_scalar_dense.default": READS + " (.item(), bool(), float())",
    "aten.equal.default": READS,
    "aten.allclose.default": READS,
    "aten.is_nonzero.default": READS,
    "aten.lift_fresh.default": "makes a tensor from host data (torch.tensor(...), torch.from_numpy(...)): "
    "a blocking copy to a CUDA device",
    "aten.nonzero.default": DATA_DEPENDENT,
    "aten.masked_select.default": DATA_DEPENDENT,
    "aten._unique2.default": DATA_DEPENDENT,
    "aten.unique_dim.default": DATA_DEPENDENT,
    "aten.unique_consecutive.default": DATA_DEPENDENT,
    "aten.repeat_interleave.Tensor": DATA_DEPENDENT,
    "aten.bincount.default": DATA_DEPENDENT,
}
# Indexing with a boolean mask (x[mask], x[mask] = t) finds the mask's true places first.
MASK_INDEXED = {"aten.index.Tensor", "aten.index_put.default", "aten.index_put_.default"}
COPIES = {"aten._to_copy.default", "aten.copy_.default"}


def _blocking_copy(name: str, args: tuple, kwargs: dict) -> str | None:
    """Why a copy between host and device makes the host wait, or None."""
    if name == "aten._to_copy.default":
        source, target = args[0], kwargs.get("device") or args[0].device
    else:  # copy_(destination, source, non_blocking)
        source, target = args[1], args[0].device
    non_blocking = kwargs.get("non_blocking", len(args) > 2 and args[2])
    source_device, target = source.device, torch.device(target)
    if source_device.type == target.type:
        return None
    if target.type == "cpu":
        return "copies a device tensor to the host (.cpu(), .tolist(), .numpy())"
    if source_device.type == "cpu" and not (non_blocking and source.is_pinned()):
        return "copies host memory to the device blocking (pageable, or without non_blocking)"
    return None


def host_step_counts(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimizer's step counts that PyTorch keeps on the host (all but a fused or capturable optimizer's):
    reading them waits for nothing, so they go in ``OpAudit(host_tensors=...)``."""
    return [
        state["step"]
        for state in optimizer.state.values()
        if isinstance(state.get("step"), torch.Tensor) and state["step"].device.type == "cpu"
    ]


class OpAudit(TorchDispatchMode):
    """Counts the ATen operators dispatched inside ``with OpAudit() as audit:``."""

    def __init__(self, host_tensors: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.waits: dict[str, str] = {}
        self.host_pointers = {t.data_ptr() for t in host_tensors}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None) -> Any:
        kwargs = kwargs or {}
        name = str(func)
        self.ops[name] += 1
        why = SYNCHRONISING.get(name)
        if name == "aten._local_scalar_dense.default" and args[0].data_ptr() in self.host_pointers:
            why = None
        elif name in MASK_INDEXED and any(i is not None and i.dtype == torch.bool for i in args[1]):
            name, why = f"{name} (boolean mask)", DATA_DEPENDENT
        elif name in COPIES:
            why = _blocking_copy(name, args, kwargs)
        if why:
            self.waits[name] = why
        return func(*args, **kwargs)

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    def synchronising(self) -> dict[str, str]:
        """The operators seen that would make the host wait for a CUDA device, with the reason."""
        return dict(self.waits)
