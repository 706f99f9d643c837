"""Each training technique does something: tests that fail if it were a no-op."""

from __future__ import annotations

import math

import pytest
import torch

from engine.contract.config import ModelSection
from engine.training.clipping import GradClipper
from engine.training.curriculum import DifficultyCurriculum, SeqLenCurriculum
from engine.training.model import MusicTransformer
from engine.training.schedules import EarlyStopping, Monitor, Plateau
from tests.conftest import SMOKE, podium
from tests.helpers import events_of

FAST = ["--set", "run.log_interval=5", "--set", "checkpoint.interval=0"]


def _run(tmp_path, name, *overrides, nproc="1"):
    run_dir = tmp_path / name
    args = [a for o in overrides for a in ("--set", o)]
    podium("run", "-c", str(SMOKE), "-r", str(run_dir), "--nproc", nproc, *FAST, *args, check=True)
    return run_dir


def test_agc_clips_only_the_unit_whose_gradient_is_too_large_for_its_weight():
    w = torch.nn.Parameter(torch.ones(3, 4))
    w.grad = torch.full((3, 4), 0.001)
    w.grad[1] = 10.0  # ||G_1|| / ||W_1|| = 10, far above lambda
    clipper = GradClipper("agc", [w], torch.device("cpu"), agc_lambda=0.01)
    before, after, fraction = clipper.totals([clipper()])
    assert torch.allclose(w.grad[0], torch.full((4,), 0.001)) and torch.allclose(w.grad[2], torch.full((4,), 0.001))
    assert torch.isclose(w.grad[1].norm() / w[1].norm(), torch.tensor(0.01), rtol=1e-4)
    assert math.isclose(float(fraction), 1 / 3, rel_tol=1e-6) and after < before


def test_autoclip_adapts_to_the_percentile_of_recent_norms():
    p = torch.nn.Parameter(torch.zeros(4))
    clipper = GradClipper("autoclip", [p], torch.device("cpu"), max_norm=0, percentile=50, window=100, warmup_steps=5)
    for norm in [1.0, 2.0, 3.0, 4.0, 5.0]:
        p.grad = torch.tensor([norm, 0, 0, 0])
        assert float(clipper.totals([clipper()])[2]) == 0.0  # warm-up: only max_norm (off) applies
    p.grad = torch.tensor([100.0, 0, 0, 0])
    before, after, clipped = clipper.totals([clipper()])
    assert float(before) == 100.0 and float(clipped) == 1.0
    assert math.isclose(float(after), 3.0, rel_tol=1e-4)  # the median of 1..5


@pytest.mark.parametrize("method", ["autoclip", "ratio"])
def test_adaptive_clipping_without_warm_up_starts_from_max_norm(method):
    p = torch.nn.Parameter(torch.zeros(2))
    clipper = GradClipper(method, [p], torch.device("cpu"), max_norm=10.0, warmup_steps=0)
    p.grad = torch.tensor([math.inf, 0.0])  # fp16's first steps: an inf norm is no history to adapt to
    clipper()
    p.grad = torch.tensor([3.0, 4.0])
    before, after, clipped = clipper.totals([clipper()])  # no history yet: only max_norm applies
    assert float(before) == float(after) == 5.0 and float(clipped) == 0.0
    p.grad = torch.tensor([30.0, 40.0])
    before, after, clipped = clipper.totals([clipper()])  # adapted to the first norm
    assert float(before) == 50.0 and float(after) < 50.0 and float(clipped) == 1.0


def test_fixed_clipping_caps_the_global_norm():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    clipper = GradClipper("fixed", [p], torch.device("cpu"), max_norm=1.0)
    before, after, clipped = clipper.totals([clipper()])
    assert float(before) == 5.0 and math.isclose(float(p.grad.norm()), 1.0, rel_tol=1e-5)
    assert math.isclose(float(after), 1.0, rel_tol=1e-5) and float(clipped) == 1.0


def test_plateau_lowers_the_scale_after_patience_and_not_before():
    plateau = Plateau(patience=2, factor=0.5)
    assert plateau.observe(2.0, 1.0) is None
    assert plateau.observe(2.1, 1.0) is None
    assert plateau.observe(2.2, 1.0) == 0.5
    assert plateau.observe(1.0, 0.5) is None


def test_early_stopping_needs_every_monitor_out_of_patience_and_catches_divergence():
    stop = EarlyStopping(
        [Monitor("val_loss", "min", patience=1), Monitor("quality_score", "max", patience=1)], divergence_factor=3.0
    )
    assert stop.observe_eval({"val_loss": 2.0, "quality_score": 0.5}) is None
    assert stop.observe_eval({"val_loss": 2.1, "quality_score": 0.6}) is None  # quality still improving
    assert "val_loss" in stop.observe_eval({"val_loss": 2.2, "quality_score": 0.55})
    assert stop.observe_train_loss(1.0) is None
    assert "diverged" in stop.observe_train_loss(3.5)
    assert "nan" in stop.observe_train_loss(float("nan"))


def test_curricula_pick_stages_by_position():
    seq = SeqLenCurriculum([(0, 32), (100, 64), (50, 48)], "steps")
    assert [seq.length(s, 0) for s in (0, 49, 50, 100, 1000)] == [32, 32, 48, 64, 64]
    easy = DifficultyCurriculum([(0, 0.5), (10, 1.0)], difficulty=torch.tensor([5.0, 1.0, 3.0, 2.0]).numpy())
    assert easy.pieces(easy.stage(0)).tolist() == [1, 3] and easy.pieces(easy.stage(10)).tolist() == [0, 1, 2, 3]


def _saved_activation_bytes(checkpointing: bool) -> int:
    torch.manual_seed(0)
    model = MusicTransformer(ModelSection(d_model=64, n_layers=4, n_heads=4, dropout=0.0), 100, 128)
    model.activation_checkpointing = checkpointing
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(torch.randint(0, 100, (4, 128))).sum()
    loss.backward()
    return saved


@pytest.mark.slow
def test_activation_checkpointing_keeps_far_less_for_backward():
    assert _saved_activation_bytes(True) < 0.5 * _saved_activation_bytes(False)


@pytest.mark.slow
def test_fp16_skips_the_step_with_an_injected_inf(tmp_path):
    run = _run(tmp_path, "fp16", "run.precision=fp16", "run.max_steps=10", "debug.inf_grad_at_steps=[3]")
    start = events_of(run, "run_start")[0]
    assert start["env"]["precision"] == "fp16"
    metrics = events_of(run, "metrics")
    assert [m["skipped_steps"] for m in metrics] == [1, 0]
    # The skipped step's infinite norm is the scaler's business: the mean is over applied steps,
    # and the run is not rolled back or slowed down for it.
    assert all(math.isfinite(m["grad_norm"]) for m in metrics)
    assert [a["kind"] for a in events_of(run, "anomaly")] == []
    assert metrics[-1]["peak_lr"] == metrics[0]["peak_lr"]


@pytest.mark.slow
def test_curriculum_stages_appear_in_order(tmp_path):
    run = _run(
        tmp_path,
        "curriculum",
        "run.max_steps=20",
        "curriculum.seq_len_stages=[[0, 32], [10, 64]]",
        "curriculum.difficulty_stages=[[0, 0.5], [10, 1.0]]",
        "ema.enabled=true",
        "ema.decay=0.9",
        "run.eval_interval=10",
    )
    metrics = events_of(run, "metrics")
    assert [m["seq_len"] for m in metrics] == [32, 32, 64, 64]
    assert [m["curriculum_stage"] for m in metrics] == [0, 0, 1, 1]
    assert any("curriculum stage 1" in e.get("message", "") for e in events_of(run, "status"))
    # EMA weights are evaluated next to the raw ones: a different model, so a different loss.
    evals = events_of(run, "eval")
    assert all(math.isfinite(e["val_loss_ema"]) and e["val_loss_ema"] != e["val_loss"] for e in evals)


@pytest.mark.slow
def test_plateau_and_early_stopping_act_in_a_run(tmp_path):
    # min_delta=100 makes every evaluation a non-improvement.
    run = _run(
        tmp_path,
        "plateau",
        "run.max_steps=200",
        "run.eval_interval=5",
        "plateau.enabled=true",
        "plateau.patience=1",
        "plateau.min_delta=100",
        "early_stop.enabled=true",
        "early_stop.monitors=[{metric: val_loss, patience: 3, min_delta: 100}]",
    )
    end = events_of(run, "run_end")[-1]
    assert end["reason"] == "early_stopped" and "val_loss did not improve" in end["message"]
    assert end["step"] < 200
    scales = [e["lr_scale"] for e in events_of(run, "eval")]
    assert scales[0] == 1.0 and scales[-1] < scales[1] < 1.0


@pytest.mark.slow
@pytest.mark.parametrize("nproc", ["2"])
def test_out_of_memory_halves_the_micro_batch_and_keeps_the_loss(tmp_path, nproc):
    common = ["run.max_steps=10", "batch.global_batch_size=16", "batch.micro_batch_size=8", "batch.micro_batch_min=2"]
    plain = _run(tmp_path, "plain", *common, nproc=nproc)
    backed = _run(tmp_path, "backed-off", *common, "debug.oom_at_steps=[2]", nproc=nproc)
    notes = [e for e in events_of(backed, "status") if "out of memory" in e.get("message", "")]
    assert len(notes) == 1 and notes[0]["micro_batch_size"] == 4
    assert [m["micro_batch_size"] for m in events_of(backed, "metrics")] == [4, 4]
    for a, b in zip(events_of(plain, "metrics"), events_of(backed, "metrics")):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-4), (a["loss"], b["loss"])


def test_weight_ema_copies_then_averages_and_resumes_its_count():
    from engine.training.ema import WeightEma

    model = torch.nn.Linear(2, 1, bias=False)
    ema = WeightEma(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update_parameters(model)  # the first update takes the weights as they are
    assert torch.equal(ema.module.weight, model.weight)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update_parameters(model)
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 0.9 * 1.0 + 0.1 * 3.0))
    resumed = WeightEma(torch.nn.Linear(2, 1, bias=False), decay=0.9)
    resumed.load_state_dict(ema.state_dict())  # the checkpoint layout of AveragedModel, count included
    assert resumed.updates == 2 and torch.equal(resumed.module.weight, ema.module.weight)
    resumed.update_parameters(model)  # averages on: a resumed EMA is not reset to the weights
    assert torch.allclose(resumed.module.weight, torch.full((1, 2), 0.9 * 1.2 + 0.1 * 3.0))


def test_weight_ema_averages_a_model_with_integer_buffers():
    from engine.training.ema import WeightEma

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))  # num_batches_tracked: an int64
    ema = WeightEma(model, decay=0.5)
    for _ in range(3):
        model(torch.randn(4, 2))  # training mode: the batch norm's statistics and counter move
        ema.update_parameters(model)
    assert int(ema.module[1].num_batches_tracked) == 3
    assert not torch.equal(ema.module[1].running_mean, model[1].running_mean)  # averaged, not copied
