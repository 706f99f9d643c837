"""What trustworthy checkpoints cost: save and load against plain torch.save/torch.load, sizes by
kind, precision and compression, and the training stall of background against inline saving.

    python bench/checkpoint.py [--size medium] [--repeats 5] [--trained CKPT] [--dir /tmp]

Every timing is the median of ``--repeats`` rounds, the variants interleaved
round by round so machine noise hits them alike; the machine (CPU, cores, load,
file system) is printed first, and every figure is also a ratio to its baseline
measured in the same run (a bare ``torch.save`` / ``torch.load`` of the same
state; training without saves), so runs on different machines compare. Targets:
a trusted save (sha256, fsync, manifest, rename) at most 1.1x a bare
``torch.save``; the training stall of an async save at most 20% of an inline one. ``--trained`` points at a
real trained checkpoint, for compression ratios and the validation loss of
half-precision weights (needs the run's prepared data cache).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from bench.machine import describe  # noqa: E402
from engine.checkpoints import checkpoint, writing  # noqa: E402
from engine.contract.config import CheckpointSection, ModelSection  # noqa: E402
from engine.contract.manifest import read_manifest  # noqa: E402
from engine.training.distributed import Dist  # noqa: E402
from engine.training.model import MusicTransformer, param_groups  # noqa: E402

SIZES = {"small": (256, 4, 4), "medium": (512, 8, 8), "large": (1024, 12, 16)}
VOCAB, SEQ = 453, 256


def machine(root: Path, device: str) -> str:
    """The machine line every bench prints (bench/machine.py), the file system written to, and the GPU."""
    line = f"{describe()}; {_file_system(root)}"
    if device.startswith("cuda"):
        line += f"; GPU {torch.cuda.get_device_name()}"
    return line


def _file_system(path: Path) -> str:
    """The type and mount point of the file system holding ``path`` (the longest matching mount)."""
    best = ("?", "?")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _, point, kind, *_ = line.split()
                if str(path.resolve()).startswith(point.rstrip("/") + "/") and len(point) >= len(best[1]):
                    best = (kind, point)
    except OSError:
        return "file system unknown"
    return f"writing to {best[0]} at {best[1]}"


def build(size: str, device: str = "cpu") -> tuple[MusicTransformer, torch.optim.Optimizer]:
    d, layers, heads = SIZES[size]
    torch.manual_seed(0)
    model = MusicTransformer(ModelSection(d_model=d, n_layers=layers, n_heads=heads), VOCAB, SEQ).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)
    return model, optimizer


def train_steps(model, optimizer, steps: int, batch: int = 4, length: int = 128) -> None:
    device = next(model.parameters()).device
    for _ in range(steps):
        x = torch.randint(0, VOCAB, (batch, length), device=device)
        loss = torch.nn.functional.cross_entropy(model(x).view(-1, VOCAB), x.roll(-1, 1).view(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def parts_of(model, optimizer) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "train_state": {"step": 1, "ranks": [{"rng": checkpoint.rng_state(torch.device("cpu"))}]},
    }


def timed(fn, *args) -> float:
    # Each variant starts with no writeback pending from the one before, or it would pay for it.
    os.sync()
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def plain_save(parts: dict, folder: Path, fsync: bool) -> None:
    folder.mkdir()
    for name, obj in parts.items():
        if not fsync:
            torch.save(obj, folder / f"{name}.pt")
            continue
        with open(folder / f"{name}.pt", "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())


def bytes_and_fsync(blobs: dict[str, bytes], folder: Path) -> None:
    """Already-serialized bytes written whole, then fsynced: durability without serializing or hashing.
    Not a floor: a save that starts writeback while it writes (as Podium's does) can beat it."""
    folder.mkdir()
    for name, blob in blobs.items():
        with open(folder / f"{name}.pt", "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())


def _inline_hashing(save) -> None:
    """The design alternative to hashing on a helper thread, for comparison."""
    chunk, writing.PARALLEL_HASH_BYTES = writing.PARALLEL_HASH_BYTES, 1 << 62
    try:
        save()
    finally:
        writing.PARALLEL_HASH_BYTES = chunk


def plain_load(folder: Path) -> None:
    for path in folder.glob("*.pt"):
        torch.load(path, weights_only=True)


def mb(n: float) -> str:
    return f"{n / 2**20:8.1f} MB"


def bench_save_load(parts: dict, root: Path, repeats: int) -> None:
    blobs = {name: _bytes_of(obj) for name, obj in parts.items()}
    variants = {
        "torch.save": lambda d: plain_save(parts, d, fsync=False),
        "torch.save + fsync": lambda d: plain_save(parts, d, fsync=True),
        "the bytes alone, written then fsynced": lambda d: bytes_and_fsync(blobs, d),
        "podium (sha256+fsync+manifest+rename)": lambda d: checkpoint.save(d, 1, parts),
        "podium, hashing on the writing thread": lambda d: _inline_hashing(lambda: checkpoint.save(d, 1, parts)),
        "podium + zstd-1": lambda d: checkpoint.save(d, 1, parts, compression="zstd", level=1),
        "podium + zstd-3": lambda d: checkpoint.save(d, 1, parts, compression="zstd", level=3),
    }
    saves = {name: [] for name in variants}
    loads = {name: [] for name in ("torch.load", "podium (verify + load)", "podium zstd-3 (verify + load)")}
    for _ in range(repeats):
        for name, save in variants.items():
            target = root / "save"
            saves[name].append(timed(save, target))
            if name == "torch.save":
                loads["torch.load"].append(timed(plain_load, target))
            elif name.startswith("podium (sha"):
                loads["podium (verify + load)"].append(timed(checkpoint.load, target / "step-0000001"))
            elif name == "podium + zstd-3":
                loads["podium zstd-3 (verify + load)"].append(timed(checkpoint.load, target / "step-0000001"))
            shutil.rmtree(target)
    size = sum(len(blob) for blob in blobs.values())
    base = statistics.median(saves["torch.save"])
    print(f"\nsave ({mb(size).strip()} of state, median of {repeats}; ratio to a bare torch.save)")
    for name, times in saves.items():
        t = statistics.median(times)
        print(f"  {name:<40} {t:7.3f} s  {size / t / 2**20:7.0f} MB/s  ratio {t / base:5.2f}x")
    trusted = statistics.median(saves["podium (sha256+fsync+manifest+rename)"]) / base
    print(
        f"  trusted save: {trusted:.2f}x a bare torch.save (target <= 1.10x): {'met' if trusted <= 1.1 else 'MISSED'}"
    )
    # Where a trusted save's time goes beyond a bare torch.save: making the bytes durable (the disk), then
    # what Podium adds to a durable torch.save (sha256, manifest, rename, the folder's fsyncs).
    durable = statistics.median(saves["torch.save + fsync"]) / base
    floor = statistics.median(saves["the bytes alone, written then fsynced"]) / base
    print(
        f"  decomposition: fsync makes torch.save {durable:.2f}x (the bytes alone, written and fsynced: "
        f"{floor:.2f}x); hashing, manifest and rename add {trusted / durable:.2f}x to a durable torch.save"
    )
    base = statistics.median(loads["torch.load"])
    print("load (files in the page cache)")
    for name, times in loads.items():
        t = statistics.median(times)
        print(f"  {name:<40} {t:7.3f} s  ratio {t / base:5.2f}x")


def _bytes_of(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def bench_sizes(parts: dict, root: Path, label: str) -> None:
    print(f"\nsize by kind, precision and compression ({label})")
    full = None
    for codec, level in (("none", 0), ("zstd", 1), ("zstd", 3), ("zstd", 9)):
        compression = None if codec == "none" else codec
        started = time.perf_counter()
        path = checkpoint.save(root / f"full-{codec}{level}", 1, parts, compression=compression, level=level or 3)
        seconds = time.perf_counter() - started
        total = sum(e["size"] for e in read_manifest(path)["files"].values())
        full = full or total
        name = "none" if codec == "none" else f"zstd-{level}"
        print(f"  full     fp32  {name:<7} {mb(total)}  {total / full:6.1%} of full  (save {seconds:.2f} s)")
        if codec == "none" or level == 3:
            for dtype in ("fp32", "fp16", "bf16"):
                weights = root / f"weights-{codec}{level}-{dtype}"
                shutil.copytree(path, weights)
                checkpoint.archive(weights, dtype, compression, level or 3)
                size = sum(e["size"] for e in read_manifest(weights)["files"].values())
                print(f"  weights  {dtype}  {name:<7} {mb(size)}  {size / full:6.1%} of full")


def bench_half_precision(trained: Path) -> None:
    """Validation loss of a trained checkpoint's weights in fp32, fp16 and bf16."""
    from engine.checkpoints.average import Validator

    loaded = checkpoint.load(trained, parts=("model",))
    validator = Validator(loaded["manifest"])
    fp32 = validator(loaded["model"])
    print(f"\nvalidation loss of {trained} with its weights stored in")
    print(f"  fp32  {fp32:.6f}")
    for dtype in ("fp16", "bf16"):
        value = validator(checkpoint.cast_floating(loaded["model"], checkpoint.DTYPES[dtype]))
        print(f"  {dtype}  {value:.6f}  (change {value - fp32:+.2e})")


def bench_stall(size: str, device: str, root: Path, steps: int, every: int, repeats: int) -> None:
    """Seconds the training loop is blocked per save, and the loop's total time, inline vs async."""
    dist = Dist(0, 1, 0, 1, 0, torch.device(device), "gloo")
    modes = ("no saves", "inline", "async")
    loops = {mode: [] for mode in modes}
    blocked = {mode: [] for mode in modes}
    waited = {mode: [] for mode in modes}
    final_wait = []
    for r in range(repeats):
        for mode in modes:
            model, optimizer = build(size, device)
            train_steps(model, optimizer, 2)  # allocate optimizer state and warm up before timing
            section = CheckpointSection(interval=every, keep_last=2, keep_best=0, async_save=mode == "async")
            manager = checkpoint.CheckpointManager(root / f"stall-{mode}-{r}", section, dist, lambda *a, **k: None)
            _sync(device)
            started = time.perf_counter()
            for step in range(1, steps + 1):
                train_steps(model, optimizer, 1)
                if mode != "no saves" and step % every == 0:
                    t0 = time.perf_counter()
                    manager.settle()  # the previous write, if training outran it
                    waited[mode].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    manager.save(
                        step, "interval", functools.partial(parts_of, model, optimizer), meta={}, metric=None, files={}
                    )
                    blocked[mode].append(time.perf_counter() - t0)
            _sync(device)
            loops[mode].append(time.perf_counter() - started)
            t0 = time.perf_counter()
            manager.settle()  # the trainer waits for the last background write before run_end
            if mode == "async":
                final_wait.append(time.perf_counter() - t0)
            shutil.rmtree(root / f"stall-{mode}-{r}", ignore_errors=True)
    base = statistics.median(loops["no saves"])
    model, optimizer = build(size, device)
    train_steps(model, optimizer, 1)
    state = sum(len(_bytes_of(obj)) for obj in parts_of(model, optimizer).values())
    print(
        f"\ntraining stall ({size} model on {device}, {mb(state).strip()} per save, {steps} steps, a save every "
        f"{every}, median of {repeats})"
    )
    sync_stall = statistics.median(blocked["inline"])
    for mode in modes:
        loop = statistics.median(loops[mode])
        line = f"  {mode:<9} loop {loop:7.2f} s ({loop / base - 1:+6.1%} vs no saves)"
        if mode != "no saves":
            stall = statistics.median(blocked[mode])
            line += f"  blocked per save {stall:6.3f} s"
            if mode == "async":
                line += (
                    f" = {stall / sync_stall:5.1%} of inline; waiting for the previous write "
                    f"{statistics.median(waited[mode]):.3f} s; end-of-run wait {statistics.median(final_wait):.3f} s"
                )
        print(line)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="medium")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--trained", type=Path, help="a trained checkpoint for real compression ratios and half-precision loss"
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("--stall-size", choices=sorted(SIZES), default="small")
    parser.add_argument("--stall-steps", type=int, default=40)
    parser.add_argument("--stall-device", default="cpu", help="where the stall bench trains (cpu, cuda)")
    parser.add_argument("--stall-every", type=int, help="steps between saves (default: a quarter of --stall-steps)")
    parser.add_argument("--only-stall", action="store_true", help="skip the save, load and size figures")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="podium-bench-", dir=args.dir))
    try:
        model, optimizer = build(args.size)
        train_steps(model, optimizer, 2)
        parts = parts_of(model, optimizer)
        print(machine(root, args.stall_device))
        print(
            f"{args.size} model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters; "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; writing under {root}"
        )
        if not args.only_stall:
            bench_save_load(parts, root, args.repeats)
            bench_sizes(parts, root / "sizes", f"{args.size}, 3 AdamW steps on random tokens")
        if args.trained and not args.only_stall:
            trained = checkpoint.load(args.trained)
            bench_sizes(
                {k: v for k, v in trained.items() if k != "manifest"},
                root / "trained-sizes",
                f"trained: {args.trained}",
            )
            bench_half_precision(args.trained)
        bench_stall(
            args.stall_size,
            args.stall_device,
            root,
            args.stall_steps,
            args.stall_every or args.stall_steps // 4,
            max(1, args.repeats // 2),
        )
        print(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
