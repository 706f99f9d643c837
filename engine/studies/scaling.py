"""Scaling estimate: fit L(N, D) = E + A/N^alpha + B/D^beta over finished runs.

    python main.py scaling runs/studies/size-sweep                 # every finished run in the folder
    python main.py scaling runs/a runs/b ... --params 2e6 --tokens 5e7 --compute 1e15

N is the model's parameter count (``run_start.model_parameters``), D the
training tokens (``tokens_seen`` of the last ``metrics`` event), L the final
validation loss (the last ``eval``). Only runs that ended ``finished`` count:
a stopped or early-stopped run did not complete its schedule, so its loss is
not the loss of a run planned for its D.

The fit (Hoffmann et al. 2022, "Chinchilla", approach 3) is nonlinear least
squares in (E, log A, alpha, log B, beta) with bounds, started from a grid of
exponents where A and B are solved linearly. Uncertainty is the covariance
s^2 (J^T J)^-1 at the optimum; prediction intervals propagate it (delta
method). The compute-optimal size for C = 6 N D minimises the fitted L along
that constraint in closed form: N* = (alpha A / (beta B))^(1/(alpha+beta)) (C/6)^(beta/(alpha+beta)).

Five parameters need at least six runs, and each exponent needs at least
three distinct values of its variable: with two model sizes, E, A and alpha
are not separable (two numbers, three unknowns). Fewer is an error, not a fit.

numpy and scipy are imported inside functions so the CLI stays light.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.contract.events import read_events
from engine.launcher.launch import UsageError

NAMES = ("E", "A", "alpha", "B", "beta")
MIN_DISTINCT = 3
EXPONENT_BOUNDS = (1e-3, 3.0)


@dataclass
class Point:
    run: Path
    params: float  # N
    tokens: float  # D
    loss: float  # L


@dataclass
class Fit:
    theta: list[float]  # E, log A, alpha, log B, beta
    cov: list[list[float]]  # covariance of theta (inf where not identified)
    points: list[Point]
    rmse: float
    r2: float
    notes: list[str] = field(default_factory=list)

    @property
    def values(self) -> dict[str, float]:
        e, log_a, alpha, log_b, beta = self.theta
        return {"E": e, "A": math.exp(log_a), "alpha": alpha, "B": math.exp(log_b), "beta": beta}

    @property
    def errors(self) -> dict[str, float]:
        """One standard error per parameter; A and B through their logs (sigma_A = A sigma_logA)."""
        sd = [
            math.sqrt(self.cov[i][i]) if math.isfinite(self.cov[i][i]) and self.cov[i][i] >= 0 else math.inf
            for i in range(5)
        ]
        values = self.values
        return {"E": sd[0], "A": values["A"] * sd[1], "alpha": sd[2], "B": values["B"] * sd[3], "beta": sd[4]}

    def predict(self, params: float, tokens: float) -> tuple[float, float]:
        """Predicted loss and its standard error (parameter uncertainty only)."""
        import numpy as np

        loss = float(_model(np.asarray(self.theta), np.log([params]), np.log([tokens]))[0])
        grad = _jacobian(np.asarray(self.theta), np.log([params]), np.log([tokens]))[0]
        var = float(grad @ np.asarray(self.cov) @ grad)
        return loss, math.sqrt(var) if math.isfinite(var) and var >= 0 else math.inf

    def compute_optimal(self, compute: float) -> dict[str, Any]:
        """The (N, D) with 6 N D = compute that minimises the fitted loss."""
        v = self.values
        a, b = v["alpha"], v["beta"]
        g = (a * v["A"] / (b * v["B"])) ** (1.0 / (a + b))
        n_opt = g * (compute / 6.0) ** (b / (a + b))
        d_opt = compute / (6.0 * n_opt)
        loss, err = self.predict(n_opt, d_opt)
        out = {
            "compute": compute,
            "params": n_opt,
            "tokens": d_opt,
            "loss": loss,
            "loss_err": err,
            "tokens_per_param": d_opt / n_opt,
            "warnings": [],
        }
        ns = [p.params for p in self.points]
        ds = [p.tokens for p in self.points]
        for name, value, seen in (("N", n_opt, ns), ("D", d_opt, ds)):
            if value > 4 * max(seen) or value < min(seen) / 4:
                out["warnings"].append(
                    f"{name} = {value:.3g} is far outside the fitted range "
                    f"[{min(seen):.3g}, {max(seen):.3g}]: an extrapolation"
                )
        for name, value in (("alpha", a), ("beta", b)):
            if value < 0.02:
                out["warnings"].append(
                    f"{name} = {value:.3g} is near 0: the fit sees almost no gain from that axis, "
                    f"so the split of compute is not meaningful"
                )
        return out

    def curves(self, samples: int = 100) -> list[dict[str, Any]]:
        """The fitted loss against N for each token budget D the runs saw, over their N range widened
        by 0.3 decades each way: what a plot of the fit draws."""
        import numpy as np

        log_n = np.log(
            np.logspace(
                math.log10(min(p.params for p in self.points)) - 0.3,
                math.log10(max(p.params for p in self.points)) + 0.3,
                samples,
            )
        )
        return [
            {
                "tokens": tokens,
                "params": np.exp(log_n).tolist(),
                "loss": _model(np.asarray(self.theta), log_n, np.full(samples, math.log(tokens))).tolist(),
            }
            for tokens in sorted({p.tokens for p in self.points})
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": self.values,
            "errors": self.errors,
            "rmse": self.rmse,
            "r2": self.r2,
            "dof": len(self.points) - 5,
            "notes": self.notes,
            "points": [
                {
                    "run": str(p.run),
                    "params": p.params,
                    "tokens": p.tokens,
                    "loss": p.loss,
                    "predicted": self.predict(p.params, p.tokens)[0],
                }
                for p in self.points
            ],
            "curves": self.curves(),
        }


# ------------------------------------------------------------------ reading


def collect(paths: list[str | os.PathLike]) -> tuple[list[Point], list[str]]:
    """Points from run directories (a folder of runs, such as a study, counts each run in it) and skip reasons."""
    points: list[Point] = []
    skipped: list[str] = []
    for raw in paths:
        path = Path(raw)
        if (path / "events.jsonl").exists():
            runs = [path]
        elif path.is_dir():
            runs = sorted(p for p in path.iterdir() if (p / "events.jsonl").exists())
            if not runs:
                skipped.append(f"{path}: no run directories in it")
        else:
            skipped.append(f"{path}: not a run directory")
            runs = []
        for run in runs:
            point, why = read_point(run)
            if point is None:
                skipped.append(f"{run}: {why}")
            else:
                points.append(point)
    return points, skipped


def read_point(run: Path) -> tuple[Point | None, str]:
    events, _ = read_events(run / "events.jsonl")
    end = next((e for e in reversed(events) if e["type"] == "run_end"), None)
    if end is None or end.get("reason") != "finished":
        return (
            None,
            f"ended {end.get('reason') if end else 'without run_end (running or died)'}; only finished runs count",
        )
    start = next((e for e in reversed(events) if e["type"] == "run_start"), None)
    params = start.get("model_parameters") if start else None
    metrics = next((e for e in reversed(events) if e["type"] == "metrics" and "tokens_seen" in e), None)
    evals = [e for e in events if e["type"] == "eval" and isinstance(e.get("val_loss"), (int, float))]
    if not params:
        return None, "no model_parameters in run_start"
    if metrics is None or not metrics["tokens_seen"]:
        return None, "no tokens_seen in its metrics events"
    if not evals or not math.isfinite(evals[-1]["val_loss"]):
        return None, "no finite final val_loss"
    return Point(run, float(params), float(metrics["tokens_seen"]), float(evals[-1]["val_loss"])), ""


# ------------------------------------------------------------------- fitting


def check_points(points: list[Point]) -> None:
    """Raise UsageError when the runs cannot determine the five parameters."""
    if len(points) < len(NAMES) + 1:
        raise UsageError(
            f"{len(points)} finished run(s): fitting E, A, alpha, B, beta needs at least "
            f"{len(NAMES) + 1} (five parameters plus one degree of freedom to judge the fit)"
        )
    for label, values, vary in (
        ("model size N", {p.params for p in points}, "d_model / n_layers"),
        ("training tokens D", {p.tokens for p in points}, "run.max_steps or the batch size"),
    ):
        if len(values) < MIN_DISTINCT:
            shown = ", ".join(f"{v:.4g}" for v in sorted(values))
            raise UsageError(
                f"the runs have {len(values)} distinct {label} ({shown}); an exponent needs at least "
                f"{MIN_DISTINCT} (vary {vary})"
            )


def _model(theta, log_n, log_d):
    import numpy as np

    e, log_a, alpha, log_b, beta = theta
    return e + np.exp(log_a - alpha * log_n) + np.exp(log_b - beta * log_d)


def _jacobian(theta, log_n, log_d):
    import numpy as np

    _, log_a, alpha, log_b, beta = theta
    ta = np.exp(log_a - alpha * log_n)
    tb = np.exp(log_b - beta * log_d)
    return np.stack([np.ones_like(ta), ta, -log_n * ta, tb, -log_d * tb], axis=1)


def fit(points: list[Point]) -> Fit:
    import numpy as np
    from scipy.optimize import least_squares, nnls

    check_points(points)
    log_n = np.log([p.params for p in points])
    log_d = np.log([p.tokens for p in points])
    loss = np.array([p.loss for p in points])
    lower = [0.0, -50.0, EXPONENT_BOUNDS[0], -50.0, EXPONENT_BOUNDS[0]]
    upper = [float(loss.max()), 80.0, EXPONENT_BOUNDS[1], 80.0, EXPONENT_BOUNDS[1]]

    # Starts: for fixed (E, alpha, beta) the model is linear in (A, B): solve that exactly, keep the best few.
    starts = []
    for alpha in (0.1, 0.3, 0.6, 1.0):
        for beta in (0.1, 0.3, 0.6, 1.0):
            for e_frac in (0.0, 0.5, 0.9):
                e = e_frac * float(loss.min())
                design = np.stack([np.exp(-alpha * log_n), np.exp(-beta * log_d)], axis=1)
                (a_lin, b_lin), resid = nnls(design, loss - e)
                theta = [e, math.log(max(a_lin, 1e-12)), alpha, math.log(max(b_lin, 1e-12)), beta]
                theta = list(np.clip(theta, lower, upper))
                starts.append((resid, theta))
    starts.sort(key=lambda s: s[0])
    fits = [
        least_squares(
            lambda t: _model(t, log_n, log_d) - loss,
            theta0,
            jac=lambda t: _jacobian(t, log_n, log_d),
            bounds=(lower, upper),
            method="trf",
            x_scale="jac",
            max_nfev=5000,
        )
        for _, theta0 in starts[:6]
    ]
    theta = min(fits, key=lambda fit: fit.cost).x
    resid = _model(theta, log_n, log_d) - loss
    sse = float(resid @ resid)
    dof = len(points) - len(NAMES)
    jac = _jacobian(theta, log_n, log_d)
    notes = []
    try:
        cov = np.linalg.inv(jac.T @ jac) * (sse / dof)
        if not np.all(np.isfinite(cov)) or np.linalg.cond(jac.T @ jac) > 1e14:
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        cov = np.full((5, 5), np.inf)
        notes.append("the parameters are not all identified by these runs (singular fit): spread N and D wider")
    at_bound = [NAMES[i] for i in range(5) if theta[i] <= lower[i] + 1e-9 or theta[i] >= upper[i] - 1e-9]
    if at_bound:
        notes.append(f"{', '.join(at_bound)} at the edge of the allowed range: their uncertainties are not reliable")
    sst = float(((loss - loss.mean()) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else float("nan")
    return Fit(
        theta=[float(t) for t in theta],
        cov=cov.tolist(),
        points=points,
        rmse=math.sqrt(sse / len(points)),
        r2=r2,
        notes=notes,
    )


# ----------------------------------------------------------------------- CLI


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scaling",
        help="fit L = E + A/N^alpha + B/D^beta over finished runs; predict and size",
        description="Fit final validation loss against model parameters N and training tokens D.",
    )
    p.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories, or folders of runs (a study)"
    )
    p.add_argument("--params", type=float, help="predict the loss of a model with this many parameters (with --tokens)")
    p.add_argument("--tokens", type=float, help="... trained on this many tokens")
    p.add_argument("--compute", type=float, help="recommend N and D for this budget in FLOPs (C = 6 N D)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_scaling(args) -> int:
    if (args.params is None) != (args.tokens is None):
        raise UsageError("--params and --tokens go together: the loss depends on both")
    for name in ("params", "tokens", "compute"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UsageError(f"--{name} {value}: must be a positive number, e.g. 1e7")
    points, skipped = collect(args.runs)
    result: dict[str, Any] = {"skipped": skipped}
    try:
        fitted = fit(points)
    except UsageError as exc:
        if args.json:
            print(
                json.dumps(
                    {
                        "error": str(exc),
                        "skipped": skipped,
                        "points": [
                            {"run": str(p.run), "params": p.params, "tokens": p.tokens, "loss": p.loss} for p in points
                        ],
                    }
                )
            )
        else:
            _print_skipped(skipped)
        raise
    result.update(fitted.to_dict())
    if args.params is not None:
        loss, err = fitted.predict(args.params, args.tokens)
        result["prediction"] = {"params": args.params, "tokens": args.tokens, "loss": loss, "loss_err": err}
    if args.compute is not None:
        result["recommendation"] = fitted.compute_optimal(args.compute)
    if args.json:
        print(json.dumps(_json_safe(result)))
        return 0
    _print_skipped(skipped)
    print(report(fitted, result))
    return 0


def _print_skipped(skipped: list[str]) -> None:
    for line in skipped:
        print(f"skipped {line}")


def report(fitted: Fit, result: dict[str, Any]) -> str:
    values, errors = fitted.values, fitted.errors
    lines = [f"fit over {len(fitted.points)} runs: L = E + A/N^alpha + B/D^beta"]
    for name in NAMES:
        lines.append(f"  {name:<5} = {values[name]:.4g} ± {errors[name]:.2g}")
    lines.append(
        f"  R^2 {fitted.r2:.4f}, RMSE {fitted.rmse:.4g} (loss units), {len(fitted.points) - 5} degree(s) of freedom"
    )
    lines += [f"  note: {n}" for n in fitted.notes]
    if "prediction" in result:
        p = result["prediction"]
        lines.append(
            f"predicted loss for N={p['params']:.3g}, D={p['tokens']:.3g}: {p['loss']:.4f} ± {p['loss_err']:.2g}"
        )
    if "recommendation" in result:
        r = result["recommendation"]
        lines.append(
            f"for C={r['compute']:.3g} FLOPs: N≈{r['params']:.3g} parameters, D≈{r['tokens']:.3g} tokens "
            f"({r['tokens_per_param']:.1f} tokens per parameter), predicted loss {r['loss']:.4f} ± {r['loss_err']:.2g}"
        )
        lines += [f"  warning: {w}" for w in r["warnings"]]
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
