"""``podium hpo``: run a worker of a study, show a study, stop its workers.

    podium hpo -c BASE.yaml --space SPACE.yaml --trials 20 --study lr-sweep
    podium hpo show --study lr-sweep
    podium hpo stop --study lr-sweep

Optuna is imported inside functions: ``engine.launcher.cli`` imports this
module to build its parser and must stay light.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.contract.commandline import UsageError
from engine.contract.studies import (
    DIRECTIONS,
    PRUNERS,
    SAMPLERS,
    check_study_name,
    json_safe,
    request_stop,
    snapshot,
    study_dir,
)
from engine.studies.hpo import Controller
from engine.studies.reporting import summary_text
from engine.studies.storage import Heartbeat, is_url, load_study, open_storage, redact
from engine.studies.study_setup import StudyOptions


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
    hpo.add_argument(
        "--worker",
        action="store_true",
        help="join a running study (its settings come from the storage); never create one",
    )
    beat = hpo.add_argument_group(
        "workers on a database (--storage postgresql://...)",
        "A worker records a heartbeat for its running trial; a trial without one for the grace period "
        "(its worker was killed or cut off) is failed by another worker and its parameters queued again.",
    )
    beat.add_argument("--heartbeat", type=int, default=30, metavar="S", help="seconds between heartbeats (30)")
    beat.add_argument("--grace", type=int, metavar="S", help="seconds without one before failing (2 x heartbeat)")
    beat.add_argument("--retries", type=int, default=1, metavar="N", help="runs again of a lost trial (1; 0: none)")
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
        worker=args.worker,
        heartbeat=_heartbeat(args),
    )
    return Controller(opts).run()


def _heartbeat(args) -> Heartbeat | None:
    """The heartbeat settings for a database; None for a journal file, where only the defaults may be given."""
    given = Heartbeat(args.heartbeat, args.grace, args.retries)
    if is_url(args.storage):
        return given
    return None if given == Heartbeat() else given  # open_storage refuses settings a journal cannot honour


def _cmd_show(args) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.storage, args.workspace, args.study, create=False)
    study = load_study(storage, args.study)
    if study is None:
        where = redact(args.storage) if args.storage else study_dir(args.workspace, args.study)
        raise UsageError(f"no study {args.study!r} in {where}")
    snap = snapshot(study, importances=args.importances)
    if args.json:
        print(json.dumps(json_safe(snap), allow_nan=False))
    else:
        print(summary_text(snap, limit=args.last))
    return 0
