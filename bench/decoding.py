"""Decoding settings on one checkpoint: the calibrated quality and the musical metrics of each setting's samples.

    python bench/decoding.py CHECKPOINT [--samples 32] [--tokens 512] [--setting temperature=0.85,top_k=20 ...]

Generates ``--samples`` samples (seeds 0..n-1, the same for every setting) per
setting with the run's own evaluator (``engine.monitoring.music_evaluator``:
the REMI grammar mask, the held-out pool of the checkpoint's data split,
memorization against its training pieces), and prints per setting: the
calibrated quality percentile with its 5-95% interval (among sets of as many
held-out Bach windows), the mean percentile of its disjoint sets of 4 samples
(what a default run's evaluation of 4 samples reports, averaged over seeds),
the raw score with its 5-95% bootstrap interval over the samples (it still
separates settings that all score below every real set), the samples' median
notes a beat, groove consistency, pitch entropy, polyphony rate and mean leap
in semitones, the share of well-formed samples and the mean and largest
memorization. The held-out windows' 5-95% ranges of the same metrics come
first. A setting is ``sample.*`` fields joined by commas; the default compares
temperatures and top_p.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe  # noqa: E402
from engine.contract.config import ConfigError, validate  # noqa: E402
from engine.monitoring.music_evaluator import MusicEvaluator  # noqa: E402
from engine.music import quality  # noqa: E402
from engine.music.data import prepare, split_pieces  # noqa: E402
from engine.music.metrics import METRICS  # noqa: E402
from engine.music.sample import load_model  # noqa: E402

DEFAULT_SETTINGS = (
    "temperature=1.0",
    "temperature=0.85,top_p=0.9",
    "temperature=1.0,top_p=0.95",
    "temperature=0.9,top_p=0.95",
    "temperature=1.0,top_p=0.9",
)
# What cost the step-403 samples most against held-out Bach (docs/music.md), printed per setting.
SHOWN = ("note_density", "groove_consistency", "pitch_entropy", "polyphony_rate", "mean_abs_interval")
EVALUATION_SET = 4  # music.num_samples' default: the set size a default run's evaluations score


def parse_setting(text: str) -> dict[str, str]:
    """``temperature=0.85,top_k=20`` as sample-section fields; SystemExit naming a malformed one."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise SystemExit(f"--setting {text!r}: {part!r} is not field=value (e.g. temperature=0.85,top_k=20)")
        fields[name.strip()] = value.strip()  # the schema parses and checks it
    return fields


def raw_interval(rows: list[dict], pool: list[dict], resamples: int = 200) -> tuple[float, float]:
    """The 5-95% range of the raw score over bootstrap resamples of the samples."""
    rng = np.random.default_rng(0)
    boot = [
        quality.raw_score([rows[i] for i in rng.integers(0, len(rows), len(rows))], pool, METRICS)
        for _ in range(resamples)
    ]
    low, high = np.nanquantile(boot, [0.05, 0.95])
    return float(low), float(high)


def per_evaluation(rows: list[dict], pool: list[dict]) -> float:
    """The mean percentile of the samples cut into disjoint sets of an evaluation's size, each calibrated as a
    default run's evaluation is: what such a run would report, on average over seeds."""
    calibrated = quality.calibration(pool, EVALUATION_SET, METRICS)
    sets = [rows[i : i + EVALUATION_SET] for i in range(0, len(rows) - EVALUATION_SET + 1, EVALUATION_SET)]
    return float(np.mean([quality.calibrated_score(s, pool, calibrated, METRICS)["score"] for s in sets]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--samples", type=int, default=32, help="samples per setting, 1-64 (default 32)")
    parser.add_argument("--tokens", type=int, default=512, help="tokens per sample (default 512, as evaluations)")
    parser.add_argument("--setting", action="append", help="sample.* fields, e.g. temperature=0.85,top_k=20")
    args = parser.parse_args()

    print(describe())
    model, tokenizer, manifest = load_model(args.checkpoint)
    raw_config = manifest["config"]
    raw_config["music"].update(num_samples=args.samples, seeds=None, sample_tokens=args.tokens)
    cfg = validate(raw_config, source=f"{args.checkpoint}: config")
    corpus = prepare(cfg)
    _, val_ids = split_pieces(corpus.names, cfg.data.val_fraction, cfg.data.split_seed)
    evaluator = MusicEvaluator(
        cfg.music,
        cfg.sample,
        tokenizer,
        [corpus.piece(i) for i in val_ids],
        Path(tempfile.mkdtemp(prefix="podium-decoding-")),
        cfg.tokenizer.positions_per_beat,
        corpus=corpus,
        data_cfg=cfg.data,
    )
    pool = evaluator.pool
    print(
        f"checkpoint: {args.checkpoint} (step {manifest.get('step')}), {args.samples} samples of {args.tokens} "
        f"tokens per setting, {len(pool)} held-out windows, {torch.get_num_threads()} torch threads"
    )
    bands = {name: np.nanquantile([r[name] for r in pool], [0.05, 0.95]) for name in SHOWN}
    ranges = "  ".join(f"{name} {low:.2f}-{high:.2f}" for name, (low, high) in bands.items())
    print(f"held-out Bach windows, 5-95%: {ranges}")
    header = f"{'setting':<28} {'quality (5-95%)':>18} {'per 4':>6} {'raw (5-95%)':>17} "
    header += " ".join(f"{n[:14]:>14}" for n in SHOWN)
    print(header + f" {'well-formed':>11} {'memorized':>13} {'seconds':>7}")
    settings = {}
    for text in args.setting or DEFAULT_SETTINGS:  # every setting checked before the first is generated
        try:
            sample = {**cfg.sample.model_dump(), **parse_setting(text)}
            settings[text] = validate({"sample": sample}, source=f"--setting {text}").sample
        except (ConfigError, ValueError) as exc:
            print(exc, file=sys.stderr)
            return 2
    for text, sample_cfg in settings.items():
        evaluator.sample_cfg = sample_cfg
        started = time.perf_counter()
        result = evaluator.run(model, int(manifest.get("step") or 0))
        seconds = time.perf_counter() - started
        rows = [s["metrics"] for s in result["samples"]]
        valid = sum(bool(s["syntax"]["valid"]) for s in result["samples"])
        copied = np.array([r.get("memorization", np.nan) for r in rows], dtype=float)
        low, high = result["quality_interval"]
        raw_low, raw_high = raw_interval(rows, pool)
        medians = " ".join(f"{np.nanmedian([r[n] for r in rows]):>14.2f}" for n in SHOWN)
        print(
            f"{text:<28} {result['quality_score']:>6.3f} ({low:.2f}-{high:.2f}) {per_evaluation(rows, pool):>6.3f} "
            f"{result['quality_raw']:>5.2f} ({raw_low:.2f}-{raw_high:.2f}) "
            f"{medians} {valid:>5}/{len(rows):<5} {np.nanmean(copied):>5.1%} max {np.nanmax(copied):>3.0%} "
            f"{seconds:>7.0f}",
            flush=True,
        )
    print(f"machine at the end: {describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
