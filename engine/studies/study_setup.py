"""Opening a study: the options a worker is given, checked and filled from the stored study, then created or resumed.

A new study has every input checked before anything is written; a resumed one
must optimise the same metric in the same direction over the same space and
base config, or its trials would not compare.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from engine.contract import config as config_mod
from engine.contract import search_space
from engine.contract.commandline import UsageError
from engine.contract.studies import DIRECTIONS, JOURNAL, PRUNERS, SAMPLERS
from engine.studies.storage import Heartbeat, ask_lock, check_heartbeat, is_url, load_study, open_storage, redact


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
    worker: bool = False  # join a study that exists; never create one
    heartbeat: Heartbeat | None = None  # None: the default for a database, none for a journal file


# The base config is stored once per study, as a system attribute: in the user attributes it made each row of
# `optuna studies` a screenful. Storing it is the last step of creating a study, so it also says "ready".
BASE_ATTR = "podium:base_config"
READY_TIMEOUT_S = 60.0


@dataclasses.dataclass
class OpenStudy:
    """A study ready for trials: the Optuna study, its resolved options, base config, space and target."""

    study: Any
    storage: Any
    opts: StudyOptions
    base: dict[str, Any]
    space: search_space.Space
    target: int
    base_file: Path

    @property
    def heartbeat_on(self) -> bool:
        """Workers of a study in a database send heartbeats; a journal file's find dead workers by process."""
        return is_url(self.opts.storage)

    @property
    def heartbeat(self) -> Heartbeat:
        return self.opts.heartbeat or Heartbeat()


def open_study(given: StudyOptions, folder: Path, out: Callable[[str], None]) -> OpenStudy:
    """Validate everything and open (or create) the study. Raises UsageError/ConfigError on bad input."""
    import optuna

    if given.nproc < 1:
        raise UsageError(f"--nproc: {given.nproc} is not valid; use 1 or more processes")
    if given.trials is not None and given.trials < 1:
        raise UsageError(f"--trials: {given.trials} is not valid; use 1 or more")
    check_heartbeat(given.storage, given.heartbeat)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = None if is_url(given.storage) else Path(given.storage or folder / JOURNAL)
    if journal is not None and not journal.exists():
        if given.worker:
            raise _no_study(given, journal)
        _inputs(_resolved(given, None), None, None)  # a new study: every input is checked before anything is created
    folder.mkdir(parents=True, exist_ok=True)
    storage = open_storage(given.storage, given.workspace, given.study, heartbeat=given.heartbeat)
    # The lock serialises workers on this machine; workers on other hosts meet in the database (see _create).
    with ask_lock(folder):
        existing = _ready_study(storage, given.study)
        if existing is None and given.worker:
            raise _no_study(given, given.storage)
        opts = _resolved(given, existing)
        base_cfg, space = _inputs(opts, existing, storage)
        base = base_cfg.model_dump(mode="json")
        study = None if existing is not None else _create(storage, opts, base, space)
        if study is None:  # resuming, or another host created it a moment ago
            existing = existing or _ready_study(storage, given.study, wait=True)
            opts = _resolved(given, existing)
            _check_resume(existing, opts, base_cfg, space, folder, storage)
            study = existing
            target = opts.trials or int(existing.user_attrs.get("trials") or 0)
            if opts.trials is not None and opts.trials != existing.user_attrs.get("trials"):
                study.set_user_attr("trials", opts.trials)
                _queue_grid(study, space, opts)
        else:
            target = opts.trials or 0
    study.sampler = _sampler(opts, space, out)
    study.pruner = _pruner(opts, base_cfg)
    base_file = folder / "base.yaml"
    base_file.write_text(config_mod.dump(base_cfg))
    space_file = folder / "space.yaml"
    if opts.space is None or Path(opts.space).resolve() != space_file:
        # One line per parameter, as a person writes a space file.
        space_file.write_text(yaml.safe_dump(space.to_dict(), sort_keys=False, default_flow_style=None))
    return OpenStudy(study, storage, opts, base, space, target, base_file)


def _no_study(opts: StudyOptions, where) -> UsageError:
    shown = redact(str(where)) if where else str(Path(opts.workspace) / "studies" / opts.study / JOURNAL)
    return UsageError(
        f"--worker: no study {opts.study!r} in {shown}; start it first with --space SPACE.yaml --trials N "
        "(a worker joins a study, it never creates one)"
    )


def stored_base(storage, study) -> Any:
    """The study's base config as stored: once, in a system attribute (older studies: a user attribute)."""
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study.study_name))
    return attrs.get(BASE_ATTR, study.user_attrs.get("base_config"))


def _ready_study(storage, name: str, wait: bool = False):
    """The named study once its creator has stored everything; None when there is none (and not waiting)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        study = load_study(storage, name)
        if study is not None and stored_base(storage, study) is not None:
            return study
        if study is None and not wait:
            return None
        if time.monotonic() > deadline:
            raise UsageError(
                f"study {name!r} exists but its creator never finished setting it up "
                f"(no base config after {READY_TIMEOUT_S:.0f} s); delete it or choose a new --study"
            )
        time.sleep(0.2)


def _inputs(opts: StudyOptions, existing, storage) -> tuple[config_mod.Config, search_space.Space]:
    """Base config and space from the options, or from the study being resumed."""
    stored = existing.user_attrs if existing is not None else {}
    if opts.base is not None:
        base_cfg = config_mod.load(opts.base)
    elif existing is not None:
        base_cfg = config_mod.validate(stored_base(storage, existing), f"study {opts.study} (stored base config)")
    else:
        base_cfg = config_mod.load(None)
    base_cfg.check_world_size(opts.nproc)
    base = base_cfg.model_dump(mode="json")
    if opts.space is not None:
        space = search_space.load(opts.space, base, nproc=opts.nproc, sampler=opts.sampler)
    elif existing is not None:
        text = json.dumps(stored.get("space", {}))  # JSON is YAML: the stored space parses as a space file
        space = search_space.parse(
            text, base, nproc=opts.nproc, sampler=opts.sampler, source=f"study {opts.study} (stored space)"
        )
    else:
        raise UsageError("a new study needs --space SPACE.yaml (see resources/example_space.yaml)")
    if existing is None and opts.trials is None:
        raise UsageError("a new study needs --trials N (the study's total number of trials)")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", opts.metric or ""):
        raise UsageError(f"--metric {opts.metric!r}: name a numeric field of the eval events, e.g. val_loss")
    return base_cfg, space


def _create(storage, opts: StudyOptions, base: dict[str, Any], space: search_space.Space):
    """A new study with its settings, its grid queued and, last, its base config; None if another worker won."""
    import optuna

    maximize = opts.direction == "maximize"
    direction = optuna.study.StudyDirection.MAXIMIZE if maximize else optuna.study.StudyDirection.MINIMIZE
    try:
        study = optuna.create_study(storage=storage, study_name=opts.study, direction=direction)
    except optuna.exceptions.DuplicatedStudyError:
        return None
    attrs = {
        "metric": opts.metric,
        "space": space.to_dict(),
        "trials": opts.trials,
        "sampler": opts.sampler,
        "pruner": opts.pruner,
        "nproc": opts.nproc,
        "workspace": str(Path(opts.workspace).resolve()),
        "created": time.time(),
    }
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    _queue_grid(study, space, opts)
    storage.set_study_system_attr(storage.get_study_id_from_name(opts.study), BASE_ATTR, base)
    return study


def _queue_grid(study, space: search_space.Space, opts: StudyOptions) -> None:
    """Queue the grid points the target still needs, so workers on any host each pop a different one.

    Popping a queued trial is one atomic update in the storage (Optuna's
    WAITING -> RUNNING), which no two workers win; asking a GridSampler is not,
    and two workers on different hosts would be handed the same point.
    """
    grid = space.grid() if opts.sampler == "grid" else None
    if grid is None or not opts.trials:
        return
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    taken = [t.params or t.system_attrs.get("fixed_params", {}) for t in trials if counts(t, retried) or waits(t)]
    needed = opts.trials - sum(1 for t in trials if counts(t, retried) or waits(t))
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    random.Random(0).shuffle(points)  # a partial grid spreads over the space instead of filling one corner
    study.set_user_attr("grid_queued", True)
    for point in [p for p in points if p not in taken][: max(needed, 0)]:
        study.enqueue_trial(point, user_attrs={"queued": True})


def retried_numbers(trials: list) -> set[int]:
    """Numbers of the trials whose parameters were queued again after a lost worker (Optuna's retry history)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", ())}


def waits(frozen) -> bool:
    return frozen.state.name == "WAITING"


def counts(frozen, retried: set[int]) -> bool:
    """Trials that used up a place: a failed trial whose parameters were queued again is replaced by its copy."""
    if waits(frozen):
        return False
    attrs = frozen.user_attrs
    lost = frozen.state.name == "FAIL" and (attrs.get("requeued") or attrs.get("not_run") or frozen.number in retried)
    return not lost


def _check_resume(
    study, opts: StudyOptions, base_cfg: config_mod.Config, space: search_space.Space, folder: Path, storage
) -> None:
    """A resumed study must optimise the same thing over the same space, or its trials do not compare."""
    attrs = study.user_attrs
    problems = []
    direction = study.direction.name.lower()
    if direction != opts.direction:
        problems.append(f"it {direction}s; pass --direction {direction}")
    if attrs.get("metric") != opts.metric:
        problems.append(f"it optimises {attrs.get('metric')}; pass --metric {attrs.get('metric')}")
    if attrs.get("space") != space.to_dict():
        problems.append(f"its space differs from {opts.space} (stored in {folder / 'space.yaml'})")
    try:
        stored = config_mod.validate(stored_base(storage, study)).model_dump(mode="json")
    except config_mod.ConfigError:
        stored = None
    if stored != base_cfg.model_dump(mode="json"):
        changed = _changed_keys(stored or {}, base_cfg.model_dump(mode="json"))
        problems.append(
            f"its base config differs ({', '.join(changed[:6]) or 'no longer valid'}; stored in {folder / 'base.yaml'})"
        )
    if problems:
        raise UsageError(f"study {opts.study!r} exists and {'; '.join(problems)}; or choose a new --study")


def _sampler(opts: StudyOptions, space: search_space.Space, out: Callable[[str], None]):
    import optuna

    seed = opts.seed
    name = opts.sampler
    if name == "grid":
        # One fixed seed: every worker must shuffle the grid the same way (Optuna's note on distributed grids).
        grid = space.grid()
        if grid is None:  # search_space.parse refuses continuous dimensions for the grid sampler
            raise UsageError("the grid sampler needs every parameter discrete (choices, int, or float with step)")
        return optuna.samplers.GridSampler(grid, seed=0)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        if any(p.kind == "categorical" for p in space.params):
            out("note: CMA-ES samples categorical parameters at random (it handles only numbers)")
        return optuna.samplers.CmaEsSampler(seed=seed)
    # constant_liar: concurrent workers see running trials as bad, so they do not all pick the same point.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def _pruner(opts: StudyOptions, base_cfg: config_mod.Config):
    import optuna

    if opts.pruner == "median":
        return optuna.pruners.MedianPruner()
    if opts.pruner == "hyperband":
        steps = base_cfg.run.max_steps
        return optuna.pruners.HyperbandPruner(min_resource=min(base_cfg.run.eval_interval, steps), max_resource=steps)
    return optuna.pruners.NopPruner()


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


def looks_reversed(metric: str, direction: str) -> bool:
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
