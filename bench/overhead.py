"""Podium's engine against a bare PyTorch loop: what do events and control polling cost?

Both train the same model on the same data and batches (single process, the
run's precision), interleaved round by round so machine noise hits both alike.
Throughput is measured after a warm-up, over whole log intervals, exactly as
the engine's metrics events report it.

    python bench/overhead.py [--rounds 3] [--steps 60] [--set key=value ...]

Prints the ratio engine/bare per round and its median, for the engine with
monitors off, with every monitor on, and with the TensorBoard sink too
(target >= 0.99). Sampling and musical metrics run at evaluations, which the
bench keeps out of the measured steps; their time is in each sample event.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The bench's model: the default architecture on shorter windows, so a step is
# short and any per-step overhead shows.
BENCH_OVERRIDES = ["data.seq_len=128", "batch.global_batch_size=16", "batch.micro_batch_size=16",
                   "run.eval_interval=100000", "checkpoint.interval=0"]


def bare_loop(config_args: list[str], steps: int, warmup: int) -> float:
    """tokens/s of a plain loop: no events, no control, no metrics collectives."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from engine import config as C, data as D, precision
    from engine.model import MusicTransformer, param_groups
    from engine.schedules import Schedule

    cfg = C.load(None, config_args)
    torch.set_num_threads(cfg.run.threads_per_rank or os.cpu_count())
    torch.manual_seed(cfg.run.seed)
    corpus = D.prepare(cfg)
    train, _ = D.split_pieces(corpus.names, cfg.data.val_fraction, cfg.data.split_seed)
    windows = D.WindowSet(corpus, train, cfg.data.seq_len, cfg.data.transpose,
                          (cfg.tokenizer.pitch_low, cfg.tokenizer.pitch_high))
    windows.set_tokenizer(corpus.tokenizer())
    sampler = D.RankSampler(len(windows), 0, 1, cfg.run.seed)
    model = MusicTransformer(cfg.model, corpus.meta["vocab_size"], cfg.data.seq_len)
    opt = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                            betas=(cfg.optim.beta1, cfg.optim.beta2))
    schedule = Schedule(cfg.optim, cfg.run.max_steps)
    prec, _ = precision.choose(cfg.run.precision, torch.device("cpu"))
    pad = corpus.meta["pad_id"]
    tokens = 0
    for step in range(warmup + steps):
        if step == warmup:
            started, tokens = time.perf_counter(), 0
        for group in opt.param_groups:
            group["lr"] = schedule.lr(step)
        pairs = [windows.example(*sampler.next()) for _ in range(cfg.batch.micro_batch_size)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs]))
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))
        n = int((y != pad).sum())
        with precision.autocast(prec, torch.device("cpu")):
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1), ignore_index=pad, reduction="sum")
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip.max_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += n
    return tokens / (time.perf_counter() - started)


def engine_run(config_args: list[str], steps: int, warmup: int) -> float:
    """tokens/s of the real engine (torchrun, events, control polling), from its metrics events."""
    from engine import config as C
    from engine.protocol import read_events

    log_every = C.load(None, config_args).run.log_interval
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        overrides = [a for o in config_args for a in ("--set", o)]
        subprocess.run([sys.executable, str(REPO / "main.py"), "run", "-r", str(run_dir), "--no-progress",
                        "--set", f"run.max_steps={warmup + steps}", *overrides],
                       check=True, capture_output=True, cwd=REPO)
        events, _ = read_events(run_dir / "events.jsonl")
    measured = [e for e in events if e["type"] == "metrics" and e["step"] > warmup]
    seconds = sum(e["step_time"] * log_every for e in measured)
    tokens = sum(e["tokens_per_s"] * e["step_time"] * log_every for e in measured)
    return tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60, help="measured steps per run (a multiple of the log interval)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--worker", choices=["bare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    config_args = BENCH_OVERRIDES + args.overrides
    if args.worker == "bare":
        print(json.dumps(bare_loop(config_args, args.steps, args.warmup)))
        return
    rows = {
        "engine, monitors off": ["anomaly.enabled=false", "monitor.system_interval_s=3600"],
        "engine, every monitor on (system sampling, detectors)": [],
        "engine, every monitor on + TensorBoard sink": ["sinks.tensorboard=true"],
    }
    bare: list[float] = []
    engine: dict[str, list[float]] = {name: [] for name in rows}
    for round_ in range(1, args.rounds + 1):
        # The bare loop runs in its own process too, so both start equally cold.
        out = subprocess.run([sys.executable, __file__, "--worker", "bare", "--steps", str(args.steps),
                              "--warmup", str(args.warmup), *[a for o in args.overrides for a in ("--set", o)]],
                             check=True, capture_output=True, text=True, cwd=REPO)
        bare.append(json.loads(out.stdout.strip().splitlines()[-1]))
        line = f"round {round_}: bare {bare[-1]:,.0f} tokens/s"
        for name, extra in rows.items():
            engine[name].append(engine_run(config_args + extra, args.steps, args.warmup))
            line += f" | {name.removeprefix('engine, ')}: {engine[name][-1] / bare[-1]:.3f}"
        print(line, flush=True)
    print(f"\nthroughput ratio engine/bare, median of {args.rounds} interleaved rounds (target >= 0.99):")
    for name in rows:
        print(f"  {name:<55} {statistics.median(e / b for e, b in zip(engine[name], bare)):.3f}")


if __name__ == "__main__":
    main()
