"""Podium's engine against a bare PyTorch loop: what do monitoring and the engine's machinery cost?

    python bench/overhead.py [--device auto|cpu|cuda] [--mode sliced|sequential]
                             [--seconds S] [--rounds R] [--steps N] [--warmup W] [--quick]
                             [--json FILE] [--set key=value ...]

What is compared. The same model, data, batches (same sampler, seed and step
order), precision, optimizer (fused AdamW on CUDA, as the engine) and thread
count, each in a fresh process:

- bare: a minimal user's loop (set the LR, draw the batch, forward, backward,
  clip, step; read the loss every log interval, which on CUDA is the sync).
- engine, monitors off: ``main.py run`` under torchrun with the anomaly
  detectors and the stall watchdog off, system sampling at its slowest (one
  sample at 1 s, then hourly), no music evaluation, no sinks. What remains is
  the engine's machinery: events, per-step control polling and agreement,
  device-side accumulators, the launcher following the events file.
- engine, every monitor on: the defaults: system sampling every 5 s on its
  own thread, the detectors at each log step, the watchdog (a beat per step
  and a thread), music evaluation (at evaluations only, none of which falls in
  the measured steps; its time is in each ``sample`` event).
- the same + TensorBoard sink (and + W&B offline when wandb is installed).
- bare (A/A 1): a second, identical bare process: the control (see 6).
Each engine row is compared with bare (the issue's target: >= 0.99), and the
monitor rows with "monitors off" (the monitors' own cost).

How it is timed. On the shared 2-core machine the speed of a core drifts by
+-15% over seconds to minutes (other tenants; the process CPU time per step
drifts as much as its wall time), so whole-run means of runs taken one after
the other cannot resolve 1%. So:

1. Every step is timed on its own. The engine records the host clock and its
   process CPU time (all threads: sampler, watchdog) at the end of every
   loop iteration with ``debug.step_times`` (engine/monitoring.py StepClock,
   ~1 us a step); the bare loop takes the same two clocks at the same points.
   The engine's own ``step_time`` is not used: it leaves out the log step's
   work (metrics reduction, events, detectors, sinks), which is exactly what
   monitoring adds.
2. Robust, but honest about periodic work. A plain median of step times would
   drop the log step (1 in ``log_interval``) and with it the detectors' cost.
   Steps are grouped by their phase in the log interval; the statistic is the
   sum over phases of the median step time of that phase (a typical log
   interval, log step included) divided by ``log_interval``. Work rarer than
   every interval (system sampler and watchdog every 5 s) is counted by the
   "mean" and "CPU time" columns, not by the robust one.
3. Interleaving (``--mode sliced``, the default on CPU): all configurations
   run at once but take turns: the bench stops every process tree but one
   with SIGSTOP and hands the CPU round-robin to each for ``--slice-s``
   seconds (3 s; the order rotates every cycle; with five configurations a
   stop lasts 12 s, under torchrun's 15 s heartbeat limit). A step counts for wall time only when it started
   and ended inside one of its process's slices; CPU time does not run while
   stopped, so every measured step counts for it. Each cycle (one slice of
   every configuration, seconds apart) is a block. A cycle counts once every
   configuration is past its warm-up and ends when the first configuration
   is stopped (with the ``stop`` command; SIGTERM for the bare loop). Work
   that waits for wall-clock time (the sampler) tends to fire at a slice's
   start, in a step that the wall columns drop, so read its cost in the CPU
   time column, which then counts it more often than every 5 s
   (conservative).
   ``--mode sequential`` (the default on CUDA, where a lent GPU host is quiet
   and a stopped process's queued kernels would still run into the next
   slice): rounds that run every configuration to ``--steps`` one after the
   other, order rotated each round; each round is a block. On CUDA the host
   times of single steps are launch times, but each log interval ends at a
   device read (the engine's metrics reduction, the bare loop's loss.item()
   and synchronize), so the measured span (whole intervals) is exact: the
   "mean" column is the exact figure there, the robust one a close estimate.
4. Uncertainty: the point estimate uses all measured steps; the 95% CI is a
   two-stage bootstrap (blocks resampled, the same blocks for every
   configuration so the pairing in time holds, then steps resampled within
   each phase; 2000 replicates). The target counts as met only when the CI's
   lower bound is >= 0.99; a point estimate alone is reported as not
   established.
5. CPU time: the same statistic on the training process's CPU time per step
   (all its threads). It leaves out the launcher and the torchrun agent (the
   launcher polls the events file every 0.2 s; the agent used ~1.7 s of CPU to
   start and ~0.2% of a core after); on CUDA it mostly measures the host
   spinning in device syncs, so read it on CPU only.
6. The A/A control. Blocks (cycles, rounds) capture the noise over time, but
   a persistent difference between two processes of the same code (memory
   layout, where it runs) would pass for an engine effect. So a second bare
   process runs as one more configuration (``--aa``, default 1) and is
   compared with bare like the engine rows: its CIs must hold 1.0. If one does
   not, the bench says the control failed and no row is called MET. (A 60 s
   trial here with three extra bare processes of a tiny model gave 0.94, 1.03
   and 1.06: on this machine a core's speed moves by +-10% from one 2-3 s
   slice to the next, independently for each process, so a ratio needs
   hundreds of slices per configuration to reach +-1%.)

Threads. On CPU the bench trains with one thread unless ``--set
run.threads_per_rank=N`` says otherwise (the same N for every configuration).
On this 2-core machine two OpenMP threads turn any other process's time slice
into a stall at the next barrier: a 9 ms matmul chunk had a median of 95 ms
with two threads under load, while one thread stayed at 17 +- 1 ms, and a
bench step took ~1 s with two threads against 0.45 s with one. One thread also
leaves a core to the launcher, the torchrun agent and the monitor threads, as
a GPU host's many cores do; their time still shows in the CPU time column.

The load average is printed at the start, during the run and at the end. Run
directories are temporary and removed; the data cache is PODIUM_CACHE_DIR or
~/.cache/podium (prepared once, first).

Reading a gap. With monitors on and off alike, a gap to bare is the engine's
machinery or its process, not monitoring. Run in one process, alternating
step by step, the engine's ``Trainer.train_step`` (monitors off) and the bare
step cost the same here (450.9 vs 449.5 ms CPU per step, median of 57 each),
so a gap that is uniform over the phases of the log interval points at the
process (heap, layout, environment), not at the step's code.

Defaults: CPU sliced, 420 s of slices (~8 min in all). CUDA sequential,
3 rounds x (100 + 1000) steps; ``--quick`` 3 rounds x (50 + 500) steps (a few
minutes on a lent GPU); ``--budget-s`` starts no new round (after the second)
once the elapsed time plus the last round's would pass it.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The bench's model: the default architecture on shorter windows, so a step is
# short and any per-step overhead shows. Evaluation (validation, samples) runs
# only after the last step; it is cut down because it is not measured.
BENCH_OVERRIDES = ["data.seq_len=128", "batch.global_batch_size=16", "batch.micro_batch_size=16",
                   "run.eval_interval=1000000", "run.eval_max_batches=1", "checkpoint.interval=0",
                   "music.num_samples=1", "music.sample_tokens=16"]
MONITORS_OFF = ["anomaly.enabled=false", "monitor.system_interval_s=3600", "music.enabled=false"]
ENDLESS = 1_000_000  # max_steps in sliced mode: the bench stops the runs
BOOTSTRAP = 2000
TARGET = 0.99
BARE, OFF, ON = "bare", "engine, monitors off", "engine, every monitor on"


# ---------------------------------------------------------------------------------------------- workers

_stop = False


def _request_stop(_signum, _frame) -> None:
    global _stop
    _stop = True


def bare_loop(config_args: list[str], steps: int, warmup: int, device_name: str, out: Path) -> None:
    """A plain loop, timed like the engine's StepClock: no events, no control, no metrics collectives."""
    import torch
    import torch.nn.functional as F

    from engine import config as C, data as D, precision
    from engine.model import MusicTransformer, param_groups
    from engine.schedules import Schedule

    signal.signal(signal.SIGTERM, _request_stop)
    cfg = C.load(None, config_args)
    device = torch.device("cuda", 0) if device_name == "cuda" else torch.device("cpu")  # the engine's cuda:LOCAL_RANK
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:  # as engine.distributed.init does for one rank
        torch.set_num_threads(cfg.run.threads_per_rank or max(1, os.cpu_count() or 1))
    torch.manual_seed(cfg.run.seed)
    corpus = D.prepare(cfg)
    train, _ = D.split_pieces(corpus.names, cfg.data.val_fraction, cfg.data.split_seed)
    windows = D.WindowSet(corpus, train, cfg.data.seq_len, cfg.data.transpose,
                          (cfg.tokenizer.pitch_low, cfg.tokenizer.pitch_high))
    windows.set_tokenizer(corpus.tokenizer())
    sampler = D.RankSampler(len(windows), 0, 1, cfg.run.seed)
    model = MusicTransformer(cfg.model, corpus.meta["vocab_size"], cfg.data.seq_len).to(device)
    opt = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                            betas=(cfg.optim.beta1, cfg.optim.beta2), fused=device.type == "cuda")
    schedule = Schedule(cfg.optim, cfg.run.max_steps)
    prec, _ = precision.choose(cfg.run.precision, device)
    pad, log_every, cuda = corpus.meta["pad_id"], cfg.run.log_interval, device.type == "cuda"
    micro = cfg.batch.global_batch_size if cfg.batch.micro_batch_size == "auto" else cfg.batch.micro_batch_size
    model.train()
    tokens, wall, cpu = 0, [time.perf_counter()], [time.process_time()]
    step = 0
    while step < warmup + steps and not _stop:
        for group in opt.param_groups:
            group["lr"] = schedule.lr(step)
        pairs = [windows.example(*sampler.next()) for _ in range(cfg.batch.global_batch_size)]
        n = sum(int((p[1] != pad).sum()) for p in pairs)  # on the host, as the engine counts: no device sync
        for i in range(0, len(pairs), micro):
            x = torch.from_numpy(np.stack([p[0] for p in pairs[i: i + micro]])).to(device, non_blocking=cuda)
            y = torch.from_numpy(np.stack([p[1] for p in pairs[i: i + micro]])).to(device, non_blocking=cuda)
            with precision.autocast(prec, device):
                logits = model(x)
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1), ignore_index=pad,
                                   reduction="sum")
            (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip.max_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += n
        step += 1
        if step % log_every == 0:
            loss.item()  # what a user's loop prints; enqueued after the whole step, so a full sync on CUDA
            if cuda:
                torch.cuda.synchronize()
        wall.append(time.perf_counter())
        cpu.append(time.process_time())
    out.write_text(json.dumps({"step": list(range(step + 1)), "wall": wall, "cpu": cpu, "tokens": tokens}))


def prepare(config_args: list[str]) -> None:
    from engine import config as C, data as D

    D.prepare(C.load(None, config_args))


# ---------------------------------------------------------------------------------------------- processes

class Run:
    """One configuration's process tree: the bare worker, or main.py run (launcher, torchrun, worker)."""

    def __init__(self, name: str, config_args: list[str], max_steps: int, device: str, env: dict, tmp: Path):
        self.name, self.dir = name, tmp / f"run-{sum(1 for _ in tmp.iterdir())}"
        self.log = open(tmp / f"{self.dir.name}.log", "wb")
        if name.startswith(BARE):
            self.out = tmp / f"{self.dir.name}.json"
            cmd = [sys.executable, __file__, "--worker", "bare", "--steps", str(max_steps), "--warmup", "0",
                   "--device", device, "--worker-out", str(self.out), "--set", f"run.max_steps={max_steps}"]
        else:
            self.out = self.dir / "step_times.json"
            cmd = [sys.executable, str(REPO / "main.py"), "run", "-r", str(self.dir), "--no-progress",
                   "--set", f"run.max_steps={max_steps}", "--set", "debug.step_times=true"]
        cmd += [a for o in config_args for a in ("--set", o)]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def tree(self) -> list[int]:
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            return [root.pid] + [c.pid for c in root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def signal_tree(self, sig: int) -> None:
        """Signal every process of the tree; for SIGSTOP, again until no new child appeared meanwhile."""
        done: set[int] = set()
        while True:
            fresh = [p for p in self.tree() if p not in done]
            if not fresh:
                return
            for pid in fresh:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            done.update(fresh)
            if sig != signal.SIGSTOP:
                return

    def request_stop(self) -> None:
        if self.name.startswith(BARE):
            self.proc.send_signal(signal.SIGTERM)
        else:
            from engine.control import send_command

            send_command(self.dir, "stop")

    def finish(self, timeout: float = 300) -> dict:
        code = self.proc.wait(timeout)
        self.log.close()
        if code != 0 or not self.out.exists():
            text = Path(self.log.name).read_text(errors="replace")[-3000:]
            engine_log = self.dir / "engine.log"
            if engine_log.exists():
                text += "\n" + engine_log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name}: exit {code}, no step times\n{text}")
        clock = json.loads(self.out.read_text())
        if not self.name.startswith(BARE):
            from engine.protocol import read_events

            events, _ = read_events(self.dir / "events.jsonl")
            metrics = [e for e in events if e["type"] == "metrics"]
            clock["tokens"] = metrics[-1]["tokens_seen"] if metrics else None
            clock["errors"] = [e["message"] for e in events if e["type"] == "error"]
            start = next((e for e in events if e["type"] == "run_start"), {})
            clock["env"] = {k: start.get("env", {}).get(k) for k in ("device", "precision", "threads_per_rank")}
        return clock


def steps_of(clock: dict, warmup: int, log_every: int) -> dict[str, np.ndarray]:
    """The measured steps: each step's end time, wall and CPU seconds and phase (log_every - 1 = the log step)."""
    step, wall, cpu = (np.asarray(clock[k]) for k in ("step", "wall", "cpu"))
    ok = (step[1:] == step[:-1] + 1) & (step[1:] > warmup)  # a rollback's iteration is no step
    return {"start": wall[:-1][ok], "end": wall[1:][ok], "wall": np.diff(wall)[ok], "cpu": np.diff(cpu)[ok],
            "phase": (step[1:][ok] - 1) % log_every}


# ---------------------------------------------------------------------------------------------- the two modes

def sliced(rows: dict[str, list[str]], config_args: list[str], warmup: int, device: str, env: dict,
           seconds: float, slice_s: float, log_every: int) -> tuple[dict, dict, list]:
    """All configurations at once, taking turns in slices; blocks are cycles."""
    names = [BARE, *rows]
    windows: dict[str, list[tuple[float, float, int]]] = {n: [] for n in names}
    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="podium-overhead-") as tmp:
        runs = {n: Run(n, config_args + rows.get(n, []), ENDLESS, device, env, Path(tmp)) for n in names}
        for run in runs.values():
            run.signal_tree(signal.SIGSTOP)
        started, cycle, last_report, ok = time.monotonic(), 0, time.monotonic(), False
        try:
            while time.monotonic() - started < seconds:
                order = names[cycle % len(names):] + names[: cycle % len(names)]
                for name in order:
                    run = runs[name]
                    if run.proc.poll() is not None:
                        raise RuntimeError(f"{name} ended early: {run.finish()}")
                    begin = time.perf_counter()
                    run.signal_tree(signal.SIGCONT)
                    time.sleep(slice_s)
                    end = time.perf_counter()
                    run.signal_tree(signal.SIGSTOP)
                    windows[name].append((begin, end, cycle))
                cycle += 1
                if time.monotonic() - last_report > 60:
                    last_report = time.monotonic()
                    loads.append(os.getloadavg())
                    print(f"  {time.monotonic() - started:4.0f} s: {cycle} cycles, load average {loads[-1][0]:.2f}", flush=True)
            ok = True
        finally:
            for run in runs.values():
                run.signal_tree(signal.SIGCONT)
                if run.proc.poll() is None:
                    run.request_stop()
            if not ok:  # leave nothing running behind a failed bench
                for run in runs.values():
                    try:
                        run.proc.wait(60)
                    except subprocess.TimeoutExpired:
                        run.signal_tree(signal.SIGKILL)
        clocks = {n: runs[n].finish() for n in names}
    data: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        s = steps_of(clocks[name], warmup, log_every)
        spans = np.asarray(windows[name])
        # The slice each step ended in (or -1); its wall time counts only if it also started in it.
        idx = np.searchsorted(spans[:, 0], s["end"]) - 1
        inside = (idx >= 0) & (s["end"] <= spans[np.maximum(idx, 0), 1])
        s["wall_ok"] = inside & (s["start"] >= spans[np.maximum(idx, 0), 0])
        # A step stopped part-way belongs, for CPU time, to the cycle in which it ended.
        after = np.searchsorted(spans[:, 0], s["end"]) - 1
        s["block"] = spans[np.maximum(after, 0), 2].astype(int)
        data[name] = s
    # Blocks: from the first cycle in which every configuration is measuring to the last complete one.
    first = max(int(d["block"].min()) if len(d["block"]) else cycle for d in data.values()) + 1
    last = min(int(d["block"].max()) if len(d["block"]) else -1 for d in data.values()) - 1
    for name, d in data.items():
        keep = (d["block"] >= first) & (d["block"] <= last)
        data[name] = {k: v[keep] for k, v in d.items()}
        data[name]["block"] -= first
    info = {"cycles": cycle, "blocks": max(0, last - first + 1), "clocks": clocks, "windows": windows}
    return data, info, loads


def sequential(rows: dict[str, list[str]], config_args: list[str], warmup: int, steps: int, device: str, env: dict,
               rounds: int, budget_s: float | None, log_every: int) -> tuple[dict, dict, list]:
    """Every configuration to the end, one after the other, order rotated per round; blocks are rounds."""
    names = [BARE, *rows]
    parts: dict[str, list[dict]] = {n: [] for n in names}
    loads, started, last_round, clocks = [], time.monotonic(), 0.0, {n: [] for n in names}
    for r in range(rounds):
        elapsed = time.monotonic() - started
        if budget_s and r >= 2 and elapsed + last_round > budget_s:  # two rounds at least: a CI needs two blocks
            print(f"  budget: stopping after {r} rounds ({elapsed:.0f} s; a round takes ~{last_round:.0f} s)", flush=True)
            break
        round_start = time.monotonic()
        loads.append(os.getloadavg())
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            with tempfile.TemporaryDirectory(prefix="podium-overhead-") as tmp:
                clock = Run(name, config_args + rows.get(name, []), warmup + steps, device, env, Path(tmp)).finish()
            clocks[name].append(clock)
            for error in clock.get("errors", []):
                print(f"  [{name}] error event: {error}", flush=True)
            s = steps_of(clock, warmup, log_every)
            if len(s["wall"]) != steps:
                raise RuntimeError(f"{name}: {len(s['wall'])} measured steps, expected {steps}")
            s["wall_ok"] = np.ones(steps, bool)
            s["block"] = np.full(steps, r)
            parts[name].append(s)
        tokens = {n: clocks[n][-1]["tokens"] for n in names}
        if len(set(tokens.values())) != 1:
            print(f"  WARNING: runs saw different token counts {tokens}: the batches differ", flush=True)
        last_round = time.monotonic() - round_start
        base = robust(parts[BARE][-1]["wall"], parts[BARE][-1]["phase"], log_every)
        line = [f"round {r + 1} ({last_round:.0f} s, load {loads[-1][0]:.2f}): bare {base * 1e3:.2f} ms/step"]
        line += [f"{n.removeprefix('engine, ')} {base / robust(parts[n][-1]['wall'], parts[n][-1]['phase'], log_every):.4f}"
                 for n in rows]
        print("  " + " | ".join(line), flush=True)
    data = {n: {k: np.concatenate([p[k] for p in parts[n]]) for k in parts[n][0]} for n in names}
    return data, {"blocks": len(parts[BARE]), "clocks": clocks}, loads


# ---------------------------------------------------------------------------------------------- statistics

def robust(values: np.ndarray, phase: np.ndarray, log_every: int) -> float:
    """Typical seconds per step: the sum over phases of each phase's median, divided by the interval length."""
    medians = [values[phase == p] for p in range(log_every)]
    if any(len(m) == 0 for m in medians):
        return float("nan")  # a phase without a step (a rare bootstrap draw): no estimate
    return float(sum(np.median(m) for m in medians) / log_every)


def estimate(d: dict, column: str, kind: str, log_every: int, pick: np.ndarray | None = None) -> float:
    ok = d["wall_ok"] if column == "wall" else np.ones(len(d["wall"]), bool)
    values, phase = d[column], d["phase"]
    if pick is not None:
        values, phase, ok = values[pick], phase[pick], ok[pick]
    values, phase = values[ok], phase[ok]
    return float(values.mean()) if kind == "mean" else robust(values, phase, log_every)


def resample(d: dict, blocks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a two-stage resample: the given blocks (with repeats), then steps within each phase."""
    by_block = d["_by_block"]
    pooled = np.concatenate([by_block[b] for b in blocks if b in by_block] or [np.zeros(0, int)])
    phase = d["phase"][pooled]
    picked = [rng.choice(pooled[phase == p], size=int((phase == p).sum())) for p in np.unique(phase)]
    return np.concatenate(picked or [np.zeros(0, int)])


COLUMNS = (("wall", "robust"), ("wall", "mean"), ("cpu", "robust"))


def compare(data: dict, base: str, other: str, log_every: int, n_blocks: int,
            rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """Per column: throughput ratio other/base (= base's time per step / other's) and its bootstrap 95% CI."""
    points = [estimate(data[base], c, k, log_every) / estimate(data[other], c, k, log_every) for c, k in COLUMNS]
    boot = np.empty((BOOTSTRAP, len(COLUMNS)))
    for i in range(BOOTSTRAP):
        blocks = rng.integers(0, n_blocks, n_blocks)  # the same blocks for both: the pairing in time holds
        pick_b, pick_o = resample(data[base], blocks, rng), resample(data[other], blocks, rng)
        boot[i] = [estimate(data[base], c, k, log_every, pick_b) / estimate(data[other], c, k, log_every, pick_o)
                   for c, k in COLUMNS]
    lows, highs = np.nanpercentile(boot, [2.5, 97.5], axis=0)
    return [(p, float(lo), float(hi)) for p, lo, hi in zip(points, lows, highs)]


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


# ---------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--mode", choices=["sliced", "sequential"], help="default: sliced on CPU, sequential on CUDA")
    parser.add_argument("--seconds", type=float, default=420, help="sliced: seconds of slices in all")
    parser.add_argument("--slice-s", type=float, default=3.0, help="sliced: seconds per slice")
    parser.add_argument("--rounds", type=int, help="sequential: rounds (default 3)")
    parser.add_argument("--steps", type=int, help="sequential: measured steps per run (a multiple of run.log_interval)")
    parser.add_argument("--warmup", type=int, help="unmeasured steps first (a multiple of run.log_interval)")
    parser.add_argument("--quick", action="store_true", help="sequential: 3 rounds x (50 + 500) steps")
    parser.add_argument("--budget-s", type=float, help="sequential: start no new round past this many seconds (estimated)")
    parser.add_argument("--no-sinks", action="store_true", help="leave out the sink rows")
    parser.add_argument("--aa", type=int, default=1, help="extra bare processes, each compared with bare: the A/A control")
    parser.add_argument("--only-aa", action="store_true", help="no engine rows (with --aa: the method's noise alone)")
    parser.add_argument("--json", type=Path, help="also write every run's step times here")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--worker", choices=["bare", "prepare"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    config_args = BENCH_OVERRIDES + args.overrides
    if args.worker == "bare":
        bare_loop(config_args, args.steps, args.warmup, args.device, args.worker_out)
        return
    if args.worker == "prepare":
        prepare(config_args)
        return

    import torch  # only to resolve --device auto; the runs are separate processes

    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    del torch
    from engine import config as C

    config_args += [f"run.device={device}"]
    if device == "cpu" and not any(o.startswith("run.threads_per_rank=") for o in args.overrides):
        config_args += ["run.threads_per_rank=1"]  # see the docstring: a spare core keeps the noise down
    cfg = C.load(None, config_args)
    log_every = cfg.run.log_interval
    mode = args.mode or ("sliced" if device == "cpu" else "sequential")
    rounds, steps, warmup = (3, 500, 50) if args.quick else (3, 1000, 100) if device == "cuda" else (3, 60, 10)
    rounds, steps = args.rounds or rounds, args.steps or steps
    warmup = args.warmup if args.warmup is not None else warmup
    if steps % log_every or warmup % log_every:
        parser.error(f"--steps and --warmup must be multiples of run.log_interval ({log_every})")

    rows = {} if args.only_aa else {OFF: MONITORS_OFF, ON: []}
    rows.update({f"{BARE} (A/A {k + 1})": [] for k in range(args.aa)})
    notes = []
    if not args.no_sinks and not args.only_aa:
        if importlib.util.find_spec("tensorboard"):
            rows[f"{ON} + TensorBoard"] = ["sinks.tensorboard=true"]
        else:
            notes.append("TensorBoard row left out: the tensorboard package is not installed")
        if importlib.util.find_spec("wandb"):
            rows[f"{ON} + W&B (offline)"] = ["sinks.wandb=true"]
        else:
            notes.append("W&B row left out: the wandb package is not installed")
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    env["OMP_NUM_THREADS"] = str(cfg.run.threads_per_rank or max(1, os.cpu_count() or 1))  # as the launcher sets it

    what = (f"{args.seconds:.0f} s of {args.slice_s:g} s slices" if mode == "sliced"
            else f"{rounds} rounds x {steps} measured steps")
    print(f"bench/overhead.py: device {device}, mode {mode} ({what}), warm-up {warmup} steps, log_interval {log_every}, "
          f"{os.cpu_count()} cores, threads {env['OMP_NUM_THREADS']}", flush=True)
    print(f"config: {' '.join(config_args)}", flush=True)
    for note in notes:
        print(f"note: {note}", flush=True)
    print(f"{load()} (start)", flush=True)
    began = time.monotonic()
    subprocess.run([sys.executable, __file__, "--worker", "prepare", *[a for o in config_args for a in ("--set", o)]],
                   check=True, cwd=REPO, env=env, capture_output=True)
    if mode == "sliced":
        data, info, loads = sliced(rows, config_args, warmup, device, env, args.seconds, args.slice_s, log_every)
        kept = {n: (int(d["wall_ok"].sum()), len(d["wall"])) for n, d in data.items()}
        print(f"  {info['cycles']} cycles, {info['blocks']} with every configuration measuring; measured steps "
              "(wall/CPU): " + ", ".join(f"{n.removeprefix('engine, ')} {w}/{c}" for n, (w, c) in kept.items()))
    else:
        data, info, loads = sequential(rows, config_args, warmup, steps, device, env, rounds, args.budget_s, log_every)
    n_blocks = info["blocks"]
    if n_blocks < 2:
        raise SystemExit(f"only {n_blocks} block(s) measured: give more --seconds or --rounds")
    for d in data.values():
        d["_by_block"] = {int(b): np.flatnonzero(d["block"] == b) for b in np.unique(d["block"])}

    rng = np.random.default_rng(0)
    print(f"\n{load()} (end, {time.monotonic() - began:.0f} s); 1-min load during the run: "
          + " ".join(f"{x[0]:.2f}" for x in loads))
    print(f"bare loop: {estimate(data[BARE], 'wall', 'robust', log_every) * 1e3:.2f} ms/step wall, "
          f"{estimate(data[BARE], 'cpu', 'robust', log_every) * 1e3:.2f} ms/step CPU (robust)")
    header = f"  {'':<44} {'wall, robust':>26} {'wall, mean':>26} {'CPU time, robust':>26}"

    def row(label: str, base: str, name: str) -> list[tuple[float, float, float]]:
        cells = compare(data, base, name, log_every, n_blocks, rng)
        print(f"  {label:<44} " + " ".join(f"{f'{p:.4f} [{lo:.4f}, {hi:.4f}]':>26}" for p, lo, hi in cells), flush=True)
        return cells

    print(f"\nthroughput ratio engine/bare (target >= {TARGET}), {n_blocks} blocks [95% bootstrap CI]:")
    print(header)
    # The A/A control first: bare against itself must give 1.0 inside its CI, or the CIs understate the noise.
    control_ok = True
    for name in [n for n in rows if n.startswith(BARE)]:
        cells = row(f"{name}: control, expect 1", BARE, name)
        if not all(lo <= 1.0 <= hi for _, lo, hi in cells):
            control_ok = False
    if not any(n.startswith(BARE) for n in rows):
        print("  (no A/A control: --aa 0)")
    elif not control_ok:
        print(f"  {'':<44} A/A control FAILED: a CI excludes 1.0, so the CIs below understate the noise")
    for name in [n for n in rows if not n.startswith(BARE)]:
        point, low, high = row(name, BARE, name)[0]
        judged = verdict(point, low, high)
        if not control_ok and judged.startswith("MET"):
            judged = "not established (met on its CI, but the A/A control failed)"
        print(f"  {'':<44} target: {judged}", flush=True)
    print("\nthe monitors' own cost: throughput with monitors / monitors off (1.0 = free):")
    print(header)
    for name in [n for n in rows if n != OFF and not n.startswith(BARE)] if OFF in rows else []:
        row(name.removeprefix("engine, ") + " / off", OFF, name)
    print("\nwall, robust: per phase of the log interval the median step time, summed (log step included); "
          "wall, mean: every measured step; CPU time: the training process, all its threads.")
    if args.json:
        args.json.write_text(json.dumps({"device": device, "mode": mode, "config": config_args, "warmup": warmup,
                                         "log_interval": log_every, "loads": loads, "clocks": info["clocks"],
                                         "windows": info.get("windows")}))
        print(f"step times written to {args.json}")


if __name__ == "__main__":
    main()
