"""Generate music from a checkpoint: ``podium sample CHECKPOINT --out x.mid``.

A checkpoint is input from anywhere (copied, downloaded, hand-edited), so everything
read from it is checked before use: its files against the manifest's hashes, its
config, that its weights fit that config and vocabulary, and that its tokenizer
loads. Each problem is a :class:`CheckpointInvalid` naming the checkpoint and the
file or field.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.checkpoints import checkpoint
from engine.contract.config import Config, ConfigError, validate
from engine.contract.manifest import MANIFEST, CheckpointInvalid, check_entry, part_files, verify_checkpoint
from engine.music.data import build_tokenizer
from engine.music.export import DataFacts, finish_score
from engine.music.grammar import RemiGrammar, positions_per_beat
from engine.training.model import MusicTransformer

TOKENIZER_FILE = "tokenizer.json"
# Tokens that generation starts, stops and pads with; a tokenizer without them cannot sample.
SPECIAL_TOKENS = ("BOS_None", "EOS_None", "PAD_None")


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
    """The checkpoint's model (eval mode, on ``device``), its tokenizer and its manifest; every input verified."""
    manifest = verify_checkpoint(path, hashes=True)
    cfg = model_config(path, manifest)
    state = checkpoint.load(path, map_location=device, parts=("model",))["model"]
    model = model_for(path, manifest, cfg, state)
    return model.to(device).eval(), tokenizer_from_checkpoint(path, manifest, cfg), manifest


def model_config(path: Path, manifest: dict[str, Any]) -> Config:
    """The run config to rebuild a checkpoint's model from; CheckpointInvalid when the manifest lacks a
    model part, a vocab_size or a valid config."""
    where = path / MANIFEST
    if "model" not in part_files(manifest):
        raise CheckpointInvalid(
            f"{where}: files: no model part (model.pt); sampling and averaging need the model's weights"
        )
    if manifest.get("config") is None:
        raise CheckpointInvalid(f"{where}: config: missing; the model cannot be rebuilt without the run's config")
    if manifest.get("vocab_size") is None:
        raise CheckpointInvalid(f"{where}: vocab_size: missing; the model cannot be rebuilt without it")
    try:
        return validate(manifest["config"], source=f"{where}: config")
    except ConfigError as exc:
        raise CheckpointInvalid(str(exc)) from None


def check_weights_fit(path: Path, manifest: dict[str, Any], cfg: Config, state: Any) -> None:
    """CheckpointInvalid unless ``state`` is the state dict of the model the config and vocab_size describe.

    The shapes are compared on the meta device, so a config or vocab_size that disagrees with the
    weights is refused before anything the size of that claim is allocated.
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointInvalid(f"{path}: the model part is not a state dict of tensors")
    with torch.device("meta"):
        skeleton = MusicTransformer(cfg.model, manifest["vocab_size"], cfg.data.seq_len)
    checkpoint.check_compatible(
        state, skeleton.state_dict(), f"{path}: the weights do not fit the manifest's vocab_size and config.model"
    )


def model_for(path: Path, manifest: dict[str, Any], cfg: Config, state: Any) -> MusicTransformer:
    """The model the config describes, holding ``state``; CheckpointInvalid when the weights do not fit it."""
    check_weights_fit(path, manifest, cfg, state)
    model = MusicTransformer(cfg.model, manifest["vocab_size"], cfg.data.seq_len)
    model.load_state_dict(state)
    return model


def read_verified(folder: Path, manifest: dict[str, Any], name: str) -> bytes:
    """A listed file's bytes, read without following a link and checked against the manifest as read."""
    path = folder / name
    entry = manifest["files"][name]
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise CheckpointInvalid(f"{path}: unreadable or a symbolic link ({exc.strerror}); refused") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(int(entry["size"]) + 1)
    check_entry(path, entry, len(data), hashlib.sha256(data).hexdigest())
    return data


def tokenizer_from_checkpoint(path: Path, manifest: dict[str, Any], cfg: Config):
    """The tokenizer saved with the checkpoint (so sampling needs no data cache), or the config's when none is."""
    if TOKENIZER_FILE not in manifest["files"]:
        return build_tokenizer(cfg.tokenizer)
    tokenizer = tokenizer_from_bytes(read_verified(path, manifest, TOKENIZER_FILE), cfg.tokenizer.kind, path)
    where = path / TOKENIZER_FILE
    if len(tokenizer) != manifest["vocab_size"]:
        raise CheckpointInvalid(
            f"{where}: {len(tokenizer)} tokens, but the manifest's vocab_size is {manifest['vocab_size']}; "
            "the model and its tokenizer must match"
        )
    missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.vocab]
    if missing:
        raise CheckpointInvalid(f"{where}: lacks the special tokens {', '.join(missing)} that sampling needs")
    return tokenizer


def tokenizer_from_bytes(raw: bytes, kind: str, folder: Path):
    """A miditok tokenizer of ``kind`` from its saved parameters; CheckpointInvalid when miditok cannot load them."""
    import miditok

    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / TOKENIZER_FILE
        params.write_bytes(raw)
        try:
            return getattr(miditok, kind)(params=params)
        except Exception as exc:  # miditok's parser raises many kinds on a damaged file; all mean "not loadable"
            raise CheckpointInvalid(
                f"{folder / TOKENIZER_FILE}: miditok cannot load it as a {kind} tokenizer "
                f"({type(exc).__name__}: {str(exc)[:200]})"
            ) from None


def generate_batch(
    model: MusicTransformer,
    prompts: list[list[int]],
    seeds: list[int],
    *,
    max_tokens: int,
    temperature: float,
    top_k: int,
    stop_token: int,
    top_p: float = 1.0,
    grammar: Callable[[], RemiGrammar] | None = None,
) -> list[list[int]]:
    """Each prompt's continuation (prompt included), drawn with its own seed's generator.

    Prompts of one length are generated as one batch, each row with its own
    grammar state and generator, so a batch costs about one sample's forward
    passes and a row draws what it would draw alone. The model has no padding
    mask, so prompts of different lengths go in separate batches.
    """
    device = next(model.parameters()).device
    out: list[list[int]] = [[] for _ in prompts]
    by_length: dict[int, list[int]] = {}
    for index, prompt in enumerate(prompts):
        by_length.setdefault(len(prompt), []).append(index)
    for rows in by_length.values():
        ids = model.generate(
            torch.tensor([prompts[i] for i in rows], device=device),
            max_tokens,
            temperature,
            top_k,
            top_p,
            generator=[torch.Generator(device=device).manual_seed(seeds[i]) for i in rows],
            stop_token=stop_token,
            allowed=grammar() if grammar is not None else None,
        )
        for row, index in enumerate(rows):
            out[index] = _through_first(ids[row].tolist(), stop_token, len(prompts[index]))
    return out


def _through_first(ids: list[int], stop_token: int, start: int) -> list[int]:
    """``ids`` up to its first ``stop_token`` at or after ``start``; a batch pads a finished row with more."""
    try:
        return ids[: ids.index(stop_token, start) + 1]
    except ValueError:
        return ids


def generate(
    model: MusicTransformer,
    tokenizer,
    out: Path,
    *,
    max_tokens: int,
    temperature: float,
    top_k: int,
    seed: int,
    top_p: float = 1.0,
    prompt: list[int] | None = None,
    constrained: bool = True,
    facts: DataFacts | None = None,
) -> GeneratedPiece:
    """Sample one piece into ``out``; ``constrained`` masks what the REMI grammar forbids (REMI only).

    The MIDI file is exported as training-time samples are, with the data's tempo and voice names (``facts``).
    """
    facts = facts or DataFacts()
    bos, eos, pad = tokenizer["BOS_None"], tokenizer["EOS_None"], tokenizer.pad_token_id
    remi = constrained and type(tokenizer).__name__ == "REMI"
    (ids,) = generate_batch(
        model,
        [prompt or [bos]],
        [seed],
        max_tokens=max_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        stop_token=eos,
        grammar=(lambda: RemiGrammar(tokenizer, positions_per_beat(tokenizer), facts.meter_changes)) if remi else None,
    )
    body = [i for i in ids if i not in (bos, eos, pad)]
    score = finish_score(tokenizer.decode(body), facts.qpm, facts.voice_names)
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


def data_facts(path: Path, manifest: dict[str, Any]) -> DataFacts | None:
    """The data's tempo, voice names and metre saved in the manifest; None for a checkpoint saved without them.

    CheckpointInvalid names the field when they are there but malformed.
    """
    facts = manifest.get("music")
    if facts is None:
        return None
    where = f"{path / MANIFEST}: music"
    if not isinstance(facts, dict):
        raise CheckpointInvalid(f"{where}: must be an object with qpm, voice_names and meter_changes")
    qpm, names, changes = facts.get("qpm"), facts.get("voice_names"), facts.get("meter_changes")
    if isinstance(qpm, bool) or not isinstance(qpm, (int, float)) or not 1 <= qpm <= 1000:
        raise CheckpointInvalid(f"{where}.qpm: {qpm!r}; must be a tempo in quarter notes per minute, 1-1000")
    if not isinstance(names, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) <= 200 for k, v in names.items()
    ):
        raise CheckpointInvalid(f"{where}.voice_names: must map program numbers to names of at most 200 characters")
    if not isinstance(changes, bool):
        raise CheckpointInvalid(f"{where}.meter_changes: {changes!r}; must be true or false")
    return DataFacts(float(qpm), names, changes)


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
