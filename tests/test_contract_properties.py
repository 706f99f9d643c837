"""Generated event lines, command lines and manifests -- well-formed, wrong-typed, hostile -- against the readers.

Whatever lands in a run directory, the readers hand over typed records or count
a rejection that names the line and the field; no exception escapes, and a
valid neighbour of a bad line is never lost.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.contract.commands import COMMANDS, ControlInbox
from engine.contract.events import EVENT_MODELS, EventReader, make_event
from engine.contract.manifest import Manifest, checkpoint_rows, checkpoint_table
from gui.models.run_model import RunModel

FAST = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
step = st.integers(min_value=0, max_value=10**6)


@st.composite
def valid_event(draw) -> dict:
    """An event the engine could write, built through the writer's own validation."""
    kind = draw(st.sampled_from(["metrics", "eval", "status", "anomaly", "control_ack", "checkpoint", "run_end"]))
    payload = {
        "metrics": lambda: {
            "loss": draw(st.floats(allow_nan=True)),
            "lr": draw(finite),
            "tokens_seen": draw(step),
            "rank_work_times": draw(st.lists(finite, max_size=3)),
        },
        "eval": lambda: {"val_loss": draw(st.none() | finite), "replicas_in_sync": draw(st.booleans())},
        "status": lambda: {"state": draw(st.sampled_from(["running", "paused", "stopping"])), "message": "m"},
        "anomaly": lambda: {"id": "a1", "kind": "loss_spike", "severity": "warning", "evidence": {"x": 1.0}},
        "control_ack": lambda: {"id": "c1", "cmd": "pause", "outcome": draw(st.sampled_from(["done", "refused"]))},
        "checkpoint": lambda: {"path": "/r/checkpoints/step-1", "kind": "full", "size_bytes": draw(step)},
        "run_end": lambda: {"reason": draw(st.sampled_from(["finished", "stopped", "failed"])), "message": ""},
    }[kind]()
    return make_event(kind, draw(step), **payload)


@st.composite
def bad_line(draw) -> tuple[bytes, str | None]:
    """A line no reader may accept, and the field its rejection must name (None: not a JSON event at all)."""
    choice = draw(st.integers(0, 5))
    if choice == 0:  # a valid event with one declared field replaced by a value of another JSON type
        event = draw(valid_event())
        model = EVENT_MODELS[event["type"]]
        name = draw(st.sampled_from([n for n in model.model_fields if n not in ("type", "v")]))
        value = draw(json_value)
        event[name] = value
        try:
            model.model_validate(event)
        except ValueError:
            return json.dumps(event).encode(), name
        return b"{", None  # the draw happened to be valid for that field: stand in a broken line
    if choice == 1:
        return json.dumps(draw(json_value)).encode() if draw(st.booleans()) else b"[1, 2]", None
    if choice == 2:
        depth = draw(st.integers(1100, 4000))
        return b'{"v": 1, "type": "eval", "time": NaN, "x": ' + b"[" * depth + b"]" * depth + b"}", None
    if choice == 3:
        return b'{"v": 1, "type": "status", "time": 1.0, "step": ' + b"9" * draw(st.integers(20, 6000)) + b"}", "step"
    if choice == 4:
        return draw(st.binary(min_size=1, max_size=60).filter(lambda b: b"\n" not in b and b.strip() != b"")), None
    unknown = draw(st.text(max_size=10).filter(lambda t: t not in EVENT_MODELS))
    return json.dumps({"v": 1, "type": unknown, "time": 1.0, "step": 1}).encode(), "type"


def _check_events(lines: list[tuple[bytes, str | None, bool]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line, _, _ in lines))
        reader = EventReader(path, keep_rejected=len(lines))
        records = reader.read_new()
    valid = [json.loads(line) for line, _, ok in lines if ok]
    assert [r["step"] for r in records] == [e["step"] for e in valid], "a valid neighbour was lost or reordered"
    assert [r["type"] for r in records] == [e["type"] for e in valid]
    bad = [(n, field) for n, (_, field, ok) in enumerate(lines, 1) if not ok]
    assert reader.garbage == len(bad)
    reasons = {r.line: r.reason for r in reader.rejected}
    for number, field in bad:
        assert number in reasons, f"line {number} rejected without its line number"
        if field is not None and not reasons[number].startswith("not JSON"):
            assert field in reasons[number], reasons[number]
    model = RunModel(name="r")
    model.ingest(records)  # the app's model takes whatever the reader hands over
    newest, in_order = -1, 0  # nothing announces a way back here: a metrics line at or before the newest is skipped
    for event in valid:
        if event["type"] == "metrics":
            in_order += event["step"] > newest
            newest = max(newest, event["step"])
    shown = model.series.get("metrics/loss")
    assert (len(shown.steps) if shown else 0) == in_order
    assert model.rejected == sum(e["type"] == "metrics" for e in valid) - in_order


event_lines = st.lists(
    st.one_of(
        valid_event().map(lambda e: (json.dumps(e).encode(), None, True)),
        bad_line().map(lambda b: (b[0], b[1], False)),
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.slow
@FAST
@given(event_lines)
def test_event_lines_become_typed_records_or_counted_rejections(lines):
    _check_events(lines)


@pytest.mark.slow
@SLOW
@given(event_lines)
def test_event_lines_become_typed_records_or_counted_rejections_at_length(lines):
    _check_events(lines)


# ------------------------------------------------------------------------------------------ commands

valid_command = st.one_of(
    st.sampled_from(["pause", "resume", "stop", "save_checkpoint"]).map(lambda c: {"cmd": c}),
    st.floats(min_value=1e-8, max_value=10.0).map(lambda lr: {"cmd": "set_lr", "args": {"lr": lr}}),
    st.integers(1, 1000).map(lambda n: {"cmd": "profile", "args": {"steps": n}}),
)
hostile_command = st.one_of(
    st.fixed_dictionaries({"id": json_value, "cmd": st.sampled_from(sorted(COMMANDS))}),
    st.fixed_dictionaries({"cmd": json_value}),
    st.fixed_dictionaries({"cmd": st.just("set_lr"), "args": st.fixed_dictionaries({"lr": json_value})}),
    st.fixed_dictionaries({"cmd": st.just("set_lr"), "args": st.just({"lr": 10**400})}),
    st.fixed_dictionaries({"cmd": st.just("set_lr"), "args": st.just({"lr": 1e308})}),
    st.fixed_dictionaries({"cmd": st.just("profile"), "args": json_value}),
    json_value,
)


def _check_commands(entries: list[tuple[dict | bytes, bool]]) -> None:
    lines, valid_ids = [], []
    for i, (entry, ok) in enumerate(entries):
        if isinstance(entry, bytes):
            lines.append(entry)
            continue
        record = entry
        if isinstance(record, dict):
            record = dict(record)
            if ok:  # valid ids repeat: a later copy must be refused, not applied again
                record["id"] = f"c{i % 7}"
                valid_ids += [] if record["id"] in valid_ids else [record["id"]]
            elif isinstance(record.get("id"), str) or "id" not in record:
                record["id"] = f"h{record.get('id', i)}"  # never the id of a valid command
        lines.append(json.dumps(record).encode())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "control.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        answered = ControlInbox(path).poll()
    assert len(answered) == len(lines), "every line gets exactly one answer"
    applied = [r["id"] for r in answered if "malformed" not in r]
    assert len(applied) == len(set(applied)), "a command id was applied twice"
    assert set(valid_ids) <= set(applied), "a valid command was refused"
    for record in answered:
        assert record["id"] is None or isinstance(record["id"], str)
        assert record["cmd"] is None or isinstance(record["cmd"], str)
        if "malformed" in record:
            assert isinstance(record["malformed"], str) and record["malformed"]
        else:
            assert record["cmd"] in COMMANDS and set(record["args"]) == set(COMMANDS[record["cmd"]])


command_lines = st.lists(
    st.one_of(
        valid_command.map(lambda c: (c, True)),
        hostile_command.map(lambda c: (c, False)),
        st.integers(1100, 3000).map(lambda d: (b'{"cmd": "pause", "id": ' + b"[" * d + b"]" * d + b"}", False)),
    ),
    min_size=1,
    max_size=10,
)


@pytest.mark.slow
@FAST
@given(command_lines)
def test_every_inbox_line_is_one_valid_command_or_one_refusal(entries):
    _check_commands(entries)


@pytest.mark.slow
@SLOW
@given(command_lines)
def test_every_inbox_line_is_one_valid_command_or_one_refusal_at_length(entries):
    _check_commands(entries)


# ----------------------------------------------------------------------------------------- manifests


def _valid_checkpoint(folder: Path, step: int) -> dict:
    folder.mkdir(parents=True)
    data = b"weights" * 10
    (folder / "model.pt").write_bytes(data)
    manifest = {
        "manifest_version": 1,
        "step": step,
        "kind": "full",
        "time": 1.7e9,
        "files": {"model.pt": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "part": "model"}},
        "metrics": {"val_loss": 2.5},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


manifest_field = st.sampled_from(["step", "kind", "time", "files", "metrics", "compression", "vocab_size", "config"])


@st.composite
def hostile_manifest(draw) -> tuple[bytes, str | None]:
    """A manifest no reader may trust, and the field its rejection must name (None: not JSON or not an object)."""
    base = {
        "manifest_version": 1,
        "step": 20,
        "kind": "full",
        "time": 1.7e9,
        "files": {"model.pt": {"size": 70, "sha256": "0" * 64, "part": "model"}},
    }
    choice = draw(st.integers(0, 3))
    if choice == 0:
        name = draw(manifest_field)
        base[name] = draw(json_value)
        try:
            Manifest.model_validate(base)
        except ValueError:
            return json.dumps(base).encode(), name
        return b"[]", None
    if choice == 1:
        entry = dict(base["files"]["model.pt"])
        entry[draw(st.sampled_from(["size", "sha256", "part"]))] = draw(json_value)
        base["files"] = {draw(st.sampled_from(["model.pt", "../x", "", "a/b", ".hidden"])): entry}
        try:
            Manifest.model_validate(base)
        except ValueError:
            return json.dumps(base).encode(), "files"
        return b"[]", None
    if choice == 2:
        base["time"] = draw(st.sampled_from([1e300, -1.0, "yesterday", None]))
        base["vocab_size"] = draw(st.sampled_from([10**12, 0, 512]))
        try:
            Manifest.model_validate(base)
        except ValueError:
            return json.dumps(base).encode(), None
        return b"{", None
    return draw(st.binary(max_size=80)), None


def _check_manifests(hostile: tuple[bytes, str | None]) -> None:
    text, field = hostile
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = Path(tmp) / "checkpoints"
        _valid_checkpoint(checkpoints / "step-0000010", 10)
        bad = checkpoints / "step-0000020"
        bad.mkdir()
        (bad / "model.pt").write_bytes(b"weights" * 10)
        (bad / "manifest.json").write_bytes(text)
        rows = {row["name"]: row for row in checkpoint_rows(checkpoints)}
        table = checkpoint_table(Path(tmp))
    assert rows["step-0000010"]["integrity"] == "ok", "a valid neighbour was lost"
    assert rows["step-0000020"]["integrity"].startswith("INVALID")
    if field is not None:
        assert field in rows["step-0000020"]["integrity"]
    assert "step-0000010" in table and "step-0000020" in table


@pytest.mark.slow
@FAST
@given(hostile_manifest())
def test_a_hostile_manifest_is_listed_invalid_with_its_field_and_its_neighbours_stay(hostile):
    _check_manifests(hostile)


@pytest.mark.slow
@SLOW
@given(hostile_manifest())
def test_a_hostile_manifest_is_listed_invalid_with_its_field_and_its_neighbours_stay_at_length(hostile):
    _check_manifests(hostile)


def test_checkpoint_files_or_folders_that_are_links_out_of_the_run_are_refused(tmp_path):
    outside = tmp_path / "outside"
    _valid_checkpoint(outside / "step-0000005", 5)
    checkpoints = tmp_path / "run" / "checkpoints"
    _valid_checkpoint(checkpoints / "step-0000010", 10)
    (checkpoints / "step-0000005").symlink_to(outside / "step-0000005")
    linked = checkpoints / "step-0000010" / "model.pt"
    linked.unlink()
    linked.symlink_to(outside / "step-0000005" / "model.pt")
    rows = {row["name"]: row["integrity"] for row in checkpoint_rows(checkpoints)}
    assert "symbolic link" in rows["step-0000005"]
    assert "not a regular file" in rows["step-0000010"]
