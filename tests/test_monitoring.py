"""Monitoring in real runs: system metrics, samples with musical metrics, anomalies acted on, sinks, profiles."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import symusic
import torch

from engine.contract.commands import send_command
from engine.contract.config import SinksSection
from engine.monitoring.anomaly import AnomalyMonitor
from engine.monitoring.monitors import SystemSampler, nvml_handle, system_event
from engine.monitoring.music_evaluator import MusicEvaluator
from engine.monitoring.sinks import Sinks
from engine.music import metrics as mm
from engine.music import reference as music_reference
from tests.conftest import SMOKE, podium
from tests.helpers import ack_for, events_of, start_run, trainer_in_this_process, wait_until


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory, podium_cache) -> Path:
    """A 2-rank smoke run with a NaN loss injected at step 20, both sinks switched on and the step clock."""
    run_dir = tmp_path_factory.mktemp("monitoring") / "nan"
    podium(
        "run",
        "-c",
        str(SMOKE),
        "-r",
        str(run_dir),
        "--nproc",
        "2",
        "--set",
        "debug.nan_loss_at_steps=[20]",
        "--set",
        "sinks.tensorboard=true",
        "--set",
        "sinks.wandb=true",
        "--set",
        "monitor.system_interval_s=0.5",
        "--set",
        "debug.step_times=true",
        check=True,
    )
    return run_dir


@pytest.mark.slow
def test_nan_loss_is_rolled_back_with_a_lower_lr_and_the_run_finishes(nan_run):
    anomalies = events_of(nan_run, "anomaly")
    detected = next(a for a in anomalies if a["kind"] == "nonfinite_loss" and "action_taken" not in a)
    assert detected["severity"] == "critical" and detected["action"] == "rollback" and detected["suggestion"]
    taken = next(a for a in anomalies if a.get("id") == detected["id"] and "action_taken" in a)
    assert taken["action_taken"] == {"action": "rollback", "outcome": "done", "to_step": 15, "lr_factor": 0.5}
    end = events_of(nan_run, "run_end")[-1]
    assert end["reason"] == "finished" and end["step"] == 30
    metrics = events_of(nan_run, "metrics")
    assert math.isfinite(metrics[-1]["loss"])
    assert metrics[-1]["peak_lr"] == pytest.approx(metrics[0]["peak_lr"] * 0.5)


@pytest.mark.slow
def test_step_clock_ticks_once_per_step_and_follows_the_rollback(nan_run):
    clock = json.loads((nan_run / "step_times.json").read_text())
    steps = clock["step"]
    assert len(steps) == len(clock["wall"]) == len(clock["cpu"])
    assert steps[0] == 0 and steps[-1] == 30
    # One tick per loop iteration, after the step. The NaN at step 20 is seen at the log step 25, whose
    # iteration rolls back to the checkpoint at 15 and so ends there.
    assert [(a, b) for a, b in zip(steps, steps[1:]) if b != a + 1] == [(24, 15)]
    assert all(b > a for a, b in zip(clock["wall"], clock["wall"][1:]))
    assert all(b >= a for a, b in zip(clock["cpu"], clock["cpu"][1:]))


@pytest.mark.slow
def test_system_events_carry_every_rank_and_the_host(nan_run):
    system = events_of(nan_run, "system")
    assert system, "no system event"
    last = system[-1]
    assert [r["rank"] for r in last["ranks"]] == [0, 1]
    assert all(r["rss_mb"] > 50 for r in last["ranks"])
    assert 0 < last["host_mem_percent"] < 100 and last["host_mem_total_mb"] > 0


@pytest.mark.slow
def test_samples_are_midi_with_metrics_and_a_quality_score(nan_run):
    rounds = events_of(nan_run, "sample")
    assert rounds and all(0.0 <= r["quality_score"] <= 1.0 for r in rounds)
    last = rounds[-1]
    assert len(last["samples"]) == 4 and "pitch_class_entropy" in last["metrics"]
    assert "syntax_validity_rate" in last["metrics"] and last["reference"]["pitch_range"]["mean"] > 0
    for sample in last["samples"]:
        score = symusic.Score(sample["path"])
        again = mm.compute_all(mm.notes_from_score(score), 8, mm.score_beats_per_bar(score))
        measured = {name: sample["metrics"][name] for name in mm.METRICS}
        assert again == pytest.approx(measured, nan_ok=True)
        assert score.note_num() <= sample["syntax"]["n_notes"]
        # The rest of the row: how much of it is copied from the training set, and from which piece.
        assert set(sample["metrics"]) - set(mm.METRICS) == {"memorization"}
        assert sample["memorization"]["share"] == pytest.approx(sample["metrics"]["memorization"], nan_ok=True)
    evals = events_of(nan_run, "eval")
    assert all(0.0 <= e["quality_score"] <= 1.0 for e in evals)
    assert (nan_run / "samples" / "reference.json").exists()


@pytest.mark.slow
def test_tensorboard_sink_matches_the_events_and_a_missing_wandb_is_reported(nan_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    accumulator = EventAccumulator(str(nan_run / "tensorboard"))
    accumulator.Reload()
    logged = {e.step: e.value for e in accumulator.Scalars("train/loss")}
    # After the rollback steps repeat; the newest value of each step is the one that stands.
    expected = {m["step"]: m["loss"] for m in events_of(nan_run, "metrics")}
    finite = {step: loss for step, loss in expected.items() if math.isfinite(loss)}
    assert set(finite) <= set(logged) and len(finite) >= 5
    assert all(logged[step] == pytest.approx(loss, rel=1e-6) for step, loss in finite.items())
    # The hyperparameters and the final metrics, for TensorBoard's HParams view.
    content = accumulator.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["run.max_steps"].number_value == 30
    final_eval = events_of(nan_run, "eval")[-1]
    assert accumulator.Scalars("final/val_loss")[-1].value == pytest.approx(final_eval["val_loss"], rel=1e-6)
    problems = [e["message"] for e in events_of(nan_run, "error")]
    assert any("wandb package is not installed" in p for p in problems)
    assert events_of(nan_run, "run_end")[-1]["reason"] == "finished"


@pytest.mark.slow
def test_profile_command_records_a_trace_and_top_operators(tmp_path):
    run_dir = tmp_path / "profiled"
    proc = start_run(
        run_dir,
        "-c",
        str(SMOKE),
        "--set",
        "run.max_steps=100000",
        "--set",
        "checkpoint.interval=0",
        "--set",
        "music.enabled=false",
    )
    try:
        wait_until(lambda: events_of(run_dir, "metrics"), 120, "the first metrics event")
        command = send_command(run_dir, "profile", steps=3)
        assert wait_until(lambda: ack_for(run_dir, command), 60, "the profile ack")["outcome"] == "done"
        report = wait_until(lambda: events_of(run_dir, "profile"), 120, "the profile event")[0]
        send_command(run_dir, "stop")
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    trace = Path(report["path"])
    assert trace.name.endswith(".pt.trace.json") and json.loads(trace.read_text())["traceEvents"]
    assert report["steps"] == 3 and len(report["top"]) > 3 and "Self CPU" in report["table"]


@pytest.mark.slow
def test_the_loop_runs_one_iteration_at_a_time_in_this_process(tmp_path):
    """What bench/overhead.py's in-process mode drives: a 1-rank Trainer without torchrun, through begin,
    iteration and end, writes what ``train`` writes: metrics at each log step, one clock tick per step, the end."""
    run_root = tmp_path / "run"
    with trainer_in_this_process(
        run_root, ["run.max_steps=10", "checkpoint.interval=0", "debug.step_times=true"]
    ) as trainer:
        interval = trainer.begin()
        for step in range(1, 11):
            interval = trainer.iteration(interval)
            assert trainer.step == step and interval.steps == step % 5  # a new interval after each log step
        assert trainer.end() == "finished"
    assert [e["step"] for e in events_of(run_root, "metrics")] == [5, 10]
    assert [e["step"] for e in events_of(run_root, "eval")] == [10]
    assert json.loads((run_root / "step_times.json").read_text())["step"] == list(range(11))


@pytest.mark.slow
def test_a_pause_keeps_the_steps_before_it_and_leaves_its_time_out(tmp_path):
    """Paused after step 1 for 2 s: the interval's tokens still count (tokens_seen equals an unpaused run's)
    and its step time leaves the pause out."""
    import threading

    overrides = ["run.max_steps=10", "checkpoint.interval=0", "run.eval_interval=1000"]
    with trainer_in_this_process(tmp_path / "straight", overrides) as trainer:
        assert trainer.train() == "finished"
        expected = trainer.tokens_seen
    paused_root = tmp_path / "paused"
    with trainer_in_this_process(paused_root, overrides) as trainer:
        send_command(paused_root, "pause")  # read at the first step, applied once it is complete
        resume = threading.Timer(2.0, send_command, (paused_root, "resume"))
        resume.start()
        try:
            assert trainer.train() == "finished"
        finally:
            resume.cancel()
        assert trainer.tokens_seen == expected
    first = events_of(paused_root, "metrics")[0]
    assert first["step"] == 5 and first["tokens_seen"] == events_of(tmp_path / "straight", "metrics")[0]["tokens_seen"]
    assert first["step_time"] < 2.0 / 5 / 2  # the 2 s pause would make it 0.4 s at least
    paused = next(e for e in events_of(paused_root, "status") if e["state"] == "paused")
    assert paused["step"] == 1


@pytest.mark.slow
def test_a_stop_between_log_steps_still_reports_the_steps_since_the_last(tmp_path):
    with trainer_in_this_process(tmp_path / "run", ["run.max_steps=10", "checkpoint.interval=0"]) as trainer:
        send_command(tmp_path / "run", "stop")  # read at the first step, applied once it is complete
        assert trainer.train() == "stopped"
        assert trainer.tokens_seen > 0
    metrics = events_of(tmp_path / "run", "metrics")
    assert [m["step"] for m in metrics] == [1] and metrics[0]["tokens_seen"] == trainer.tokens_seen
    assert math.isfinite(metrics[0]["loss"])


# --------------------------------------------------------------------------- units: no engine process


class FakeNvml:
    """The pynvml calls the sampler makes, over GPUs given as dicts. A figure missing from a GPU's dict
    raises NVMLError_NotSupported, as NVML does for a figure the GPU does not support."""

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    class NVMLError_NotFound(NVMLError):
        pass

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, gpus: list[dict]):
        self.gpus = gpus

    def _find(self, key: str, value):
        for gpu in self.gpus:
            if gpu.get(key) == value:
                return gpu
        raise self.NVMLError_NotFound(f"no GPU with {key} {value}")

    def _figure(self, handle: dict, key: str):
        if key not in handle:
            raise self.NVMLError_NotSupported("Not Supported")
        return handle[key]

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        return self._find("index", index)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return self._find("uuid", uuid)

    def nvmlDeviceGetHandleByPciBusId(self, bus_id):
        return self._find("pci", bus_id)

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(used=self._figure(handle, "used"), total=self._figure(handle, "total"), free=0)

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(gpu=self._figure(handle, "util"), memory=0)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return self._figure(handle, "temp")

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._figure(handle, "power_mw")


GIB = 2**30


def _cpu_sampler(nvml, interval_s: float = 1.0) -> SystemSampler:
    """A first-rank sampler on this CPU-only machine, with ``nvml`` standing in for pynvml."""
    sampler = SystemSampler(0, 0, torch.device("cpu"), interval_s)
    sampler.nvml = nvml
    return sampler


def test_nvml_figures_a_gpu_does_not_support_are_left_out_and_the_rest_still_reported():
    nvml = FakeNvml(
        [
            {"index": 0, "used": 2 * GIB, "total": 10 * GIB, "power_mw": 70000},  # a MIG slice
            {"index": 1, "used": GIB, "total": 80 * GIB, "util": 55, "temp": 61, "power_mw": 300000},
        ]
    )
    record = _cpu_sampler(nvml).sample()
    assert record["gpus"] == [
        {"index": 0, "mem_used_mb": 2048, "mem_total_mb": 10240, "power_w": 70.0},
        {"index": 1, "util": 55, "mem_used_mb": 1024, "mem_total_mb": 81920, "temp_c": 61, "power_w": 300.0},
    ]
    assert record["rss_mb"] > 0 and record["host_mem_total_mb"] > 0


def test_an_unexpected_error_does_not_stop_the_sampler_and_its_part_keeps_its_last_values(capsys):
    class BrokenAfterOneSample(FakeNvml):
        failures = 0

        def nvmlDeviceGetCount(self):
            if self.failures or getattr(self, "counted", False):
                self.failures += 1
                raise RuntimeError("driver went away")
            self.counted = True
            return super().nvmlDeviceGetCount()

    nvml = BrokenAfterOneSample(
        [{"index": 0, "used": GIB, "total": 80 * GIB, "util": 40, "temp": 50, "power_mw": 100000}]
    )
    sampler = _cpu_sampler(nvml, interval_s=0.01)
    sampler.start()
    try:
        first = wait_until(sampler.latest, 30, "the first sample")
        later = wait_until(
            lambda: nvml.failures >= 3 and sampler.latest()["time"] > first["time"] and sampler.latest(),
            30,
            "samples after the failures",
        )
    finally:
        sampler.stop()
    assert later["gpus"] == first["gpus"] and later["rss_mb"] > 0
    assert capsys.readouterr().err.count("driver went away") == 1  # reported once, not at every sample


def test_each_rank_reads_the_nvml_memory_of_its_own_gpu_whatever_the_cuda_order():
    gpus = [
        {
            "index": n,
            "uuid": f"GPU-{n}{n}{n}{n}-aaaa",
            "pci": f"00000000:{0x10 * (n + 1):02X}:00.0",
            "used": (10 + n) * GIB,
            "total": 80 * GIB,
        }
        for n in range(3)
    ]
    nvml = FakeNvml(gpus)
    # CUDA_VISIBLE_DEVICES=2,0: torch's cuda:0 is NVML's GPU 2. torch's UUID has no "GPU-" prefix.
    props = SimpleNamespace(uuid="2222-aaaa", total_memory=79 * GIB)
    assert nvml_handle(nvml, props, 0) is gpus[2]
    # A UUID NVML does not know: the PCI bus id.
    props = SimpleNamespace(uuid="ffff", pci_domain_id=0, pci_bus_id=0x20, pci_device_id=0, total_memory=79 * GIB)
    assert nvml_handle(nvml, props, 0) is gpus[1]
    # A MIG slice reached only through its parent GPU: the parent's used memory is every slice's, so none.
    assert nvml_handle(nvml, SimpleNamespace(uuid="", total_memory=10 * GIB), 0) is None

    sampler = _cpu_sampler(nvml)
    sampler.handle = gpus[2]
    assert sampler.sample()["gpu_mem_used_mb"] == 12 * 1024


def _rank_sample(rank: int, **gpu_mb) -> dict:
    return {
        "rank": rank,
        "host": "node",
        "time": 1.0,
        "cpu_percent": 90.0,
        "rss_mb": 2000.0,
        "host_cpu_percent": 50.0,
        "host_mem_percent": 40.0,
        "host_mem_used_mb": 1e4,
        "host_mem_total_mb": 2.5e4,
        **{f"gpu_mem_{k}_mb": v for k, v in gpu_mb.items()},
    }


def test_nvml_used_memory_reaches_the_gpu_memory_detector_for_the_right_rank():
    healthy = dict(alloc=20000.0, reserved=22000.0, peak=25000.0, total=80000.0)
    event = system_event([_rank_sample(0, used=30000.0, **healthy), _rank_sample(1, used=78500.0, **healthy)])
    assert event["gpu_mem_used_mb"] == [30000.0, 78500.0]
    assert [r["gpu_mem_used_mb"] for r in event["ranks"]] == [30000.0, 78500.0]
    (near,) = [a for a in AnomalyMonitor().observe_system({"step": 100, **event}) if a.kind == "gpu_memory_near_limit"]
    assert (near.severity, near.evidence["rank"], near.evidence["gpu_mem_used_mb"]) == ("critical", "1", 78500.0)
    # Rank 0 without a sample yet: rank 1's figures stay rank 1's.
    event = system_event([None, _rank_sample(1, used=78500.0, **healthy)])
    assert event["gpu_mem_used_mb"] == [None, 78500.0] and event["rss_mb"] == [None, 2000.0]
    (near,) = [a for a in AnomalyMonitor().observe_system({"step": 100, **event}) if a.kind == "gpu_memory_near_limit"]
    assert near.evidence["rank"] == "1"


def test_peak_gpu_memory_is_the_peak_since_the_training_loop_last_took_a_sample(monkeypatch):
    allocator = SimpleNamespace(allocated=1000 * 2**20, peak=6000 * 2**20)  # an early spike, long gone

    def reset(device=None):
        allocator.peak = allocator.allocated

    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocator.allocated)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 2 * allocator.allocated)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: allocator.peak)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(total_memory=8000 * 2**20, uuid="")
    )
    sampler = SystemSampler(0, 1, torch.device("cuda", 0), 1.0)

    def sample_and_take() -> dict:
        sampler._latest = sampler.sample()  # as the sampler thread does
        return sampler.latest()  # as a log step does

    assert sample_and_take()["gpu_mem_peak_mb"] == 6000
    assert sample_and_take()["gpu_mem_peak_mb"] == 1000  # the spike was reported once, not for ever
    # A spike between two samples that no log step took is still in the sample the next log step takes.
    allocator.peak = 3000 * 2**20
    sampler._latest = sampler.sample()
    assert sample_and_take()["gpu_mem_peak_mb"] == 3000
    event = system_event([sample_and_take()])
    assert event["gpu_mem_peak_mb"] == [1000] and not AnomalyMonitor().observe_system({"step": 100, **event})


def _fake_wandb(monkeypatch, init) -> None:
    module = types.ModuleType("wandb")
    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    monkeypatch.setenv("WANDB_MODE", "offline")


def test_a_failing_wandb_init_is_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    def init(**kwargs):
        raise RuntimeError("wandb service did not start")

    _fake_wandb(monkeypatch, init)
    sinks = Sinks(SinksSection(wandb=True), tmp_path, "run", {})
    (problem,) = sinks.problems
    assert "sinks.wandb" in problem and "wandb service did not start" in problem
    sinks.scalars("train", 5, {"loss": 1.0})
    sinks.close()


def test_wandb_sink_logs_the_scalars_with_their_prefix_and_step(tmp_path, monkeypatch):
    run = SimpleNamespace(logged=[], finished=False)
    run.log = lambda values, step: run.logged.append((values, step))
    run.finish = lambda: setattr(run, "finished", True)
    opened = []
    _fake_wandb(monkeypatch, lambda **kwargs: opened.append(kwargs) or run)
    sinks = Sinks(SinksSection(wandb=True, wandb_project="chorales"), tmp_path, "run-7", {"seed": 1})
    assert sinks.problems == []
    assert opened[0]["project"] == "chorales" and opened[0]["mode"] == "offline" and opened[0]["name"] == "run-7"
    sinks.scalars("train", 10, {"loss": 2.5, "lr": 1e-3, "stage": "warmup", "finite": True})
    sinks.close()
    assert run.logged == [({"train/loss": 2.5, "train/lr": 1e-3}, 10)] and run.finished


def test_a_wandb_sink_that_fails_during_the_run_is_dropped_with_one_message(tmp_path, monkeypatch):
    def log(values, step):
        raise OSError("No space left on device")

    def finish():
        raise RuntimeError("service gone")

    _fake_wandb(monkeypatch, lambda **kwargs: SimpleNamespace(log=log, finish=finish))
    sinks = Sinks(SinksSection(wandb=True), tmp_path, "run", {})
    (problem,) = sinks.scalars("train", 10, {"loss": 2.5})
    assert "sinks.wandb failed at step 10" in problem and "No space left on device" in problem
    assert sinks.scalars("train", 20, {"loss": 2.4}) == []  # dropped: no message per log step
    sinks.close()  # an already dropped sink is not finished again


def test_a_tensorboard_folder_that_cannot_be_created_is_reported_and_the_run_goes_on(tmp_path):
    not_a_folder = tmp_path / "run"
    not_a_folder.write_text("")
    sinks = Sinks(SinksSection(tensorboard=True), not_a_folder, "run", {})
    (problem,) = sinks.problems
    assert "sinks.tensorboard" in problem and str(not_a_folder / "tensorboard") in problem
    sinks.scalars("train", 5, {"loss": 1.0})
    sinks.close()


def _tensorboard(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "tensorboard"))
    accumulator.Reload()
    return accumulator


def _scalars(accumulator, tag: str) -> dict[int, float]:
    """What TensorBoard draws for ``tag``: each step once, in order (steps it purged gone)."""
    if tag not in accumulator.Tags()["scalars"]:
        return {}
    return {e.step: e.value for e in accumulator.Scalars(tag)}


def _first_life(run_dir: Path) -> Sinks:
    """Steps 1..23 logged, with an evaluation at 20: the timeline a rollback or resume to step 15 undoes."""
    sinks = Sinks(SinksSection(tensorboard=True), run_dir, "run", {})
    for step in range(1, 24):
        sinks.scalars("train", step, {"loss": 10.0 - step / 10})
    sinks.scalars("eval", 20, {"val_loss": 9.0})
    return sinks


def test_tensorboard_forgets_the_steps_a_rollback_undid(tmp_path):
    sinks = _first_life(tmp_path)
    sinks.rewound_to(15)
    for step in range(16, 31):
        sinks.scalars("train", step, {"loss": 5.0 - step / 100})
    sinks.close()
    board = _tensorboard(tmp_path)
    loss = _scalars(board, "train/loss")
    assert list(loss) == list(range(1, 31))  # no doubling back: 1..23 then 16..30 drew steps 16..23 twice
    assert loss[15] == pytest.approx(8.5) and loss[16] == pytest.approx(4.84)
    assert _scalars(board, "eval/val_loss") == {}  # evaluated on the undone timeline: gone


def test_tensorboard_forgets_what_a_crashed_process_logged_past_the_checkpoint_a_resume_starts_from(tmp_path):
    _first_life(tmp_path).tensorboard.flush()  # the process dies: nothing is closed
    resumed = Sinks(SinksSection(tensorboard=True), tmp_path, "run", {}, start_step=15)
    for step in range(16, 31):
        resumed.scalars("train", step, {"loss": 5.0 - step / 100})
    resumed.close()
    board = _tensorboard(tmp_path)
    loss = _scalars(board, "train/loss")
    assert list(loss) == list(range(1, 31)) and loss[23] == pytest.approx(4.77)
    assert _scalars(board, "eval/val_loss") == {}


def test_tensorboard_hparams_hold_the_config_and_the_final_metrics(tmp_path):
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    from engine.contract.config import Config

    config = Config().model_dump(mode="json")
    sinks = Sinks(SinksSection(tensorboard=True), tmp_path, "run", config)
    sinks.scalars("train", 30, {"loss": 2.75})
    final = {"step": 30, "val_loss": 2.5, "train_loss": 2.75, "quality_score": None, "val_loss_ema": math.nan}
    sinks.close(final)
    board = _tensorboard(tmp_path)
    content = board.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["optim.lr"].number_value == pytest.approx(config["optim"]["lr"])
    assert start.hparams["run.precision"].string_value == config["run"]["precision"]
    assert start.hparams["curriculum.seq_len_stages"].string_value == "[]"
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    # Only finite numbers are metrics: a missing quality score or a NaN is no figure to compare runs by.
    assert {m.name.tag for m in experiment.metric_infos} == {"final/val_loss", "final/train_loss"}
    assert _scalars(board, "final/val_loss") == {30: pytest.approx(2.5)}


@pytest.fixture(scope="module")
def remi():
    from engine.contract.config import TokenizerSection
    from engine.music.data import build_tokenizer

    return build_tokenizer(TokenizerSection())


def _piece(remi, bars: list[tuple[int, list[int]]]) -> np.ndarray:
    """The tokens of a one-voice piece: per bar its beats (x/4) and one beat-long note per pitch."""
    score = symusic.Score(480)
    track = symusic.Track(program=0)
    tick = 0
    for beats, pitches in bars:
        score.time_signatures.append(symusic.TimeSignature(tick, beats, 4))
        for i, pitch in enumerate(pitches):
            track.notes.append(symusic.Note(tick + i * 480, 480, pitch, 80))
        tick += beats * 480
    score.tracks.append(track)
    return np.array(remi.encode(score).ids, dtype=np.int64)


@pytest.mark.slow
def test_a_cached_reference_is_recomputed_when_what_shapes_it_changes(tmp_path, remi, monkeypatch):
    from engine.contract.config import SampleSection
    from engine.contract.monitor_config import MusicSection

    pieces = [_piece(remi, [(4, [60, 62, 64, 65]), (4, [67, 69, 71, 72]), (4, [74, 76, 77, 79])] * 2)]
    others = [_piece(remi, [(3, [48, 50, 52]), (3, [60, 62, 64])] * 4)]

    def reference(window: float, val_pieces, folder: Path) -> dict:
        return MusicEvaluator(
            MusicSection(reference_window_beats=window), SampleSection(), remi, val_pieces, folder, 8
        ).reference

    run = tmp_path / "samples"
    first = reference(4.0, pieces, run)
    assert reference(8.0, pieces, run) == reference(8.0, pieces, tmp_path / "fresh-window") != first
    assert reference(8.0, others, run) == reference(8.0, others, tmp_path / "fresh-pieces")
    computed = []
    monkeypatch.setattr(music_reference, "reference_stats", lambda *args: computed.append(args) or {})
    assert reference(8.0, others, run) == reference(8.0, others, tmp_path / "fresh-pieces") != {}
    assert computed == []  # unchanged settings and pieces: read from the cache


@pytest.mark.slow
def test_the_reference_measures_each_piece_at_its_own_bar_length(tmp_path, remi):
    from engine.contract.config import SampleSection
    from engine.contract.monitor_config import MusicSection

    # A 4/4 piece first, then a 3/4 one: each repeats one bar, so at its own bar length every bar after the
    # first repeats an earlier one and neighbouring bars share their onsets.
    common = _piece(remi, [(4, [60, 62, 64, 65])] * 8)
    waltz = _piece(remi, [(3, [67, 64, 60])] * 8)
    reference = MusicEvaluator(
        MusicSection(reference_window_beats=None), SampleSection(), remi, [common, waltz], tmp_path, 8
    ).reference
    assert reference["groove_consistency"]["mean"] == 1.0
    assert reference["bar_repetition_rate"]["mean"] == pytest.approx(7 / 8)
    windowed = MusicEvaluator(
        MusicSection(reference_window_beats=12.0), SampleSection(), remi, [waltz], tmp_path / "windows", 8
    ).reference
    assert windowed["groove_consistency"]["mean"] == 1.0  # windows of whole 3/4 bars
    assert windowed["bar_repetition_rate"]["mean"] == pytest.approx(3 / 4)


class _Continuing(torch.nn.Module):
    """A model that continues any prompt with the same tokens."""

    def __init__(self, ids: list[int]):
        super().__init__()
        self.ids = ids
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def generate(
        self, prompt, max_new_tokens, temperature, top_k, top_p=1.0, generator=None, stop_token=None, allowed=None
    ):
        return torch.cat([prompt, torch.tensor([self.ids], dtype=prompt.dtype)], dim=1)


@pytest.mark.slow
def test_prompted_samples_are_measured_on_what_the_model_generated(tmp_path, remi):
    from engine.contract.config import SampleSection
    from engine.contract.monitor_config import MusicSection

    # Two bars of 3/4 and one of 4/4 (prompt_bars=3: the prompt ends at beat 10), then a fourth bar.
    piece = _piece(remi, [(3, [60, 64, 67]), (3, [62, 65, 69]), (4, [64, 67, 71, 72]), (4, [65, 69, 72, 77])])
    notes = [
        ["Position_0", "Program_0", "Pitch_60", "Duration_1.0.8"],
        ["Position_8", "Program_0", "Pitch_60", "Duration_1.0.8"],
        ["Position_16", "Program_0", "Pitch_61", "Duration_1.0.8"],
    ]
    fine = ["Bar_None", "TimeSig_4/4", *notes[0], *notes[1], *notes[2]]
    broken = ["Bar_None", "TimeSig_4/4", *notes[1], *notes[0], *notes[2]]  # token 6 goes back in time
    for continuation in (fine, broken):
        model = _Continuing([remi[t] for t in continuation] + [remi["EOS_None"]])
        prompted = MusicEvaluator(
            MusicSection(num_samples=1, prompt_from_validation=True, prompt_bars=3),
            SampleSection(),
            remi,
            [piece],
            tmp_path / "prompted",
            8,
        ).run(model, 10)
        alone = MusicEvaluator(MusicSection(num_samples=1), SampleSection(), remi, [piece], tmp_path / "alone", 8).run(
            model, 10
        )
        sample, unprompted = prompted["samples"][0], alone["samples"][0]
        # Measured like the same continuation generated from nothing: the prompt's Bach does not count.
        assert sample["metrics"] == pytest.approx(unprompted["metrics"], nan_ok=True)
        assert sample["metrics"]["pitch_range"] == 1
        assert sample["syntax"] == unprompted["syntax"] and sample["syntax"]["n_notes"] == 3
        assert prompted["metrics"]["syntax_validity_rate"] == alone["metrics"]["syntax_validity_rate"]
        assert prompted["quality_score"] == pytest.approx(alone["quality_score"])
        assert sample["prompt_end_beats"] == 10.0
        # The MIDI file keeps the prompt, so one hears what the model continued.
        assert symusic.Score(sample["path"]).note_num() == 3 + 3 + 4 + 3
    assert sample["syntax"]["first_error"].startswith("6: Position_0") and not sample["syntax"]["valid"]
