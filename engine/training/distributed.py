"""Process-group set-up and the one small collective that keeps ranks agreeing.

Every decision that changes what ranks do (pause, stop, save, change LR) is
taken by rank 0 or by any rank's signal, then agreed through
:meth:`Dist.agree` at the same step on every rank. That collective runs on a
CPU (gloo) group even when training uses NCCL, so it never synchronises the
host with the GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node_rank: int
    device: torch.device
    backend: str
    control_group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, rank0_has_news: bool, stop: bool, oom: bool = False) -> tuple[bool, bool, bool]:
        """(rank 0 has commands to share, any rank wants to stop, any rank ran out of memory), on all ranks."""
        if self.world_size == 1:
            return rank0_has_news, stop, oom
        flags = torch.tensor([int(rank0_has_news and self.is_main), int(stop), int(oom)], dtype=torch.int64)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self.control_group)
        return bool(flags[0]), bool(flags[1]), bool(flags[2])

    def broadcast_objects(self, obj: Any) -> Any:
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.control_group)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.control_group)
        return out

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor


def init(device_pref: str, threads_per_rank: int | None) -> Dist:
    """Join the process group torchrun set up (a single process also runs under torchrun)."""
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    node_rank = int(os.environ.get("GROUP_RANK", 0))
    use_cuda = device_pref == "cuda" or (device_pref == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("run.device is cuda but no CUDA device is visible; use run.device=cpu or auto")
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
        # One rank per share of the cores: oversubscribed ranks were 40% slower here.
        torch.set_num_threads(threads_per_rank or max(1, (os.cpu_count() or 1) // local_world))
    control_group = None
    if world > 1:
        dist.init_process_group(backend, timeout=timedelta(minutes=10))
        control_group = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
    return Dist(rank, world, local_rank, local_world, node_rank, device, backend, control_group)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
