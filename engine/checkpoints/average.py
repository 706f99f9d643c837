"""Checkpoint averaging: a uniform average of weights, or a greedy soup.

    python main.py checkpoints average CKPT... --out DIR [--method uniform|greedy]

Uniform: the element-wise mean of the inputs' weights, the equal weighting of
``torch.optim.swa_utils``. Greedy soup (Wortsman et al., 2022, "Model soups"):
rank the inputs by validation loss, start from the best, and add each next one
only if the average's validation loss does not get worse. Validation loss is
computed as the trainer does, over the validation split of the first input's
config (the prepared data cache is reused, or prepared once).

The result is a normal weights-only checkpoint: verified like any other,
usable by ``podium sample`` and ``--from-checkpoint``, with its provenance
(method, inputs, their hashes and validation losses) in the manifest.

Progress (loading each input, preparing the validation data, each validation
loss, each greedy-soup candidate, writing) goes to an
:class:`engine.contract.progress.Tracker`, which the CLI prints for a person or, with
``--progress json``, for the GUI's job bar.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.checkpoints import checkpoint
from engine.contract.config import validate
from engine.contract.manifest import CheckpointInvalid, part_files, verify_checkpoint
from engine.contract.progress import Progress, Tracker
from engine.music.sample import (
    TOKENIZER_FILE,
    check_weights_fit,
    model_config,
    read_verified,
    tokenizer_from_checkpoint,
)

METHODS = ("uniform", "greedy")
VALIDATION_BATCH = 16


@dataclass
class Input:
    path: Path
    manifest: dict[str, Any]
    state: dict[str, torch.Tensor]
    val_loss: float = math.nan
    used: bool = False


def load_inputs(paths: list[Path], tracker: Tracker | None = None) -> list[Input]:
    """Load each checkpoint's weights and check they share one architecture.

    Each input is refused (CheckpointInvalid) unless every file matches its manifest's hashes, its config
    validates, its weights fit that config, are finite, and its tokenizer loads.
    """
    if len(paths) < 2:
        raise CheckpointInvalid(f"averaging needs at least 2 checkpoints, got {len(paths)}")
    tracker = tracker or Tracker(len(paths))
    inputs = []
    for i, path in enumerate(paths, start=1):
        tracker.begin("load", f"loading checkpoint {i} of {len(paths)}: {path}")
        # Every file is hashed before any is read: the tokenizer is copied into the result, not only the weights.
        manifest = verify_checkpoint(path, hashes=True)
        cfg = model_config(path, manifest)
        state = checkpoint.load(path, parts=("model",))["model"]
        check_weights_fit(path, manifest, cfg, state)
        if TOKENIZER_FILE in manifest["files"]:
            tokenizer_from_checkpoint(path, manifest, cfg)  # the result must sample as its inputs do
        _refuse_non_finite(state, str(path / part_files(manifest)["model"]))
        inputs.append(Input(path, manifest, state))
        tracker.end("load", f"loaded {path.name} (step {manifest['step']})")
    first = inputs[0]
    for other in inputs[1:]:
        _same_architecture(first, other)
    return inputs


def _refuse_non_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """A NaN or inf in any input would spread through the mean into every averaged weight."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointInvalid(f"{source}: {key} holds non-finite values (NaN or inf); refused for averaging")


def _same_architecture(a: Input, b: Input) -> None:
    arch_a, arch_b = (
        (a.manifest.get("config") or {}).get("model", {}),
        (b.manifest.get("config") or {}).get("model", {}),
    )
    differ = [
        f"{k}: {arch_a.get(k)} vs {arch_b.get(k)}"
        for k in sorted(arch_a.keys() | arch_b.keys())
        if k in ("d_model", "n_layers", "n_heads", "ff_mult") and arch_a.get(k) != arch_b.get(k)
    ]
    if a.manifest.get("vocab_size") != b.manifest.get("vocab_size"):
        differ.append(f"vocab_size: {a.manifest.get('vocab_size')} vs {b.manifest.get('vocab_size')}")
    if differ:
        raise CheckpointInvalid(f"cannot average {a.path} and {b.path}: the architectures differ ({'; '.join(differ)})")
    checkpoint.check_compatible(b.state, a.state, f"cannot average {b.path} with {a.path}")


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating tensors (in float64, then the first input's dtype).

    Keys that are views of one tensor in the first input (tied weights) stay
    one tensor in the result. Other tensors (integer buffers) come from the
    first input.
    """
    first = states[0]
    memo: dict[tuple, torch.Tensor] = {}
    out = {}
    for key, t in first.items():
        if not t.is_floating_point():
            out[key] = t
            continue
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.size()), tuple(t.stride()))
        if ident not in memo:
            total = torch.zeros(t.shape, dtype=torch.float64)
            for state in states:
                total += state[key].to(torch.float64)
            memo[ident] = (total / len(states)).to(t.dtype)
        out[key] = memo[ident]
    return out


class Validator:
    """Validation loss of a weights state dict, on the validation split the trainer uses."""

    def __init__(self, manifest: dict[str, Any], device: str = "cpu", max_batches: int | None = None):
        from engine.music import data
        from engine.training.model import MusicTransformer

        cfg = validate(manifest["config"])
        corpus = data.prepare(cfg)
        _, val_ids = data.split_pieces(corpus.names, cfg.data.val_fraction, cfg.data.split_seed)
        self.val_set = data.WindowSet(
            corpus, val_ids, cfg.data.seq_len, 0, (cfg.tokenizer.pitch_low, cfg.tokenizer.pitch_high)
        )
        self.pad_id = corpus.meta["pad_id"]
        self.device = torch.device(device)
        self.model = MusicTransformer(cfg.model, manifest["vocab_size"], cfg.data.seq_len).to(self.device).eval()
        limit = max_batches if max_batches is not None else cfg.run.eval_max_batches
        indices = list(range(len(self.val_set)))
        self.batches = [indices[i : i + VALIDATION_BATCH] for i in range(0, len(indices), VALIDATION_BATCH)]
        if limit:
            self.batches = self.batches[:limit]

    @torch.no_grad()
    def __call__(self, state: dict[str, torch.Tensor]) -> float:
        self.model.load_state_dict(state)
        loss_sum, count = 0.0, 0
        for chunk in self.batches:
            pairs = [self.val_set.example(i) for i in chunk]
            x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(self.device)
            y = torch.from_numpy(np.stack([p[1] for p in pairs])).to(self.device)
            logits = self.model(x).float()
            loss_sum += float(
                F.cross_entropy(
                    logits.view(-1, logits.shape[-1]), y.reshape(-1), ignore_index=self.pad_id, reduction="sum"
                )
            )
            count += int((y != self.pad_id).sum())
        return loss_sum / max(count, 1)


def units(n_inputs: int, method: str) -> int:
    """Units of work in averaging ``n_inputs``: load and validate each, prepare the validation data,
    (greedy) try each candidate after the best, validate the result, write it."""
    return 2 * n_inputs + 3 + (n_inputs - 1 if method == "greedy" else 0)


def soup(
    inputs: list[Input], method: str, validator: Validator, tracker: Tracker | None = None
) -> tuple[dict[str, torch.Tensor], float]:
    """The averaged weights and their validation loss; marks each input ``used`` or not."""
    if method not in METHODS:
        raise ValueError(f"--method: {method!r} is not one of {', '.join(METHODS)}")
    tracker = tracker or Tracker(units(len(inputs), method))
    for i, item in enumerate(inputs, start=1):
        tracker.begin("validate", f"validation loss of {item.path.name} ({i} of {len(inputs)})")
        item.val_loss = validator(item.state)
        tracker.end("validate", f"{item.path.name}: val loss {item.val_loss:.4f}")
    if method == "uniform":
        for item in inputs:
            item.used = True
        result = average_states([i.state for i in inputs])
    else:
        ranked = sorted(inputs, key=lambda i: (math.isnan(i.val_loss), i.val_loss))
        ranked[0].used = True
        chosen, best = [ranked[0]], ranked[0].val_loss
        for candidate in ranked[1:]:
            tracker.begin("soup", f"greedy soup: adding {candidate.path.name} to {len(chosen)} chosen")
            trial = validator(average_states([c.state for c in chosen + [candidate]]))
            joins = trial <= best  # "does not get worse": an equal loss joins, as in the paper's greedy soup
            tracker.end(
                "soup",
                f"greedy soup: {candidate.path.name} {'joins' if joins else 'left out'} "
                f"(val loss {trial:.4f} vs {best:.4f})",
            )
            if joins:
                chosen.append(candidate)
                candidate.used = True
                best = trial
        result = average_states([c.state for c in chosen])
    tracker.begin("validate", "validation loss of the average")
    val_loss = validator(result)
    tracker.end("validate", f"average: val loss {val_loss:.4f}")
    return result, val_loss


def average_checkpoints(
    paths: list[Path],
    out: Path,
    method: str = "uniform",
    weights_dtype: str = "fp32",
    device: str = "cpu",
    max_batches: int | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Average ``paths`` into a new weights-only checkpoint at ``out``; returns its manifest.

    ``progress`` is called as each unit of work starts and ends (:mod:`engine.contract.progress`).
    """
    out = Path(out)
    if out.exists():
        raise CheckpointInvalid(f"--out {out}: already exists; choose a new folder")
    tracker = Tracker(units(len(paths), method), progress)
    inputs = load_inputs([Path(p) for p in paths], tracker)
    tracker.begin("prepare", "preparing the validation data")
    validator = Validator(inputs[0].manifest, device, max_batches)
    tracker.end("prepare", f"validation data: {len(validator.batches)} batches")
    result, val_loss = soup(inputs, method, validator, tracker)
    first = inputs[0]
    files = {}
    if TOKENIZER_FILE in first.manifest["files"]:
        files[TOKENIZER_FILE] = read_verified(first.path, first.manifest, TOKENIZER_FILE)
    meta = {
        "reason": "average",
        "metrics": {"val_loss": val_loss},
        "config": first.manifest.get("config"),
        "config_digest": first.manifest.get("config_digest"),
        "vocab_size": first.manifest.get("vocab_size"),
        "music": first.manifest.get("music"),
        "weights_dtype": weights_dtype,
        "versions": checkpoint.versions(),
        "provenance": {
            "method": method,
            "created": time.time(),
            "validation_batches": len(validator.batches),
            "inputs": [
                {
                    "path": str(i.path.resolve()),
                    "step": i.manifest["step"],
                    "val_loss": i.val_loss,
                    "used": i.used,
                    "model_sha256": i.manifest["files"][part_files(i.manifest)["model"]]["sha256"],
                }
                for i in inputs
            ],
        },
    }
    state = checkpoint.cast_floating(result, checkpoint.DTYPES[weights_dtype])
    _refuse_non_finite(state, f"--out {out}: the {weights_dtype} average")  # a cast to half precision can overflow
    step = max(i.manifest["step"] for i in inputs)
    tracker.begin("write", f"writing {out}")
    manifest = checkpoint.write_checkpoint(out, step, {"model": state}, kind="weights", files=files, meta=meta)
    tracker.end("done", f"wrote {out}")
    return manifest


def report(manifest: dict[str, Any], out: Path) -> str:
    """The inputs' validation losses next to the average's, as a table."""
    prov = manifest["provenance"]
    rows = [(i["path"], str(i["step"]), f"{i['val_loss']:.4f}", "yes" if i["used"] else "no") for i in prov["inputs"]]
    used = sum(i["used"] for i in prov["inputs"])
    rows.append(
        (
            f"{out}  ({prov['method']} average of {used})",
            str(manifest["step"]),
            f"{manifest['metrics']['val_loss']:.4f}",
            "",
        )
    )
    width = max(len(r[0]) for r in rows)
    lines = [f"{'checkpoint':<{width}}  {'step':>7}  {'val_loss':>8}  used"]
    lines += [f"{p:<{width}}  {s:>7}  {v:>8}  {u}" for p, s, v, u in rows]
    return "\n".join(lines)
