"""`podium sample` and `podium checkpoints average` on damaged or hostile checkpoints.

Each case copies a real checkpoint of the smoke run, damages the copy (keeping its manifest's sizes and
hashes consistent where the damage is to a file's content), and runs the real CLI: it must exit 2 with
a message naming the checkpoint and the field or file, print no traceback, and write no output.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from engine.contract.manifest import MANIFEST, MAX_VOCAB_SIZE
from tests.conftest import podium

STEP = "step-0000030"


def _edit_manifest(folder: Path, change: Callable[[dict], None]) -> None:
    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _rewrite_file(folder: Path, name: str, content: bytes) -> None:
    """Replace a listed file and record its new size and hash, so only its content is wrong."""
    (folder / name).write_bytes(content)

    def record(manifest: dict) -> None:
        manifest["files"][name].update(size=len(content), sha256=hashlib.sha256(content).hexdigest())

    _edit_manifest(folder, record)


def _drop_config(folder: Path) -> None:
    _edit_manifest(folder, lambda m: m.pop("config"))


def _config_as_text(folder: Path) -> None:
    _edit_manifest(folder, lambda m: m.update(config="d_model: 32"))


def _invalid_config(folder: Path) -> None:
    _edit_manifest(folder, lambda m: m["config"]["model"].update(n_heads="many"))


def _drop_vocab_size(folder: Path) -> None:
    _edit_manifest(folder, lambda m: m.pop("vocab_size"))


def _vocab_size_beyond_the_weights(folder: Path) -> None:
    _edit_manifest(folder, lambda m: m.update(vocab_size=MAX_VOCAB_SIZE))


def _vocab_size_beyond_any_model(folder: Path) -> None:
    _edit_manifest(folder, lambda m: m.update(vocab_size=MAX_VOCAB_SIZE * 1000))


def _tempo_as_text(folder: Path) -> None:
    _edit_manifest(folder, lambda m: m["music"].update(qpm="fast"))


def _drop_model_part(folder: Path) -> None:
    (folder / "model.pt").unlink()
    _edit_manifest(folder, lambda m: m["files"].pop("model.pt"))


def _garbage_tokenizer(folder: Path) -> None:
    _rewrite_file(folder, "tokenizer.json", b'{"config": "not a tokenizer"}')


def _tokenizer_linked_outside(folder: Path) -> None:
    outside = folder.parent.parent.parent / "outside-tokenizer.json"
    shutil.copyfile(folder / "tokenizer.json", outside)  # the same bytes: only the link is wrong
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").symlink_to(outside)


# case -> (damage, what the message must name besides the checkpoint)
CASES = {
    "config missing": (_drop_config, "config"),
    "config a string": (_config_as_text, "config"),
    "config invalid": (_invalid_config, "model.n_heads"),
    "vocab_size missing": (_drop_vocab_size, "vocab_size"),
    "vocab_size not the weights'": (_vocab_size_beyond_the_weights, "vocab_size"),
    "vocab_size too large": (_vocab_size_beyond_any_model, "vocab_size"),
    "no model part": (_drop_model_part, "model.pt"),
    "tokenizer miditok cannot load": (_garbage_tokenizer, "tokenizer.json"),
    "tokenizer linked outside the run": (_tokenizer_linked_outside, "tokenizer.json"),
}
# What only sampling reads: the data's facts it exports with.
SAMPLE_CASES = {**CASES, "tempo not a number": (_tempo_as_text, "music.qpm")}


def _copy_checkpoint(smoke_run: Path, tmp_path: Path, name: str) -> Path:
    """A copy of the smoke run's last checkpoint, in a run folder of its own under ``tmp_path``."""
    folder = tmp_path / name / "checkpoints" / STEP
    shutil.copytree(smoke_run / "checkpoints" / STEP, folder)
    return folder


def _assert_refused(result, checkpoint_folder: Path, names: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert str(checkpoint_folder) in result.stderr, result.stderr
    assert names in result.stderr, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", SAMPLE_CASES)
def test_sample_refuses_a_hostile_checkpoint_naming_it_and_the_field(case, smoke_run, tmp_path):
    damage, names = SAMPLE_CASES[case]
    hostile = _copy_checkpoint(smoke_run, tmp_path, "hostile")
    damage(hostile)
    out = tmp_path / "sample.mid"
    result = podium("sample", str(hostile), "--out", str(out))
    _assert_refused(result, hostile, names)
    assert list(tmp_path.glob("sample.mid*")) == []


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_average_refuses_a_hostile_input_naming_it_and_the_field(case, smoke_run, tmp_path):
    damage, names = CASES[case]
    good = _copy_checkpoint(smoke_run, tmp_path, "good")
    hostile = _copy_checkpoint(smoke_run, tmp_path, "hostile")
    damage(hostile)
    out = tmp_path / "average"
    # The hostile checkpoint second: every input is checked, not only the first, whose tokenizer is copied.
    result = podium("checkpoints", "average", str(good), str(hostile), "--out", str(out))
    _assert_refused(result, hostile, names)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


@pytest.mark.slow
def test_average_refuses_a_tokenizer_linked_outside_the_run_in_the_input_it_copies_from(smoke_run, tmp_path):
    hostile = _copy_checkpoint(smoke_run, tmp_path, "hostile")
    good = _copy_checkpoint(smoke_run, tmp_path, "good")
    _tokenizer_linked_outside(hostile)
    out = tmp_path / "average"
    result = podium("checkpoints", "average", str(hostile), str(good), "--out", str(out))
    _assert_refused(result, hostile, "tokenizer.json")
    assert not out.exists()


def _set_weights(folder: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    state = torch.load(folder / "model.pt", weights_only=True)
    change(state)
    buffer = folder / "model.rewritten"
    torch.save(state, buffer)
    _rewrite_file(folder, "model.pt", buffer.read_bytes())
    buffer.unlink()


def _untied_floating_keys(folder: Path) -> list[str]:
    """Keys of floating tensors that share their storage with no other key (tied weights are left out),
    so changing one changes that key alone."""
    state = torch.load(folder / "model.pt", weights_only=True)
    owners: dict[int, list[str]] = {}
    for key, tensor in state.items():
        owners.setdefault(tensor.untyped_storage().data_ptr(), []).append(key)
    return [
        key
        for key, tensor in state.items()
        if tensor.is_floating_point() and len(owners[tensor.untyped_storage().data_ptr()]) == 1
    ]


@pytest.mark.slow
def test_average_refuses_an_input_with_nan_weights_naming_the_first_such_tensor(smoke_run, tmp_path):
    good = _copy_checkpoint(smoke_run, tmp_path, "good")
    hostile = _copy_checkpoint(smoke_run, tmp_path, "hostile")
    keys = _untied_floating_keys(hostile)
    first, later = keys[0], keys[-1]

    def poison(state: dict[str, torch.Tensor]) -> None:
        state[first].view(-1)[0] = float("nan")
        state[later].view(-1)[-1] = float("inf")

    _set_weights(hostile, poison)
    out = tmp_path / "average"
    result = podium("checkpoints", "average", str(good), str(hostile), "--out", str(out))
    _assert_refused(result, hostile, first)
    assert later not in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_average_never_writes_weights_that_overflow_the_chosen_precision(smoke_run, tmp_path):
    inputs = [_copy_checkpoint(smoke_run, tmp_path, name) for name in ("a", "b")]
    key = _untied_floating_keys(inputs[0])[-1]

    def beyond_fp16(state: dict[str, torch.Tensor]) -> None:
        state[key].view(-1)[0] = torch.finfo(torch.float16).max * 4

    for folder in inputs:
        _set_weights(folder, beyond_fp16)
    out = tmp_path / "average"
    result = podium("checkpoints", "average", *map(str, inputs), "--out", str(out), "--dtype", "fp16")
    _assert_refused(result, out, key)
    assert not out.exists()


@pytest.mark.slow
def test_average_names_the_checkpoint_whose_config_points_at_missing_validation_data(smoke_run, tmp_path):
    inputs = [_copy_checkpoint(smoke_run, tmp_path, name) for name in ("a", "b")]
    missing = tmp_path / "no-such-midi-folder"
    for folder in inputs:
        _edit_manifest(folder, lambda m: m["config"]["data"].update(source="midi_dir", path=str(missing)))
    out = tmp_path / "average"
    result = podium("checkpoints", "average", *map(str, inputs), "--out", str(out))
    _assert_refused(result, inputs[0], "data.path")
    assert not out.exists()
