"""Scaling-law fit: recovers known parameters, predicts, sizes for a budget, refuses what it cannot fit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from engine.contract.events import EventWriter
from engine.launcher.launch import UsageError
from engine.studies import scaling
from tests.conftest import podium

TRUE = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}


def law(n: float, d: float, p: dict = TRUE) -> float:
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def grid_points(noise: float = 0.0, seed: int = 0) -> list[scaling.Point]:
    rng = np.random.default_rng(seed)
    points = []
    for n in np.logspace(5, 8, 4):
        for d in np.logspace(6, 9, 4):
            loss = law(n, d) * (1 + noise * rng.standard_normal())
            points.append(scaling.Point(Path(f"n{n:.0f}-d{d:.0f}"), float(n), float(d), float(loss)))
    return points


def write_run(root: Path, name: str, params: float, tokens: float, loss: float, reason: str = "finished") -> Path:
    run = root / name
    with EventWriter(run / "events.jsonl") as events:
        events.emit("run_start", 0, model_parameters=int(params), total_steps=100)
        events.emit("metrics", 50, loss=loss + 0.3, tokens_seen=int(tokens) // 2)
        events.emit("eval", 50, val_loss=loss + 0.2)
        events.emit("metrics", 100, loss=loss + 0.1, tokens_seen=int(tokens))
        events.emit("eval", 100, val_loss=loss)
        events.emit("run_end", 100, reason=reason, message=reason)
    return run


def test_fit_recovers_known_parameters_from_exact_data():
    fit = scaling.fit(grid_points())
    for name, value in TRUE.items():
        assert fit.values[name] == pytest.approx(value, rel=1e-3), name
    assert fit.r2 == pytest.approx(1.0, abs=1e-9) and fit.rmse < 1e-6


def test_fit_on_noisy_data_brackets_the_truth_with_its_uncertainty():
    fit = scaling.fit(grid_points(noise=0.003, seed=1))
    for name, value in TRUE.items():
        # Within 4 standard errors: the reported uncertainty is honest, neither zero nor useless.
        assert abs(fit.values[name] - value) < 4 * fit.errors[name], (name, fit.values[name], fit.errors[name])
        assert 0 < fit.errors[name] < abs(value), name
    assert fit.r2 > 0.99 and fit.rmse < 0.03


def test_prediction_and_its_uncertainty():
    fit = scaling.fit(grid_points(noise=0.003, seed=2))
    loss, err = fit.predict(3e6, 3e7)
    assert loss == pytest.approx(law(3e6, 3e7), abs=3 * err + 1e-3)
    _, far_err = fit.predict(1e11, 1e12)
    assert far_err > err, "extrapolating far beyond the runs must be less certain"


def test_compute_optimal_size_minimises_the_fitted_loss_along_the_budget():
    fit = scaling.fit(grid_points())
    budget = 6 * 3e6 * 1e8
    best = fit.compute_optimal(budget)
    assert 6 * best["params"] * best["tokens"] == pytest.approx(budget)
    # Brute force along the constraint: no model size does better than the recommended one.
    sizes = np.logspace(3, 12, 20001)
    brute = sizes[np.argmin([law(n, budget / (6 * n)) for n in sizes])]
    assert best["params"] == pytest.approx(brute, rel=2e-3)
    assert best["loss"] == pytest.approx(law(best["params"], best["tokens"]), rel=1e-6)
    assert not best["warnings"]
    assert fit.compute_optimal(1e30)["warnings"][0].startswith("N = ")  # far beyond the runs: said so


def test_too_few_runs_or_no_variation_is_refused():
    points = grid_points()
    with pytest.raises(UsageError, match="5 finished run\\(s\\): fitting E, A, alpha, B, beta needs at least 6"):
        scaling.fit(points[:5])
    same_size = [p for p in points if p.params == points[0].params] * 2
    with pytest.raises(UsageError, match="the runs have 1 distinct model size N"):
        scaling.fit(same_size)
    two_budgets = [p for p in points if p.tokens in {points[0].tokens, points[1].tokens}]
    with pytest.raises(UsageError, match="2 distinct training tokens D .* needs at least 3"):
        scaling.fit(two_budgets)


@pytest.mark.slow
def test_cli_reads_run_directories_fits_predicts_and_recommends(tmp_path):
    runs = tmp_path / "sweep"
    for p in grid_points(noise=0.002, seed=3):
        write_run(runs, p.run.name, p.params, p.tokens, p.loss)
    write_run(runs, "stopped-early", 1e6, 1e7, 9.9, reason="stopped")
    result = podium(
        "scaling", str(runs), "--params", "3e6", "--tokens", "3e7", "--compute", "1e15", "--json", check=True
    )
    out = json.loads(result.stdout)
    assert len(out["points"]) == 16 and out["dof"] == 11
    assert any("stopped-early" in s and "ended stopped" in s for s in out["skipped"])
    assert out["values"]["alpha"] == pytest.approx(TRUE["alpha"], abs=0.05)
    assert out["prediction"]["loss"] == pytest.approx(law(3e6, 3e7), abs=0.02)
    # The fitted curves a plot draws: one per token budget, following the law the runs came from.
    assert [c["tokens"] for c in out["curves"]] == sorted({p["tokens"] for p in out["points"]})
    for curve in out["curves"]:
        for p in (p for p in out["points"] if p["tokens"] == curve["tokens"]):
            drawn = np.interp(math.log(p["params"]), np.log(curve["params"]), curve["loss"])
            assert drawn == pytest.approx(law(p["params"], p["tokens"]), abs=0.02)
    rec = out["recommendation"]
    assert 6 * rec["params"] * rec["tokens"] == pytest.approx(1e15)
    text = podium("scaling", str(runs), "--compute", "1e15", check=True).stdout
    assert "fit over 16 runs" in text and "R^2" in text and "for C=1e+15 FLOPs: N≈" in text
    assert "skipped " in text and "stopped-early" in text


@pytest.mark.slow
def test_cli_refuses_too_few_runs_with_exit_2(tmp_path):
    for i, p in enumerate(grid_points()[:4]):
        write_run(tmp_path, f"r{i}", p.params, p.tokens, p.loss)
    result = podium("scaling", *(str(tmp_path / f"r{i}") for i in range(4)))
    assert result.returncode == 2 and "4 finished run(s)" in result.stderr
    bad = podium("scaling", str(tmp_path), "--params", "1e6")
    assert bad.returncode == 2 and "--params and --tokens go together" in bad.stderr
