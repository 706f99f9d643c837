"""Qt-free models: series buffers, smoothing, run state, readers, workspace, export."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scripted import metrics_payload, write_run

from engine.contract.events import EventReader, EventWriter, as_records
from gui.models.envelope import Envelope
from gui.models.export import write_csv
from gui.models.plotspec import SYSTEM, TRAINING, is_musical, musical_spec
from gui.models.reader import TextTail
from gui.models.run_model import RunModel
from gui.models.series import EAGER_POINTS, Series, SmoothedView, ema
from gui.models.workspace import WorkspaceIndex

REPO = Path(__file__).resolve().parents[2]


def _reference_ema(x, w):
    out, last, n = [], 0.0, 0
    for v in x:
        if not math.isfinite(v):
            out.append(math.nan)
            continue
        last = last * w + (1 - w) * v
        n += 1
        out.append(last / (1 - w**n))
    return np.array(out)


def _raw(type_, step, t=1000.0, **payload):
    return {"v": 1, "type": type_, "time": t, "step": step, **payload}


def _event(type_, step, t=1000.0, **payload):
    return as_records([_raw(type_, step, t, **payload)])[0]


# ------------------------------------------------------------------ series


def test_series_grows_past_its_capacity_and_keeps_order():
    s = Series("x", capacity=4)
    for i in range(1000):
        s.append(i, i * 0.1, float(i))
    assert len(s) == 1000 and s.capacity >= 1000
    assert np.array_equal(s.values, np.arange(1000.0))
    assert np.all(np.diff(s.steps) > 0)


def test_series_sorts_out_of_order_points_and_bumps_epoch():
    s = Series("x")
    s.extend([10, 20, 30], [1, 2, 3], [1.0, 2.0, 3.0])
    epoch = s.epoch
    s.extend([15, 5], [4, 5], [1.5, 0.5])
    assert list(s.steps) == [5, 10, 15, 20, 30]
    assert list(s.values) == [0.5, 1.0, 1.5, 2.0, 3.0]
    assert s.epoch == epoch + 1


def test_series_counts_nonfinite_and_purge_forgets_them():
    s = Series("loss")
    s.extend([1, 2, 3, 4], [0, 1, 2, 3], [1.0, math.nan, math.inf, 2.0])
    assert s.nonfinite == 2
    assert list(s.nonfinite_index()) == [1, 2]
    assert s.purge_after(1) == 3
    assert s.nonfinite == 0 and len(s) == 1


def test_value_at_finds_the_nearest_point_by_step_or_time():
    s = Series("x")
    s.extend([10, 20, 30], [100, 200, 300], [1.0, 2.0, 3.0])
    assert s.value_at(24, "step") == (1, 2.0)
    assert s.value_at(26, "step") == (2, 3.0)
    assert s.value_at(1e9, "time") == (2, 3.0)
    assert Series("empty").value_at(1) is None


# --------------------------------------------------------------- smoothing


@pytest.mark.parametrize("w", [0.0, 0.3, 0.9, 0.99, 0.999])
def test_ema_matches_tensorboards_debiased_recurrence(w):
    rng = np.random.default_rng(0)
    x = rng.normal(size=3000)
    x[[5, 700, 701]] = [math.nan, math.inf, -math.inf]
    out, _, _ = ema(x, w)
    ref = _reference_ema(x, w)
    assert np.array_equal(np.isnan(out), np.isnan(ref))
    assert np.nanmax(np.abs(out - ref)) < 1e-9


def test_ema_continues_across_calls():
    x = np.random.default_rng(1).normal(size=2000)
    a, state, count = ema(x[:777], 0.98)
    b, _, _ = ema(x[777:], 0.98, state, count)
    assert np.allclose(np.concatenate([a, b]), _reference_ema(x, 0.98))


def test_smoothed_view_is_incremental_and_restarts_when_points_move():
    s = Series("x")
    view = SmoothedView(s)
    s.extend(range(100), range(100), np.sin(np.arange(100.0)))
    view.values(0.9)
    s.extend(range(100, 200), range(100, 200), np.sin(np.arange(100.0, 200.0)))
    assert np.allclose(view.values(0.9), _reference_ema(s.values, 0.9))
    s.extend([50.5], [0], [10.0])  # out of order: the cache must start over
    assert np.allclose(view.values(0.9), _reference_ema(s.values, 0.9))
    assert np.allclose(view.values(0.5), _reference_ema(s.values, 0.5))


def test_a_plotted_series_folds_new_points_in_as_they_arrive_and_draws_the_same_peaks():
    s = Series("x")
    values = np.sin(np.arange(50_000.0) / 700)
    values[31_337] = 50.0  # a one-point spike must survive any envelope
    s.extend(range(10), range(10), values[:10])
    s.smoothed().values(0.9)  # a plot draws it: from now on it is kept current
    for start in range(10, 50_000, 333):
        end = min(start + 333, 50_000)
        s.extend(range(start, end), range(start, end), values[start:end])
    # What a redraw still has to fold in is less than a block, however long the series has grown.
    assert s.n - s.smoothed()._n < EAGER_POINTS
    x, y = s.envelope().window(s.steps, s.values, 0, 50_000, 800)
    assert len(y) <= 4 * 800 + 1 and y.max() == 50.0 and y.min() == values.min()
    assert np.allclose(s.smoothed().values(0.9), _reference_ema(values, 0.9))


def test_a_series_on_screen_leaves_folding_to_its_redraws_and_one_off_screen_folds_as_points_arrive():
    s = Series("x")
    s.extend(range(10), range(10), np.zeros(10))
    s.smoothed().values(0.9)
    s.drawn_at = time.monotonic()  # a plot just redrew it
    s.extend(range(10, 20_010), range(10, 20_010), np.ones(20_000))
    assert s.smoothed()._n == 10 and s.envelope_points() == 0, "the appends left the folding to the next redraw"
    s.drawn_at = -math.inf  # its plot went off screen
    s.extend(range(20_010, 20_020), range(20_010, 20_020), np.ones(10))
    assert s.smoothed()._n == s.n == 20_020 and s.envelope_points() == s.n


# --------------------------------------------------------------- run model


def test_run_model_builds_series_and_state_from_a_finished_run(tmp_path):
    run = write_run(tmp_path / "r", steps=1000, nan_at=[500])
    model = RunModel(run.root)
    events = as_records(json.loads(line) for line in run.events.read_text().splitlines())
    model.ingest(events)
    assert model.state() == "finished"
    assert model.total_steps == 1000 and model.step == 1000
    loss = model.series["metrics/loss"]
    assert len(loss) == 100 and loss.nonfinite == 1
    assert math.isnan(loss.values[49])
    assert len(model.series["metrics/rank_work_times/1"]) == 100
    assert "system/rank0/rss_mb" in model.series and "system/host_cpu_percent" in model.series
    assert "sample/pitch_class_entropy" in model.series
    assert model.best_val_loss is not None
    assert [m.kind for m in model.markers] == ["anomaly"]
    assert model.unread_anomalies == 1
    assert model.last_checkpoint["step"] == 1000
    assert model.data["vocab_size"] == 280


def test_run_model_keeps_the_corpus_reference_and_the_quality_score_of_sample_events():
    model = RunModel(name="r")
    reference = {
        "pitch_class_entropy": {"mean": 2.9, "std": 0.2},
        "note_density": {"mean": 5.0, "std": None},
        "broken": {"std": 1.0},
    }
    model.ingest(
        [
            _event("sample", 100, metrics={"pitch_class_entropy": 2.5}, quality_score=0.4, reference=reference),
            _event("eval", 100, val_loss=3.0, quality_score=0.4),
        ]
    )
    assert model.music_reference == {"pitch_class_entropy": (2.9, 0.2), "note_density": (5.0, None)}
    assert list(model.series["sample/quality_score"].values) == [0.4]
    assert list(model.series["eval/quality_score"].values) == [0.4]
    first = model.music_reference
    # The engine sends the same reference every round: nothing changes; a round without one keeps it.
    model.ingest(
        [
            _event("sample", 200, metrics={"pitch_class_entropy": 2.6}, quality_score=0.5, reference=reference),
            _event("sample", 300, metrics={"pitch_class_entropy": 2.7}, quality_score=0.6, reference={}),
        ]
    )
    assert model.music_reference is first
    assert list(model.series["sample/quality_score"].values) == [0.4, 0.5, 0.6]
    model.ingest(
        [_event("sample", 400, quality_score=0.7, reference={"pitch_class_entropy": {"mean": 3.0, "std": 0.1}})]
    )
    assert model.music_reference == {"pitch_class_entropy": (3.0, 0.1)}, "the newest reference replaces the old one"


def test_state_follows_status_pause_liveness_and_stall():
    model = RunModel(name="r")
    assert model.state() == "starting"
    model.ingest([_event("status", 0, state="preparing", progress=3, total=10)])
    assert model.state() == "preparing" and model.progress == (3.0, 10.0)
    model.ingest([_event("status", 0, state="running"), _event("metrics", 10, loss=2.0)])
    assert model.state(now=1001) == "running"
    assert model.state(now=1000 + 10_000) == "stalled"
    model.ingest([_event("status", 10, state="paused")])
    assert model.state(now=1000 + 10_000) == "paused"  # a paused run may be quiet
    model.alive = False
    assert model.state() == "failed"
    model.ingest([_event("run_end", 10, reason="stopped")])
    assert model.state() == "stopped"


def test_fatal_error_means_failed_even_before_run_end():
    model = RunModel(name="r")
    model.ingest([_event("status", 0, state="running"), _event("error", 3, message="CUDA OOM", fatal=True)])
    assert model.state() == "failed"
    assert model.markers[-1].kind == "error"


def test_acks_resolve_commands_and_become_control_markers():
    model = RunModel(name="r")
    model.note_command("abc", "set_lr", {"lr": 3e-4})
    assert [c.id for c in model.pending_commands()] == ["abc"]
    result = model.ingest(
        [
            _event("control_ack", 40, id="abc", cmd="set_lr", outcome="done", reason=""),
            _event("control_ack", 41, id="zzz", cmd="pause", outcome="refused", reason="already paused"),
        ]
    )
    assert [c.outcome for c in result.acks] == ["done", "refused"]
    assert model.pending_commands() == []
    assert [m.kind for m in model.markers] == ["control", "control"]
    assert "set_lr(lr=0.0003): done" in model.markers[0].text
    assert "already paused" in model.feed[-1].title


def test_restart_and_resume_drop_the_redone_steps():
    model = RunModel(name="r")
    model.ingest([_event("metrics", s, loss=float(s)) for s in range(10, 101, 10)])
    model.ingest([_event("restart", 50, attempt=1, resumed_from=50, steps_lost=50)])
    assert list(model.series["metrics/loss"].steps) == [10, 20, 30, 40, 50]
    model.ingest([_event("metrics", 60, loss=0.6)])
    assert list(model.series["metrics/loss"].steps)[-2:] == [50, 60]
    model.ingest([_event("run_start", 30, config={}, env={}, total_steps=100, resumed_from=30)])
    assert list(model.series["metrics/loss"].steps) == [10, 20, 30]
    assert [m.kind for m in model.markers] == ["restart", "restart"]


def test_a_resume_as_the_engine_reports_it_supersedes_the_evaluations_after_its_checkpoint():
    # The engine's resumed_from is {"step", "path", "mode", ...}; evaluations between the checkpoint
    # and the first replayed log step come before any metrics could show the run went back.
    model = RunModel(name="r")
    model.ingest(
        [_event("metrics", s, loss=float(s)) for s in (90, 100)]
        + [_event("eval", 105, val_loss=2.1), _event("eval", 120, val_loss=2.2)]
    )
    model.ingest(
        [
            _event(
                "run_start",
                100,
                config={},
                env={},
                total_steps=300,
                resumed_from={"step": 100, "path": "checkpoints/step-0000100", "mode": "resume"},
            ),
            _event("eval", 105, val_loss=1.9),
        ]
    )
    val = model.series["eval/val_loss"]
    assert list(val.steps) == [105] and list(val.values) == [1.9]
    assert [list(seg.steps) for seg in val.superseded] == [[105, 120]]
    assert [m.text for m in model.markers] == ["resumed from the checkpoint at step 100"]


def test_a_rollback_to_the_newest_log_step_supersedes_the_evaluation_that_caused_it():
    model = RunModel(name="r")
    model.ingest([_event("metrics", s, loss=float(s)) for s in (90, 100)] + [_event("eval", 105, val_loss=9.0)])
    model.ingest(
        [
            _event(
                "anomaly",
                100,
                id="v",
                kind="overfitting",
                severity="info",
                action="rollback",
                message="rollback: done",
                action_taken={"action": "rollback", "outcome": "done", "to_step": 100},
            ),
            _event("eval", 105, val_loss=2.0),
        ]
    )
    val = model.series["eval/val_loss"]
    assert list(val.values) == [2.0] and [list(seg.values) for seg in val.superseded] == [[9.0]]


def test_many_lines_of_one_step_are_skipped_in_one_read_without_recursion():
    model = RunModel(name="r")
    model.ingest([_event("metrics", 5, loss=float(i)) for i in range(5000)])  # not the engine's, but a file can say it
    loss = model.series["metrics/loss"]
    assert list(loss.steps) == [5] and loss.values[-1] == 0.0 and not loss.superseded
    assert model.rejected == 4999 and model.rollbacks == 0


def test_a_stray_old_metrics_line_is_skipped_and_counted_not_taken_for_a_rollback():
    # The engine announces every way back (rollback, restart, resume) before it logs a step again;
    # an old line appended to the file must not fade everything logged after its step.
    model = RunModel(name="r")
    model.ingest([_event("metrics", s, loss=float(s)) for s in (10, 30, 20, 40)])
    model.ingest([_event("metrics", 25, loss=25.0)])
    loss = model.series["metrics/loss"]
    assert list(loss.steps) == [10, 30, 40] and not loss.superseded
    assert model.rollbacks == 0 and model.step == 40 and model.rejected == 2
    skipped = [f for f in model.feed if f.kind == "rejected"]
    assert skipped and "step 20 after step 30" in skipped[0].detail


def test_a_rollback_keeps_the_undone_steps_as_a_superseded_segment():
    model = RunModel(name="r")
    model.ingest(
        [_event("metrics", s, loss=float(s)) for s in range(1, 126)]
        + [
            _event("eval", 120, val_loss=3.0),
            _event("anomaly", 125, id="a1", kind="nonfinite_loss", severity="critical", action="rollback"),
            _event(
                "anomaly",
                100,
                id="a1",
                kind="nonfinite_loss",
                severity="info",
                action="rollback",
                action_taken={"action": "rollback", "outcome": "done", "to_step": 100},
            ),
        ]
    )
    loss = model.series["metrics/loss"]
    assert loss.last_step() == 100 and model.step == 100  # superseded at once, before the replay comes
    model.ingest([_event("metrics", s, loss=-float(s)) for s in range(101, 131)])
    assert np.array_equal(loss.steps, np.arange(1.0, 131.0)) and loss.values[-1] == -130.0
    (seg,) = loss.superseded
    assert np.array_equal(seg.steps, np.arange(101.0, 126.0)) and seg.values[0] == 101.0 and seg.number == 1
    assert list(model.series["eval/val_loss"].superseded[0].steps) == [120]
    assert model.rollbacks == 1 and [m.kind for m in model.markers] == ["anomaly"]


def test_superseded_rows_are_marked_in_csv(tmp_path):
    s = Series("metrics/loss")
    s.extend([1, 2, 3, 4], [0, 1, 2, 3], [1.0, 2.0, math.nan, 4.0])
    assert s.supersede_after(2) == 2 and s.nonfinite == 0 and s.superseded[0].nonfinite == 1
    s.extend([3, 4, 5], [4, 5, 6], [3.5, 4.5, 5.5])
    path = tmp_path / "x.csv"
    assert write_csv(path, [("r", "loss", s)]) == 7
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["superseded"]) for r in rows] == [
        ("1", "0"),
        ("2", "0"),
        ("3", "0"),
        ("4", "0"),
        ("5", "0"),
        ("3", "1"),
        ("4", "1"),
    ]


def test_eta_uses_the_recent_wall_clock_rate_and_forgets_pauses():
    model = RunModel(name="r")
    model.ingest([_event("run_start", 0, config={}, env={}, total_steps=1000)])
    model.ingest([_event("metrics", s, t=1000.0 + s / 10, loss=1.0) for s in range(10, 110, 10)])
    assert model.eta_seconds() == pytest.approx(90.0)  # 900 steps left at 10 steps/s
    model.ingest([_event("status", 100, state="paused")])
    assert model.eta_seconds() is None


@pytest.mark.slow
def test_a_million_points_ingest_in_batches():
    model = RunModel(name="big")
    t0 = time.perf_counter()
    batch = 100_000
    for start in range(0, 1_000_000, batch):
        model.ingest(
            [
                {"v": 1, "type": "metrics", "time": 1.0 + i, "step": i, "loss": 1.0 / (i + 1)}
                for i in range(start, start + batch)
            ]
        )
    s = model.series["metrics/loss"]
    assert len(s) == 1_000_000 and s.values[-1] == pytest.approx(1e-6)
    assert np.all(np.diff(s.steps) == 1)
    view = SmoothedView(s)
    assert len(view.values(0.99)) == 1_000_000
    assert time.perf_counter() - t0 < 120  # a hang guard, not a speed claim (bench/gui.py measures)


def _read_lines(tmp_path, raw: list[dict]) -> tuple[list, EventReader]:
    """Raw objects written as lines of an events file, then read back as the app reads them."""
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in raw))
    reader = EventReader(path)
    return reader.read_new(), reader


def test_metrics_with_missing_null_or_extra_fields_land_value_by_value_and_a_wrong_typed_one_is_rejected(tmp_path):
    records, reader = _read_lines(
        tmp_path,
        [
            _raw("metrics", 10, loss=1.0, grad_norm=None, flag=True, rank_work_times=[0.1, 0.2]),
            _raw("metrics", 20, loss=2.0, grad_norm=0.5, extra=3, rank_work_times=[0.1]),
            _raw("metrics", 30, loss="bad", grad_norm=0.7, rank_work_times=[0.3, 0.4]),
            _raw("metrics", 40, loss=4.0, grad_norm=0.9, rank_work_times=[0.3, 0.4]),
        ],
    )
    model = RunModel(name="r")
    model.ingest(records)
    assert reader.garbage == 1 and reader.rejected[0].line == 3 and "metrics: loss" in reader.rejected[0].reason
    assert list(model.series["metrics/loss"].values) == [1.0, 2.0, 4.0]
    assert list(model.series["metrics/grad_norm"].steps) == [20, 40]
    assert list(model.series["metrics/extra"].steps) == [20]
    assert list(model.series["metrics/rank_work_times/0"].steps) == [10, 20, 40]
    assert list(model.series["metrics/rank_work_times/1"].steps) == [10, 40]
    assert "metrics/flag" not in model.series


def test_an_integer_past_a_floats_range_is_refused_in_a_float_field_and_shown_non_finite_in_an_int_one(tmp_path):
    huge = 10**400  # valid JSON; no float holds it
    records, reader = _read_lines(
        tmp_path,
        [
            _raw("metrics", 10, loss=1.0, epoch=0),
            _raw("metrics", 20, loss=huge, epoch=0),
            _raw("metrics", 30, loss=3.0, epoch=-huge),
            _raw("metrics", 40, loss=4.0, epoch=1),
        ],
    )
    model = RunModel(name="r")
    model.ingest(records)
    assert reader.garbage == 1 and reader.rejected[0].line == 2 and "metrics: loss" in reader.rejected[0].reason
    assert list(model.series["metrics/loss"].values) == [1.0, 3.0, 4.0]
    assert list(model.series["metrics/epoch"].values) == [0.0, -math.inf, 1.0]


def test_a_null_in_a_uniform_batch_drops_only_that_value():
    model = RunModel(name="r")
    model.ingest(
        [
            _event("metrics", 10, loss=1.0, lr=0.1),
            _event("metrics", 20, loss=None, lr=0.2),
            _event("metrics", 30, loss=3.0, lr=0.3),
        ]
    )
    assert list(model.series["metrics/loss"].steps) == [10, 30]
    assert list(model.series["metrics/lr"].values) == [0.1, 0.2, 0.3]


def test_envelope_grown_piecewise_equals_one_built_at_once():
    rng = np.random.default_rng(1)
    values = rng.normal(size=70_001)
    values[[5, 600, 40_000]] = [math.nan, math.inf, -math.inf]
    piecewise, whole = Envelope(), Envelope()
    for end in (1, 3, 4, 5, 63, 64, 65, 1000, 16_385, 70_001):
        piecewise.update(values[:end])
    whole.update(values)
    assert [lv.size for lv in piecewise.levels] == [lv.size for lv in whole.levels]
    for a, b in zip(piecewise.levels, whole.levels):
        assert np.array_equal(a.lo[: a.n], b.lo[: b.n]) and np.array_equal(a.hi[: a.n], b.hi[: b.n])
    assert np.isfinite(whole.levels[-1].lo[0])  # non-finite values are left out, not propagated


def test_envelope_window_is_peak_downsampling_at_the_width():
    n = 100_000
    x = np.arange(n, dtype=float)
    y = np.sin(x / 5000.0)
    y[12_345], y[54_321] = 9.0, -9.0
    y[60_000 : 60_000 + 1024] = math.nan  # a gap wider than a pixel stays a gap
    env = Envelope()
    env.update(y)
    xs, ys = env.window(x, y, 0.0, float(n), 500)
    assert len(xs) <= 4 * 500 + 1 and np.all(np.diff(xs) >= 0)
    assert np.nanmax(ys) == 9.0 and np.nanmin(ys) == -9.0
    assert np.isnan(ys[(xs >= 60_000) & (xs < 61_024)]).any()
    # Every point of a block lies between the min and max drawn for it.
    starts = xs[:-1:2].astype(int)
    for b in (3, 100, len(starts) // 2):
        block = y[starts[b] : starts[b + 1]]
        assert ys[2 * b] == block.min() and ys[2 * b + 1] == block.max()
    assert (xs[-1], ys[-1]) == (n - 1, y[-1])
    few_x, few_y = env.window(x, y, 1000.0, 1400.0, 500)  # fewer points than pixels: the points themselves
    assert np.array_equal(few_x, x[999:1402]) and np.array_equal(few_y, y[999:1402])


def test_envelope_rebuilds_when_its_key_changes():
    env = Envelope()
    env.update(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), key=0)
    env.update(np.array([9.0, 2.0, 3.0, 4.0, 5.0]), key=1)  # an earlier point moved: new epoch
    assert env.levels[0].hi[0] == 9.0


def test_a_metrics_event_with_a_null_time_is_skipped_not_a_nan_time_axis(tmp_path):
    records, reader = _read_lines(
        tmp_path, [_raw("metrics", 0, loss=1.0) | {"time": None}] + [_raw("metrics", i, loss=1.0) for i in range(1, 5)]
    )
    model = RunModel(name="r")
    model.ingest(records)
    loss = model.series["metrics/loss"]
    assert list(loss.steps) == [1, 2, 3, 4] and np.isfinite(loss.times).all()
    assert reader.garbage == 1 and "metrics: time" in reader.rejected[0].reason


def test_non_numeric_and_bool_fields_are_not_series():
    model = RunModel(name="r")
    model.ingest([_event("eval", 10, val_loss=2.0, replicas_in_sync=True, note="x", pitch_entropy=3.1)])
    assert set(model.series) == {"eval/val_loss", "eval/pitch_entropy"}


# ----------------------------------------------------------------- readers


def test_bounded_reader_waits_for_partial_lines_and_counts_garbage(tmp_path):
    path = tmp_path / "events.jsonl"
    reader = EventReader(path)
    assert reader.read_new() == []
    with open(path, "w") as f:
        f.write(json.dumps(_event("metrics", 1, loss=1.0)) + "\n")
        f.write("not json\n")
        f.write('{"no": "envelope"}\n')
        f.write('{"v": 1, "type": "metrics", "time": 1, "step": 2, "loss": Na')
    events = reader.read_new()
    assert [e["step"] for e in events] == [1] and reader.garbage == 2
    with open(path, "a") as f:
        f.write("N}\n")
    (event,) = reader.read_new()
    assert math.isnan(event["loss"])


def test_bounded_reader_reads_at_most_its_budget(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        for step in range(1000):
            w.emit("metrics", step, **metrics_payload(step))
    reader = EventReader(path)
    got = reader.read_new(max_bytes=10_000)
    assert 0 < len(got) < 1000 and reader.behind > 0
    while reader.behind:
        got += reader.read_new(max_bytes=10_000)
    assert [e["step"] for e in got] == list(range(1000))


def test_text_tail_follows_lines_and_keeps_the_last_ones(tmp_path):
    path = tmp_path / "engine.log"
    tail = TextTail(path, keep=3)
    path.write_bytes(b"one\ntwo\nprogress 1%\rprogress 50%\rprogress 100%\npart")
    assert tail.read_new() == ["one", "two", "progress 100%"]
    assert tail.flush_partial() == ["part"]
    assert list(tail.last_lines) == ["two", "progress 100%", "part"]


# --------------------------------------------------------------- workspace


def test_workspace_lists_runs_with_derived_states(tmp_path):
    write_run(tmp_path / "done", steps=100, t0=time.time() - 100)
    write_run(tmp_path / "cut", steps=100, end=None, t0=time.time() - 100)
    (tmp_path / "cut" / "launcher.json").write_text(json.dumps({"host": os.uname().nodename, "pid": 999_999_999}))
    write_run(tmp_path / "live", steps=100, end=None, t0=time.time() - 50, dt=0.1)
    (tmp_path / "not-a-run").mkdir()
    index = WorkspaceIndex(tmp_path)
    runs = {r.name: r for r in index.refresh()}
    assert set(runs) == {"done", "cut", "live"}
    assert runs["done"].state == "finished" and runs["done"].best_val_loss is not None
    assert runs["cut"].state == "failed"  # launcher gone, no run_end
    assert runs["live"].state == "running"
    live_events = tmp_path / "live" / "events.jsonl"
    last_step = max(e["step"] for e in EventReader(live_events).read_new())
    assert runs["live"].step == last_step  # read off the last line, metrics lines are not decoded
    with open(live_events, "ab") as f:
        f.write(b'{"v": 1, "type": "metrics", "time": 1e10, "step": 99')  # the writer mid-line
    assert {r.name: r.step for r in index.refresh()}["live"] == last_step
    with open(live_events, "ab") as f:
        f.write(b"9}\n")
    assert {r.name: r.step for r in index.refresh()}["live"] == 999
    with EventWriter(live_events) as w:
        w.emit("run_end", 100, reason="early_stopped", message="")
    assert {r.name: r.state for r in index.refresh()}["live"] == "early_stopped"


def test_runs_list_forgets_a_replaced_events_file_and_reads_a_long_last_line(tmp_path):
    from gui.models.workspace import RunTracker

    def write(events):
        with open(tmp_path / "r" / "events.jsonl", "w") as f:
            f.writelines(json.dumps({"v": 1, **e}) + "\n" for e in events)

    (tmp_path / "r").mkdir()
    write(
        [{"type": "run_start", "time": 1.0, "step": 0, "total_steps": 9000}]
        + [{"type": "metrics", "time": 1.0 + i, "step": i, "loss": 1.0, "pad": "a" * 1000} for i in range(1, 9000)]
        + [{"type": "eval", "time": 9e3, "step": 8999, "val_loss": 0.1}]
    )
    tracker = RunTracker(tmp_path / "r")
    assert tracker.update().best_val_loss == 0.1
    # A new run in the same folder, smaller but more than one read's worth: nothing of the old one stays.
    write(
        [{"type": "status", "time": 5e4, "step": 0, "state": "preparing"}]
        + [{"type": "metrics", "time": 5e4 + i, "step": i, "loss": 1.0, "pad": "b" * 1000} for i in range(1, 4500)]
    )
    summary = tracker.update()
    assert summary.step == 4499 and summary.best_val_loss is None and summary.start_time == 5e4
    # A last line longer than the first read back (a data event listing many skipped files).
    write(
        [
            {"type": "run_start", "time": 1.0, "step": 0},
            {"type": "metrics", "time": 2.0, "step": 7, "loss": 1.0},
            {"type": "data", "time": 3.0, "step": 7, "skipped": ["z" * 100] * 1000},
        ]
    )
    summary = tracker.update()
    assert summary.step == 7 and summary.last_event_time == 3.0


# ------------------------------------------------------------ spec, export


def test_plot_specs_place_series_and_pick_memory_by_device():
    loss = next(s for s in TRAINING if s.key == "loss")
    assert loss.label_for("eval/val_loss") == "val"
    ranks = next(s for s in TRAINING if s.key == "rank_work_time")
    assert ranks.label_for("metrics/rank_work_times/3") == "rank 3"
    memory = next(s for s in SYSTEM if s.key == "memory")
    assert memory.label_for("system/rank1/rss_mb", {"device": "cpu"}) == "rank 1 RSS"
    assert memory.label_for("system/rank1/rss_mb", {"device": "cuda:0"}) is None
    assert memory.label_for("system/rank1/gpu_mem_alloc_mb", {"device": "cuda:0"}) == "rank 1 alloc"
    assert is_musical("sample/pitch_entropy") and is_musical("eval/scale_consistency")
    assert not is_musical("eval/val_loss") and not is_musical("eval/val_ppl") and not is_musical("metrics/loss")
    assert not is_musical("eval/train_loss") and not is_musical("eval/lr_scale"), "the engine's eval bookkeeping"
    assert loss.label_for("eval/val_loss_ema") == "val EMA"
    # One plot per metric: the samples' value and a validation pass's share it, against the corpus.
    density = musical_spec("sample/note_density")
    assert density == musical_spec("eval/note_density") and density.reference == "note_density"
    assert (
        density.label_for("sample/note_density") == "samples" and density.label_for("eval/note_density") == "validation"
    )
    quality = musical_spec("eval/quality_score")
    assert quality.key == "music:quality_score" and quality.reference_level == 1.0


def test_csv_export_writes_every_point_and_nonfinite_values(tmp_path):
    s = Series("metrics/loss")
    s.extend([1, 2, 3], [0.0, 1.5, 3.0], [2.0, math.nan, math.inf])
    rows = write_csv(tmp_path / "out.csv", [("run-a", "train", s)], smoothing=0.5)
    assert rows == 3
    with open(tmp_path / "out.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["value"] for r in table] == ["2.0", "nan", "inf"]
    assert table[1]["time_s"] == "1.500" and table[0]["run"] == "run-a"
    assert float(table[0]["smoothed"]) == 2.0


# --------------------------------------------------------------- boundaries


def test_models_import_without_qt():
    code = (
        "import sys; import gui.models.run_model, gui.models.workspace, gui.models.series, gui.models.export, "
        "gui.models.plotspec, gui.models.hardware, gui.models.reader; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_engines_report_of_an_action_does_not_count_as_a_second_anomaly():
    model = RunModel(name="r")
    model.ingest(
        [
            _event(
                "anomaly",
                20,
                id="a1",
                kind="nonfinite_loss",
                severity="critical",
                message="loss is nan",
                action="rollback",
            ),
            _event(
                "anomaly",
                15,
                id="a1",
                kind="nonfinite_loss",
                action="rollback",
                severity="info",
                action_taken={"action": "rollback", "outcome": "done", "to_step": 15, "lr_factor": 0.5},
            ),
        ]
    )
    assert model.unread_anomalies == 1 and [m.kind for m in model.markers] == ["anomaly"]


def test_peak_lr_is_the_runs_own_figure_whoever_changed_it():
    model = RunModel(name="r")
    assert model.peak_lr is None
    model.ingest([_event("metrics", s, loss=1.0, lr=1e-3, peak_lr=1e-3) for s in range(10, 31, 10)])
    assert model.peak_lr == pytest.approx(1e-3)
    # A set_lr from the command line (no command of ours): the ack's new peak, before any metrics show it.
    model.ingest(
        [
            _event(
                "control_ack", 35, id="cli", cmd="set_lr", outcome="done", reason="", old_peak_lr=1e-3, new_peak_lr=4e-4
            )
        ]
    )
    assert model.peak_lr == pytest.approx(4e-4)
    # A refused one changes nothing; an anomaly's LR cut arrives with the next metrics.
    model.ingest(
        [
            _event("control_ack", 36, id="x", cmd="set_lr", outcome="refused", reason="stopping", new_peak_lr=9e-1),
            _event("metrics", 40, loss=1.0, lr=2e-4, peak_lr=2e-4),
        ]
    )
    assert model.peak_lr == pytest.approx(2e-4)
    # Our own command, acknowledged without the engine's figure: its argument.
    model.note_command("mine", "set_lr", {"lr": 3e-4})
    model.ingest([_event("control_ack", 50, id="mine", cmd="set_lr", outcome="done", reason="")])
    assert model.peak_lr == pytest.approx(3e-4)


def test_a_profile_trace_is_found_under_this_run_wherever_the_engine_wrote_it(tmp_path):
    run = tmp_path / "bach"
    trace = run / "profiles" / "step-0000010" / "host.pt.trace.json"
    trace.parent.mkdir(parents=True)
    trace.write_text("{}")
    model = RunModel(run)
    model.ingest(
        [
            _event("profile", 10, path=str(trace), steps=5, top=[]),  # as written: it is here
            _event("profile", 20, path="runs/bach/profiles/step-0000010/host.pt.trace.json", steps=5, top=[]),
            _event(
                "profile", 30, path="/srv/cluster/runs/bach/profiles/step-0000010/host.pt.trace.json", steps=5, top=[]
            ),
        ]
    )
    assert [f.path for f in model.feed if f.kind == "profile"] == [str(trace)] * 3


# One wrong-typed field in an otherwise valid event, each of issue 14's: the line is skipped and counted,
# everything else in the run is still shown.
HOSTILE_EVENTS = [
    {"type": "anomaly", "id": "x", "kind": "loss_spike", "action_taken": "rolled back"},
    {"type": "run_start", "total_steps": float("nan")},
    {"type": "run_start", "total_steps": float("inf")},
    {"type": "restart", "resumed_from": float("nan")},
    {"type": "system", "gpus": 5},
    {"type": "sample", "metrics": [1, 2]},
    {"type": "status", "state": "running", "time": "yesterday"},
    {"type": "status", "state": "running", "time": None},
    {"type": "eval", "val_loss": "low"},
    {"type": "metrics", "loss": 1.0, "step": 12.5},
]


@pytest.mark.parametrize("hostile", HOSTILE_EVENTS, ids=lambda e: f"{e['type']}-{sorted(e)[-1]}")
def test_a_finished_run_with_one_wrong_typed_event_still_shows_everything_else(tmp_path, hostile):
    run = write_run(tmp_path / "r", steps=200)
    lines = run.events.read_text().splitlines()
    bad = {"v": 1, "time": 1_700_000_050.0, "step": 100, **hostile}
    lines.insert(len(lines) // 2, json.dumps(bad))
    run.events.write_text("\n".join(lines) + "\n")
    clean = RunModel(name="clean")
    clean.ingest(as_records(json.loads(line) for i, line in enumerate(lines) if i != len(lines) // 2))
    reader = EventReader(run.events)
    model = RunModel(run.root)
    model.ingest(reader.read_new())
    assert reader.garbage == 1 and reader.rejected[0].line == len(lines) // 2 + 1
    assert model.state() == "finished" and model.end is not None
    assert len(model.series["metrics/loss"].steps) == len(clean.series["metrics/loss"].steps) == 20
    assert list(model.series["eval/val_loss"].values) == list(clean.series["eval/val_loss"].values)
    assert model.best_val_loss == clean.best_val_loss and model.total_steps == 200
    assert not any(s.superseded for s in model.series.values())
