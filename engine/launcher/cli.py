"""Podium's headless command line (``podium SUBCOMMAND``; the app is engine/launcher/entry.py's).

Exit codes: 0 success, 2 bad input (config, file, argument: the message names
it), 1 a failure while running. Subcommands that only read run directories
(``control``, ``config``, ``checkpoints list/verify``) never import torch.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from engine.contract import config as config_mod
from engine.contract.commands import COMMANDS, send_command
from engine.contract.errors import CommandError
from engine.contract.manifest import CheckpointInvalid
from engine.launcher import runs_listing, slurm, slurm_cli, stop_cli, torchrun_flags
from engine.launcher.launch import UsageError
from engine.launcher.shared_dir import DEFAULT_TIMEOUT_S
from engine.studies import hpo_cli, scaling

USAGE_ERRORS = (config_mod.ConfigError, UsageError, CommandError, CheckpointInvalid)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podium",
        description="Train, watch and steer music transformers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="desktop app (no subcommand; see docs/gui.md):\n"
        "  podium                              open the app on the last workspace (else ./runs)\n"
        "  podium --workspace DIR              list the runs of another folder\n"
        "  podium --workspace ssh://[user@]host[:port]/DIR   list (and open, steer) a server's runs over SSH\n"
        "  podium --open RUN_DIR [--open RUN_DIR ...]\n"
        "                                      open a run (live or finished); more are overlaid\n"
        "  podium --open RUN_DIR --screenshot FILE.png [--theme light|dark] [--size WxH] [--dock NAME]\n"
        "                                      render offscreen, save a PNG and exit\n"
        "  (python -m engine, and python main.py in a checkout, take the same options)",
    )
    parser.add_argument("--version", action="version", version=f"podium {_installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train a model under torchrun, showing progress")
    run.add_argument("-c", "--config", type=Path, help="YAML config (default: resources/default.yaml)")
    run.add_argument("-r", "--run-dir", type=Path, help="run directory (default: runs/<time stamp>)")
    run.add_argument("--nproc", type=int, default=1, help="processes on this node (GPUs, or CPU ranks)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set optim.lr=3e-4 (repeatable)",
    )
    run.add_argument(
        "--resume", action="store_true", help="continue the run in --run-dir from its newest valid checkpoint"
    )
    run.add_argument(
        "--from-checkpoint",
        type=Path,
        metavar="CKPT",
        help="start a new run from another run's checkpoint (a fork; its config unless -c/--set change it)",
    )
    run.add_argument(
        "--max-restarts", type=int, help="torchrun restarts after a worker failure (default: run.max_restarts)"
    )
    run.add_argument("--no-progress", action="store_true", help="plain progress lines even on a terminal")
    run.add_argument(
        "--group-readable",
        action="store_true",
        help="let the run directory's group read (not write) its files; by default they are yours alone",
    )
    run.add_argument("--name", default="", help="a display name for the run (kept in its notes.json)")
    run.add_argument("--tag", dest="tags", action="append", default=[], help="a tag for the run (repeatable)")
    run.add_argument("--note", default="", help="a free-text note about the run")
    dist = run.add_argument_group("multi-node (passed through to torchrun)")
    dist.add_argument("--nnodes", type=int, default=1)
    dist.add_argument("--node-rank", type=int, default=0)
    dist.add_argument("--master-addr")
    dist.add_argument("--master-port", type=int)
    dist.add_argument("--rdzv-backend")
    dist.add_argument("--rdzv-endpoint")
    dist.add_argument("--rdzv-id")
    dist.add_argument(
        "--shared-dir-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help="seconds each node waits to see the others through the run directory before it stops (default 300)",
    )
    torchrun_flags.add_arguments(dist)
    run.add_argument(
        "--sigterm",
        choices=("terminate", "stop"),
        default="terminate",
        help="what SIGTERM does: terminate the run (default), or stop it after this step with a checkpoint "
        "(a batch system's notice; --slurm scripts use it)",
    )
    slurm.add_arguments(run)

    sample = sub.add_parser("sample", help="generate a MIDI file from a checkpoint")
    sample.add_argument("checkpoint", type=Path)
    sample.add_argument("--out", type=Path, required=True)
    sample.add_argument("--tokens", type=int, help="tokens to generate (default: the run's sample.max_tokens)")
    sample.add_argument("--temperature", type=float)
    sample.add_argument("--top-k", type=int)
    sample.add_argument("--top-p", type=float, help="nucleus sampling, in (0, 1] (default: the run's sample.top_p)")
    sample.add_argument("--seed", type=int, default=0)

    control = sub.add_parser("control", help="send a command to a running run")
    control.add_argument("run_dir", type=Path)
    control.add_argument("cmd", choices=sorted(COMMANDS))
    control.add_argument("--lr", type=float, help="new peak learning rate, for set_lr")
    control.add_argument("--steps", type=int, default=20, help="steps to record, for profile")
    control.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the acknowledgement")

    cfg = sub.add_parser("config", help="show defaults or validate a config file")
    group = cfg.add_mutually_exclusive_group(required=True)
    group.add_argument("--print-defaults", action="store_true")
    group.add_argument("--validate", type=Path, metavar="FILE")

    ckpt = sub.add_parser("checkpoints", help="list, verify or average checkpoints")
    ckpt_sub = ckpt.add_subparsers(dest="action", required=True)
    ckpt_list = ckpt_sub.add_parser(
        "list", help="a table of a run's checkpoints (reads manifests and hashes, not torch)"
    )
    ckpt_list.add_argument("run_dir", type=Path)
    ckpt_list.add_argument(
        "--fast", action="store_true", help="check file sizes only, not sha256 (for large checkpoints)"
    )
    ckpt_list.add_argument(
        "--json",
        action="store_true",
        help="one JSON list for a program (the app's browser on a remote workspace), averages/ included",
    )
    ckpt_verify = ckpt_sub.add_parser(
        "verify", help="check every file against its manifest; exit 1 naming each bad file"
    )
    ckpt_verify.add_argument("path", type=Path, help="a checkpoint folder or a run directory")
    ckpt_avg = ckpt_sub.add_parser("average", help="average checkpoints' weights into a new weights-only checkpoint")
    ckpt_avg.add_argument("checkpoints", type=Path, nargs="+", metavar="CKPT")
    ckpt_avg.add_argument("--out", type=Path, required=True, help="the new checkpoint folder (must not exist)")
    ckpt_avg.add_argument(
        "--method",
        choices=("uniform", "greedy"),
        default="uniform",
        help="uniform mean, or greedy soup: add checkpoints best-first while validation loss does not get worse",
    )
    ckpt_avg.add_argument(
        "--dtype", choices=("fp32", "fp16", "bf16"), default="fp32", help="precision of the saved weights"
    )
    ckpt_avg.add_argument("--device", default="cpu", help="where to compute validation losses (cpu, cuda)")
    ckpt_avg.add_argument(
        "--max-batches", type=int, help="validation batches of 16 windows (default: the run's setting)"
    )
    ckpt_avg.add_argument(
        "--progress",
        choices=("text", "json"),
        default="text",
        help="each stage as a line on stderr (text), or as a JSON line on stdout for a program "
        "such as the GUI to read (json; see engine/contract/progress.py)",
    )

    prep = sub.add_parser("prepare-data", help="prepare and cache the tokenised data set of a config")
    prep.add_argument("-c", "--config", type=Path)
    prep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    hpo_cli.add_parser(sub)
    scaling.add_parser(sub)
    runs_listing.add_parser(sub)
    stop_cli.add_parser(sub)
    slurm_cli.add_parser(sub)
    return parser


def _installed_version() -> str:
    try:
        return version("podium")
    except PackageNotFoundError:  # a checkout on PYTHONPATH that was never pip-installed
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return HANDLERS[args.command](args)
    except USAGE_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_run(args) -> int:
    from engine.launcher.launch import LaunchOptions, launch

    run_dir = args.run_dir or Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")
    if args.nproc < 1:
        raise UsageError(f"--nproc: {args.nproc} is not valid; use 1 or more processes")
    if args.max_restarts is not None and args.max_restarts < 0:
        raise UsageError(f"--max-restarts: {args.max_restarts} is not valid; use 0 or more")
    _write_notes(args, run_dir)
    opts = LaunchOptions(
        run_dir=run_dir,
        config=args.config,
        overrides=args.overrides,
        nproc=args.nproc,
        nnodes=args.nnodes,
        node_rank=args.node_rank,
        master_addr=args.master_addr,
        master_port=args.master_port,
        rdzv_backend=args.rdzv_backend,
        rdzv_endpoint=args.rdzv_endpoint,
        rdzv_id=args.rdzv_id,
        max_restarts=args.max_restarts,
        torchrun_args=torchrun_flags.passthrough(args),
        shared_dir_timeout=args.shared_dir_timeout,
        sigterm_stops=args.sigterm == "stop",
        resume=args.resume,
        from_checkpoint=args.from_checkpoint,
        progress=False if args.no_progress else None,
        group_readable=args.group_readable,
    )
    if args.slurm:
        from engine.contract.rundir import RunDir
        from engine.launcher.launch import resolve_config

        extra = torchrun_flags.passthrough(args)
        extra += [] if args.max_restarts is None else ["--max-restarts", str(args.max_restarts)]
        cfg = resolve_config(opts, RunDir(run_dir))
        return slurm.submit(run_dir, cfg, slurm.options(args), args.nproc, extra)
    return launch(opts)


def _write_notes(args, run_dir: Path) -> None:
    """--name/--tag/--note into the run's notes.json, unless the folder holds another run (launch refuses it)."""
    from engine.contract.notes import NotesError, make_notes, read_notes, write_notes
    from engine.contract.rundir import RunDir

    if not (args.name or args.tags or args.note):
        return
    try:
        notes = make_notes(args.name, args.tags, args.note)
    except NotesError as exc:
        raise UsageError(f"--name/--tag/--note: {exc}") from None
    events = RunDir(run_dir).events
    if events.exists() and events.stat().st_size > 0 and not args.resume:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        old = read_notes(run_dir)
    except NotesError:
        old = None  # a bad file is replaced by what was asked for now
    if old is not None and args.resume:  # resuming adds to what the run already says
        notes = make_notes(args.name or old.name, [*old.tags, *args.tags], args.note or old.note)
    write_notes(run_dir, notes)


def cmd_sample(args) -> int:
    from engine.music.sample import data_facts, generate, load_model

    if not args.checkpoint.is_dir():
        raise UsageError(f"{args.checkpoint}: not a checkpoint folder (expected runs/NAME/checkpoints/step-NNNNNNN)")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p: {args.top_p} is not valid; use a probability above 0 and at most 1, e.g. 0.9")
    model, tokenizer, manifest = load_model(args.checkpoint)
    cfg = config_mod.validate(manifest["config"]).sample
    facts = data_facts(args.checkpoint, manifest)
    if facts is None:
        print(f"{args.checkpoint}: saved without its data's tempo and voice names; writing 120 bpm, instrument names")
    piece = generate(
        model,
        tokenizer,
        args.out,
        max_tokens=args.tokens or cfg.max_tokens,
        temperature=args.temperature or cfg.temperature,
        top_k=cfg.top_k if args.top_k is None else args.top_k,
        top_p=cfg.top_p if args.top_p is None else args.top_p,
        seed=args.seed,
        constrained=cfg.constrained,
        facts=facts,
    )
    _write_metrics(Path(piece.path))
    span = f"pitches {piece.pitch_low}-{piece.pitch_high}" if piece.notes else "no notes"
    print(
        f"wrote {piece.path}: {piece.tokens} tokens, {piece.notes} notes in {piece.tracks} track(s), "
        f"{span}, {piece.seconds:.1f} s"
    )
    return 0


def _write_metrics(midi: Path) -> None:
    import symusic

    from engine.contract.rundir import sample_metrics_path
    from engine.music import metrics as mm

    score = symusic.Score(str(midi))
    measured = mm.compute_all(mm.notes_from_score(score), 8, mm.score_beats_per_bar(score))
    sample_metrics_path(midi).write_text(json.dumps({k: v if math.isfinite(v) else None for k, v in measured.items()}))


def cmd_control(args) -> int:
    from engine.contract.events import RUN_END_REASONS, EventReader
    from engine.contract.rundir import RunDir, derive_state

    run = RunDir(args.run_dir)
    if not run.exists():
        raise UsageError(f"{args.run_dir}: not a run directory (no config.yaml or events.jsonl)")
    extra = {}
    if args.cmd == "set_lr":
        if args.lr is None:
            raise UsageError("set_lr needs --lr, e.g. --lr 3e-4")
        extra["lr"] = args.lr
    if args.cmd == "profile":
        extra["steps"] = args.steps
    reader = EventReader(run.events)
    # What was written so far tells whether anyone will read the command; acknowledgements from now on only.
    state = derive_state(reader.read_new(), run.launcher_alive())
    if state in RUN_END_REASONS:
        raise UsageError(f"{run.root}: the run has ended ({state}); nothing sent (a command is for a running run)")
    command_id = send_command(run.root, args.cmd, **extra)
    print(f"sent {args.cmd} (id {command_id})")
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        for event in reader.read_new():
            if event["type"] == "control_ack" and event.get("id") == command_id:
                print(
                    f"{event['outcome']} at step {event['step']}{': ' + event['reason'] if event.get('reason') else ''}"
                )
                return 0 if event["outcome"] == "done" else 1
        time.sleep(0.1)
    if args.wait:
        print(f"no acknowledgement within {args.wait:g} s (is the run alive?)", file=sys.stderr)
        return 1
    return 0


def cmd_config(args) -> int:
    if args.print_defaults:
        print(config_mod.defaults_yaml(), end="")
        return 0
    cfg = config_mod.load(args.validate)
    print(
        f"{args.validate}: valid ({cfg.run.max_steps} steps, "
        f"model d={cfg.model.d_model} x {cfg.model.n_layers} layers, data {cfg.data.source})"
    )
    return 0


def cmd_checkpoints(args) -> int:
    from engine.contract.manifest import checkpoint_rows, checkpoint_table, verify_tree

    if args.action == "list" and args.json:
        rows = [
            {**row, "folder": folder}
            for folder in ("checkpoints", "averages")
            for row in checkpoint_rows(args.run_dir / folder, hashes=not args.fast)
        ]
        print(json.dumps(rows, default=str))
        return 0
    if args.action == "list":
        print(checkpoint_table(args.run_dir, hashes=not args.fast))
        return 0
    if args.action == "average":
        return _average(args)
    bad = verify_tree(args.path)
    return 1 if bad else 0


def _average(args) -> int:
    from engine.checkpoints.average import average_checkpoints, report
    from engine.music import data

    for path in args.checkpoints:
        if not path.is_dir():
            raise UsageError(f"{path}: not a checkpoint folder (expected runs/NAME/checkpoints/step-NNNNNNN)")
    if args.progress == "json":

        def progress(p):
            print(p.line(), flush=True)
    else:  # on stderr, so stdout stays the report alone for a script that reads it

        def progress(p):
            print(p.text(), file=sys.stderr, flush=True)

    try:
        manifest = average_checkpoints(
            args.checkpoints, args.out, args.method, args.dtype, args.device, args.max_batches, progress
        )
    except data.DataError as exc:  # the first input's config names validation data this machine lacks
        raise UsageError(f"{args.checkpoints[0]}: its config's validation data: {exc}") from None
    print(report(manifest, args.out))
    return 0


def cmd_prepare(args) -> int:
    from engine.music import data

    cfg = config_mod.load(args.config, args.overrides)
    started = time.perf_counter()
    try:
        corpus = data.prepare(cfg, lambda stage, done, total: print(f"\r{stage}: {done}/{total}", end="", flush=True))
    except data.DataError as exc:
        raise UsageError(str(exc)) from None
    print(
        f"\n{len(corpus.names)} pieces, {len(corpus.tokens)} tokens, vocabulary {corpus.meta['vocab_size']}, "
        f"{len(corpus.meta['skipped'])} skipped; cache {'hit' if corpus.meta['cache_hit'] else 'written'} at "
        f"{corpus.directory} ({time.perf_counter() - started:.2f} s)"
    )
    for skip in corpus.meta["skipped"]:
        print(f"  skipped {skip['file']}: {skip['reason']}")
    return 0


HANDLERS = {
    "run": cmd_run,
    "sample": cmd_sample,
    "control": cmd_control,
    "config": cmd_config,
    "checkpoints": cmd_checkpoints,
    "prepare-data": cmd_prepare,
    "hpo": hpo_cli.cmd_hpo,
    "scaling": scaling.cmd_scaling,
    "runs": runs_listing.cmd_runs,
    "stop": stop_cli.cmd_stop,
    "slurm": slurm_cli.cmd_slurm,
}
