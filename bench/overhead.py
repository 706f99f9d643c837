"""Podium's engine against a bare PyTorch loop in the same process: what do monitoring and the engine's
machinery cost? The target: with every monitor on, the engine's throughput is at least 0.99 of the bare loop's.

    python bench/overhead.py [--device auto|cpu|cuda] [--seconds S] [--warmup-s W] [--interleave step|block]
                             [--aa N] [--no-sinks] [--only-aa] [--json FILE] [--set key=value ...]

One process, world size 1 (no torchrun, no process group), holds every arm, all built from the same config:
the bare loop (the baseline), A/A copies of it (the control: their ratio must hold 1.0), the engine's Trainer
with every monitor on, and the same with the TensorBoard sink. The arms take turns every step; a cycle is one
log interval of every arm. Every step is timed; a ratio is the bare loop's time per step over the arm's, with
a bootstrap 95% CI over cycles. MET only when the CI's lower bound is >= 0.99 and the A/A control is sane.
One log interval of every arm is audited first: PyTorch operators per step, and anything in the steps before
the log step that would make the host wait for the device.

The method, how to read each figure, and the figures found so far: docs/bench.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import describe  # noqa: E402

# The bench's model: the default architecture on shorter windows, so a step is short and any per-step overhead
# shows. Evaluations and checkpoints fall outside the measured steps.
BENCH_OVERRIDES = [
    "data.seq_len=128",
    "batch.global_batch_size=16",
    "batch.micro_batch_size=16",
    "run.eval_interval=1000000",
    "run.eval_max_batches=1",
    "checkpoint.interval=0",
    "music.num_samples=1",
    "music.sample_tokens=16",
]
ENDLESS = 1_000_000  # max_steps: the bench decides when to stop
BOOTSTRAP = 2000
TARGET = 0.99
BARE, ON = "bare", "engine, every monitor on"


class BareLoop:
    """A minimal user's loop: set the LR, draw the batch, forward, backward, clip, step; read the loss every log
    interval (on CUDA the sync). No events, no control, no metrics collectives, no monitors. The same model,
    data order, precision and optimizer (fused AdamW on CUDA) as the engine's."""

    def __init__(self, cfg, device, corpus=None, weights: dict | None = None):
        import torch

        from engine.music import data as D
        from engine.training import precision
        from engine.training.model import MusicTransformer, param_groups
        from engine.training.schedules import Schedule

        corpus = corpus if corpus is not None else D.prepare(cfg)
        train, _ = D.split_pieces(corpus.names, cfg.data.val_fraction, cfg.data.split_seed)
        self.windows = D.WindowSet(
            corpus, train, cfg.data.seq_len, cfg.data.transpose, (cfg.tokenizer.pitch_low, cfg.tokenizer.pitch_high)
        )
        self.windows.set_tokenizer(corpus.tokenizer())
        self.sampler = D.RankSampler(len(self.windows), 0, 1, cfg.run.seed)
        self.model = MusicTransformer(cfg.model, corpus.meta["vocab_size"], cfg.data.seq_len).to(device)
        if weights is not None:
            self.model.load_state_dict(weights)
        self.opt = torch.optim.AdamW(
            param_groups(self.model, cfg.optim.weight_decay),
            lr=cfg.optim.lr,
            betas=(cfg.optim.beta1, cfg.optim.beta2),
            fused=device.type == "cuda",
        )
        self.schedule = Schedule(cfg.optim, cfg.run.max_steps)
        self.prec, _ = precision.choose(cfg.run.precision, device)
        self.cfg, self.device, self.pad = cfg, device, corpus.meta["pad_id"]
        self.log_every, self.cuda = cfg.run.log_interval, device.type == "cuda"
        self.micro = cfg.batch.global_batch_size if cfg.batch.micro_batch_size == "auto" else cfg.batch.micro_batch_size
        self.model.train()
        self.steps = self.tokens = 0

    def step(self) -> None:
        import torch
        import torch.nn.functional as F

        from engine.training import precision

        cfg, device, cuda, pad, micro = self.cfg, self.device, self.cuda, self.pad, self.micro
        for group in self.opt.param_groups:
            group["lr"] = self.schedule.lr(self.steps)
        pairs = [self.windows.example(*self.sampler.next()) for _ in range(cfg.batch.global_batch_size)]
        n = sum(int((p[1] != pad).sum()) for p in pairs)  # on the host, as the engine counts: no device sync
        for i in range(0, len(pairs), micro):
            x = torch.from_numpy(np.stack([p[0] for p in pairs[i : i + micro]])).to(device, non_blocking=cuda)
            y = torch.from_numpy(np.stack([p[1] for p in pairs[i : i + micro]])).to(device, non_blocking=cuda)
            with precision.autocast(self.prec, device):
                logits = self.model(x)
            loss = F.cross_entropy(
                logits.float().view(-1, logits.shape[-1]), y.view(-1), ignore_index=pad, reduction="sum"
            )
            (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip.max_norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.tokens += n
        self.steps += 1
        if self.steps % self.log_every == 0:
            loss.item()  # what a user's loop prints; enqueued after the whole step, so a full sync on CUDA
            if cuda:
                torch.cuda.synchronize()


def thread_cpu_s(native_id: int) -> float:
    """CPU seconds a thread of this process has used: /proc's nanosecond schedstat, else psutil's clock ticks."""
    try:
        return int(Path(f"/proc/self/task/{native_id}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        import psutil

        times = {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}
        return times.get(native_id, float("nan"))


def new_threads(before: set, what: str) -> list[tuple[str, int]]:
    """(label, native id) of the Python threads started since ``before`` was taken."""
    import threading

    return [(f"{t.name} ({what})", t.native_id) for t in threading.enumerate() if t not in before]


def measure(
    config_args: list[str],
    seconds: float,
    warmup_s: float,
    aa: int,
    tensorboard: bool,
    engine_rows: bool,
    log_every: int,
    interleave: str,
) -> dict:
    """Every arm in this one process, taking turns step by step (``interleave="step"``) or in blocks of one log
    interval (``"block"``); a cycle is one log interval of every arm."""
    import random
    import threading

    import torch

    from engine.contract import config as C
    from engine.contract.events import read_events
    from engine.contract.rundir import RunDir
    from engine.training import distributed
    from engine.training.train import Trainer

    cfg = C.load(None, config_args)
    tmp = tempfile.TemporaryDirectory(prefix="podium-overhead-")
    # World size 1 needs no process group: Dist's collectives are local no-ops (engine/training/distributed.py).
    dist = distributed.init(cfg.run.device, cfg.run.threads_per_rank)

    def new_trainer(name: str, cfg) -> Trainer:
        run = RunDir(Path(tmp.name) / name)
        run.root.mkdir()
        run.config.write_text(C.dump(cfg))  # as the launcher prepares the run directory
        run.control.touch()
        np.random.seed(cfg.run.seed)  # the same initial weights for every trainer
        random.seed(cfg.run.seed)
        torch.manual_seed(cfg.run.seed)
        return Trainer(run, cfg, dist, None)

    before = set(threading.enumerate())
    trainer = new_trainer("run", cfg)  # every monitor as configured: the defaults, i.e. all on
    background = new_threads(before, "every arm")  # the system sampler and the watchdog
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    arms: dict[str, Callable[[], None]] = {}  # name -> one step
    trainers: dict[str, Trainer] = {}
    for name in [BARE, *[f"{BARE} (A/A {k + 1})" for k in range(aa)]]:
        arms[name] = BareLoop(cfg, dist.device, trainer.batches.corpus, weights).step
    tb_threads: list[tuple[str, int]] = []

    def engine_arm(trainer: Trainer) -> Callable[[], None]:
        interval, left_at = [trainer.begin()], [None]

        def step():
            # The interval's clock stops while the other arms run, as in a run that was not interleaved: else
            # the metrics (tokens/s, step_time) would count the other arms' time and the detectors react to it.
            if left_at[0] is not None:
                interval[0].start += time.perf_counter() - left_at[0]
            interval[0] = trainer.iteration(interval[0])
            left_at[0] = time.perf_counter()

        return step

    if engine_rows:
        trainers[ON] = trainer
        if tensorboard:
            before = set(threading.enumerate())
            try:  # a trainer of its own, as a run with the sink switched on
                tb_trainer = new_trainer(
                    "run-tensorboard",
                    cfg.model_copy(update={"sinks": cfg.sinks.model_copy(update={"tensorboard": True})}),
                )
                sinks = tb_trainer.monitors.sinks
                problem = "; ".join(sinks.problems) if sinks.tensorboard is None else ""
            except Exception as exc:  # a broken install: the other arms still answer the question
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                print(f"note: TensorBoard arm left out: {problem}", flush=True)
                tensorboard = False
            else:
                tb_threads = new_threads(before, "TensorBoard arm")  # its writer, sampler and watchdog
                trainers[f"{ON} + TensorBoard"] = tb_trainer
        arms.update({name: engine_arm(t) for name, t in trainers.items()})
    else:
        trainer.begin()
    names = list(arms)
    # Orders: every rotation, then every reversed rotation: each arm takes each position and follows and
    # precedes each other arm equally often.
    orders = [names[r:] + names[:r] for r in range(len(names))]
    orders += [o[::-1] for o in orders]

    def run_cycle(order: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """One log interval of every arm: {name: (wall, CPU) of each of its steps}."""
        times = {name: (np.empty(log_every), np.empty(log_every)) for name in order}
        schedule = (
            [(name, i) for name in order for i in range(log_every)]
            if interleave == "block"
            else [(name, i) for i in range(log_every) for name in order]
        )
        for name, i in schedule:
            t0, c0 = time.perf_counter(), time.thread_time()
            arms[name]()
            times[name][0][i], times[name][1][i] = time.perf_counter() - t0, time.thread_time() - c0
        for t in trainers.values():
            if t.control.paused or t.control.stop_reason:
                raise RuntimeError(
                    f"the engine {'paused' if t.control.paused else 'stopped'} itself: see the events in {t.run.events}"
                )
        return times

    cycle, began, audits = 0, time.monotonic(), {}
    while cycle < 2 or time.monotonic() - began < warmup_s:  # warm-up: every arm twice at least
        run_cycle(orders[cycle % len(orders)])
        cycle += 1
        if cycle == 1:  # the optimizers have their state: audit a log interval of every arm, then warm up again
            audits = {
                name: audit_block(
                    arms[name],
                    log_every,
                    trainers[name].optimizer if name in trainers else arms[name].__self__.opt,
                    cuda=dist.device.type == "cuda",
                )
                for name in names
            }
    print(f"  warm-up: {cycle} cycles in {time.monotonic() - began:.0f} s; measuring {seconds:.0f} s", flush=True)
    marks = {name: len(read_events(t.run.events)[0]) for name, t in trainers.items()}
    walls = {n: [] for n in names}
    cpus = {n: [] for n in names}
    threads = background + tb_threads
    cpu0, wall0, loads = [thread_cpu_s(tid) for _, tid in threads], time.perf_counter(), [os.getloadavg()]
    k, last_report = 0, time.monotonic()
    while k < 2 or time.perf_counter() - wall0 < seconds:
        for name, (w, c) in run_cycle(orders[(cycle + k) % len(orders)]).items():
            walls[name].append(w)
            cpus[name].append(c)
        k += 1
        if time.monotonic() - last_report > 60:
            last_report = time.monotonic()
            loads.append(os.getloadavg())
            base = robust_blocks(np.asarray(walls[BARE]))
            line = " | ".join(
                f"{n.removeprefix('engine, ')} {base / robust_blocks(np.asarray(walls[n])):.4f}" for n in names[1:]
            )
            print(
                f"  {time.perf_counter() - wall0:4.0f} s: {k} cycles, load {loads[-1][0]:.2f}; so far {line}",
                flush=True,
            )
    elapsed = time.perf_counter() - wall0
    thread_cpu = {label: thread_cpu_s(tid) - c0 for (label, tid), c0 in zip(threads, cpu0)}
    loads.append(os.getloadavg())
    during = [e for name, t in trainers.items() for e in read_events(t.run.events)[0][marks[name] :]]
    reasons = [t.end() for t in (trainers.values() if trainers else [trainer])]
    data = {n: {"wall": np.asarray(walls[n]), "cpu": np.asarray(cpus[n])} for n in names}
    counts: dict[str, int] = {}
    for e in during:
        counts[e["type"]] = counts.get(e["type"], 0) + 1
    info = {
        "blocks": k,
        "elapsed": elapsed,
        "thread_cpu": thread_cpu,
        "tb_threads": [label for label, _ in tb_threads],
        "events": counts,
        "unexpected": [e for e in during if e["type"] in ("anomaly", "error")],
        "end": reasons[0],
        "engine_steps": trainer.step,
        "device": str(dist.device),
        "audits": audits,
        "threads": torch.get_num_threads(),
        "interleave": interleave,
    }
    tmp.cleanup()
    return {"data": data, "info": info, "loads": loads}


def audit_block(step: Callable[[], None], log_every: int, optimizer, cuda: bool) -> dict:
    """One block of an arm under engine.training.op_audit, and on CUDA torch's sync debug mode: ATen operators per step
    (each about one kernel launch on a GPU) and what would make the host wait for the device, in the steps
    before the log step (which reads its figures back by design)."""
    import warnings

    import torch

    from engine.training.op_audit import OpAudit, host_step_counts

    ops, waits, cuda_syncs = [], {}, 0
    for i in range(log_every):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if cuda:
                torch.cuda.set_sync_debug_mode("warn")
            try:
                with OpAudit(host_tensors=host_step_counts(optimizer)) as audit:
                    step()
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode("default")
        ops.append(audit.total)
        if i < log_every - 1:
            waits.update(audit.synchronising())
            cuda_syncs += sum("synchronizing CUDA operation" in str(w.message) for w in caught)
    return {
        "ops_per_step": float(np.median(ops[:-1])) if log_every > 1 else float("nan"),
        "ops_log_step": ops[-1],
        "would_wait": waits,
        "cuda_syncs": cuda_syncs if cuda else None,
    }


def robust_blocks(values: np.ndarray) -> np.ndarray | float:
    """Per block of one log interval (axis -2: blocks, -1: position in the interval): the sum over positions of
    each position's median over the blocks, per step. Leading axes are bootstrap replicates."""
    return np.median(values, axis=-2).sum(axis=-1) / values.shape[-1]


COLUMNS = (("wall", "robust"), ("wall", "mean"), ("cpu", "robust"))
MIN_CYCLES = 10  # fewer and the bootstrap CI says little: no verdict


def block_stat(values: np.ndarray, kind: str) -> np.ndarray | float:
    return robust_blocks(values) if kind == "robust" else values.mean(axis=(-2, -1))


def compare(
    data: dict, base: str, other: str, rng: np.random.Generator, chunk: int = 250
) -> list[tuple[float, float, float]]:
    """Per column: throughput ratio other/base (base's time per step / other's), bootstrap 95% CI over cycles
    (the same cycles for both arms, so each pair of blocks stays together)."""
    n = len(data[base]["wall"])
    cells = []
    for column, kind in COLUMNS:
        a, b = data[base][column], data[other][column]
        point = float(block_stat(a, kind) / block_stat(b, kind))
        boot = []
        for start in range(0, BOOTSTRAP, chunk):
            pick = rng.integers(0, n, (min(chunk, BOOTSTRAP - start), n))
            boot.append(block_stat(a[pick], kind) / block_stat(b[pick], kind))
        low, high = np.percentile(np.concatenate(boot), [2.5, 97.5])
        cells.append((point, float(low), float(high)))
    return cells


def report(result: dict, log_every: int, rng: np.random.Generator) -> None:
    data, info = result["data"], result["info"]
    names = list(data)
    n = info["blocks"]
    print(f"\n{load()} (end); 1-min load during the run: " + " ".join(f"{x[0]:.2f}" for x in result["loads"]))
    turns = "taking turns every step" if info["interleave"] == "step" else "in blocks"
    print(
        f"{n} cycles of {log_every} steps per arm, {turns}, in {info['elapsed']:.0f} s on {info['device']}, "
        f"{info['threads']} thread(s); the engine ran {info['engine_steps']} steps in all"
    )
    for name in names:
        d = data[name]
        print(
            f"  {name:<44} {block_stat(d['wall'], 'robust') * 1e3:8.2f} ms/step wall (robust), "
            f"{block_stat(d['wall'], 'mean') * 1e3:8.2f} (mean), {block_stat(d['cpu'], 'robust') * 1e3:8.2f} "
            f"main-thread CPU; log step {np.median(d['wall'][:, -1]) * 1e3:.2f} ms (median)"
        )
    if info["audits"]:
        print(
            "\nATen operators (about one kernel launch each on a GPU) in one audited block, and what in the steps "
            "before its log step would make the host wait for the device:"
        )
    for name, audit in info["audits"].items():
        line = f"  {name:<44} {audit['ops_per_step']:.0f} a step, {audit['ops_log_step']} at the log step"
        if not name.startswith(BARE):  # the bare loops are the reference, not ours to fix
            line += "; would wait: " + (
                "; ".join(f"{op}: {why}" for op, why in audit["would_wait"].items()) or "nothing"
            )
            if audit["cuda_syncs"] is not None:
                line += f"; torch's CUDA sync debug mode: {audit['cuda_syncs']} synchronizing operations"
        print(line)
    header = f"  {'':<44} {'wall, robust':>26} {'wall, mean':>26} {'main-thread CPU, robust':>26}"
    print(f"\nthroughput ratio arm/bare, same process [95% bootstrap CI over {n} cycles]:")
    print(header)

    def row(label: str, base: str, name: str) -> list[tuple[float, float, float]]:
        cells = compare(data, base, name, rng)
        print(f"  {label:<44} " + " ".join(f"{f'{p:.4f} [{lo:.4f}, {hi:.4f}]':>26}" for p, lo, hi in cells), flush=True)
        return cells

    controls = [nm for nm in names if nm.startswith(BARE) and nm != BARE]
    control_ok, resolution, control_cells = bool(controls) and n >= MIN_CYCLES, 0.0, {}
    for name in controls:
        cells = control_cells[name] = row(f"{name}: control, expect 1", BARE, name)
        control_ok &= all(lo <= 1.0 <= hi for _, lo, hi in cells)
        resolution = max(resolution, (cells[0][2] - cells[0][1]) / 2)
    engine = [nm for nm in names if not nm.startswith(BARE)]
    cells_of = {name: row(name, BARE, name) for name in engine}
    if ON in data and f"{ON} + TensorBoard" in data:
        row("TensorBoard's own cost (+ TensorBoard / on)", ON, f"{ON} + TensorBoard")

    elapsed = info["elapsed"]
    tb_threads = set(info["tb_threads"])
    shared = sum(v for k, v in info["thread_cpu"].items() if k not in tb_threads)
    tb_wall = float(data[f"{ON} + TensorBoard"]["wall"].sum()) if f"{ON} + TensorBoard" in data else 0.0
    tb_cpu = sum(v for k, v in info["thread_cpu"].items() if k in tb_threads)
    print(
        "\nbackground threads (they run during every arm, so their cost is split among them; counted here "
        "in full for the engine):"
    )
    for label, cpu in info["thread_cpu"].items():
        wall = tb_wall if label in tb_threads else elapsed
        print(f"  {label:<44} {cpu * 1e3:8.1f} ms CPU in {wall:.0f} s = {cpu / wall:.4%} of the wall time")
    share = shared / elapsed
    print(f"  monitors' threads in all: {share:.4%} of the run's wall time")
    if info["events"]:
        print(
            "events the engine wrote while measured: "
            + ", ".join(f"{k} {v}" for k, v in sorted(info["events"].items()))
        )
    for e in info["unexpected"]:
        print(f"  WARNING: {e['type']} at step {e['step']}: {e.get('kind', '')} {e.get('message', '')}")

    print(
        f"\nresult (wall, robust; the engine's throughput / the bare loop's, background threads' CPU added to the "
        f"engine's time: ratio / (1 + share)); target >= {TARGET}:"
    )
    if not controls:
        print("  (no A/A control: --aa 0; nothing can be called MET)")
    else:
        for name, cells in control_cells.items():
            point, low, high = cells[0]
            print(f"  {'A/A: ' + name + ' / bare':<44} {point:.4f} [{low:.4f}, {high:.4f}]")
        if n < MIN_CYCLES:
            print(f"  {'':<44} control not usable: {n} cycles, {MIN_CYCLES} needed (give more --seconds)")
        else:
            print(
                f"  {'':<44} control {'sane: every' if control_ok else 'FAILED: not every'} A/A CI holds 1.0; the "
                f"method resolves +-{resolution:.2%} here (half the A/A CI)"
            )
    for name, cells in cells_of.items():
        point, low, high = cells[0]
        extra = share + (tb_cpu / tb_wall if tb_wall and name.endswith("TensorBoard") else 0.0)
        point, low, high = (x / (1 + extra) for x in (point, low, high))
        judged = verdict(point, low, high)
        if judged.startswith("MET") and not control_ok:
            judged = "not established (met on its CI, but the A/A control failed or is missing)"
        print(f"  {name:<44} {point:.4f} [{low:.4f}, {high:.4f}] (threads +{extra:.4%}): {judged}")
    print(
        "\nwall, robust: per position in the log interval, the median over blocks, summed (the log step "
        "included); wall, mean: every measured step; main-thread CPU: the training thread alone (on CUDA mostly "
        "launches and waits)."
    )


# ---------------------------------------------------------------------------------------------- statistics


def verdict(point: float, low: float, high: float) -> str:
    if low >= TARGET:
        return "MET (CI lower bound >= 0.99)"
    if high < TARGET:
        return "MISSED (whole CI below 0.99)"
    if point >= TARGET:
        return "not established (point estimate >= 0.99, CI reaches below)"
    return "not established (point estimate < 0.99, CI reaches above)"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--seconds", type=float, help="seconds measured (default 240 on CPU, 60 on CUDA)")
    parser.add_argument(
        "--warmup-s",
        type=float,
        help="seconds of unmeasured cycles first (default 20 on CPU, 10 on CUDA; two cycles at least)",
    )
    parser.add_argument(
        "--interleave",
        choices=["step", "block"],
        default="step",
        help="the arms take turns every step (default) or every log interval",
    )
    parser.add_argument("--aa", type=int, default=1, help="extra bare loops, each compared with bare: the A/A control")
    parser.add_argument("--no-sinks", action="store_true", help="leave out the TensorBoard arm")
    parser.add_argument("--only-aa", action="store_true", help="no engine arms (with --aa: the method's noise alone)")
    parser.add_argument("--json", type=Path, help="also write every arm's step times here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    import torch

    from engine.contract import config as C

    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    config_args = [*BENCH_OVERRIDES, *args.overrides, f"run.device={device}"]
    if device == "cpu" and not any(o.startswith("run.threads_per_rank=") for o in args.overrides):
        config_args += ["run.threads_per_rank=1"]  # a spare core keeps the noise down (docs/bench.md)
    log_every = C.load(None, config_args).run.log_interval
    seconds = args.seconds or (240 if device == "cpu" else 60)
    warmup_s = args.warmup_s if args.warmup_s is not None else (20 if device == "cpu" else 10)
    tensorboard = not args.no_sinks and not args.only_aa and importlib.util.find_spec("tensorboard") is not None

    print(describe(), flush=True)
    print(
        f"bench/overhead.py: device {device}, interleaved by {args.interleave} ({seconds:.0f} s measured after "
        f"{warmup_s:.0f} s of warm-up, blocks of log_interval = {log_every} steps)",
        flush=True,
    )
    print(f"config: {' '.join(config_args)}", flush=True)
    if not args.no_sinks and not args.only_aa and not tensorboard:
        print("note: TensorBoard arm left out: the tensorboard package is not installed", flush=True)
    began = time.monotonic()
    result = measure(
        [*config_args, f"run.max_steps={ENDLESS}"],
        seconds,
        warmup_s,
        args.aa,
        tensorboard,
        not args.only_aa,
        log_every,
        args.interleave,
    )
    print(f"(whole bench {time.monotonic() - began:.0f} s)")
    report(result, log_every, np.random.default_rng(0))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": describe(),
                    "device": device,
                    "config": config_args,
                    "log_interval": log_every,
                    "loads": result["loads"],
                    "info": {k: v for k, v in result["info"].items() if k != "unexpected"},
                    "blocks": {n: {c: v.tolist() for c, v in d.items()} for n, d in result["data"].items()},
                }
            )
        )
        print(f"step times written to {args.json}")


if __name__ == "__main__":
    main()
