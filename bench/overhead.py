"""Podium's engine against a bare PyTorch loop: what do monitoring and the engine's machinery cost?

    python bench/overhead.py [--device auto|cpu|cuda] [--mode inprocess|sliced|sequential]
                             [--seconds S] [--warmup-s W] [--interleave step|block]
                             [--aa N] [--no-sinks] [--only-aa]
                             [--rounds R] [--steps N] [--warmup W] [--quick] [--budget-s B]
                             [--json FILE] [--set key=value ...]

The question (issue 5): with every monitor on, is the engine's throughput at
least 0.99 of the bare loop's, measured in the same run? ``--mode inprocess``
(the default) answers it inside one process. The other two modes compare
separate processes; they stay for the engine's whole machinery (launcher,
torchrun) but cannot resolve 1% (see "Separate processes" below).

In-process mode (the default)
-----------------------------
One Python process, world size 1 (one rank needs no torchrun and no process
group: engine/training/distributed.py's collectives are local then), holds every arm,
all built from the same config (model, data order, precision, optimizer, fused
AdamW on CUDA; one thread on CPU):

- bare: ``BareLoop``, a minimal user's loop (set the LR, draw the batch,
  forward, backward, clip, step; read the loss at the log step, which on CUDA
  is a full sync), with its own model (the engine's initial weights),
  optimizer and sampler.
- bare (A/A 1): a second, identical ``BareLoop`` with its own model: the
  control. Same code, so its ratio must hold 1.0; its CI is the method's
  resolution (memory layout and placement of a second model included).
- engine, every monitor on: the real ``engine.training.train.Trainer`` with the default
  monitoring, driven through ``Trainer.begin`` and ``Trainer.iteration`` (one
  pass of the training loop, the loop ``train()`` itself runs): each step does
  what a run's does: the control poll and agreement, the watchdog beat, the
  step's device values kept for the log step (engine/training/interval.py); the log
  step the metrics reduction and its event,
  the ``system`` event when a new sample is in, the anomaly detectors, the
  sinks, the control poll for their recovery actions. The system sampler and
  the watchdog run on their threads throughout. Music evaluation runs only at
  evaluations, none of which falls in the measured steps (its time is in each
  ``sample`` event); no checkpoint falls in them either.
- engine + TensorBoard: a second Trainer, the same but for
  ``sinks.tensorboard=true``, as a run with the sink on (``--no-sinks`` or no
  tensorboard package: left out). No W&B arm here: its service is a process
  of its own (``--mode sliced`` has one when wandb is installed).

Turns. A cycle is one log interval (``run.log_interval`` steps) of every arm,
so it holds exactly one log step of each. With ``--interleave step`` (the
default) the arms take turns every step: step 1 of every arm, then step 2, and
so on; with ``--interleave block`` each arm runs its whole interval in turn.
The order goes through every rotation of the arms and its reverse, cycle by
cycle, so each arm takes each place equally often. Turns of a step matter on
a shared machine: a core's speed drifts by several per cent over seconds, so
arms a log interval apart (``block``) see different speeds (+-3% in 30 s on
the 2-core CPU below), where arms a step apart see the same (+-0.6% in 60 s).
Unmeasured cycles first (``--warmup-s``, two cycles at least; after the first
each kind of arm is audited, below), then cycles for ``--seconds``. The
engine's interval clock (``Interval.start``) stops while the other arms run,
so its tokens/s and step_time, and the detectors that read them, see a run
that was not interleaved. Every arm shares the process: allocator, threads,
CPU placement and the machine's drift over time are the same for all, which
is what separate processes could not give.

Audit. One log interval of every arm runs under
engine/training/op_audit.py (and on CUDA torch.cuda.set_sync_debug_mode("warn")): the
PyTorch operators per step (on a GPU about one kernel launch each: the host's
share of a step) and, in the steps before the log step, anything that would
make the host wait for the device (a read of a device value, a tensor made
from host data, a data-dependent shape). The engine should match the bare
loop's count and wait for nothing.

Timing and statistics. Every step is timed with ``perf_counter`` and the main
thread's ``thread_time``. Per arm, "wall, robust" is, per position in the
log interval, the median over blocks, summed (the log step included) and
divided by the interval; "wall, mean" averages every measured step (rare work
included); "main-thread CPU" is the robust figure on the training thread's CPU
time (on CUDA mostly launches and waits). A ratio is bare's time per step over
the arm's (throughput arm/bare); its 95% CI is a bootstrap over cycles (2000
replicates; the same cycles for both arms, so the blocks of a cycle stay
paired). On CUDA each block ends at a device read (the engine's metrics
reduction; the bare loop's loss.item() and synchronize), so block totals are
exact and the robust figure is a close estimate of them.

Background threads run during every arm, so their cost falls on all arms
alike. Their CPU time is read per thread (/proc/self/task/TID/schedstat,
nanoseconds; psutil's clock ticks where that is missing) over the measured
span and reported as a share of its wall time: the system sampler and the
watchdog over all of it, the TensorBoard arm's own threads (its writer, its
trainer's sampler and watchdog) over that arm's steps. The result row divides
the engine's ratio and its CI by (1 + share):
all of that CPU time charged to the engine, as if it stalled the training
thread (conservative: the part of it that did is already in the wall times).

Verdict. MET only if the result's CI lower bound is >= 0.99 and the A/A
control is sane (every one of its CIs holds 1.0, over 10 cycles at least: a
bootstrap over fewer says little); the control's half-width is printed as
the method's resolution. Error and anomaly events written while
measuring are printed (none should be).

What it counts more or less than a run. With cycles longer than
``monitor.system_interval_s`` (5 s; on CPU a cycle is ~17 s) almost every
engine log step finds a new system sample and emits a ``system`` event and
runs the system detectors, where a run does that once per 5 s: counted more
often than in a run (on CUDA a cycle is well under 5 s). Not in this mode: the
launcher (``main.py run`` follows the events file every 0.2 s) and the
torchrun agent, which are processes of their own (in the sliced mode's
measurements ~0.2% of a core after start); on a GPU host they run on other
cores. Defaults: CPU 240 s measured after 20 s of warm-up (with the data
prepared, ~5 min in all); CUDA 60 s after 10 s (~1.5 min in all with the
data prepared on the spot: about 120 cycles of ~12 ms steps).

Found here (2-core shared CPU, one thread, load ~1). Taking turns in blocks
(before --interleave step): 240 s, 14 cycles: every monitor on 0.9996
[0.9690, 1.0192], A/A 0.9938 [0.9575, 1.0110]: +-2.5%, "not established";
the core's speed moves by ~6% from block to block with a correlation time of
about a second, so blocks seconds apart did not cancel it (900 s: +-1%).
Taking turns every step, the tiny model below (14 ms steps), 120 s, 205
cycles: every monitor on 1.0030 [0.9960, 1.0098] MET, + TensorBoard 0.9993
[0.9934, 1.0054] MET, A/A 1.0051 [0.9985, 1.0114] (+-0.65%). A rerun an hour
later, the machine slower (19 ms steps): 1.0047 [0.9874, 1.0172] and 0.9935
[0.9808, 1.0184], A/A +-1.6%: not established. After the per-rank work clock,
the fp16 norm masking and the early checkpoint announcement (session 4), 120 s,
204 cycles: 1.0093 [1.0024, 1.0168] and + TensorBoard 1.0086 [1.0015,
1.0146], but the A/A control failed at 1.0100 [1.0030, 1.0165]: the first
bare arm ran 1% slow by its place, and the engine's 14.93 ms/step equals the
second bare loop's 14.93. In a host-bound proxy for a GPU (d_model 16, one
layer, 16-token windows, 3.4 ms steps of 390 operators) the engine's mean was
0.9915 [0.9879, 0.9948] of the bare loop's: about 30 us of Python a step, 0.3%
of the H200's 11.5 ms step. The engine dispatches 690
operators a step against the bare loop's 688 (the difference is views and
the batch's empty tensor, no kernels; in kernels it has one fewer, a
division where clip_grad_norm_ has two) and nothing that would
wait: python bench/overhead.py --seconds 120 --set model.d_model=32 --set
model.n_layers=2 --set model.n_heads=2 --set batch.global_batch_size=4 --set
batch.micro_batch_size=4 --set data.max_pieces=20. The default model (0.42 s
steps), 240 s, 15 cycles: every monitor on 1.0023 [0.9939, 1.0170], +
TensorBoard 1.0002 [0.9885, 1.0137], A/A 1.0062 [0.9917, 1.0226] (+-1.5%; its
mean column, 1.0110 [1.0035, 1.0197], fails the control: too few cycles);
1277 operators a step against the bare loop's 1276 (before the batch's copy
was written in place). On a quiet GPU host the
steps are ~40x shorter, so a minute gives far more cycles.

Separate processes (``--mode sliced``, ``--mode sequential``)
-------------------------------------------------------------
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
   loop iteration with ``debug.step_times`` (engine/monitoring/monitors.py StepClock,
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
3. Interleaving (``--mode sliced``, meant for CPU): all configurations
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
   ``--mode sequential`` (meant for CUDA, where a lent GPU host is quiet
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
process (heap, layout, environment), not at the step's code. That is why the
in-process mode exists.

Defaults of these modes: sliced, 420 s of slices (~8 min in all); sequential,
3 rounds x (100 + 1000) steps on CUDA (x (10 + 60) on CPU); ``--quick`` 3 rounds x (50 + 500) steps (a few
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
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The bench's model: the default architecture on shorter windows, so a step is
# short and any per-step overhead shows. Evaluation (validation, samples) runs
# only after the last step; it is cut down because it is not measured.
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


def bare_loop(config_args: list[str], steps: int, warmup: int, device_name: str, out: Path) -> None:
    """The bare loop as a process of its own (sliced and sequential modes), timed like the engine's StepClock."""
    import torch

    from engine.contract import config as C

    signal.signal(signal.SIGTERM, _request_stop)
    cfg = C.load(None, config_args)
    device = torch.device("cuda", 0) if device_name == "cuda" else torch.device("cpu")  # the engine's cuda:LOCAL_RANK
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:  # as engine.training.distributed.init does for one rank
        torch.set_num_threads(cfg.run.threads_per_rank or max(1, os.cpu_count() or 1))
    torch.manual_seed(cfg.run.seed)
    loop = BareLoop(cfg, device)
    wall, cpu = [time.perf_counter()], [time.process_time()]
    while loop.steps < warmup + steps and not _stop:
        loop.step()
        wall.append(time.perf_counter())
        cpu.append(time.process_time())
    out.write_text(json.dumps({"step": list(range(loop.steps + 1)), "wall": wall, "cpu": cpu, "tokens": loop.tokens}))


def prepare(config_args: list[str]) -> None:
    from engine.contract import config as C
    from engine.music import data as D

    D.prepare(C.load(None, config_args))


# ---------------------------------------------------------------------------------------------- processes


class Run:
    """One configuration's process tree: the bare worker, or main.py run (launcher, torchrun, worker)."""

    def __init__(self, name: str, config_args: list[str], max_steps: int, device: str, env: dict, tmp: Path):
        self.name, self.dir = name, tmp / f"run-{sum(1 for _ in tmp.iterdir())}"
        self.log = open(tmp / f"{self.dir.name}.log", "wb")
        if name.startswith(BARE):
            self.out = tmp / f"{self.dir.name}.json"
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                "bare",
                "--steps",
                str(max_steps),
                "--warmup",
                "0",
                "--device",
                device,
                "--worker-out",
                str(self.out),
                "--set",
                f"run.max_steps={max_steps}",
            ]
        else:
            self.out = self.dir / "step_times.json"
            cmd = [
                sys.executable,
                str(REPO / "main.py"),
                "run",
                "-r",
                str(self.dir),
                "--no-progress",
                "--set",
                f"run.max_steps={max_steps}",
                "--set",
                "debug.step_times=true",
            ]
        cmd += [a for o in config_args for a in ("--set", o)]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

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
            from engine.contract.commands import send_command

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
            from engine.contract.events import read_events

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
    return {
        "start": wall[:-1][ok],
        "end": wall[1:][ok],
        "wall": np.diff(wall)[ok],
        "cpu": np.diff(cpu)[ok],
        "phase": (step[1:][ok] - 1) % log_every,
    }


# ---------------------------------------------------------------------------------------------- the two modes


def sliced(
    rows: dict[str, list[str]],
    config_args: list[str],
    warmup: int,
    device: str,
    env: dict,
    seconds: float,
    slice_s: float,
    log_every: int,
) -> tuple[dict, dict, list]:
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
                order = names[cycle % len(names) :] + names[: cycle % len(names)]
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
                    print(
                        f"  {time.monotonic() - started:4.0f} s: {cycle} cycles, load average {loads[-1][0]:.2f}",
                        flush=True,
                    )
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


def sequential(
    rows: dict[str, list[str]],
    config_args: list[str],
    warmup: int,
    steps: int,
    device: str,
    env: dict,
    rounds: int,
    budget_s: float | None,
    log_every: int,
) -> tuple[dict, dict, list]:
    """Every configuration to the end, one after the other, order rotated per round; blocks are rounds."""
    names = [BARE, *rows]
    parts: dict[str, list[dict]] = {n: [] for n in names}
    loads, started, last_round, clocks = [], time.monotonic(), 0.0, {n: [] for n in names}
    for r in range(rounds):
        elapsed = time.monotonic() - started
        if budget_s and r >= 2 and elapsed + last_round > budget_s:  # two rounds at least: a CI needs two blocks
            print(
                f"  budget: stopping after {r} rounds ({elapsed:.0f} s; a round takes ~{last_round:.0f} s)", flush=True
            )
            break
        round_start = time.monotonic()
        loads.append(os.getloadavg())
        order = names[r % len(names) :] + names[: r % len(names)]
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
        line += [
            f"{n.removeprefix('engine, ')} {base / robust(parts[n][-1]['wall'], parts[n][-1]['phase'], log_every):.4f}"
            for n in rows
        ]
        print("  " + " | ".join(line), flush=True)
    data = {n: {k: np.concatenate([p[k] for p in parts[n]]) for k in parts[n][0]} for n in names}
    return data, {"blocks": len(parts[BARE]), "clocks": clocks}, loads


# ---------------------------------------------------------------------------------------------- in-process mode


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


def inprocess(
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
        "tb_threads": [l for l, _ in tb_threads],
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


INPROCESS_COLUMNS = (("wall", "robust"), ("wall", "mean"), ("cpu", "robust"))
MIN_CYCLES = 10  # fewer and the bootstrap CI says little: no verdict


def block_stat(values: np.ndarray, kind: str) -> np.ndarray | float:
    return robust_blocks(values) if kind == "robust" else values.mean(axis=(-2, -1))


def compare_blocks(
    data: dict, base: str, other: str, rng: np.random.Generator, chunk: int = 250
) -> list[tuple[float, float, float]]:
    """Per column: throughput ratio other/base (base's time per step / other's), bootstrap 95% CI over cycles
    (the same cycles for both arms, so each pair of blocks stays together)."""
    n = len(data[base]["wall"])
    cells = []
    for column, kind in INPROCESS_COLUMNS:
        a, b = data[base][column], data[other][column]
        point = float(block_stat(a, kind) / block_stat(b, kind))
        boot = []
        for start in range(0, BOOTSTRAP, chunk):
            pick = rng.integers(0, n, (min(chunk, BOOTSTRAP - start), n))
            boot.append(block_stat(a[pick], kind) / block_stat(b[pick], kind))
        low, high = np.percentile(np.concatenate(boot), [2.5, 97.5])
        cells.append((point, float(low), float(high)))
    return cells


def report_inprocess(result: dict, log_every: int, rng: np.random.Generator) -> None:
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
        cells = compare_blocks(data, base, name, rng)
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


def compare(
    data: dict, base: str, other: str, log_every: int, n_blocks: int, rng: np.random.Generator
) -> list[tuple[float, float, float]]:
    """Per column: throughput ratio other/base (= base's time per step / other's) and its bootstrap 95% CI."""
    points = [estimate(data[base], c, k, log_every) / estimate(data[other], c, k, log_every) for c, k in COLUMNS]
    boot = np.empty((BOOTSTRAP, len(COLUMNS)))
    for i in range(BOOTSTRAP):
        blocks = rng.integers(0, n_blocks, n_blocks)  # the same blocks for both: the pairing in time holds
        pick_b, pick_o = resample(data[base], blocks, rng), resample(data[other], blocks, rng)
        boot[i] = [
            estimate(data[base], c, k, log_every, pick_b) / estimate(data[other], c, k, log_every, pick_o)
            for c, k in COLUMNS
        ]
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


def run_inprocess(args, config_args: list[str], device: str, log_every: int) -> None:
    seconds = args.seconds or (240 if device == "cpu" else 60)
    warmup_s = args.warmup_s if args.warmup_s is not None else (20 if device == "cpu" else 10)
    tensorboard = not args.no_sinks and not args.only_aa and importlib.util.find_spec("tensorboard") is not None
    print(
        f"bench/overhead.py: device {device}, mode inprocess, interleaved by {args.interleave} ({seconds:.0f} s measured after {warmup_s:.0f} s of "
        f"warm-up, blocks of log_interval = {log_every} steps), {os.cpu_count()} cores",
        flush=True,
    )
    print(f"config: {' '.join(config_args)}", flush=True)
    if not args.no_sinks and not args.only_aa and not tensorboard:
        print("note: TensorBoard arm left out: the tensorboard package is not installed", flush=True)
    if not args.no_sinks and not args.only_aa:
        print("note: no W&B arm in this mode (its service is a process of its own); --mode sliced has one", flush=True)
    print(f"{load()} (start)", flush=True)
    began = time.monotonic()
    result = inprocess(
        config_args + [f"run.max_steps={ENDLESS}"],
        seconds,
        warmup_s,
        args.aa,
        tensorboard,
        not args.only_aa,
        log_every,
        args.interleave,
    )
    print(f"(whole bench {time.monotonic() - began:.0f} s)")
    report_inprocess(result, log_every, np.random.default_rng(0))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": device,
                    "mode": "inprocess",
                    "config": config_args,
                    "log_interval": log_every,
                    "loads": result["loads"],
                    "info": {k: v for k, v in result["info"].items() if k != "unexpected"},
                    "blocks": {n: {c: v.tolist() for c, v in d.items()} for n, d in result["data"].items()},
                }
            )
        )
        print(f"step times written to {args.json}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--mode",
        choices=["inprocess", "sliced", "sequential"],
        default="inprocess",
        help="inprocess (the default): every arm in one process; sliced, sequential: a process each",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        help="inprocess: seconds measured (default 240 on CPU, 60 on CUDA); "
        "sliced: seconds of slices in all (default 420)",
    )
    parser.add_argument(
        "--warmup-s",
        type=float,
        help="inprocess: seconds of unmeasured cycles first (default 20 on CPU, 10 on CUDA; one cycle at least)",
    )
    parser.add_argument(
        "--interleave",
        choices=["step", "block"],
        default="step",
        help="inprocess: the arms take turns every step (default) or every log interval",
    )
    parser.add_argument("--slice-s", type=float, default=3.0, help="sliced: seconds per slice")
    parser.add_argument("--rounds", type=int, help="sequential: rounds (default 3)")
    parser.add_argument("--steps", type=int, help="sequential: measured steps per run (a multiple of run.log_interval)")
    parser.add_argument("--warmup", type=int, help="unmeasured steps first (a multiple of run.log_interval)")
    parser.add_argument("--quick", action="store_true", help="sequential: 3 rounds x (50 + 500) steps")
    parser.add_argument(
        "--budget-s", type=float, help="sequential: start no new round past this many seconds (estimated)"
    )
    parser.add_argument("--no-sinks", action="store_true", help="leave out the sink rows")
    parser.add_argument(
        "--aa",
        type=int,
        default=1,
        help="extra bare loops (processes, or arms in inprocess mode), each compared with bare: the A/A control",
    )
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

    import torch  # to resolve --device auto (in the sliced and sequential modes the runs are separate processes)

    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    del torch
    from engine.contract import config as C

    config_args += [f"run.device={device}"]
    if device == "cpu" and not any(o.startswith("run.threads_per_rank=") for o in args.overrides):
        config_args += ["run.threads_per_rank=1"]  # see the docstring: a spare core keeps the noise down
    cfg = C.load(None, config_args)
    log_every = cfg.run.log_interval
    mode = args.mode
    if mode == "inprocess":
        run_inprocess(args, config_args, device, log_every)
        return
    args.seconds = args.seconds or 420
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

    what = (
        f"{args.seconds:.0f} s of {args.slice_s:g} s slices"
        if mode == "sliced"
        else f"{rounds} rounds x {steps} measured steps"
    )
    print(
        f"bench/overhead.py: device {device}, mode {mode} ({what}), warm-up {warmup} steps, log_interval {log_every}, "
        f"{os.cpu_count()} cores, threads {env['OMP_NUM_THREADS']}",
        flush=True,
    )
    print(f"config: {' '.join(config_args)}", flush=True)
    for note in notes:
        print(f"note: {note}", flush=True)
    print(f"{load()} (start)", flush=True)
    began = time.monotonic()
    subprocess.run(
        [sys.executable, __file__, "--worker", "prepare", *[a for o in config_args for a in ("--set", o)]],
        check=True,
        cwd=REPO,
        env=env,
        capture_output=True,
    )
    if mode == "sliced":
        data, info, loads = sliced(rows, config_args, warmup, device, env, args.seconds, args.slice_s, log_every)
        kept = {n: (int(d["wall_ok"].sum()), len(d["wall"])) for n, d in data.items()}
        print(
            f"  {info['cycles']} cycles, {info['blocks']} with every configuration measuring; measured steps "
            "(wall/CPU): " + ", ".join(f"{n.removeprefix('engine, ')} {w}/{c}" for n, (w, c) in kept.items())
        )
    else:
        data, info, loads = sequential(rows, config_args, warmup, steps, device, env, rounds, args.budget_s, log_every)
    n_blocks = info["blocks"]
    if n_blocks < 2:
        raise SystemExit(f"only {n_blocks} block(s) measured: give more --seconds or --rounds")
    for d in data.values():
        d["_by_block"] = {int(b): np.flatnonzero(d["block"] == b) for b in np.unique(d["block"])}

    rng = np.random.default_rng(0)
    print(
        f"\n{load()} (end, {time.monotonic() - began:.0f} s); 1-min load during the run: "
        + " ".join(f"{x[0]:.2f}" for x in loads)
    )
    print(
        f"bare loop: {estimate(data[BARE], 'wall', 'robust', log_every) * 1e3:.2f} ms/step wall, "
        f"{estimate(data[BARE], 'cpu', 'robust', log_every) * 1e3:.2f} ms/step CPU (robust)"
    )
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
    print(
        "\nwall, robust: per phase of the log interval the median step time, summed (log step included); "
        "wall, mean: every measured step; CPU time: the training process, all its threads."
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": device,
                    "mode": mode,
                    "config": config_args,
                    "warmup": warmup,
                    "log_interval": log_every,
                    "loads": loads,
                    "clocks": info["clocks"],
                    "windows": info.get("windows"),
                }
            )
        )
        print(f"step times written to {args.json}")


if __name__ == "__main__":
    main()
