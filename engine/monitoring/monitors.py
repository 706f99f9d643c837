"""What the engine watches besides the loss and the music: system metrics, step times, profiles.

- :class:`SystemSampler` samples CPU, memory and GPU figures on a thread of
  its own at ``monitor.system_interval_s``; the training loop only picks up
  the latest sample at log steps (no work, no host sync in the step).
- :class:`StepClock` records each step's wall and CPU time for ``debug.step_times``.
- :class:`Profiler` records N steps with ``torch.profiler`` on command.

Generated music is :mod:`engine.monitoring.music_evaluator`; the TensorBoard and W&B mirrors are
:mod:`engine.monitoring.sinks`.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch


class SystemSampler:
    """Per-rank process and host figures, plus GPU figures from torch and NVML.

    psutil's ``cpu_percent`` is relative to the previous call on the same
    object, so the objects live as long as the sampler. Every CUDA rank reads
    its own GPU's used memory from NVML (``gpu_mem_used_mb``: every process on
    that GPU counts, not only this one); the first rank of each host also
    reports every GPU of the host (``gpus``). A missing NVML library is normal
    on CPU machines and leaves the NVML fields out; so does a figure a GPU does
    not support (a MIG slice has no utilisation, some boards no temperature or
    power): it is left out and the rest still reported.

    ``gpu_mem_peak_mb`` is the peak allocated since the training loop last took
    a sample (:meth:`latest`, at log steps): the sampler resets torch's peak
    counters (``torch.cuda.reset_peak_memory_stats``) after reading them and
    keeps the highest reading until a sample is taken, so one early spike does
    not stand for the whole run and no spike between log steps is lost.
    Nothing else in the process may rely on those counters.

    :meth:`sample` never raises: a part that fails (psutil, torch's counters,
    NVML) keeps its last good fields, and each kind of failure is reported once
    on stderr, so the thread goes on sampling whatever still works.
    """

    def __init__(self, rank: int, local_rank: int, device: torch.device, interval_s: float):
        self.rank, self.device, self.interval_s = rank, device, interval_s
        self.process = psutil.Process()
        self.process.cpu_percent()
        psutil.cpu_percent()
        self.host = socket.gethostname()
        self.nvml = self._init_nvml() if device.type == "cuda" else None
        self.host_gpus = local_rank == 0
        self.handle = self._own_handle() if self.nvml is not None else None
        self._latest: dict[str, Any] | None = None
        self._peak_lock = threading.Lock()  # the peak is kept by the sampler thread, reset by the training thread
        self._peak_since_taken_mb = 0.0
        self._last_good: dict[str, dict[str, Any]] = {}
        self._reported: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="podium-system-sampler", daemon=True)

    @staticmethod
    def _init_nvml():
        try:
            import pynvml

            pynvml.nvmlInit()
            return pynvml
        except Exception:  # NVMLError_LibraryNotFound and friends: no NVML on this host is not an error
            return None

    def _own_handle(self):
        try:
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            return nvml_handle(self.nvml, torch.cuda.get_device_properties(index), index)
        except Exception as exc:  # without its handle this rank only loses gpu_mem_used_mb
            self._report("nvml_handle", exc)
            return None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def latest(self) -> dict[str, Any] | None:
        """The newest sample; the peak memory of the next one starts from here."""
        with self._peak_lock:
            self._peak_since_taken_mb = 0.0
        return self._latest

    def _run(self) -> None:
        # The first sample waits a second (or the interval, when shorter): CPU
        # percentages are measured over the time since the last call.
        while not self._stop.wait(self.interval_s if self._latest else min(self.interval_s, 1.0)):
            self._latest = self.sample()

    def sample(self) -> dict[str, Any]:
        record: dict[str, Any] = {"rank": self.rank, "host": self.host, "time": time.time()}
        for part in (self._host_figures, self._torch_figures, self._nvml_figures):
            try:
                fields = part()
            except Exception as exc:
                self._report(part.__name__, exc)
                fields = self._last_good.get(part.__name__, {})
            else:
                self._last_good[part.__name__] = fields
            record.update(fields)
        return record

    def _report(self, part: str, exc: Exception) -> None:
        # Once per part and kind of error: the thread samples every few seconds for the whole run.
        if (part, type(exc).__name__) not in self._reported:
            self._reported.add((part, type(exc).__name__))
            print(
                f"system sampler (rank {self.rank}): {part} failed ({type(exc).__name__}: {exc}); keeping its "
                "last values, this error is not reported again",
                file=sys.stderr,
                flush=True,
            )

    def _host_figures(self) -> dict[str, Any]:
        memory = psutil.virtual_memory()
        return {
            "cpu_percent": self.process.cpu_percent(),
            "rss_mb": self.process.memory_info().rss / 2**20,
            "host_cpu_percent": psutil.cpu_percent(),
            "host_mem_percent": memory.percent,
            "host_mem_used_mb": (memory.total - memory.available) / 2**20,
            "host_mem_total_mb": memory.total / 2**20,
        }

    def _torch_figures(self) -> dict[str, Any]:
        if self.device.type != "cuda":
            return {}
        # The caching allocator's own counters: host-side bookkeeping, no device sync. The reset takes the
        # allocator's lock, so it is safe against the training thread's allocations.
        with self._peak_lock:
            self._peak_since_taken_mb = max(
                self._peak_since_taken_mb, torch.cuda.max_memory_allocated(self.device) / 2**20
            )
            torch.cuda.reset_peak_memory_stats(self.device)
            peak = self._peak_since_taken_mb
        return {
            "gpu_mem_alloc_mb": torch.cuda.memory_allocated(self.device) / 2**20,
            "gpu_mem_reserved_mb": torch.cuda.memory_reserved(self.device) / 2**20,
            "gpu_mem_peak_mb": peak,
            "gpu_mem_total_mb": torch.cuda.get_device_properties(self.device).total_memory / 2**20,
        }

    def _nvml_figures(self) -> dict[str, Any]:
        if self.nvml is None:
            return {}
        fields: dict[str, Any] = {}
        mem = self._figure(self.nvml.nvmlDeviceGetMemoryInfo, self.handle) if self.handle is not None else None
        if mem is not None:
            fields["gpu_mem_used_mb"] = mem.used / 2**20
        if self.host_gpus:
            fields["gpus"] = self._nvml_gpus(self.nvml)
        return fields

    def _figure(self, query, *args):
        """One NVML query, None where NVML refuses it (not supported, no permission, GPU lost)."""
        try:
            return query(*args)
        except self.nvml.NVMLError:
            return None

    def _nvml_gpus(self, nv: Any) -> list[dict[str, Any]]:
        figure = self._figure
        gpus = []
        for index in range(figure(nv.nvmlDeviceGetCount) or 0):
            handle = figure(nv.nvmlDeviceGetHandleByIndex, index)
            if handle is None:
                continue
            gpu: dict[str, Any] = {"index": index}
            if (util := figure(nv.nvmlDeviceGetUtilizationRates, handle)) is not None:
                gpu["util"] = util.gpu
            if (mem := figure(nv.nvmlDeviceGetMemoryInfo, handle)) is not None:
                gpu.update(mem_used_mb=mem.used / 2**20, mem_total_mb=mem.total / 2**20)
            if (temp := figure(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU)) is not None:
                gpu["temp_c"] = temp
            if (power := figure(nv.nvmlDeviceGetPowerUsage, handle)) is not None:
                gpu["power_w"] = power / 1000.0
            gpus.append(gpu)
        return gpus


def nvml_handle(nv, props, index: int):
    """The NVML handle of the GPU torch describes with ``props`` (its index ``index``), or None.

    CUDA numbers only the visible GPUs, in ``CUDA_VISIBLE_DEVICES`` order and
    by default fastest first, while NVML numbers every GPU of the host, so the
    index is the last resort: the UUID names the very device (a MIG slice
    included), else the PCI bus id. A handle whose memory total is not the
    device's (within 10%) is another device, e.g. the parent of a MIG slice
    found by its bus id, whose used memory would be every slice's: None then.
    """
    uuid = str(getattr(props, "uuid", "") or "")
    lookups: list[tuple[Any, str | int]] = [
        (nv.nvmlDeviceGetHandleByUUID, u)
        for u in ([uuid] if uuid.startswith(("GPU-", "MIG-")) else [f"GPU-{uuid}", f"MIG-{uuid}"] if uuid else [])
    ]
    if getattr(props, "pci_bus_id", None) is not None:
        bus_id = f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
        lookups.append((nv.nvmlDeviceGetHandleByPciBusId, bus_id))
    lookups.append((nv.nvmlDeviceGetHandleByIndex, index))
    for lookup, key in lookups:
        try:
            handle = lookup(key)
            total = nv.nvmlDeviceGetMemoryInfo(handle).total
        except nv.NVMLError:
            continue
        if abs(total - props.total_memory) <= 0.1 * props.total_memory:
            return handle
    return None


def system_event(samples: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """One ``system`` event payload from every rank's latest sample (None when none has one yet).

    Each rank's figures are also flattened into lists indexed by rank (None
    for a rank without the figure or without a sample yet), the shape the
    anomaly detectors read: ``rss_mb`` and the GPU memory figures, NVML's
    ``gpu_mem_used_mb`` included.
    """
    ranks = [s for s in samples if s]
    if not ranks:
        return None
    hosts: dict[str, dict[str, Any]] = {}
    host_fields = ("host_cpu_percent", "host_mem_percent", "host_mem_used_mb", "host_mem_total_mb")
    for s in ranks:
        # .get: a sample whose psutil part has never succeeded has no host figures.
        hosts.setdefault(s["host"], {"host": s["host"], **{k: s.get(k) for k in host_fields}})
        if s.get("gpus"):
            hosts[s["host"]]["gpus"] = s["gpus"]
    gpu_fields = ("gpu_mem_alloc_mb", "gpu_mem_reserved_mb", "gpu_mem_peak_mb", "gpu_mem_used_mb", "gpu_mem_total_mb")
    rank_fields = ("rank", "host", "cpu_percent", "rss_mb", *gpu_fields)
    main_host = next(iter(hosts.values()))
    by_rank = {s["rank"]: s for s in ranks}
    indexed = [by_rank.get(r, {}) for r in range(max(by_rank) + 1)]
    return {
        **{k: v for k, v in main_host.items() if k != "gpus"},
        "hosts": list(hosts.values()),
        "ranks": [{k: s[k] for k in rank_fields if k in s} for s in ranks],
        "gpus": main_host.get("gpus", []),
        "rss_mb": [s.get("rss_mb") for s in indexed],
        **{k: [s.get(k) for s in indexed] for k in gpu_fields if any(k in s for s in ranks)},
    }


class StepClock:
    """``debug.step_times``: host wall-clock and process CPU time at the end of every step (rank 0).

    For ``bench/overhead.py``, which needs each step's own time, log steps
    included (the ``step_time`` in ``metrics`` events is an interval mean that
    leaves out the log step's own work). Two clock reads and three appends per
    step; written once, when training ends. No device sync: on CUDA a step's
    time is the host's, and only intervals ending at a log step (where the
    engine reads its device values) hold all their device work.
    ``process_time`` counts every thread of the process (sampler, watchdog).
    """

    def __init__(self, path: Path):
        self.path = path
        self.steps: list[int] = []
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def tick(self, step: int) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.steps.append(step)

    def save(self) -> None:
        self.path.write_text(json.dumps({"step": self.steps, "wall": self.wall, "cpu": self.cpu}))


class Profiler:
    """Records the next ``steps`` steps with torch.profiler into ``run_dir/profiles``.

    The trace is written by ``tensorboard_trace_handler``: a ``*.pt.trace.json``
    that Chrome's tracing, Perfetto and TensorBoard's profiler plugin all open.
    """

    def __init__(self, run_dir: Path, device: torch.device, steps: int, start_step: int):
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.dir = run_dir / "profiles" / f"step-{start_step:07d}"
        self.cuda = device.type == "cuda"
        self.remaining = steps
        self.steps = steps
        self.profile = torch.profiler.profile(
            activities=activities, on_trace_ready=torch.profiler.tensorboard_trace_handler(str(self.dir))
        )
        self.profile.start()

    def step_done(self) -> dict[str, Any] | None:
        """Count a step; after the last one, stop and return the ``profile`` event payload."""
        self.remaining -= 1
        if self.remaining > 0:
            return None
        self.profile.stop()
        sort = "self_device_time_total" if self.cuda else "self_cpu_time_total"
        averages = sorted(self.profile.key_averages(), key=lambda e: getattr(e, sort), reverse=True)[:10]
        top = [
            {
                "name": e.key,
                "calls": e.count,
                "self_cpu_ms": e.self_cpu_time_total / 1e3,
                "cpu_total_ms": e.cpu_time_total / 1e3,
                **({"self_cuda_ms": e.self_device_time_total / 1e3} if self.cuda else {}),
            }
            for e in averages
        ]
        traces = sorted(self.dir.glob("*.pt.trace.json"))
        return {
            "path": str(traces[-1]) if traces else str(self.dir),
            "steps": self.steps,
            "top": top,
            "table": self.profile.key_averages().table(sort_by=sort, row_limit=10),
        }
