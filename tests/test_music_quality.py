"""The quality score: calibrated on held-out real music, compared per metric as distributions, and never fooled
by a copy of the training set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.contract import config as C
from engine.contract.monitor_config import MusicSection
from engine.monitoring.music_evaluator import MusicEvaluator
from engine.music import data as D
from engine.music import quality
from engine.music.metrics import METRICS


@pytest.fixture(scope="module")
def evaluator(podium_cache, tmp_path_factory):
    """An evaluator over the smoke corpus with a wider validation split, so there are real windows to compare."""
    cfg = C.load(C.resources_dir() / "smoke.yaml", ["data.val_fraction=0.4"])
    corpus = D.prepare(cfg)
    train_ids, val_ids = D.split_pieces(corpus.names, cfg.data.val_fraction, cfg.data.split_seed)
    evaluator = MusicEvaluator(
        MusicSection(reference_window_beats=16.0),
        cfg.sample,
        corpus.tokenizer(),
        [corpus.piece(i) for i in val_ids],
        tmp_path_factory.mktemp("samples"),
        cfg.tokenizer.positions_per_beat,
        corpus=corpus,
        data_cfg=cfg.data,
    )
    return evaluator, corpus, train_ids, val_ids


class _Scripted(torch.nn.Module):
    """A model that writes the given token sequences, one per sample (a batch's rows padded with EOS, as
    the real model pads a finished row)."""

    def __init__(self, sequences: list[list[int]], eos: int):
        super().__init__()
        self.sequences, self.eos, self.calls = sequences, eos, 0
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def generate(self, prompt, *args, allowed=None, **kwargs):
        rows = []
        for _ in range(prompt.shape[0]):
            rows.append(self.sequences[self.calls % len(self.sequences)] + [self.eos])
            self.calls += 1
        width = max(len(r) for r in rows)
        padded = [r + [self.eos] * (width - len(r)) for r in rows]
        return torch.cat([prompt, torch.tensor(padded)], dim=1)


def _bars(tokenizer, piece: np.ndarray, first: int, count: int) -> list[int]:
    ids = piece.tolist()
    bars = [i for i, t in enumerate(ids) if t == tokenizer["Bar_None"]] + [len(ids)]
    return ids[bars[first] : bars[min(first + count, len(bars) - 1)]]


def _transposed(tokenizer, ids: list[int], shift: int) -> list[int]:
    names = [tokenizer[i] for i in ids]
    return [
        tokenizer[f"Pitch_{int(n.split('_')[1]) + shift}"] if n.startswith("Pitch_") else i
        for i, n in zip(ids, names, strict=True)
    ]


@pytest.mark.slow
def test_a_copy_of_the_training_set_scores_below_held_out_music_and_names_what_it_copied(evaluator):
    ev, corpus, train_ids, val_ids = evaluator
    tok = ev.tokenizer
    eos = tok["EOS_None"]
    copies = [_bars(tok, corpus.piece(i), 1, 4) for i in train_ids[:4]]
    held_out = [_bars(tok, corpus.piece(val_ids[k % len(val_ids)]), 1 + 4 * (k // len(val_ids)), 4) for k in range(4)]

    copied = ev.run(_Scripted(copies, eos), 10)
    transposed = ev.run(_Scripted([_transposed(tok, c, 2) for c in copies], eos), 10)
    real = ev.run(_Scripted(held_out, eos), 10)

    for round_ in (copied, transposed):
        assert round_["metrics"]["memorization"] == 1.0
        assert [s["memorization"]["piece"] for s in round_["samples"]] == [corpus.names[i] for i in train_ids[:4]]
        assert round_["quality_score"] < real["quality_score"]
    assert real["metrics"]["memorization"] < 1.0
    low, high = real["quality_interval"]
    assert low <= real["quality_score"] <= high


def test_samples_far_apart_on_either_side_of_the_reference_do_not_score_like_it():
    rng = np.random.default_rng(0)
    pool = [{"m": float(v)} for v in rng.normal(0.0, 1.0, 200)]
    alike = [{"m": float(v)} for v in rng.normal(0.0, 1.0, 8)]
    split = [{"m": v} for v in (-4.0, 4.0) * 4]  # mean 0, as the pool's
    assert quality.raw_score(split, pool, ["m"]) < quality.raw_score(alike, pool, ["m"]) - 0.3
    calibrated = quality.calibration(pool, 8, ["m"])
    assert quality.calibrated_score(split, pool, calibrated, ["m"])["score"] < 0.05


def test_samples_that_copy_the_training_set_raise_a_memorization_anomaly():
    from engine.contract.monitor_config import AnomalySection
    from engine.monitoring.quality_detectors import Memorization

    detector = Memorization(AnomalySection(memorization_max_share=0.3))
    assert detector.update(10, {"memorization": 0.1}) is None
    assert detector.update(20, {"memorization": float("nan")}) is None  # no windows to compare
    found = detector.update(30, {"memorization": 0.8})
    assert found.kind == "memorization" and found.step == 30
    assert "80%" in found.message and found.evidence == {"memorization": 0.8, "max_share": 0.3}
    assert found.suggestion


@pytest.mark.slow
def test_a_sample_is_measured_over_the_held_out_windows_length_however_long_it_runs(evaluator):
    ev, corpus, _, val_ids = evaluator
    tok = ev.tokenizer
    piece = next(corpus.piece(i) for i in val_ids if tok["TimeSig_4/4"] in corpus.piece(i).tolist())
    window, longer = _bars(tok, piece, 1, 4), _bars(tok, piece, 1, 8)  # 16 beats, the fixture's window; 32
    assert len(longer) > len(window)
    one = ev.run(_Scripted([window], tok["EOS_None"]), 10)["samples"][0]["metrics"]
    long = ev.run(_Scripted([longer], tok["EOS_None"]), 10)["samples"][0]["metrics"]
    # The same first 16 beats, so the same measurement: pitch range and pitches used grow with length, and
    # held-out windows are 16 beats long.
    assert {m: long[m] for m in METRICS} == pytest.approx({m: one[m] for m in METRICS}, nan_ok=True)
