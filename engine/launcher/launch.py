"""``podium run``: validate, prepare data, start torchrun, follow the run headless.

The launcher is the only process that starts training, whoever asked (a
terminal, the GUI through QProcess, an HPO worker), so every run is the same
thing in its run directory. It owns the torchrun child in its own session:
the first Ctrl-C asks the run to stop gracefully through ``control.jsonl``, a
second terminates it, a third kills it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.contract import config as config_mod
from engine.contract.commandline import UsageError
from engine.contract.commands import send_command
from engine.contract.events import EventReader, EventWriter, Record, read_events
from engine.contract.manifest import CheckpointInvalid, verify_checkpoint
from engine.contract.progress import event_line
from engine.contract.rundir import RunDir
from engine.launcher.shared_dir import DEFAULT_TIMEOUT_S, STALE_S, check_nodes_share, keep_fresh

PLAIN_LINE_SECONDS = 10.0
# engine.log's line prefixes: torchrun's for each rank (``--role=rank --tee=3``), and the launcher's own.
LAUNCHER_PREFIX = "[launcher]:"
OK_REASONS = {"finished", "stopped", "early_stopped", "pruned"}


@dataclass
class LaunchOptions:
    run_dir: Path
    config: Path | None = None
    overrides: list[str] = field(default_factory=list)
    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None
    rdzv_backend: str | None = None
    rdzv_endpoint: str | None = None
    rdzv_id: str | None = None
    max_restarts: int | None = None  # None: run.max_restarts from the config
    torchrun_args: list[str] = field(default_factory=list)  # passed through as given (torchrun_flags.PASSED)
    shared_dir_timeout: float = DEFAULT_TIMEOUT_S  # seconds the nodes wait to see each other in the run dir
    sigterm_stops: bool = False  # SIGTERM asks for a graceful stop with a checkpoint (a batch system's notice)
    resume: bool = False
    from_checkpoint: Path | None = None  # fork: start from another run's checkpoint
    progress: bool | None = None  # None: a bar on a terminal, plain lines otherwise
    group_readable: bool = False  # the run's files are the owner's alone unless asked


def resolve_config(opts: LaunchOptions, run: RunDir) -> config_mod.Config:
    if opts.resume and opts.config is None and run.config.exists():
        return config_mod.load(run.config, opts.overrides)
    if opts.from_checkpoint and opts.config is None:
        # A fork keeps the source run's config unless told otherwise (-c, --set).
        manifest = _fork_source(opts.from_checkpoint)
        source = str(opts.from_checkpoint / "manifest.json")
        return config_mod.validate(config_mod.apply_overrides(manifest.get("config") or {}, opts.overrides), source)
    return config_mod.load(opts.config, opts.overrides)


def prepare_run_dir(opts: LaunchOptions, run: RunDir, cfg: config_mod.Config) -> None:
    run.root.mkdir(parents=True, exist_ok=True)  # every node writes its own engine log here
    if opts.node_rank != 0:
        return  # rank 0's node owns the run directory's files
    has_events = run.events.exists() and run.events.stat().st_size > 0
    if has_events and not opts.resume:
        raise UsageError(f"{run.root}: already holds a run; pass --resume to continue it, or choose a new --run-dir")
    launcher = run.launcher_process() if opts.resume else None
    if launcher is not None:  # two launchers would train into, and checkpoint over, the same folder
        raise UsageError(
            f"{run.root}: its launcher (pid {launcher.pid}) is still running; stop it (podium stop) before resuming"
        )
    run.config.write_text(config_mod.dump(cfg))
    run.control.touch()


def torchrun_command(opts: LaunchOptions, run: RunDir) -> list[str]:
    single_node = opts.nnodes == 1 and not (opts.rdzv_endpoint or opts.master_addr)
    cmd = [
        sys.executable,
        "-m",
        # One node talks only to itself: torchrun with its stores on loopback (see loopback_run).
        "engine.launcher.loopback_run" if single_node else "torch.distributed.run",
        f"--nproc-per-node={opts.nproc}",
        f"--max-restarts={opts.max_restarts}",
        # Every rank's output, each line prefixed "[rankN]:", so one log tells the ranks apart.
        "--role=rank",
        "--tee=3",
    ]
    if single_node:
        # A free port per run, so several runs (and tests) coexist on one host.
        cmd.append("--standalone")
    else:
        cmd += [f"--nnodes={opts.nnodes}", f"--node-rank={opts.node_rank}"]
        for flag, value in (
            ("--master-addr", opts.master_addr),
            ("--master-port", opts.master_port),
            ("--rdzv-backend", opts.rdzv_backend),
            ("--rdzv-endpoint", opts.rdzv_endpoint),
            ("--rdzv-id", opts.rdzv_id),
        ):
            if value is not None:
                cmd.append(f"{flag}={value}")
    cmd += opts.torchrun_args
    cmd += ["-m", "engine.training.train", "--run-dir", str(run.root)]
    if opts.resume:
        cmd.append("--resume")
    if opts.from_checkpoint:
        cmd += ["--from-checkpoint", str(opts.from_checkpoint.resolve())]
    if opts.sigterm_stops:
        # A batch system's SIGTERM reaches the workers too, and must not pass for torchrun's restart.
        cmd.append("--sigterm-stops")
    return cmd


def _fork_source(path: Path) -> dict:
    """The manifest of a checkpoint to fork from, checked before any process starts (sizes here, hashes in ranks)."""
    try:
        return verify_checkpoint(path, hashes=False)
    except CheckpointInvalid as exc:
        raise UsageError(f"--from-checkpoint: {exc}") from None


def log_line(run: RunDir, text: str) -> None:
    """A launcher line into engine.log too: whoever opens the run sees it, not only what started it."""
    try:
        with open(run.engine_log, "a", encoding="utf-8") as log:
            log.writelines(f"{LAUNCHER_PREFIX} {line}\n" for line in text.splitlines())
    except OSError:
        pass  # the terminal still has the line; a log that cannot be written must not stop the run


def say(run: RunDir, text: str, error: bool = False) -> None:
    print(text, file=sys.stderr if error else sys.stdout, flush=True)
    log_line(run, text)


class Follower:
    """Shows a run's progress from its events: a bar on a terminal, plain lines elsewhere (and in engine.log)."""

    def __init__(self, run: RunDir, total: int, bar: bool, start_offset: int):
        self.run = run
        self.reader = EventReader(run.events, offset=start_offset)
        self.total, self.bar_enabled = total, bar
        self.bar = None
        self.last_line = 0.0
        self.val_loss: float | None = None
        self.end: Record | None = None

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
            log_line(self.run, text)
        else:
            say(self.run, text)

    def poll(self) -> None:
        for event in self.reader.read_new():
            kind = event["type"]
            if kind == "run_start" and self.bar_enabled and self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=self.total, initial=event["step"], unit="step", dynamic_ncols=True)
            elif kind == "metrics":
                self._metrics(event)
            elif kind == "eval":
                self.val_loss = event.get("val_loss")
                self._write(f"step {event['step']}: validation loss {self.val_loss:.4f}")
            elif kind == "status" and "progress" in event:
                continue  # data-preparation progress has its own bar
            elif kind in ("status", "error"):
                self._write(f"[{event.get('state', kind)}] {event.get('message', '')}")
            elif kind == "control_ack":
                self._write(f"command {event.get('cmd')} {event.get('outcome')} {event.get('reason') or ''}".rstrip())
            elif kind == "checkpoint":
                self._write(f"checkpoint saved: {event.get('path')}")
            elif (line := event_line(event)) is not None:  # an anomaly, recovery or profile
                self._write(line)
            elif kind == "restart":
                self._write(
                    f"[restart {event.get('attempt')}] resumed from step {event.get('resumed_from')}, "
                    f"{event.get('steps_lost')} step(s) lost"
                )
            elif kind == "run_end":
                self.end = event

    def _metrics(self, event: Record) -> None:
        if self.bar is not None:
            self.bar.n = event["step"]
            post = {"loss": f"{event['loss']:.3f}", "tok/s": f"{event['tokens_per_s']:.0f}"}
            if self.val_loss is not None:
                post["val"] = f"{self.val_loss:.3f}"
            self.bar.set_postfix(post, refresh=True)
        if time.monotonic() - self.last_line >= PLAIN_LINE_SECONDS or event["step"] >= self.total:
            self.last_line = time.monotonic()
            remaining = (self.total - event["step"]) * event["step_time"]
            line = (
                f"step {event['step']}/{self.total}  loss {event['loss']:.4f}  "
                f"tokens/s {event['tokens_per_s']:.0f}  ETA {remaining / 60:.1f} min"
            )
            log_line(self.run, line) if self.bar is not None else say(self.run, line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _data_progress(events: EventWriter | None, bar_enabled: bool):
    """Progress callback for data preparation: a status event at most twice a second, and a bar."""
    last_event = 0.0
    bar: Any = None  # a tqdm bar (tqdm has no type information)
    bar_stage: str | None = None

    def report(stage: str, done: int, total: int) -> None:
        nonlocal last_event, bar, bar_stage
        now = time.monotonic()
        if bar_enabled:
            from tqdm import tqdm

            if bar_stage != stage:
                if bar is not None:
                    bar.close()
                bar, bar_stage = tqdm(total=total, desc=stage, unit="piece"), stage
            bar.n = done
            bar.refresh()
        if events is not None and (now - last_event > 0.5 or done == total):
            last_event = now
            events.emit("status", 0, state="preparing", message=stage, progress=done, total=total)

    def close() -> None:
        if bar is not None:
            bar.close()

    return report, close


def launch(opts: LaunchOptions) -> int:
    """Run training to its end; returns the process exit code (0 ok, 1 failed)."""
    # Whoever can write a run's files can steer it (control.jsonl) or replace its checkpoints: everything
    # this launcher and its ranks create is the owner's alone, or readable by the group when asked.
    os.umask(0o027 if opts.group_readable else 0o077)
    run = RunDir(opts.run_dir.resolve())
    if opts.resume and opts.from_checkpoint:
        raise UsageError(
            "--resume continues this run's own checkpoints; --from-checkpoint starts a new run from "
            "another's: use one of them"
        )
    if opts.from_checkpoint:
        _fork_source(opts.from_checkpoint)
    cfg = resolve_config(opts, run)
    opts = replace(opts, max_restarts=cfg.run.max_restarts if opts.max_restarts is None else opts.max_restarts)
    world = opts.nproc * opts.nnodes
    cfg.check_world_size(world)
    prepare_run_dir(opts, run, cfg)
    bar = sys.stdout.isatty() if opts.progress is None else opts.progress
    is_main_node = opts.node_rank == 0
    events = EventWriter(run.events) if is_main_node else None
    start_offset = run.events.stat().st_size if run.events.exists() else 0
    if events is not None:  # the main node's launcher
        run.write_launcher(os.getpid())
    check_nodes_share(run.root, opts.node_rank, opts.nnodes, opts.shared_dir_timeout, events)
    if events is not None:
        events.emit("status", 0, state="preparing", message="preparing data")
    from engine.music import data  # music libraries load only when a run really starts

    report, close_progress = _data_progress(events, bar)
    try:
        corpus = data.prepare(cfg, report)
    except data.DataError as exc:
        if events:
            events.emit("error", 0, message=str(exc), where="data", fatal=True)
            events.emit("run_end", 0, reason="failed", message=str(exc))
        raise UsageError(str(exc)) from None
    finally:
        close_progress()
    if events:
        train_ids, val_ids = data.split_pieces(corpus.names, cfg.data.val_fraction, cfg.data.split_seed)
        events.emit(
            "data",
            0,
            source=cfg.data.source,
            pieces_train=len(train_ids),
            pieces_val=len(val_ids),
            tokens_train=int(sum(len(corpus.piece(i)) for i in train_ids)),
            tokens_val=int(sum(len(corpus.piece(i)) for i in val_ids)),
            vocab_size=corpus.meta["vocab_size"],
            skipped=corpus.meta["skipped"],
            cache_hit=corpus.meta["cache_hit"],
            cache=str(corpus.directory),
            seconds=corpus.meta["prepare_seconds"],
        )
        if corpus.meta["skipped"]:
            say(
                run,
                f"skipped {len(corpus.meta['skipped'])} file(s): "
                + "; ".join(f"{s['file']} ({s['reason']})" for s in corpus.meta["skipped"][:5]),
            )
        events.emit("status", 0, state="starting", message=f"starting {world} process(es)")

    log_path = run.node_log(opts.node_rank)
    threads = cfg.run.threads_per_rank or max(1, (os.cpu_count() or 1) // opts.nproc)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if opts.max_restarts:
        # torchrun's rendezvous store, shared with the workers by default, keeps the previous
        # attempt's keys: a restarted group then reads a dead rank's address and cannot connect
        # (pytorch/pytorch#135712). A store per attempt avoids it.
        env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            torchrun_command(opts, run),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_stop_with_parent,
        )
    follower = Follower(run, cfg.run.max_steps, bar, start_offset) if is_main_node else None
    interrupts = _InterruptHandler(run, proc, is_main_node, opts.sigterm_stops)
    renew_at = 0.0
    try:
        while proc.poll() is None:
            if follower:
                follower.poll()
            if is_main_node and opts.nnodes > 1 and time.monotonic() >= renew_at:
                keep_fresh(run.root)
                renew_at = time.monotonic() + STALE_S / 4
            time.sleep(0.2)
    finally:
        interrupts.restore()
    if follower:
        follower.poll()
        follower.close()
    if events is None:  # not the main node: rank 0's node reports the run
        return 0 if proc.returncode == 0 else 1
    return _finish(run, proc.returncode, follower.end if follower else None, log_path, events)


def _finish(run: RunDir, returncode: int, end: Record | None, log_path: Path, events: EventWriter) -> int:
    if end is None:
        tail = _tail(log_path, 20)
        message = f"the engine exited with code {returncode} without ending the run"
        events.emit("error", 0, message=message, where="launcher", fatal=True, log_tail=tail)
        events.emit("run_end", _last_step(run), reason="failed", message=message)
        say(run, f"run failed: {message}", error=True)
        print(f"last lines of {log_path}:\n{tail}", file=sys.stderr)
        return 1
    reason = end.get("reason")
    if reason in OK_REASONS:
        say(run, f"run {reason} at step {end['step']}: {run.root}")
        return 0
    tail = _tail(log_path, 20)
    say(run, f"run failed: {end.get('message')}", error=True)
    print(f"last lines of {log_path}:\n{tail}", file=sys.stderr)
    return 1


def _last_step(run: RunDir) -> int:
    events, _ = read_events(run.events)
    return max((int(e["step"]) for e in events), default=0)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop_with_parent() -> None:
    """In the torchrun child: get SIGINT (a graceful stop) if the launcher dies without stopping it.

    torchrun runs in its own session so a terminal's Ctrl-C reaches only the
    launcher; without this, a killed launcher would leave training orphaned.
    SIGINT, not SIGTERM: torchrun forwards it to the workers as it is, and the
    workers read SIGTERM as torchrun restarting the group (``handle_signals``).
    """
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)  # 1 = PR_SET_PDEATHSIG


class _InterruptHandler:
    """Ctrl-C / SIGTERM escalation: stop command, then SIGINT to torchrun (a stop the workers agree on
    even without the command, on every node), then SIGKILL."""

    def __init__(self, run: RunDir, proc: subprocess.Popen, can_command: bool, term_stops: bool = False):
        self.run, self.proc, self.can_command, self.count = run, proc, can_command, 0
        self.term_stops = term_stops
        self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum: int, _frame) -> None:
        self.count += 1
        if signum == signal.SIGTERM and self.term_stops and self.count == 1:
            if self.can_command:
                send_command(self.run.root, "stop")
                print("SIGTERM: stopping after this step with a checkpoint", file=sys.stderr, flush=True)
            return  # on the other nodes the run stops with node 0's command
        if signum == signal.SIGTERM:
            self.count = max(self.count, 2)  # a terminate request skips the polite stage
        if self.count == 1 and self.can_command:
            send_command(self.run.root, "stop")
            print(file=sys.stderr)  # past the progress bar's line
            say(self.run, "stopping after this step (final checkpoint follows); Ctrl-C again to terminate", error=True)
        elif self.count <= 2:
            self._signal(signal.SIGINT)
        else:
            self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return  # already gone: nothing left to stop

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
