"""Hyperparameter studies: Optuna ask/tell where every trial is a real engine run.

    python main.py hpo -c BASE.yaml --space SPACE.yaml --trials 20 --study lr-sweep
    python main.py hpo show --study lr-sweep
    python main.py hpo stop --study lr-sweep

One controller process ("worker") runs one trial at a time: it asks Optuna
for parameters, starts ``main.py run`` with them as ``--set`` overrides in
``<workspace>/studies/<study>/trial-NNNN``, follows the run's events, reports
each evaluation of the metric to ``trial.report`` and, when the pruner says
so, stops the run through its control inbox (gracefully: the run ends
``stopped`` and the trial is PRUNED). Several workers, on one machine or on
several hosts, share a study through its storage.

Storage: by default an Optuna JournalStorage file in the study folder
(``journal.log``); ``--storage postgresql://...`` (any SQLAlchemy URL) for
workers on several hosts. See docs/hpo.md for why not SQLite.

A trial that does not reach its end through no fault of its own (the study
was stopped, or its controller was killed) is marked FAIL with the reason and
its parameters are queued again, so resuming the study runs them first.

Optuna is imported inside functions: ``engine.launcher.cli`` imports this module to
build its parser and must stay light.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import fcntl
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeGuard

import yaml

from engine.contract import config as config_mod
from engine.contract import search_space
from engine.contract.commandline import UsageError, engine_command
from engine.contract.commands import send_command
from engine.contract.events import EventReader, Record
from engine.contract.rundir import RunDir, pid_alive
from engine.contract.studies import (
    DIRECTIONS,
    JOURNAL,
    PRUNERS,
    SAMPLERS,
    STOP_FILE,
    STUDIES,
    check_study_name,
    json_safe,
    list_studies,
    request_stop,
    snapshot,
    study_dir,
)

POLL_SECONDS = 0.25
# Trial states as Optuna names them; kept as text here so snapshots need no Optuna.
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


@dataclasses.dataclass
class StudyOptions:
    study: str
    workspace: Path = Path("runs")
    base: Path | None = None  # None: the study's stored base, or the default config for a new study
    space: Path | None = None  # None: the study's stored space (required for a new study)
    trials: int | None = None  # None: the study's stored target (required for a new study)
    # None: the stored setting when resuming, else the default (tpe, median, minimize, val_loss).
    sampler: str | None = None
    pruner: str | None = None
    storage: str | None = None
    direction: str | None = None
    metric: str | None = None
    nproc: int = 1
    seed: int | None = None


# ----------------------------------------------------------------- locations


def open_storage(storage: str | None, workspace: str | os.PathLike, study: str, create: bool = True):
    """The study's storage: its journal file by default, a journal at a given path, or an RDB URL."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if storage and "://" in storage:
        if storage.startswith("sqlite"):
            print(
                "warning: SQLite locks the whole database on every write and is not meant for several workers "
                "writing at once; prefer the default journal file on one machine, PostgreSQL across hosts",
                file=sys.stderr,
            )
        try:
            return optuna.storages.RDBStorage(storage)
        except ImportError as exc:
            raise UsageError(
                f"--storage {_redact(storage)}: a database driver is missing ({exc}); for PostgreSQL "
                f"install psycopg2-binary"
            ) from None
        except Exception as exc:  # SQLAlchemy's errors: bad URL, server down, wrong password
            raise UsageError(f"--storage {_redact(storage)}: cannot open the database: {exc}") from None
    path = Path(storage) if storage else study_dir(workspace, study) / JOURNAL
    if not create and not path.exists():
        known = list_studies(workspace)
        hint = f"; studies in {Path(workspace) / STUDIES}: {', '.join(known)}" if known else ""
        raise UsageError(f"no study {study!r}: {path} does not exist{hint}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def _redact(url: str) -> str:
    """A storage URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


# ------------------------------------------------------------ the controller


def trial_command(base: Path, run_dir: Path, nproc: int, overrides: list[str]) -> list[str]:
    """The launcher command line of one trial: the same ``podium run`` a user types."""
    cmd = engine_command("run", "-c", str(base), "-r", str(run_dir), "--nproc", str(nproc), "--no-progress")
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def _process_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot: tells a live pid from a reused one."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def controller_identity() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def controller_alive(identity: dict[str, Any]) -> bool | None:
    """True/False for a controller on this host; None when it ran elsewhere (cannot be checked)."""
    if identity.get("host") != socket.gethostname():
        return None
    pid = int(identity.get("pid", -1))
    if not pid_alive(pid):
        return False
    started = identity.get("start")
    return started is None or _process_start(pid) == started


def _die_with_parent(parent: int) -> Callable[[], None]:
    """In the trial's launcher, before exec: get SIGTERM when the controller dies, even by SIGKILL.

    The launcher answers SIGTERM by terminating its run, so a killed
    controller leaves no orphan training behind. Linux only (prctl).
    """

    def setup() -> None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the controller died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return setup


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

    # ---- set-up

    def prepare(self):
        """Validate everything and open (or create) the study. Raises UsageError/ConfigError on bad input."""
        import optuna

        given = self.opts
        if given.nproc < 1:
            raise UsageError(f"--nproc: {given.nproc} is not valid; use 1 or more processes")
        if given.trials is not None and given.trials < 1:
            raise UsageError(f"--trials: {given.trials} is not valid; use 1 or more")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        journal = None if given.storage and "://" in given.storage else Path(given.storage or self.dir / JOURNAL)
        if journal is not None and not journal.exists():
            self.opts = _resolved(given, None)
            self._inputs(None)  # a new study: every input is checked before anything is created
        self.dir.mkdir(parents=True, exist_ok=True)
        self.storage = open_storage(given.storage, given.workspace, given.study)
        with self._ask_lock():  # two workers starting together: one creates the study, the other resumes it
            existing = _load_study(self.storage, given.study)
            self.opts = opts = _resolved(given, existing)
            base_cfg = self._inputs(existing)
            if existing is not None:
                self._check_resume(existing, base_cfg)
                self.study = existing
                self.target = opts.trials or int(existing.user_attrs.get("trials") or 0)
                if opts.trials is not None and opts.trials != existing.user_attrs.get("trials"):
                    self.study.set_user_attr("trials", opts.trials)
            else:
                self.study = self._create()
                self.target = opts.trials
        self.study.sampler = self._sampler()
        self.study.pruner = self._pruner(base_cfg)
        self.base_file = self.dir / "base.yaml"
        self.base_file.write_text(config_mod.dump(base_cfg))
        space_file = self.dir / "space.yaml"
        if opts.space is None or Path(opts.space).resolve() != space_file:
            # One line per parameter, as a person writes a space file.
            space_file.write_text(yaml.safe_dump(self.space.to_dict(), sort_keys=False, default_flow_style=None))
        return self.study

    def _inputs(self, existing) -> config_mod.Config:
        """Base config and space from the options, or from the study being resumed; sets self.base/self.space."""
        opts = self.opts
        stored = existing.user_attrs if existing is not None else {}
        if opts.base is not None:
            base_cfg = config_mod.load(opts.base)
        elif existing is not None:
            base_cfg = config_mod.validate(stored.get("base_config"), f"study {opts.study} (stored base config)")
        else:
            base_cfg = config_mod.load(None)
        base_cfg.check_world_size(opts.nproc)
        self.base = base_cfg.model_dump(mode="json")
        if opts.space is not None:
            self.space = search_space.load(opts.space, self.base, nproc=opts.nproc, sampler=opts.sampler)
        elif existing is not None:
            text = json.dumps(stored.get("space", {}))  # JSON is YAML: the stored space parses as a space file
            self.space = search_space.parse(
                text, self.base, nproc=opts.nproc, sampler=opts.sampler, source=f"study {opts.study} (stored space)"
            )
        else:
            raise UsageError("a new study needs --space SPACE.yaml (see resources/example_space.yaml)")
        if existing is None and opts.trials is None:
            raise UsageError("a new study needs --trials N (the study's total number of trials)")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", self.metric):
            raise UsageError(f"--metric {opts.metric!r}: name a numeric field of the eval events, e.g. val_loss")
        return base_cfg

    def _create(self):
        import optuna

        study = optuna.create_study(storage=self.storage, study_name=self.opts.study, direction=self.direction)
        attrs = {
            "metric": self.metric,
            "space": self.space.to_dict(),
            "base_config": self.base,
            "trials": self.opts.trials,
            "sampler": self.opts.sampler,
            "pruner": self.opts.pruner,
            "nproc": self.opts.nproc,
            "workspace": str(Path(self.opts.workspace).resolve()),
            "created": time.time(),
        }
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        return study

    def _check_resume(self, study, base_cfg: config_mod.Config) -> None:
        """A resumed study must optimise the same thing over the same space, or its trials do not compare."""
        attrs = study.user_attrs
        problems = []
        direction = study.direction.name.lower()
        if direction != self.direction:
            problems.append(f"it {direction}s; pass --direction {direction}")
        if attrs.get("metric") != self.metric:
            problems.append(f"it optimises {attrs.get('metric')}; pass --metric {attrs.get('metric')}")
        if attrs.get("space") != self.space.to_dict():
            problems.append(f"its space differs from {self.opts.space} (stored in {self.dir / 'space.yaml'})")
        try:
            stored_base = config_mod.validate(attrs.get("base_config")).model_dump(mode="json")
        except config_mod.ConfigError:
            stored_base = None
        if stored_base != base_cfg.model_dump(mode="json"):
            changed = _changed_keys(stored_base or {}, base_cfg.model_dump(mode="json"))
            problems.append(
                f"its base config differs ({', '.join(changed[:6]) or 'no longer valid'}; stored in "
                f"{self.dir / 'base.yaml'})"
            )
        if problems:
            raise UsageError(f"study {self.opts.study!r} exists and {'; '.join(problems)}; or choose a new --study")

    def _sampler(self):
        import optuna

        seed = self.opts.seed
        name = self.opts.sampler
        if name == "grid":
            # One fixed seed: every worker must shuffle the grid the same way (Optuna's note on distributed grids).
            return optuna.samplers.GridSampler(self.space.grid(), seed=0)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        if name == "cmaes":
            if any(p.kind == "categorical" for p in self.space.params):
                self.out("note: CMA-ES samples categorical parameters at random (it handles only numbers)")
            return optuna.samplers.CmaEsSampler(seed=seed)
        # constant_liar: concurrent workers see running trials as bad, so they do not all pick the same point.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)

    def _pruner(self, base_cfg: config_mod.Config):
        import optuna

        if self.opts.pruner == "median":
            return optuna.pruners.MedianPruner()
        if self.opts.pruner == "hyperband":
            steps = base_cfg.run.max_steps
            return optuna.pruners.HyperbandPruner(
                min_resource=min(base_cfg.run.eval_interval, steps), max_resource=steps
            )
        return optuna.pruners.NopPruner()

    # ---- the loop

    def run(self) -> int:
        self.prepare()
        if _looks_reversed(self.metric, self.direction):
            self.out(f"warning: {self.direction} {self.metric}? check --direction")
        self.out(
            f"study {self.opts.study}: {self.direction} {self.metric}, {self.opts.sampler} sampler, "
            f"{self.opts.pruner} pruner, {self.target} trials in all; storage "
            f"{_redact(self.opts.storage) if self.opts.storage else self.dir / JOURNAL}"
        )
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
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

    @contextmanager
    def _ask_lock(self) -> Iterator[None]:
        """Workers on this machine ask one at a time, so a grid point or a queued trial goes to one of them."""
        fd = os.open(self.dir / "ask.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _next_trial(self):
        import optuna
        from optuna.trial import TrialState

        with self._ask_lock():
            trials = self.study.get_trials(deepcopy=False)
            counted = sum(1 for t in trials if _counts_toward_target(t))
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if counted >= self.target:
                self.out(f"the study has its {self.target} trials")
                return None
            grid_size = self.space.grid_size() if self.opts.sampler == "grid" else None
            if grid_size is not None and not waiting:
                started = {t.system_attrs["grid_id"] for t in trials if "grid_id" in t.system_attrs}
                if len(started) >= grid_size:
                    self.out(f"every point of the {grid_size}-point grid has its trial")
                    return None
            trial = self.study.ask()
            trial.set_user_attr("controller", controller_identity())
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
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        invalid = search_space.config_problem(self.base, params, self.opts.nproc)
        if invalid:
            self._finish(trial, TrialState.FAIL, reason=f"invalid config: {invalid}")
            self.out(f"trial {trial.number} failed before starting ({shown}): invalid config: {invalid}")
            return
        self.out(f"trial {trial.number} started: {shown} -> {run_dir}")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "control.jsonl").touch()  # a stop sent before the engine starts is applied at its first step
        follow = _Follower(self.metric)
        reader = EventReader(run_dir / "events.jsonl")
        stop_sent = False
        with open(run_dir / "launcher.log", "ab") as log:
            self._proc = subprocess.Popen(
                self.command(self.base_file, run_dir, self.opts.nproc, overrides),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
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
                        self.out(f"trial {trial.number} pruned at step {value[0]} ({self.metric} {_fmt(value[1])})")
                if done:
                    break
                if (follow.pruned_at is not None or self._check_stop()) and not stop_sent:
                    send_command(run_dir, "stop")
                    stop_sent = True
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()
        finally:
            code = self._proc.wait()
            self._proc = None
        self._conclude(trial, params, follow, code, run_dir)

    def _conclude(self, trial, params: dict[str, Any], follow: _Follower, code: int, run_dir: Path) -> None:
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
                f"pruned at step {follow.pruned_at}: {self.metric} {_fmt(follow.pruned_value)} "
                f"(run ended {end_reason or 'without run_end'})"
            )
            self._finish(trial, TrialState.PRUNED, reason=reason, **attrs)
        elif self.stop_reason and end_reason in ("stopped", None):
            reason = (
                f"not finished: the study was stopped ({self.stop_reason}) at step {step}; "
                "its parameters are queued again"
            )
            self._finish(trial, TrialState.FAIL, reason=reason, requeued=True, **attrs)
            self.study.enqueue_trial(params, user_attrs={"retry_of": trial.number})
            self.out(f"trial {trial.number} stopped at step {step}; queued again for when the study resumes")
            return
        elif code != 0 or end_reason in ("failed", None):
            reason = (
                follow.failure or end.get("message") or f"the launcher exited with code {code} without ending the run"
            )
            tail = _tail(run_dir / "launcher.log", 12)
            self._finish(trial, TrialState.FAIL, reason=reason, log_tail=tail, **attrs)
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
        self.out(f"trial {trial.number} {_state_line(frozen, self.metric)}")

    def _finish(self, trial, state, value: float | None = None, **attrs: Any) -> None:
        for key, item in attrs.items():
            if item is not None:
                trial.set_user_attr(key, item)
        if value is not None:
            trial.set_user_attr("value", value)
        _tell(self.study, trial, state, value)
        self.ran[state.name] += 1

    def recover_stale(self) -> None:
        """RUNNING trials whose controller on this host is dead: FAIL them and queue their parameters again."""
        import optuna
        from optuna.trial import TrialState

        with self._ask_lock():
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
                    self.study.enqueue_trial(frozen.params, user_attrs={"retry_of": frozen.number})
                self.out(
                    f"trial {frozen.number} was left running by a dead controller: marked failed"
                    f"{' and queued again' if requeue else ''}"
                )


class _Follower:
    """What the controller learns from a trial's events."""

    def __init__(self, metric: str):
        self.metric = metric
        self.values: list[tuple[int, float]] = []
        self.eval_fields: set[str] = set()
        self.end: Record | None = None
        self.failure: str | None = None
        self.last_step = 0
        self.parameters: int | None = None
        self.tokens_seen: int | None = None
        self.pruned_at: int | None = None
        self.pruned_value: float | None = None

    @property
    def value(self) -> float | None:
        return self.values[-1][1] if self.values else None

    def best(self, direction: str) -> float | None:
        finite = [v for _, v in self.values if math.isfinite(v)]
        if not finite:
            return None
        return min(finite) if direction == "minimize" else max(finite)

    def take(self, event: Record) -> tuple[int, float] | None:
        """Track an event; return (step, metric value) when it carries the metric."""
        kind = event["type"]
        self.last_step = max(self.last_step, int(event.get("step", 0)))
        if kind == "run_start":
            self.parameters = event.get("model_parameters")
        elif kind == "metrics":
            self.tokens_seen = event.get("tokens_seen", self.tokens_seen)
        elif kind == "run_end":
            self.end = event
        elif kind == "error" and event.get("fatal"):
            self.failure = str(event.get("message"))
        if kind not in ("eval", "sample"):
            return None
        if kind == "eval":
            self.eval_fields.update(k for k, v in event.items() if _is_number(v) and k not in ("v", "time", "step"))
        value = metric_value(event, self.metric)
        if value is None:
            return None
        step = int(event["step"])
        if self.values and self.values[-1][0] == step:
            self.values[-1] = (step, value)  # a repeated evaluation of one step: the newest counts, reported once
            return None
        self.values.append((step, value))
        return step, value


def metric_value(event: Record, metric: str) -> float | None:
    """A numeric field of an eval or sample event, top level or under ``metrics``."""
    value = event.get(metric)
    if value is None and isinstance(event.get("metrics"), dict):
        value = event["metrics"].get(metric)
    return float(value) if _is_number(value) else None


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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


def _counts_toward_target(frozen) -> bool:
    """Trials that used up a place: a failed trial whose parameters were queued again is replaced by its copy."""
    state = frozen.state.name
    if state == "WAITING":
        return False
    return not (state == "FAIL" and frozen.user_attrs.get("requeued"))


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


def _resolved(opts: StudyOptions, existing) -> StudyOptions:
    """Options with the unset choices filled: from the study being resumed, else the defaults."""
    stored = existing.user_attrs if existing is not None else {}
    out = dataclasses.replace(
        opts,
        direction=opts.direction or (existing.direction.name.lower() if existing is not None else "minimize"),
        metric=opts.metric or stored.get("metric") or "val_loss",
        sampler=opts.sampler or stored.get("sampler") or "tpe",
        pruner=opts.pruner or stored.get("pruner") or "median",
    )
    for name, value, allowed in (
        ("--sampler", out.sampler, SAMPLERS),
        ("--pruner", out.pruner, PRUNERS),
        ("--direction", out.direction, DIRECTIONS),
    ):
        if value not in allowed:
            raise UsageError(f"{name} {value!r}: use one of {', '.join(allowed)}")
    return out


def _looks_reversed(metric: str, direction: str) -> bool:
    lower = metric.lower()
    if direction == "maximize":
        return any(w in lower for w in ("loss", "ppl", "perplexity", "error"))
    return any(w in lower for w in ("score", "accuracy", "quality"))


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return keys


def _load_study(storage, name: str):
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _state_line(frozen, metric: str) -> str:
    state = frozen.state.name
    if state == "COMPLETE":
        return f"finished: {metric} {_fmt(frozen.value)}"
    if state == "PRUNED":
        return frozen.user_attrs.get("reason", "pruned")
    return f"failed: {frozen.user_attrs.get('reason', '')}"


# ------------------------------------------------------------ reading studies


def summary_text(snap: dict[str, Any], limit: int | None = None) -> str:
    """Best trial, its params and run directory, then a table of the trials (the last ``limit``; 0 none)."""
    lines = [
        f"study {snap['study']}: {snap['direction']} {snap['metric']} "
        f"({', '.join(f'{n} {s.lower()}' for s, n in sorted(snap['counts'].items())) or 'no trials'})"
    ]
    best = snap["best"]
    if best:
        lines.append(f"best trial {best['number']}: {snap['metric']} {best['value']:.6g}")
        for key, value in best["params"].items():
            lines.append(f"  {key} = {_fmt(value)}")
        lines.append(f"  run dir: {best['run_dir']}")
    else:
        lines.append("no completed trial yet")
    if "importances" in snap:
        imp = snap["importances"]
        if "values" in imp:
            lines.append(
                "parameter importances ("
                + imp["method"]
                + "): "
                + ", ".join(f"{k} {v:.2f}" for k, v in imp["values"].items())
            )
        else:
            lines.append(f"parameter importances: {imp['error']}")
    trials = snap["trials"] if limit is None else snap["trials"][-limit:] if limit else []
    if trials:
        names = list(snap["space"]) or sorted({k for t in trials for k in t["params"]})
        header = ["#", "state", snap["metric"], *names, "time", "run dir / reason"]
        rows = [header]
        for t in trials:
            value = "" if t["value"] is None else f"{t['value']:.5g}"
            duration = "" if t["duration_s"] is None else _duration(t["duration_s"])
            last = t["run_dir"] or ""
            if t["state"] in ("FAIL", "PRUNED") and t["reason"]:
                last = f"{Path(last).name + ': ' if last else ''}{t['reason']}"
            rows.append(
                [
                    str(t["number"]),
                    t["state"].lower(),
                    value,
                    *[_fmt(t["params"].get(n, "")) for n in names],
                    duration,
                    last,
                ]
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
        for row in rows:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


# --------------------------------------------------------------------- CLI


def add_parser(sub: argparse._SubParsersAction) -> None:
    hpo = sub.add_parser(
        "hpo",
        help="hyperparameter study: each trial a real run (Optuna)",
        description="Run a worker of a hyperparameter study; rerun the same command to resume it. "
        "'hpo show' prints a study, 'hpo stop' stops its workers.",
    )
    _common(hpo)
    hpo.add_argument(
        "-c",
        "--config",
        type=Path,
        help="base config (new study: default resources/default.yaml; resuming: the study's stored base)",
    )
    hpo.add_argument("--space", type=Path, help="search space YAML (see resources/example_space.yaml)")
    hpo.add_argument("--trials", type=int, help="the study's total number of trials, shared by all its workers")
    # Unset choices default to the study's stored ones when it resumes.
    hpo.add_argument("--sampler", choices=SAMPLERS, help="default tpe")
    hpo.add_argument("--pruner", choices=PRUNERS, help="default median")
    hpo.add_argument("--direction", choices=DIRECTIONS, help="default minimize")
    hpo.add_argument("--metric", help="numeric field of the runs' eval events (default val_loss)")
    hpo.add_argument("--nproc", type=int, default=1, help="processes per trial run")
    hpo.add_argument("--seed", type=int, help="sampler seed (give each worker its own)")
    actions = hpo.add_subparsers(dest="hpo_action", metavar="{show,stop}")
    show = actions.add_parser("show", help="print a study: best trial, its params and run dir, all trials")
    _common(show)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--importances", action="store_true", help="also compute parameter importances (PED-ANOVA)")
    show.add_argument("--last", type=int, default=None, help="show only the last N trials in the table")
    stop = actions.add_parser(
        "stop", help="stop the study's workers in this workspace (running trials stop gracefully)"
    )
    _common(stop)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", help="study name (a folder under WORKSPACE/studies)")
    parser.add_argument(
        "--storage",
        help="Optuna storage: a journal file path or an RDB URL such as "
        "postgresql://user@host/db (default: WORKSPACE/studies/STUDY/journal.log)",
    )
    parser.add_argument(
        "--workspace", type=Path, default=Path("runs"), help="where studies and trial runs live (default runs)"
    )


def cmd_hpo(args) -> int:
    if not args.study:
        raise UsageError("--study NAME is required")
    check_study_name(args.study)
    if args.hpo_action == "show":
        return _cmd_show(args)
    if args.hpo_action == "stop":
        path = request_stop(args.workspace, args.study)
        print(f"asked the workers of {args.study} to stop ({path})")
        return 0
    opts = StudyOptions(
        study=args.study,
        workspace=args.workspace,
        base=args.config,
        space=args.space,
        trials=args.trials,
        sampler=args.sampler,
        pruner=args.pruner,
        storage=args.storage,
        direction=args.direction,
        metric=args.metric,
        nproc=args.nproc,
        seed=args.seed,
    )
    return Controller(opts).run()


def _cmd_show(args) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.storage, args.workspace, args.study, create=False)
    study = _load_study(storage, args.study)
    if study is None:
        where = _redact(args.storage) if args.storage else study_dir(args.workspace, args.study)
        raise UsageError(f"no study {args.study!r} in {where}")
    snap = snapshot(study, importances=args.importances)
    if args.json:
        print(json.dumps(json_safe(snap), allow_nan=False))
    else:
        print(summary_text(snap, limit=args.last))
    return 0
