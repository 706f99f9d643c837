"""Generate music from a checkpoint: ``podium sample CHECKPOINT --out x.mid``."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.checkpoints import checkpoint
from engine.contract.config import validate
from engine.music.data import build_tokenizer
from engine.music.export import finish_score
from engine.music.grammar import RemiGrammar, positions_per_beat
from engine.training.model import MusicTransformer


@dataclass
class GeneratedPiece:
    path: Path
    tokens: int
    notes: int
    tracks: int
    pitch_low: int | None
    pitch_high: int | None
    seconds: float


def load_model(path: Path, device: str = "cpu") -> tuple[MusicTransformer, object, dict]:
    parts = checkpoint.load(path, map_location=device)
    manifest = parts["manifest"]
    cfg = validate(manifest["config"])
    tokenizer = tokenizer_from_checkpoint(path, cfg)
    model = MusicTransformer(cfg.model, manifest["vocab_size"], cfg.data.seq_len)
    model.load_state_dict(parts["model"])
    return model.to(device).eval(), tokenizer, manifest


def tokenizer_from_checkpoint(path: Path, cfg):
    """The tokenizer saved with the checkpoint, so sampling needs no data cache."""
    import miditok

    params = path / "tokenizer.json"
    if params.exists():
        return getattr(miditok, cfg.tokenizer.kind)(params=params)
    return build_tokenizer(cfg.tokenizer)


def generate(
    model: MusicTransformer,
    tokenizer,
    out: Path,
    *,
    max_tokens: int,
    temperature: float,
    top_k: int,
    seed: int,
    prompt: list[int] | None = None,
    constrained: bool = True,
    qpm: float = 120.0,
    voice_names: dict[str, str] | None = None,
) -> GeneratedPiece:
    """Sample one piece into ``out``; ``constrained`` masks what the REMI grammar forbids (REMI only)."""
    bos, eos, pad = tokenizer["BOS_None"], tokenizer["EOS_None"], tokenizer.pad_token_id
    device = next(model.parameters()).device
    start = torch.tensor([prompt or [bos]], device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    grammar = (
        RemiGrammar(tokenizer, positions_per_beat(tokenizer))
        if constrained and type(tokenizer).__name__ == "REMI"
        else None
    )
    ids = model.generate(start, max_tokens, temperature, top_k, generator=gen, stop_token=eos, allowed=grammar)
    body = [i for i in ids[0].tolist() if i not in (bos, eos, pad)]
    score = finish_score(tokenizer.decode(body), qpm, voice_names)
    out.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(out))
    pitches = [n.pitch for t in score.tracks for n in t.notes]
    return GeneratedPiece(
        out,
        len(body),
        len(pitches),
        len(score.tracks),
        min(pitches) if pitches else None,
        max(pitches) if pitches else None,
        float(score.to("second").end()) if pitches else 0.0,
    )


def read_back(path: Path) -> dict:
    """Re-read a written MIDI file with symusic: proof that it is valid MIDI."""
    import symusic

    score = symusic.Score(str(path))
    assert isinstance(score, symusic.core.ScoreTick)  # the stub's generic Score; a file is read in ticks
    pitches = np.array([n.pitch for t in score.tracks for n in t.notes])
    return {
        "notes": int(pitches.size),
        "tracks": len(score.tracks),
        "pitch_low": int(pitches.min()) if pitches.size else None,
        "pitch_high": int(pitches.max()) if pitches.size else None,
    }


def tokenizer_bytes(tokenizer) -> bytes:
    """The tokenizer's parameters as JSON bytes, for storing inside a checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "tokenizer.json"
        tokenizer.save(target)
        return target.read_bytes()
