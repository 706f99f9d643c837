"""Batched against sequential sampling: the wall time of an evaluation's samples, 1, 4 and 8 at a time.

    python bench/sampling.py [--tokens 256] [--repeats 2] [--counts 1 4 8]

Prints the machine, then for each sample count the wall time of generating that
many samples one after another (as evaluations did) and as one batch with a
grammar state per row (as they do now), both with the REMI grammar on, the
default config's model (untrained: generation costs the same whatever the
weights) and the Bach chorales' vocabulary. Every sample runs its full token
budget, so the two paths do the same number of tokens. Sequential and batched
runs alternate repeat by repeat so machine noise hits both alike; the median is
printed, with the ratio to one sample alone measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe  # noqa: E402
from engine.contract.config import Config, TokenizerSection  # noqa: E402
from engine.music.chorales import VOICE_PROGRAMS  # noqa: E402
from engine.music.data import build_tokenizer  # noqa: E402
from engine.music.grammar import RemiGrammar  # noqa: E402
from engine.music.sample import generate_batch  # noqa: E402
from engine.training.model import MusicTransformer  # noqa: E402

NEVER = -1  # a stop token no row draws, so every sample runs its full budget


def timed(model, tokenizer, count: int, tokens: int, batched: bool) -> float:
    prompts, seeds = [[tokenizer["BOS_None"]]] * count, list(range(count))
    options = dict(max_tokens=tokens, temperature=1.0, top_k=0, stop_token=NEVER)

    def grammar() -> RemiGrammar:
        return RemiGrammar(tokenizer, 8)

    started = time.perf_counter()
    with torch.no_grad():
        if batched:
            generate_batch(model, prompts, seeds, **options, grammar=grammar)
        else:
            for prompt, seed in zip(prompts, seeds):
                generate_batch(model, [prompt], [seed], **options, grammar=grammar)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256, help="tokens per sample (default 256)")
    parser.add_argument("--repeats", type=int, default=2, help="repeats per configuration; the median is printed")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 4, 8], help="samples per evaluation")
    args = parser.parse_args()
    counts = sorted({1, *args.counts})  # one sample alone is the baseline

    print(describe())
    tokenizer = build_tokenizer(TokenizerSection(), sorted(VOICE_PROGRAMS.values()), [(3, 4), (4, 4)])
    cfg = Config()
    torch.manual_seed(0)
    model = MusicTransformer(cfg.model, len(tokenizer), cfg.data.seq_len).eval()
    print(
        f"model: the default ({cfg.model.d_model} wide, {cfg.model.n_layers} layers), vocabulary {len(tokenizer)}, "
        f"{args.tokens} tokens per sample, {torch.get_num_threads()} torch threads, median of {args.repeats}"
    )
    timed(model, tokenizer, 1, 16, batched=True)  # warm-up: first-call allocations and kernel choice
    times: dict[tuple[int, bool], list[float]] = {}
    for _ in range(args.repeats):
        for count in counts:
            for batched in (False, True):
                times.setdefault((count, batched), []).append(timed(model, tokenizer, count, args.tokens, batched))
    one = statistics.median(times[(1, True)])
    print(f"{'samples':>7}  {'sequential':>10}  {'batched':>8}  {'batched / one sample':>20}  {'speed-up':>8}")
    for count in counts:
        seq, bat = statistics.median(times[(count, False)]), statistics.median(times[(count, True)])
        print(f"{count:>7}  {seq:>9.2f}s  {bat:>7.2f}s  {bat / one:>20.2f}  {seq / bat:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
