"""Fault injection for tests/test_checkpoint_runs.py: real faults, injected from outside the engine.

A test puts this folder on PYTHONPATH, so every Python process of its run
imports this file at start-up; only torchrun workers (RANK is set) act on
``PODIUM_FAULT``, a ';'-separated list of:

    kill_step:RANK:STEP:ATTEMPT        SIGKILL that rank as its optimizer starts step STEP
    kill_save:RANK:STEP:FILE:ATTEMPT   SIGKILL that rank while it fsyncs FILE of the checkpoint of STEP
    full_disk:RANK:STEP                that rank's fsyncs for the checkpoint of STEP fail with ENOSPC

ATTEMPT is torchrun's restart count the fault applies to, so a restarted
worker group runs clean.
"""

import errno
import importlib.abc
import importlib.machinery
import os
import signal
import sys


def _faults():
    rank, attempt = os.environ.get("RANK"), os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    for spec in filter(None, os.environ.get("PODIUM_FAULT", "").split(";")):
        kind, fault_rank, *args = spec.split(":")
        if fault_rank != rank:
            continue
        if kind in ("kill_step", "kill_save") and args[-1] != attempt:
            continue
        yield kind, args


def _install_fsync_faults(faults):
    real_fsync = os.fsync

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        for kind, args in faults:
            in_save = f".tmp-step-{int(args[0]):07d}-" in path
            if kind == "full_disk" and in_save:
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            if kind == "kill_save" and in_save and os.path.basename(path) == args[1]:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_fsync(fd)

    os.fsync = fsync


class _AfterDistributed(importlib.abc.MetaPathFinder):
    """Runs ``then`` right after engine.training.distributed (which imports torch) has loaded."""

    def __init__(self, then):
        self.then = then

    def find_spec(self, name, path=None, target=None):
        if name != "engine.training.distributed":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            self.then()

        spec.loader.exec_module = exec_module
        return spec


def _install_step_kill(step):
    def install():
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        started = 0

        def before_step(optimizer, args, kwargs):
            nonlocal started
            started += 1
            if started == step:
                os.kill(os.getpid(), signal.SIGKILL)

        register_optimizer_step_pre_hook(before_step)

    sys.meta_path.insert(0, _AfterDistributed(install))


_active = list(_faults())
if any(kind in ("kill_save", "full_disk") for kind, _ in _active):
    _install_fsync_faults(_active)
for _kind, _args in _active:
    if _kind == "kill_step":
        _install_step_kill(int(_args[0]))
