"""Hyperparameter studies: Optuna ask/tell where every trial is a real engine run.

One controller process ("worker") runs one trial at a time: it asks Optuna
for parameters, starts ``podium run`` with them as ``--set`` overrides in
``<workspace>/studies/<study>/trial-NNNN``, follows the run's events, reports
each evaluation of the metric to ``trial.report`` and, when the pruner says
so, stops the run through its control inbox (gracefully: the run ends
``stopped`` and the trial is PRUNED). Several workers, on one machine or on
several hosts, share a study through its storage (``storage``); opening it is
``study_setup``'s, a trial's process ``trial_process``'s, the command line
``hpo_cli``'s.

Storage: by default an Optuna JournalStorage file in the study folder
(``journal.log``); ``--storage postgresql://...`` (any SQLAlchemy URL) for
workers on several hosts. See docs/hpo.md for why not SQLite.

A trial that does not reach its end through no fault of its own (the study
was stopped, or its controller was killed) is marked FAIL with the reason and
its parameters are queued again, so resuming the study runs them first.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.contract import search_space
from engine.contract.commands import send_command
from engine.contract.events import EventReader
from engine.contract.rundir import RunDir
from engine.contract.studies import JOURNAL, STOP_FILE, check_study_name, snapshot, study_dir
from engine.studies import study_tensorboard
from engine.studies.reporting import TrialFollower, fmt, state_line, summary_text, tail
from engine.studies.storage import ask_lock, fail_stale_trials, redact
from engine.studies.study_setup import StudyOptions, counts, looks_reversed, open_study, retried_numbers, waits
from engine.studies.trial_process import controller_alive, controller_identity, die_with_parent, trial_command

__all__ = ["Controller", "StudyOptions"]

POLL_SECONDS = 0.25


class Controller:
    """One worker of a study. ``command`` builds a trial's launcher command line (tests substitute one)."""

    def __init__(
        self,
        opts: StudyOptions,
        command: Callable[[Path, Path, int, list[str]], list[str]] = trial_command,
        out: Callable[[str], None] | None = None,
    ):
        check_study_name(opts.study)
        self.opts = opts
        self.command = command
        self.out = out or (lambda line: print(line, flush=True))
        self.dir = study_dir(opts.workspace, opts.study).resolve()
        self.started = time.time()
        self.stop_reason: str | None = None
        self.escalations = 0
        self._wake = threading.Event()
        self._proc: subprocess.Popen | None = None
        self.ran = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        self._last_beat = -math.inf

    @property
    def metric(self) -> str:
        """The eval field the study optimises: given, stored or the default, once prepare() has resolved it."""
        if self.opts.metric is None:
            raise RuntimeError("the study's metric is resolved by prepare()")
        return self.opts.metric

    @property
    def direction(self) -> str:
        """minimize or maximize: given, stored or the default, once prepare() has resolved it."""
        if self.opts.direction is None:
            raise RuntimeError("the study's direction is resolved by prepare()")
        return self.opts.direction

    def prepare(self):
        """Validate everything and open (or create) the study. Raises UsageError/ConfigError on bad input."""
        opened = open_study(self.opts, self.dir, self.out)
        self.opened = opened
        self.opts, self.study, self.target = opened.opts, opened.study, opened.target
        self.base, self.space, self.base_file = opened.base, opened.space, opened.base_file
        return self.study

    # ---- the loop

    def run(self) -> int:
        self.prepare()
        if looks_reversed(self.metric, self.direction):
            self.out(f"warning: {self.direction} {self.metric}? check --direction")
        self.out(
            f"study {self.opts.study}: {self.direction} {self.metric}, {self.opts.sampler} sampler, "
            f"{self.opts.pruner} pruner, {self.target} trials in all; storage "
            f"{redact(self.opts.storage) if self.opts.storage else self.dir / JOURNAL}"
        )
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if not self.opened.heartbeat_on:
                self.recover_stale()
            while not self._check_stop():
                nxt = self._next_trial()
                if nxt is None:
                    break
                self._run_trial(*nxt)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.out(summary_text(snapshot(self.study), limit=0))
        ran = sum(self.ran.values())
        return 1 if ran and self.ran["FAIL"] == ran and not self.stop_reason else 0

    def _on_signal(self, signum: int, _frame) -> None:
        """The first request (this signal or the stop file) stops gently; each further signal escalates."""
        if self.stop_reason is None:
            self.stop_reason = "interrupted" if signum == signal.SIGINT else "terminated"
            print(
                "\nstopping the study: no new trials; the running trial stops gracefully. Again to terminate it.",
                file=sys.stderr,
                flush=True,
            )
        else:
            self.escalations += 1
            if self._proc is not None and self._proc.poll() is None:
                # The launcher answers SIGTERM by terminating torchrun; SIGKILL is the last resort.
                self._proc.send_signal(signal.SIGTERM if self.escalations == 1 else signal.SIGKILL)
        self._wake.set()

    def _check_stop(self) -> bool:
        if self.stop_reason is None:
            try:
                if (self.dir / STOP_FILE).stat().st_mtime >= self.started:
                    self.stop_reason = "stop requested"
                    self.out(f"stop requested ({self.dir / STOP_FILE}): no new trials")
            except FileNotFoundError:
                pass
        return self.stop_reason is not None

    def _next_trial(self):
        import optuna

        with ask_lock(self.dir):
            if self.opened.heartbeat_on:
                fail_stale_trials(self.study)  # a dead worker's trial is failed (and retried) before counting
            trials = self.study.get_trials(deepcopy=False)
            retried = retried_numbers(trials)
            counted = sum(1 for t in trials if counts(t, retried))
            waiting = any(waits(t) for t in trials)
            if counted >= self.target:
                self.out(f"the study has its {self.target} trials")
                return None
            grid_size = self.space.grid_size() if self.opts.sampler == "grid" else None
            if grid_size is not None and not waiting:
                covered = {tuple(sorted(t.params.items())) for t in trials if counts(t, retried)}
                if len(covered) >= grid_size or self.study.user_attrs.get("grid_queued"):
                    self.out(f"every point of the {grid_size}-point grid has its trial")
                    return None
            with warnings.catch_warnings():  # Optuna expects heartbeats with optimize(); we send them ourselves
                warnings.simplefilter("ignore", UserWarning)
                trial = self.study.ask()
            if grid_size is not None and self.study.user_attrs.get("grid_queued") and "queued" not in trial.user_attrs:
                # The last queued point went to a worker on another host between our look and our ask.
                trial.set_user_attr("not_run", True)
                trial.set_user_attr("reason", "not run: the last queued grid point went to another worker")
                _tell(self.study, trial, optuna.trial.TrialState.FAIL)
                self.out(f"every point of the {grid_size}-point grid has its trial")
                return None
            trial.set_user_attr("controller", controller_identity())
            self._beat(trial, first=True)
            params = {p.name: _suggest(trial, p) for p in self.space.params}
            if grid_size is not None and _grid_point_taken(trials, trial, params):
                # Only reachable with workers on other hosts (the lock covers this one): never run a point twice.
                trial.set_user_attr("reason", "not run: its grid point already has a trial (the grid is exhausted)")
                _tell(self.study, trial, optuna.trial.TrialState.FAIL)
                return None
        return trial, params

    def _run_trial(self, trial, params: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        run_dir = self.dir / f"trial-{trial.number:04d}"
        overrides = search_space.overrides(params)
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("overrides", overrides)
        if "retry_of" in trial.user_attrs:
            self.out(f"trial {trial.number} reruns trial {trial.user_attrs['retry_of']}'s parameters")
        shown = ", ".join(f"{k}={fmt(v)}" for k, v in params.items())
        invalid = search_space.config_problem(self.base, params, self.opts.nproc)
        if invalid:
            self._finish(trial, TrialState.FAIL, reason=f"invalid config: {invalid}")
            self.out(f"trial {trial.number} failed before starting ({shown}): invalid config: {invalid}")
            return
        self.out(f"trial {trial.number} started: {shown} -> {run_dir}")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "control.jsonl").touch()  # a stop sent before the engine starts is applied at its first step
        follow = TrialFollower(self.metric)
        reader = EventReader(run_dir / "events.jsonl")
        stop_sent = False
        with open(run_dir / "launcher.log", "ab") as log:
            self._proc = subprocess.Popen(
                self.command(self.base_file, run_dir, self.opts.nproc, overrides),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(os.getpid()),
            )
        try:
            while True:
                done = self._proc.poll() is not None
                for event in reader.read_new():
                    value = follow.take(event)
                    if value is None or follow.pruned_at is not None:
                        continue
                    trial.report(value[1], value[0])
                    if not self._check_stop() and trial.should_prune():
                        follow.pruned_at, follow.pruned_value = value
                        self.out(f"trial {trial.number} pruned at step {value[0]} ({self.metric} {fmt(value[1])})")
                if done:
                    break
                if (follow.pruned_at is not None or self._check_stop()) and not stop_sent:
                    send_command(run_dir, "stop")
                    stop_sent = True
                self._beat(trial)
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()
        finally:
            code = self._proc.wait()
            self._proc = None
        self._conclude(trial, params, follow, code, run_dir)

    def _beat(self, trial, first: bool = False) -> None:
        """On a database: say this worker is alive, and fail the trials of workers that no longer say so."""
        if not self.opened.heartbeat_on:
            return
        if not first and time.monotonic() - self._last_beat < self.opened.heartbeat.interval:
            return
        self._last_beat = time.monotonic()
        self.opened.storage.record_heartbeat(trial._trial_id)
        fail_stale_trials(self.study)

    def _conclude(self, trial, params: dict[str, Any], follow: TrialFollower, code: int, run_dir: Path) -> None:
        from optuna.trial import TrialState

        end = follow.end or {}
        end_reason = end.get("reason")
        step = end.get("step", follow.last_step)
        attrs = {
            "exit_code": code,
            "run_end": end_reason,
            "final_step": step,
            "model_parameters": follow.parameters,
            "tokens_seen": follow.tokens_seen,
        }
        if follow.value is not None:
            attrs["last_value"] = follow.value
            attrs["best_value"] = follow.best(self.direction)
        if follow.pruned_at is not None:
            reason = (
                f"pruned at step {follow.pruned_at}: {self.metric} {fmt(follow.pruned_value)} "
                f"(run ended {end_reason or 'without run_end'})"
            )
            self._finish(trial, TrialState.PRUNED, reason=reason, **attrs)
        elif self.stop_reason and end_reason in ("stopped", None):
            reason = (
                f"not finished: the study was stopped ({self.stop_reason}) at step {step}; "
                "its parameters are queued again"
            )
            self._finish(trial, TrialState.FAIL, reason=reason, requeued=True, **attrs)
            self.study.enqueue_trial(params, user_attrs={"retry_of": trial.number, "queued": True})
            self.out(f"trial {trial.number} stopped at step {step}; queued again for when the study resumes")
            return
        elif code != 0 or end_reason in ("failed", None):
            reason = (
                follow.failure or end.get("message") or f"the launcher exited with code {code} without ending the run"
            )
            self._finish(trial, TrialState.FAIL, reason=reason, log_tail=tail(run_dir / "launcher.log", 12), **attrs)
        elif end_reason == "stopped":
            reason = f"the run was stopped from outside the study at step {step}; a partial run is no result"
            self._finish(trial, TrialState.FAIL, reason=reason, **attrs)
        elif follow.value is None:
            seen = ", ".join(sorted(follow.eval_fields)) or "no eval events"
            reason = f"the run reported no {self.metric!r} (eval fields: {seen})"
            self._finish(trial, TrialState.FAIL, reason=reason, **attrs)
        elif not math.isfinite(follow.value):
            self._finish(
                trial, TrialState.FAIL, reason=f"{self.metric} is {follow.value} at the end (diverged)", **attrs
            )
        else:
            self._finish(trial, TrialState.COMPLETE, value=follow.value, **attrs)
        frozen = next(t for t in self.study.get_trials(deepcopy=False) if t.number == trial.number)
        self.out(f"trial {trial.number} {state_line(frozen, self.metric)}")

    def _finish(self, trial, state, value: float | None = None, **attrs: Any) -> None:
        for key, item in attrs.items():
            if item is not None:
                trial.set_user_attr(key, item)
        if value is not None:
            trial.set_user_attr("value", value)
        _tell(self.study, trial, state, value)
        self.ran[state.name] += 1
        shown = value if value is not None else attrs.get("last_value")  # a pruned trial: its last report
        if self.base["sinks"]["tensorboard"] and state.name in ("COMPLETE", "PRUNED") and shown is not None:
            params = {p.name: trial.params.get(p.name) for p in self.space.params}
            problem = study_tensorboard.write_trial(
                self.dir, trial.number, params, self.metric, shown, state.name.lower()
            )
            if problem:
                self.out(f"warning: {problem}")

    def recover_stale(self) -> None:
        """RUNNING trials whose controller on this host is dead: FAIL them and queue their parameters again."""
        import optuna
        from optuna.trial import TrialState

        with ask_lock(self.dir):
            for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                owner = frozen.user_attrs.get("controller") or {}
                alive = controller_alive(owner) if owner else None
                if alive is not False:
                    if alive is None and owner:
                        self.out(
                            f"trial {frozen.number} runs on {owner.get('host')} (pid {owner.get('pid')}); left to it"
                        )
                    continue
                run_dir = frozen.user_attrs.get("run_dir")
                if run_dir and RunDir(run_dir).launcher_alive():
                    send_command(run_dir, "stop")  # an orphaned run: nobody reports it any more
                trial = optuna.Trial(self.study, frozen._trial_id)
                requeue = set(frozen.params) == set(self.space.names)
                trial.set_user_attr(
                    "reason",
                    f"its controller (pid {owner.get('pid')} on {owner.get('host')}) died "
                    f"while it ran{'; its parameters are queued again' if requeue else ''}",
                )
                trial.set_user_attr("requeued", requeue)
                _tell(self.study, frozen.number, TrialState.FAIL)
                if requeue:
                    self.study.enqueue_trial(frozen.params, user_attrs={"retry_of": frozen.number, "queued": True})
                self.out(
                    f"trial {frozen.number} was left running by a dead controller: marked failed"
                    f"{' and queued again' if requeue else ''}"
                )


def _suggest(trial, param: search_space.Param) -> Any:
    if param.kind == "categorical":
        return trial.suggest_categorical(param.name, list(param.choices))
    low, high = param.low, param.high
    if low is None or high is None:  # search_space.parse gives every numeric dimension its range
        raise ValueError(f"{param.name}: a {param.kind} dimension without low and high")
    if param.kind == "int":
        return trial.suggest_int(param.name, int(low), int(high), step=int(param.step or 1), log=param.log)
    return trial.suggest_float(param.name, float(low), float(high), step=param.step, log=param.log)


def _grid_point_taken(trials: list, trial, params: dict[str, Any]) -> bool:
    for other in trials:
        if other.number == trial.number or (other.state.name == "FAIL" and other.user_attrs.get("requeued")):
            continue
        if other.params == params:
            return True
    return False


def _tell(study, trial, state, value: float | None = None) -> None:
    """study.tell, tolerating GridSampler's study.stop() once the grid is covered.

    With ask/tell, GridSampler.after_trial calls study.stop(), which raises
    RuntimeError outside optimize(); Optuna records the state in a ``finally``
    first (optuna/optuna#4121), so the trial is told and the error is noise.
    """
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise
