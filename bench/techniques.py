"""What the training techniques cost and give, each against the plain baseline in the same run.

    python bench/techniques.py [--steps 20] [--repeats 3]

Prints the machine, then, for the default model on this machine's device, each against a baseline step
measured in the same run:
- bf16 autocast speed-up over fp32,
- activation checkpointing: saved-activation memory (bytes autograd keeps for
  backward; peak CUDA memory on a GPU) and slowdown,
- each adaptive clipper's cost, timed inside the step, against fixed-norm clipping (target < 2%).
Configurations are interleaved repeat by repeat so machine noise hits all alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe  # noqa: E402
from engine.contract.config import Config  # noqa: E402
from engine.training import precision  # noqa: E402
from engine.training.clipping import GradClipper  # noqa: E402
from engine.training.model import MusicTransformer  # noqa: E402

VOCAB = 453


def make(checkpointing: bool, device: torch.device) -> tuple[MusicTransformer, torch.optim.Optimizer]:
    torch.manual_seed(0)
    cfg = Config()
    model = MusicTransformer(cfg.model, VOCAB, cfg.data.seq_len).to(device)
    model.activation_checkpointing = checkpointing
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_seconds(model, opt, batch, prec: str, clip: str, steps: int, device: torch.device) -> tuple[float, float]:
    """Median step time and median share of it spent clipping (timed inside the same steps)."""
    clipper = GradClipper(clip, list(model.parameters()), device, max_norm=1.0, warmup_steps=2)
    x, y = batch
    timings, shares = [], []
    for _ in range(steps + 2):  # two warm-up steps
        start = time.perf_counter()
        with precision.autocast(prec, device):
            logits = model(x)
        F.cross_entropy(logits.float().view(-1, VOCAB), y.view(-1)).backward()
        sync(device)
        clip_start = time.perf_counter()
        clipper()
        sync(device)
        clip_time = time.perf_counter() - clip_start
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        timings.append(time.perf_counter() - start)
        shares.append(clip_time / timings[-1])
    return statistics.median(timings[2:]), statistics.median(shares[2:])


def saved_activation_mb(model, batch, prec: str, device: torch.device) -> float:
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), precision.autocast(prec, device):
        loss = model(batch[0]).float().sum()
    loss.backward()
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return saved / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    print(describe(), flush=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = Config()
    batch = (
        torch.randint(0, VOCAB, (args.batch, cfg.data.seq_len), device=device),
        torch.randint(0, VOCAB, (args.batch, cfg.data.seq_len), device=device),
    )
    fast = "bf16" if precision.choose("auto", device)[0] == "bf16" else "fp32"
    runs = {
        "fp32": ("fp32", False, "fixed"),
        "bf16": ("bf16", False, "fixed"),
        "bf16+ckpt": (fast, True, "fixed"),
        "autoclip": (fast, False, "autoclip"),
        "ratio": (fast, False, "ratio"),
        "agc": (fast, False, "agc"),
        "baseline": (fast, False, "fixed"),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    clip_share: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.repeats):
        for name, (prec, ckpt, clip) in runs.items():
            model, opt = make(ckpt, device)
            seconds, share = step_seconds(model, opt, batch, prec, clip, args.steps, device)
            times[name].append(seconds)
            clip_share[name].append(share)
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    t = {name: statistics.median(v) for name, v in times.items()}
    model, _ = make(False, device)
    plain_mb = saved_activation_mb(model, batch, fast, device)
    model, _ = make(True, device)
    ckpt_mb = saved_activation_mb(model, batch, fast, device)
    kind = "peak CUDA memory" if device.type == "cuda" else "activations saved for backward"
    print(
        f"\ndevice {device}, default model ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters), "
        f"batch {args.batch} x {cfg.data.seq_len}, median of {args.repeats} x {args.steps} steps"
    )
    print(f"baseline ({fast}, fixed-norm clipping): {t['baseline'] * 1e3:.0f} ms/step")
    print(
        f"bf16 autocast vs fp32:          {t['fp32'] / t['bf16']:.2f}x faster "
        f"({t['fp32'] * 1e3:.0f} -> {t['bf16'] * 1e3:.0f} ms/step)"
    )
    print(
        f"activation checkpointing ({fast}): {kind} {plain_mb:.0f} -> {ckpt_mb:.0f} MB "
        f"({1 - ckpt_mb / plain_mb:.0%} less), {t['bf16+ckpt'] / t['baseline'] - 1:+.1%} step time"
    )
    # The clipper's cost is timed inside each step: a share of that step, robust to machine noise
    # that whole-step comparisons between separate runs are not.
    fixed = statistics.median(clip_share["baseline"])
    print(f"fixed-norm clipping:            {fixed:.2%} of the step")
    for clip in ("autoclip", "ratio", "agc"):
        share = statistics.median(clip_share[clip])
        print(
            f"{clip:<9} clipping:              {share:.2%} of the step, {share - fixed:+.2%} over fixed "
            f"(target < 2%); whole-step ratio {t[clip] / t['baseline']:.3f}"
        )


if __name__ == "__main__":
    main()
