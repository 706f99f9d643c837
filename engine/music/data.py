"""Music data: corpus -> MIDI -> miditok tokens -> cached arrays -> training windows.

Two sources share one path after MIDI: the Bach chorales bundled with music21
(exported to MIDI once, one program per voice) and a user's folder of MIDI
files. Tokenised pieces are cached on disk, keyed by the corpus contents and
the tokenizer settings, so a second start prepares nothing. The split,
windowing and transposition happen at load time from the cache, so changing
them never re-tokenises.

Runs in the launcher (preparation, before torchrun) and in every rank
(loading); imports music21 only while exporting the chorales.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.contract.config import Config, DataSection, TokenizerSection
from engine.music.chorales import Progress, export_bach

# Bump when the cached layout or the export changes meaning.
CACHE_VERSION = 3
MIDI_SUFFIXES = (".mid", ".midi")
SPECIAL_TOKENS = ["PAD", "BOS", "EOS"]


class DataError(ValueError):
    """Unusable data; the message names the folder or file and what would work."""


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer(
    cfg: TokenizerSection, programs: list[int] | None = None, time_signatures: list[tuple[int, int]] | None = None
):
    """The tokenizer of ``cfg``; ``programs`` (-1 = drums) and ``time_signatures`` narrow the vocabulary to the data's.

    Without them the vocabulary holds miditok's defaults: all 128 programs, drums and nine metres, most of
    which a model trained on chorales never sees and, untrained, would write.
    """
    import miditok

    ppb = cfg.positions_per_beat
    narrowed: dict = {}
    if programs:
        narrowed["programs"] = sorted(programs)
        narrowed["use_pitchdrum_tokens"] = -1 in programs
    if time_signatures:
        by_denominator: dict[int, list[int]] = {}
        for num, den in sorted(set(time_signatures)):
            by_denominator.setdefault(den, []).append(num)
        narrowed["time_signature_range"] = by_denominator
    tok_cfg = miditok.TokenizerConfig(
        **narrowed,
        pitch_range=(cfg.pitch_low, cfg.pitch_high),  # inclusive in miditok
        beat_res={(0, 4): ppb, (4, 12): max(ppb // 2, 1)},
        use_programs=True,
        one_token_stream_for_programs=True,
        # Chorales carry no dynamics; velocity tokens would be a third of the
        # sequence and teach nothing.
        use_velocities=False,
        use_time_signatures=True,
        special_tokens=SPECIAL_TOKENS,
    )
    return getattr(miditok, cfg.kind)(tok_cfg)


# --------------------------------------------------------------------------- preparation


@dataclass
class Corpus:
    """Tokenised pieces from the cache."""

    tokens: np.ndarray  # all pieces' ids, concatenated (int32)
    offsets: np.ndarray  # piece i is tokens[offsets[i]:offsets[i+1]]
    names: list[str]
    pitch_span: np.ndarray  # (n_pieces, 2) lowest and highest pitch per piece
    meta: dict
    directory: Path

    def piece(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def tokenizer(self):
        import miditok

        return (
            miditok.REMI(params=self.directory / "tokenizer.json")
            if self.meta["tokenizer_kind"] == "REMI"
            else getattr(miditok, self.meta["tokenizer_kind"])(params=self.directory / "tokenizer.json")
        )


def default_cache_dir() -> Path:
    """``$PODIUM_CACHE_DIR``, else the XDG cache folder."""
    if os.environ.get("PODIUM_CACHE_DIR"):
        return Path(os.environ["PODIUM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "podium"


def _midi_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())


def corpus_key(data: DataSection, tok: TokenizerSection) -> str:
    """Identity of a tokenised corpus: what was read and how it was tokenised."""
    from importlib.metadata import version

    ident: dict = {
        "v": CACHE_VERSION,
        "tokenizer": tok.model_dump(),
        "max_pieces": data.max_pieces,
        "miditok": version("miditok"),
        "source": data.source,
    }
    if data.source == "bach":
        ident["music21"] = version("music21")
    else:
        folder = _check_folder(data.path)
        ident["files"] = [
            (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in _midi_files(folder)
        ]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _check_folder(path: str | None) -> Path:
    folder = Path(path or "").expanduser()
    if not folder.is_dir():
        raise DataError(f"data.path: {path!r} is not a folder; point it at a folder of .mid/.midi files")
    return folder


def prepare(config: Config, progress: Progress | None = None) -> Corpus:
    """Return the tokenised corpus, preparing and caching it if needed."""
    progress = progress or (lambda *_: None)
    data, tok_cfg = config.data, config.tokenizer
    cache_root = Path(data.cache_dir).expanduser() if data.cache_dir else default_cache_dir()
    key = corpus_key(data, tok_cfg)
    final = cache_root / f"{data.source}-{key}"
    if (final / "meta.json").exists():
        corpus = load_corpus(final)
        corpus.meta["cache_hit"] = True
        return corpus
    cache_root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".{data.source}-{key}-", dir=cache_root))
    try:
        if data.source == "bach":
            midi_dir = work / "midi"
            skipped = export_bach(midi_dir, data.max_pieces, progress)
            files = _midi_files(midi_dir)
            root = midi_dir
        else:
            root = _check_folder(data.path)
            files, skipped = _midi_files(root), []
            if not files:
                raise DataError(f"data.path: no .mid/.midi files in {root}")
        # The vocabulary comes from the files that will be tokenised; with max_pieces, read until twice
        # that many have notes (the tokenizer may still skip some).
        headers: dict[Path, dict | None] = {}
        for path in files:
            if data.max_pieces and sum(bool(h and h["programs"]) for h in headers.values()) >= 2 * data.max_pieces:
                break
            headers[path] = _read_header(path)
        files = list(headers)
        readable = [h for h in headers.values() if h is not None]
        tokenizer = build_tokenizer(
            tok_cfg,
            sorted({p for h in readable for p in h["programs"]}),
            sorted({tuple(ts) for h in readable for ts in h["time_signatures"]}),
        )
        pieces: list[npt.NDArray[np.int32]] = []
        names: list[str] = []
        spans: list[tuple[int, int]] = []
        infos: list[dict] = []
        for done, path in enumerate(files, 1):
            progress("tokenising", done, len(files))
            if data.max_pieces and len(pieces) >= data.max_pieces:
                break
            name = str(path.relative_to(root))
            ids = _tokenize_file(tokenizer, path)
            if isinstance(ids, str):
                skipped.append((name, ids))
                continue
            header = headers[path]
            assert header is not None  # the file was just read again, and tokenised
            pieces.append(ids)
            names.append(name)
            spans.append(_pitch_span(tokenizer, ids))
            infos.append(header)
        if len(pieces) < 2:
            where = "the Bach corpus" if data.source == "bach" else f"data.path {root}"
            raise DataError(
                f"{where}: {len(pieces)} usable piece(s) of {len(files)} file(s); at least 2 are needed "
                f"(one for training, one for validation). Skipped: {_skips_text(skipped)}"
            )
        tokenizer.save(work / "tokenizer.json")
        offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(p) for p in pieces])
        np.save(work / "tokens.npy", np.concatenate(pieces).astype(np.int32))
        np.save(work / "offsets.npy", offsets)
        np.save(work / "pitch_span.npy", np.array(spans, dtype=np.int16))
        meta = {
            "source": data.source,
            "names": names,
            "skipped": [{"file": f, "reason": r} for f, r in skipped],
            "vocab_size": len(tokenizer),
            "tokenizer_kind": tok_cfg.kind,
            "pad_id": tokenizer.pad_token_id,
            "bos_id": tokenizer["BOS_None"],
            "eos_id": tokenizer["EOS_None"],
            "programs": sorted({p for h in infos for p in h["programs"]}),
            "voice_names": _voice_names(infos),
            "meter_changes": any(len(h["time_signatures"]) > 1 for h in infos),
            "qpm": [h["qpm"] for h in infos],
            "time_signatures": [h["time_signatures"][0] if h["time_signatures"] else [4, 4] for h in infos],
            "prepare_seconds": round(time.perf_counter() - started, 2),
        }
        (work / "meta.json").write_text(json.dumps(meta))
        try:
            os.replace(work, final)
        except OSError:
            # Another process (a second node, a concurrent run) finished first: use theirs.
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    corpus = load_corpus(final)
    corpus.meta["cache_hit"] = False
    return corpus


def _skips_text(skipped: list[tuple[str, str]], limit: int = 5) -> str:
    shown = "; ".join(f"{f} ({r})" for f, r in skipped[:limit])
    return shown + (f"; and {len(skipped) - limit} more" if len(skipped) > limit else "") if skipped else "none"


def _read_header(path: Path) -> dict | None:
    """What a file says about its instruments and metre: programs (-1 = drums), track names, time signatures
    (successive repeats merged) and its opening tempo. None when the file cannot be read."""
    import symusic

    try:
        score = symusic.Score(str(path))
    except Exception:  # symusic raises RuntimeError/ValueError/IndexError on corrupt files; skipped later
        return None
    assert isinstance(score, symusic.core.ScoreTick)  # the stub's generic Score; a file is read in ticks
    signatures: list[list[int]] = []
    for ts in score.time_signatures:
        if not signatures or signatures[-1] != [ts.numerator, ts.denominator]:
            signatures.append([ts.numerator, ts.denominator])
    tracks = [t for t in score.tracks if len(t.notes)]
    return {
        "programs": sorted({-1 if t.is_drum else int(t.program) for t in tracks}),
        "names": {str(-1 if t.is_drum else int(t.program)): t.name.strip() for t in tracks if t.name.strip()},
        "time_signatures": signatures,
        "qpm": round(float(score.tempos[0].qpm), 2) if len(score.tempos) else 120.0,
    }


def _voice_names(infos: list[dict]) -> dict[str, str]:
    """Each program's most common track name in the data (a program is a voice: Soprano, Alto, ...)."""
    votes: dict[str, dict[str, int]] = {}
    for info in infos:
        for program, name in info["names"].items():
            votes.setdefault(program, {}).setdefault(name, 0)
            votes[program][name] += 1
    return {program: max(names, key=names.__getitem__) for program, names in votes.items()}


def _tokenize_file(tokenizer, path: Path) -> npt.NDArray[np.int32] | str:
    """The file's token ids, or why it is skipped."""
    import symusic

    try:
        score = symusic.Score(str(path))
    except Exception as exc:  # symusic raises RuntimeError/ValueError/IndexError on corrupt files
        return f"unreadable MIDI: {exc}"
    assert isinstance(score, symusic.core.ScoreTick)  # the stub's generic Score; a file is read in ticks
    if score.note_num() == 0:
        return "no notes"
    try:
        ids = tokenizer.encode(score).ids
    except Exception as exc:  # miditok may fail on exotic events; skip the file, keep the run
        return f"tokenizer failed: {exc}"
    if not ids:
        return "no notes within the tokenizer's pitch range"
    return np.asarray(ids, dtype=np.int32)


def _pitch_span(tokenizer, ids: np.ndarray) -> tuple[int, int]:
    pitches = pitch_of_token(tokenizer)[ids]
    pitches = pitches[pitches >= 0]
    return (int(pitches.min()), int(pitches.max())) if pitches.size else (60, 60)


def pitch_of_token(tokenizer) -> np.ndarray:
    """For each token id, its pitch for ``Pitch_*`` tokens, else -1 (drums never transpose)."""
    table = np.full(len(tokenizer), -1, dtype=np.int16)
    for token, idx in tokenizer.vocab.items():
        if token.startswith("Pitch_"):
            table[idx] = int(token.split("_")[1])
    return table


def load_corpus(directory: Path) -> Corpus:
    meta = json.loads((directory / "meta.json").read_text())
    return Corpus(
        tokens=np.load(directory / "tokens.npy", mmap_mode="r"),
        offsets=np.load(directory / "offsets.npy"),
        names=meta["names"],
        pitch_span=np.load(directory / "pitch_span.npy"),
        meta=meta,
        directory=directory,
    )


def split_pieces(names: list[str], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic split by piece: a piece's side depends only on its name and the seed.

    Each name hashes to a number in [0, 1); below ``val_fraction`` it is held
    out. Unlike shuffling indices, this keeps every piece on its side when
    pieces are added to or removed from the folder. Both sides get at least one piece.
    """
    score = [zlib.crc32(f"{seed}:{name}".encode()) / 2**32 for name in names]
    val = [i for i in range(len(names)) if score[i] < val_fraction]
    by_score = sorted(range(len(names)), key=score.__getitem__)
    if not val:
        val = by_score[:1]
    if len(val) == len(names):
        val = by_score[:-1]
    held = set(val)
    return [i for i in range(len(names)) if i not in held], sorted(val)


# --------------------------------------------------------------------------- windows


class WindowSet:
    """Fixed-length training/validation windows over pieces.

    Each piece is framed as BOS + tokens + EOS and cut into windows of
    ``seq_len + 1`` tokens at stride ``seq_len``; the last window is padded
    (PAD targets are ignored by the loss). For training, each window's start is
    jittered and its pitches transposed by amounts drawn from a generator
    seeded by (seed, epoch, window), so any batch can be rebuilt exactly on
    resume.
    """

    def __init__(self, corpus: Corpus, pieces: list[int], seq_len: int, transpose: int, pitch_range: tuple[int, int]):
        self.seq_len = seq_len
        self.pad, bos, eos = corpus.meta["pad_id"], corpus.meta["bos_id"], corpus.meta["eos_id"]
        self.framed = [np.concatenate(([bos], corpus.piece(i), [eos])).astype(np.int64) for i in pieces]
        self.spans = [corpus.pitch_span[i] for i in pieces]
        self.windows: list[tuple[int, int]] = []
        for p, seq in enumerate(self.framed):
            n = max(1, -(-(len(seq) - 1) // seq_len))
            self.windows.extend((p, k * seq_len) for k in range(n))
        self.transpose = transpose
        self.pitch_range = pitch_range
        self._pitch_table: np.ndarray | None = None
        self._shift_tables: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.windows)

    def set_tokenizer(self, tokenizer) -> None:
        self._pitch_table = pitch_of_token(tokenizer)
        pitch_to_id = {int(t.split("_")[1]): i for t, i in tokenizer.vocab.items() if t.startswith("Pitch_")}
        for shift in range(-self.transpose, self.transpose + 1):
            table = np.arange(len(tokenizer), dtype=np.int64)
            for pitch, idx in pitch_to_id.items():
                if pitch + shift in pitch_to_id:
                    table[idx] = pitch_to_id[pitch + shift]
            self._shift_tables[shift] = table

    def example(self, index: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(input, target) of ``seq_len`` tokens each; ``rng`` enables jitter and transposition."""
        piece, start = self.windows[index]
        seq = self.framed[piece]
        if rng is not None and len(seq) > self.seq_len + 1:
            jitter = int(rng.integers(-self.seq_len // 2, self.seq_len // 2 + 1))
            start = int(np.clip(start + jitter, 0, len(seq) - self.seq_len - 1))
        chunk = seq[start : start + self.seq_len + 1]
        if rng is not None and self.transpose and self._shift_tables:
            low, high = self.spans[piece]
            lo = max(-self.transpose, self.pitch_range[0] - int(low))
            hi = min(self.transpose, self.pitch_range[1] - int(high))
            if hi >= lo:
                chunk = self._shift_tables[int(rng.integers(lo, hi + 1))][chunk]
        if len(chunk) < self.seq_len + 1:
            chunk = np.concatenate((chunk, np.full(self.seq_len + 1 - len(chunk), self.pad, dtype=np.int64)))
        return chunk[:-1], chunk[1:]


class RankSampler:
    """Which windows a rank trains on, in order; resumable from (epoch, position).

    Every epoch is a permutation of all windows seeded by (seed, epoch); rank r
    takes every world_size-th entry, truncated so all ranks see the same count.
    """

    def __init__(self, n_windows: int, rank: int, world_size: int, seed: int, epoch: int = 0, position: int = 0):
        if n_windows < world_size:
            raise DataError(
                f"only {n_windows} training window(s) for {world_size} ranks; use more pieces or fewer processes"
            )
        self.n, self.rank, self.world, self.seed = n_windows, rank, world_size, seed
        self.per_rank = n_windows // world_size
        self.epoch, self.position = epoch, position
        self._order = self._epoch_order()

    def _epoch_order(self) -> np.ndarray:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        return perm[self.rank :: self.world][: self.per_rank]

    def next(self) -> tuple[int, np.random.Generator]:
        """The next window index and the generator that decides its augmentation."""
        if self.position >= self.per_rank:
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._epoch_order()
        index = int(self._order[self.position])
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        self.position += 1
        return index, rng

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}


def unigram_entropy(corpus: Corpus, pieces: list[int]) -> float:
    """Entropy (nats/token) of the token distribution: the loss of a model that ignores context."""
    counts = np.bincount(np.concatenate([corpus.piece(i) for i in pieces]), minlength=corpus.meta["vocab_size"])
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
