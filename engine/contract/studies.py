"""A study's folder, as the engine writes it and the app reads it: names, the stop request, the snapshot.

``runs/studies/NAME/`` holds the study's Optuna journal (``journal.log``), its
space and its workers' logs; a ``stop`` file asks every worker to stop. Optuna
is imported only where a journal is read, never torch.
"""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.contract.commandline import UsageError

if TYPE_CHECKING:
    import optuna

SAMPLERS = ("tpe", "random", "grid", "gp", "cmaes")
PRUNERS = ("median", "hyperband", "none")
DIRECTIONS = ("minimize", "maximize")
STUDIES = "studies"
JOURNAL = "journal.log"
STOP_FILE = "stop"
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def study_dir(workspace: str | os.PathLike[str], study: str) -> Path:
    return Path(workspace) / STUDIES / study


def check_study_name(study: str) -> None:
    if not STUDY_NAME.fullmatch(study or ""):
        raise UsageError(f"--study {study!r}: use letters, digits, '.', '_' and '-' (it names a folder)")


def list_studies(workspace: str | os.PathLike[str]) -> list[str]:
    root = Path(workspace) / STUDIES
    return sorted(p.name for p in root.iterdir() if (p / JOURNAL).exists()) if root.is_dir() else []


def request_stop(workspace: str | os.PathLike[str], study: str) -> Path:
    """Ask every worker of the study on this workspace to stop: they start no new trial and stop their running one."""
    path = study_dir(workspace, study) / STOP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"stop requested at {time.strftime('%Y-%m-%d %H:%M:%S')} by pid {os.getpid()}\n")
    return path


def snapshot(study: optuna.Study, importances: bool = False) -> dict[str, Any]:
    """A study as plain JSON-able data: what ``hpo show --json`` prints and the GUI's study panel reads."""
    from optuna.trial import TrialState

    now = time.time()
    trials: list[dict[str, Any]] = []
    everything = study.get_trials(deepcopy=False)
    retried = {n for t in everything for n in t.system_attrs.get("retry_history", ())}
    for t in everything:
        start = t.datetime_start.timestamp() if t.datetime_start else None
        end = t.datetime_complete.timestamp() if t.datetime_complete else None
        trials.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": _finite_or_none(t.value) if t.state != TrialState.FAIL else None,
                "params": dict(t.params) or dict(t.system_attrs.get("fixed_params", {})),
                "run_dir": t.user_attrs.get("run_dir"),
                "reason": t.user_attrs.get("reason") or _lost_reason(t, retried),
                "start": start,
                "end": end,
                "duration_s": (end or now) - start if start else None,
                "intermediate": [[int(s), _finite_or_none(v)] for s, v in sorted(t.intermediate_values.items())],
                "user_attrs": {k: v for k, v in t.user_attrs.items() if k != "controller"},
                "controller": t.user_attrs.get("controller"),
            }
        )
    attrs = study.user_attrs
    direction = study.direction.name.lower()
    best = None
    try:
        b = study.best_trial  # Optuna honours the study's direction: min for minimize, max for maximize
        best = {"number": b.number, "value": b.value, "params": b.params, "run_dir": b.user_attrs.get("run_dir")}
    except ValueError:
        pass  # no completed trial yet
    counts: dict[str, int] = {}
    for row in trials:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    out = {
        "study": study.study_name,
        "direction": direction,
        "metric": attrs.get("metric", "value"),
        "sampler": attrs.get("sampler"),
        "pruner": attrs.get("pruner"),
        "target": attrs.get("trials"),
        "space": attrs.get("space", {}),
        "workspace": attrs.get("workspace"),
        "counts": counts,
        "best": best,
        "trials": trials,
    }
    if importances:
        out["importances"] = param_importances(study)
    return out


def param_importances(study: optuna.Study) -> dict[str, Any]:
    """PED-ANOVA importances (Optuna's, numpy-only: fANOVA would need scikit-learn). Needs a few complete trials."""
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        return {"error": f"importances need at least 2 complete trials (have {len(complete)})"}
    try:
        values = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    except (ValueError, RuntimeError) as exc:
        return {"error": str(exc)}
    return {"values": {k: float(v) for k, v in values.items()}, "method": "PED-ANOVA", "trials": len(complete)}


def json_safe(value: Any) -> Any:
    """Strict JSON: non-finite floats become null (NaN is not JSON), everything else plain."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _lost_reason(trial: optuna.trial.FrozenTrial, retried: set[int]) -> str | None:
    """Why a trial failed without saying so: only the heartbeat check fails a trial and records no reason."""
    if trial.state.name != "FAIL":
        return None
    again = "; its parameters are queued again" if trial.number in retried else ""
    return f"its worker stopped sending heartbeats (killed, or cut off from the database){again}"


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
