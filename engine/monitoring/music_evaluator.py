"""Generated music at evaluations (rank 0): samples with fixed seeds, saved as MIDI with their metrics,
and scored against the same metrics on the validation pieces (computed once, cached in the run).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.music import metrics as mm
from engine.music import quality, syntax
from engine.music import reference as music_reference
from engine.music.data import Corpus, split_pieces
from engine.music.export import corpus_tempo, finish_score
from engine.music.grammar import RemiGrammar, has_empty_bars
from engine.music.memorization import TrainingIndex
from engine.music.sample import generate_batch
from engine.training.model import MusicTransformer

# Bump when what the reference measures changes, so a resumed run does not score against a stale cache.
REFERENCE_DEFINITION = 4


class MusicEvaluator:
    """Samples with fixed seeds, their musical metrics, and a quality score against the validation pieces.

    With ``music.prompt_from_validation`` a sample opens with bars of a real
    piece. Its MIDI file keeps them (one hears what the model continued), but
    its metrics and syntax are those of what the model generated: the prompt's
    notes would flatter the quality score with real Bach. A sample's metrics
    are those of its first ``music.reference_window_beats`` (whole bars), the
    length of the held-out windows it is scored against; its memorization and
    syntax cover all of it.
    """

    def __init__(
        self,
        music_cfg,
        sample_cfg,
        tokenizer,
        val_pieces: list[np.ndarray],
        samples_dir: Path,
        resolution: int,
        corpus: Corpus | None = None,
        data_cfg=None,
    ):
        """``corpus`` and ``data_cfg`` (its split) give the tempos, voice names and metres of the data."""
        self.cfg, self.sample_cfg = music_cfg, sample_cfg
        self.tokenizer, self.val_pieces, self.dir, self.resolution = tokenizer, val_pieces, samples_dir, resolution
        self.special = {tokenizer.pad_token_id, tokenizer["BOS_None"], tokenizer["EOS_None"]}
        meta = corpus.meta if corpus is not None else {}
        self.voice_names = meta.get("voice_names")
        self.corpus_qpm = corpus_tempo(meta)
        self.val_qpm = [self.corpus_qpm] * len(val_pieces)
        self.train_pieces: list[np.ndarray] = []
        self.train_names: list[str] = []
        if corpus is not None and data_cfg is not None:
            train_ids, val_ids = split_pieces(corpus.names, data_cfg.val_fraction, data_cfg.split_seed)
            if meta.get("qpm"):
                self.val_qpm = [meta["qpm"][i] for i in val_ids]
            self.train_pieces = [corpus.piece(i) for i in train_ids]
            self.train_names = [corpus.names[i] for i in train_ids]
        self.meter_changes = bool(meta.get("meter_changes", False))
        self.constrained = sample_cfg.constrained and type(tokenizer).__name__ == "REMI"
        self.empty_bars = not (self.constrained and self.train_pieces) or has_empty_bars(self.train_pieces, tokenizer)
        self.training_index = self._training_index()
        self.reference, self.pool, self.calibration = self._reference()

    def _notes_and_bars(self, piece: np.ndarray) -> tuple[np.ndarray, float]:
        score = self._decode(piece.tolist())
        return mm.notes_from_score(score), mm.score_beats_per_bar(score)

    def _training_index(self) -> TrainingIndex | None:
        """Every 2-bar window of the training pieces, for memorization; None without them."""
        if not self.train_pieces:
            return None
        decoded = [self._notes_and_bars(piece) for piece in self.train_pieces]
        return TrainingIndex([n for n, _ in decoded], self.train_names, [b for _, b in decoded], self.resolution)

    def _decode(self, ids: list[int]):
        return self.tokenizer.decode([i for i in ids if i not in self.special])

    def _reference_key(self) -> str:
        """Digest of what shapes the reference: its settings, the metrics, the vocabulary and the pieces' tokens."""
        digest = hashlib.sha256(
            json.dumps(
                {
                    "definition": REFERENCE_DEFINITION,
                    "window_beats": self.cfg.reference_window_beats,
                    "resolution": self.resolution,
                    "metrics": list(mm.METRICS),
                    "vocab": self.tokenizer.vocab,
                    "samples": self.cfg.num_samples,
                },
                sort_keys=True,
            ).encode()
        )
        for piece in [*self.val_pieces, *self.train_pieces]:
            tokens = np.ascontiguousarray(piece, dtype=np.int64)
            digest.update(len(tokens).to_bytes(8, "little"))
            digest.update(tokens.tobytes())
        return digest.hexdigest()

    def _reference(self) -> tuple[dict[str, dict[str, float]], list[dict[str, float]], list[float]]:
        """Metrics of the validation pieces after the same decode the samples go through.

        Cached in the run with the key it was computed for, so a resume with
        other ``music.*`` or tokenizer settings, or other validation pieces,
        computes it again instead of scoring against a stale one.
        """
        cache, key = self.dir / "reference.json", self._reference_key()
        if cache.exists():
            cached = json.loads(cache.read_text())
            if cached.get("key") == key:
                return cached["reference"], cached["pool"], cached["calibration"]
        decoded = [self._notes_and_bars(piece) for piece in self.val_pieces]
        notes, beats = [n for n, _ in decoded], [b for _, b in decoded]
        reference = music_reference.reference_stats(notes, self.resolution, beats, self.cfg.reference_window_beats)
        # The same windows, one row each, measured like a sample: the real music the score is calibrated on.
        pool = [
            self._row(window, bar)[0]
            for piece, bar in decoded
            for window in music_reference.bar_windows(piece, bar, self.cfg.reference_window_beats)
        ]
        if self.training_index is not None:
            memorization = music_reference.summarize(pool, [quality.MEMORIZATION])
            reference[quality.MEMORIZATION] = memorization[quality.MEMORIZATION]
        calibration = quality.calibration(pool, self.cfg.num_samples, mm.METRICS)
        self.dir.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "reference": reference, "pool": pool, "calibration": calibration}))
        return reference, pool, calibration

    def _row(
        self, notes: np.ndarray, beats_per_bar: float, measured: np.ndarray | None = None
    ) -> tuple[dict[str, float], dict | None]:
        """A piece's metrics (of ``measured``, a part of it, when given), with its memorization share when there
        is a training set, and that memorization (of all of ``notes``: a copy anywhere counts)."""
        row = mm.compute_all(notes if measured is None else measured, self.resolution, beats_per_bar)
        if self.training_index is None:
            return row, None
        found = self.training_index.lookup(notes, beats_per_bar)
        row[quality.MEMORIZATION] = found.share
        return row, found.as_dict()

    def _prompt(self, index: int) -> list[int]:
        bos = self.tokenizer["BOS_None"]
        if not self.cfg.prompt_from_validation or not self.val_pieces:
            return [bos]
        piece = self.val_pieces[index % len(self.val_pieces)].tolist()
        bar = self.tokenizer["Bar_None"]
        bars = [i for i, t in enumerate(piece) if t == bar]
        end = bars[self.cfg.prompt_bars] if len(bars) > self.cfg.prompt_bars else len(piece)
        return [bos] + piece[:end]

    def _tempo(self, index: int) -> float:
        """The tempo of sample ``index``'s MIDI file: its prompt piece's, or the corpus's."""
        if self.sample_cfg.tempo_from == "prompt" and self.cfg.prompt_from_validation and self.val_qpm:
            return self.val_qpm[index % len(self.val_qpm)]
        return self.corpus_qpm

    def _grammar(self) -> RemiGrammar:
        return RemiGrammar(self.tokenizer, self.resolution, self.meter_changes, self.empty_bars)

    @torch.no_grad()
    def run(self, model: MusicTransformer, step: int) -> dict[str, Any]:
        started = time.perf_counter()
        max_tokens = self.cfg.sample_tokens or self.sample_cfg.max_tokens
        samples, metric_rows, valid = [], [], []
        seeds = self.cfg.sample_seeds()
        prompts = [self._prompt(index) for index in range(len(seeds))]
        generated = generate_batch(
            model,
            prompts,
            seeds,
            max_tokens=max_tokens,
            temperature=self.sample_cfg.temperature,
            top_k=self.sample_cfg.top_k,
            top_p=self.sample_cfg.top_p,
            stop_token=self.tokenizer["EOS_None"],
            grammar=self._grammar if self.constrained else None,
        )
        for index, (seed, prompt, ids) in enumerate(zip(seeds, prompts, generated)):
            body = [i for i in ids if i not in self.special]
            tokens = [self.tokenizer[i] for i in body]
            prompt_tokens = tokens[: len([i for i in prompt if i not in self.special])]
            score = self._decode(ids)
            path = self.dir / f"step-{step:07d}-seed-{seed}.mid"
            finish_score(score, self._tempo(index), self.voice_names).dump_midi(str(path))
            prompt_end = _prompt_end_beats(prompt_tokens)
            notes, bar = _notes_from(score, prompt_end), _beats_per_bar_at(score, prompt_end)
            # Measured at the held-out windows' length: pitch range and pitches used grow with length.
            opening = music_reference.opening_window(notes, bar, self.cfg.reference_window_beats)
            metrics, memorization = self._row(notes, bar, opening)
            syntax = _continuation_syntax(prompt_tokens, tokens, self.resolution)
            samples.append(
                {
                    "path": str(path),
                    "seed": seed,
                    "prompt": len(prompt) - 1,
                    "n_tokens": len(body),
                    "prompt_end_beats": prompt_end,
                    "syntax": {
                        "valid": syntax.valid,
                        "note_validity": syntax.note_validity,
                        "n_notes": syntax.n_notes,
                        "n_errors": syntax.n_errors,
                        "first_error": syntax.first_error,
                    },
                    "metrics": metrics,
                    "memorization": memorization,
                }
            )
            metric_rows.append(metrics)
            valid.append(syntax.valid)
        means = {name: _nanmean([row[name] for row in metric_rows]) for name in metric_rows[0]}
        means["syntax_validity_rate"] = sum(valid) / len(valid)
        calibrated = quality.calibrated_score(metric_rows, self.pool, self.calibration, mm.METRICS)
        return {
            "samples": samples,
            "metrics": means,
            "quality_score": calibrated["score"],
            "quality_interval": calibrated["interval"],
            "quality_raw": calibrated["raw"],
            "quality": calibrated["metrics"],
            "reference": {k: {"mean": v["mean"], "std": v["std"]} for k, v in self.reference.items()},
            "seconds": round(time.perf_counter() - started, 3),
        }


def _prompt_end_beats(tokens: list[str]) -> float:
    """Where a REMI prompt ends, in beats: the end of its last bar, as miditok's decoder places bars.

    A prompt is whole bars of a piece (it stops before a Bar token), so what the
    model generates from its first Bar on starts here. Each Bar advances by the
    length of the bar before it, set by the TimeSig tokens read so far (4/4
    before any, as in miditok).
    """
    start, length, bars = 0.0, 4.0, 0
    for token in tokens:
        kind, _, value = token.partition("_")
        if kind == "Bar":
            start += length if bars else 0.0
            bars += 1
        elif kind == "TimeSig":
            num, _, den = value.partition("/")
            length = int(num) * 4.0 / int(den)
    return start + length if bars else 0.0


def _notes_from(score, start_beats: float) -> np.ndarray:
    """The score's notes whose onset is at or after ``start_beats``, shifted to start there.

    The generated part is measured from the prompt's end, a bar line, so its bars
    keep their place on the metric grid and the prompt's time does not count as
    leading silence. Notes the model adds inside the prompt's last bar sit among
    the prompt's notes and are left out with them.
    """
    notes = mm.notes_from_score(score)
    if start_beats <= 0:
        return notes
    kept = notes[notes[:, mm.START] >= start_beats - 1e-9].copy()
    kept[:, mm.START] = np.maximum(kept[:, mm.START] - start_beats, 0.0)
    return kept


def _beats_per_bar_at(score, beats: float) -> float:
    """Bar length in beats under the time signature in force at ``beats`` (the first one at 0)."""
    tick = beats * score.ticks_per_quarter
    sigs = [s for s in score.time_signatures if s.time <= tick + 1e-6]
    if not sigs:
        return mm.score_beats_per_bar(score)
    return sigs[-1].numerator * 4.0 / sigs[-1].denominator


def _continuation_syntax(prompt: list[str], tokens: list[str], resolution: int) -> syntax.SyntaxReport:
    """The syntax report of what follows ``prompt`` in ``tokens``, checked in the prompt's context.

    Checking the generated tokens alone would flag a valid continuation (a note
    at the prompt's last Position has no Position of its own), so the whole
    sequence is checked and the prompt's own counts are subtracted: the check
    reads left to right and the prompt ends with a complete note (before a
    Bar), so its counts are those of that prefix of the whole.
    """
    whole = syntax.check_remi_syntax(tokens, resolution)
    if not prompt:
        return whole
    own = syntax.check_remi_syntax(prompt, resolution)
    # The first error past the prompt, indexed in the generated tokens. The prompt comes from the
    # tokenizer and has none; if it had one, the continuation's first error is not known.
    first_error = None
    if whole.first_error is not None and own.n_errors == 0:
        index, _, rest = whole.first_error.partition(": ")
        first_error = f"{int(index) - len(prompt)}: {rest}"
    return syntax.SyntaxReport(
        whole.n_tokens - own.n_tokens,
        whole.n_notes - own.n_notes,
        whole.n_valid_notes - own.n_valid_notes,
        whole.n_errors - own.n_errors,
        first_error,
    )


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if isinstance(v, (int, float)) and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")
