"""The panels' Qt-free models: our MIDI reader/writer against symusic, the synthesiser, the config document,
alerts, samples and checkpoints. symusic appears here only, as the judge of our MIDI code."""

from __future__ import annotations

import json
import math
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from engine.contract.events import EventWriter, as_records, read_events
from gui.models.alerts import AlertModel
from gui.models.checkpoints import CheckpointModel, parse_average_report, parse_sample_report
from gui.models.config_doc import ConfigDocument, diff, launch_problems
from gui.models.midi import MidiError, parse_midi, read_midi, write_midi
from gui.models.samples import SampleModel
from gui.models.synth import SAMPLE_RATE, render, write_wav
from gui.models.typed_reader import TypedEventReader

symusic = pytest.importorskip("symusic")


# ------------------------------------------------------------------ helpers (used by the other panel tests too)

CHORALE = {  # voice name -> (program, [(start tick, duration, pitch, velocity)])
    "Soprano": (
        52,
        [(0, 480, 72, 90), (480, 480, 74, 88), (960, 960, 76, 92), (1920, 240, 74, 80), (2160, 240, 72, 80)],
    ),
    "Alto": (52, [(0, 960, 67, 70), (960, 480, 67, 72), (1440, 960, 69, 70)]),
    "Tenor": (52, [(0, 480, 64, 60), (480, 480, 62, 62), (960, 1440, 60, 64)]),
    "Bass": (32, [(0, 1920, 48, 75), (1920, 480, 43, 75), (2400, 0, 45, 50)]),  # a zero-length note too
}


def write_symusic_midi(path: Path, voices: dict = CHORALE, tpq: int = 480, tempos=((0, 90.0), (1440, 60.0))) -> Path:
    """A four-part MIDI file written by symusic: what the engine's samples are made with."""
    score = symusic.Score(tpq)
    for tick, qpm in tempos:
        score.tempos.append(symusic.Tempo(tick, qpm))
    for name, (program, notes) in voices.items():
        track = symusic.Track(name, program, False)
        for start, duration, pitch, velocity in notes:
            track.notes.append(symusic.Note(start, duration, pitch, velocity))
        score.tracks.append(track)
    score.dump_midi(str(path))
    return path


def symusic_notes(path: Path) -> list[tuple[int, int, int, int]]:
    score = symusic.Score(str(path))
    return sorted((n.time, n.duration, n.pitch, n.velocity) for t in score.tracks for n in t.notes)


def our_notes(piece) -> list[tuple[int, int, int, int]]:
    return sorted(
        (int(s), int(e - s), int(p), int(v)) for s, e, p, v in zip(piece.start, piece.end, piece.pitch, piece.velocity)
    )


# ------------------------------------------------------------------ MIDI


def test_midi_reader_matches_symusic_notes_tracks_and_seconds(tmp_path):
    path = write_symusic_midi(tmp_path / "chorale.mid")
    piece = read_midi(path)
    assert our_notes(piece) == symusic_notes(path)
    assert piece.n_notes == 14 and [v.name for v in piece.voices] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert [v.program for v in piece.voices] == [52, 52, 52, 32]
    # Seconds through the tempo change at tick 1440 (90 bpm, then 60 bpm), as symusic computes them.
    seconds = symusic.Score(str(path)).to("second")
    theirs = sorted((round(n.time, 4), round(n.duration, 4), n.pitch) for t in seconds.tracks for n in t.notes)
    mine = sorted(
        (round(float(s), 4), round(float(e - s), 4), int(p)) for s, e, p in zip(piece.start_s, piece.end_s, piece.pitch)
    )
    assert mine == theirs
    assert piece.duration_s == pytest.approx(seconds.end(), abs=1e-4)
    notes = piece.notes_array()
    assert notes.shape == (14, 5) and notes[:, 0].min() == 0 and set(notes[:, 4]) == {0, 1, 2, 3}


def test_midi_reader_pairs_overlapping_notes_and_reads_running_status_and_format_0(tmp_path):
    # Same pitch overlapping (FIFO pairing, as symusic), running status, a note-on of velocity 0 as note-off,
    # a SysEx to skip and an unknown chunk before the track.
    body = bytes(
        [
            0x00,
            0xF0,
            0x03,
            0x7E,
            0x7F,
            0xF7,  # SysEx
            0x00,
            0x90,
            60,
            100,  # on C4
            0x83,
            0x60,
            60,
            80,  # +480, running status: on C4 again (overlap)
            0x00,
            64,
            90,  # running status: on E4
            0x83,
            0x60,
            0x80,
            60,
            0,  # +480 off C4 (closes the first)
            0x00,
            0x90,
            64,
            0,  # on with velocity 0 = off E4
            0x83,
            0x60,
            0x80,
            60,
            0,  # +480 off C4 (the second)
            0x00,
            0xFF,
            0x2F,
            0x00,
        ]
    )
    data = (
        b"MThd"
        + struct.pack(">IHHH", 6, 0, 1, 480)
        + b"XFIH"
        + struct.pack(">I", 2)
        + b"??"
        + b"MTrk"
        + struct.pack(">I", len(body))
        + body
    )
    path = tmp_path / "raw.mid"
    path.write_bytes(data)
    assert (
        our_notes(parse_midi(data))
        == symusic_notes(path)
        == [(0, 960, 60, 100), (480, 480, 64, 90), (480, 960, 60, 80)]
    )


def test_midi_reader_refuses_garbage_with_a_reason(tmp_path):
    with pytest.raises(MidiError, match="not a Standard MIDI File"):
        parse_midi(b"RIFF....WAVEfmt ")
    with pytest.raises(MidiError, match="without a status"):
        body = bytes([0x00, 0x3C, 0x40])
        parse_midi(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + b"MTrk" + struct.pack(">I", len(body)) + body)
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd")
    with pytest.raises(MidiError, match="bad.mid"):
        read_midi(bad)


def test_midi_writer_round_trips_through_symusic(tmp_path):
    source = write_symusic_midi(tmp_path / "chorale.mid")
    piece = read_midi(source)
    out = write_midi(tmp_path / "copy.mid", piece)
    assert symusic_notes(out) == symusic_notes(source)
    again = read_midi(out)
    assert our_notes(again) == our_notes(piece) and again.tempos == piece.tempos
    assert [v.name for v in again.voices] == [v.name for v in piece.voices]
    assert np.allclose(again.start_s, piece.start_s) and np.allclose(again.end_s, piece.end_s)


# ------------------------------------------------------------------ synthesiser


def test_synth_renders_every_note_audibly_and_writes_a_wav(tmp_path):
    piece = read_midi(write_symusic_midi(tmp_path / "c.mid"))
    audio = render(piece)
    assert audio.dtype == np.float32 and audio.shape[1] == 2
    assert len(audio) / SAMPLE_RATE == pytest.approx(piece.duration_s, abs=0.2)
    assert 0.05 < np.abs(audio).max() <= 0.9
    # Sound where notes are, in each note's window; muting every voice leaves silence.
    for start in piece.start_s:
        window = audio[int(start * SAMPLE_RATE) : int(start * SAMPLE_RATE) + 2000]
        assert np.abs(window).max() > 0.01
    assert np.abs(render(piece, muted={0, 1, 2, 3})).max() == 0
    # The soprano's pitch is where the spectrum says: 523 Hz (C5) alone in the first half second when soloed.
    solo = render(piece, muted={1, 2, 3})[: SAMPLE_RATE // 2, 0]
    spectrum = np.abs(np.fft.rfft(solo * np.hanning(len(solo))))
    assert abs(np.fft.rfftfreq(len(solo), 1 / SAMPLE_RATE)[spectrum.argmax()] - 523.25) < 4
    path = write_wav(tmp_path / "c.wav", audio)
    with wave.open(str(path)) as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()) == (2, 2, SAMPLE_RATE, len(audio))


# ------------------------------------------------------------------ config document

COMMENTED = """\
# my experiment
run:
  max_steps: 300   # short
  log_interval: 5
optim:
  lr: 0.001
batch:
  global_batch_size: 8
  micro_batch_size: 4
"""


def test_config_document_places_problems_on_their_lines():
    doc = ConfigDocument(
        COMMENTED.replace("lr: 0.001", "lr: 5").replace("log_interval: 5", "log_interval: 5\n  bogus: 1")
    )
    problems = {p.path: p for p in doc.validation.errors()}
    assert problems["optim.lr"].line == 7 and "less than or equal to 1" in problems["optim.lr"].message
    assert problems["run.bogus"].line == 5 and "unknown key" in problems["run.bogus"].message
    assert not doc.validation.ok
    # A section-level check names the field it is about.
    doc.set_text("tokenizer:\n  pitch_low: 90\n  pitch_high: 60\n")
    (p,) = doc.validation.errors()
    assert (p.path, p.line) == ("tokenizer.pitch_low", 2)
    # A YAML syntax error: its own line, nothing parsed.
    doc.set_text("run:\n  max_steps: 10\n  seed: [1, 2\noptim:\n  lr: 0.1\n")
    assert doc.validation.syntax_error and doc.validation.errors()[0].line in (4, 5)
    assert "YAML syntax error" in doc.validation.errors()[0].message
    # The batch must split over the ranks: checked when a process count is set.
    doc.set_text(COMMENTED)
    assert doc.validation.ok
    doc.set_nproc(3)
    (p,) = doc.validation.errors()
    assert p.path == "batch.global_batch_size" and p.line == 8


def test_config_document_writes_form_values_into_the_yaml_keeping_comments():
    doc = ConfigDocument(COMMENTED)
    assert doc.set_value("run.max_steps", 1000)
    assert "  max_steps: 1000   # short\n" in doc.text and doc.text.startswith("# my experiment\n")
    doc.set_value("optim.warmup_steps", 20)  # a key not written yet goes into its section
    assert "  lr: 0.001\n  warmup_steps: 20\n" in doc.text
    doc.set_value("ema.enabled", True)  # a section not written yet is appended
    assert doc.text.endswith("ema:\n  enabled: true\n")
    doc.set_value("curriculum.seq_len_stages", [[0, 32], [100, 64]])
    assert doc.value("curriculum.seq_len_stages") == [[0, 32], [100, 64]]
    assert doc.reset_value("optim.warmup_steps") and "warmup_steps" not in doc.text
    assert doc.value("optim.warmup_steps") == 100 and not doc.is_set("optim.warmup_steps")
    assert doc.validation.ok and doc.validation.config.run.max_steps == 1000
    doc.set_text("{}\n")  # a flow mapping at the top: no block section can follow it, so it is rewritten
    assert doc.set_value("run.seed", 5) and doc.validation.ok and doc.value("run.seed") == 5
    doc.set_text("run: [1\n")
    assert not doc.set_value("run.seed", 1), "no splicing into text that does not parse"


def test_config_document_refuses_to_save_an_invalid_config(tmp_path):
    doc = ConfigDocument(COMMENTED.replace("lr: 0.001", "lr: -1"))
    target = tmp_path / "x.yaml"
    with pytest.raises(ValueError, match="optim.lr"):
        doc.save(target)
    assert not target.exists()
    doc.set_value("optim.lr", 0.01)
    doc.save(target)
    assert target.read_text() == doc.text and not doc.dirty


def test_saving_a_config_never_writes_through_a_file_planted_beside_it(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / ".x.yaml.tmp").symlink_to(outside)  # where a fixed temporary name would have been written
    doc = ConfigDocument(COMMENTED)
    doc.save(folder / "x.yaml")
    assert (folder / "x.yaml").read_text() == doc.text
    assert outside.read_text() == "untouched"


def test_config_diff_and_launch_checks(tmp_path):
    doc = ConfigDocument(COMMENTED)
    rows = {r.path: r for r in diff(doc.effective(), doc.defaults)}
    assert rows["run.max_steps"].mine == "300" and rows["run.max_steps"].theirs == "2000"
    assert "optim.lr" not in rows  # 0.001 is the default
    assert launch_problems("", tmp_path) and launch_problems("a/b", tmp_path)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "events.jsonl").write_text("")
    assert any("already holds" in p for p in launch_problems("taken", tmp_path))
    assert launch_problems("fresh", tmp_path) == []
    assert any("checkpoint" in p for p in launch_problems("fresh", tmp_path, None, fork=True))


# ------------------------------------------------------------------ alerts


def anomaly(step, kind="nonfinite_loss", severity="critical", id_="a1", **extra):
    return as_records(
        [
            {
                "v": 1,
                "type": "anomaly",
                "time": 1000.0 + step,
                "step": step,
                "id": id_,
                "kind": kind,
                "severity": severity,
                **extra,
            }
        ]
    )[0]


def test_alerts_merge_the_follow_up_and_filter_and_acknowledge():
    model = AlertModel()
    new = model.ingest(
        [
            anomaly(
                120,
                message="loss is NaN",
                evidence={"loss": math.nan, "last_finite": 2.1},
                suggestion="roll back and lower the LR",
                action="rollback",
            ),
            anomaly(130, kind="loss_spike", severity="warning", id_="b2", message="spike", action="alert"),
        ]
    )
    assert [a.id for a in new] == ["a1", "b2"]
    a1 = model.by_id["a1"]
    assert a1.outcome == "pending" and a1.action_text() == "rollback (pending)"
    # The engine's follow-up: at the step it went back to, severity info, a message of its own.
    assert (
        model.ingest(
            [
                anomaly(
                    100,
                    severity="info",
                    message="rollback after nonfinite_loss: done",
                    action="rollback",
                    action_taken={"action": "rollback", "outcome": "done", "to_step": 100, "lr_factor": 0.5},
                )
            ]
        )
        == []
    )
    assert len(model.alerts) == 2, "the follow-up updates its alert, it does not add one"
    assert (a1.message, a1.step, a1.severity) == ("loss is NaN", 120, "critical"), "the detection's own account stays"
    assert a1.action_text() == "rollback: done, back to step 100, LR ×0.5" and a1.outcome == "done"
    assert "loss=nan" in a1.evidence_text()
    model.set_severities({"warning"})
    assert [a.id for a in model.visible()] == ["b2"]
    model.set_severities({"critical", "warning", "info"})
    model.set_kinds({"nonfinite_loss"})
    assert [a.id for a in model.visible()] == ["a1"]
    assert model.unacknowledged() == 2 and model.acknowledge_all() == 1 and model.unacknowledged() == 1
    # An action the engine could not take as prescribed reads in its words.
    model.ingest(
        [
            anomaly(300, id_="c3", action="rollback"),
            anomaly(
                300,
                id_="c3",
                action_taken={
                    "action": "rollback",
                    "lr_factor": 0.5,
                    "outcome": "no valid checkpoint to roll back to; lowered the LR instead",
                },
            ),
        ]
    )
    c3 = model.by_id["c3"]
    assert c3.outcome == "other" and c3.action_text() == (
        "rollback: no valid checkpoint to roll back to; lowered the LR instead, LR ×0.5"
    )


# ------------------------------------------------------------------ samples


def sample_round(step, paths, reference=True, quality=0.8):
    means = {"pitch_class_entropy": 2.6 + step / 10000, "bar_repetition_rate": 0.2}
    return {
        "v": 1,
        "type": "sample",
        "time": 2000.0 + step,
        "step": step,
        "seconds": 3.5,
        "samples": [
            {
                "path": str(p),
                "seed": i,
                "prompt": None,
                "n_tokens": 240 + i,
                "syntax": {"valid": i == 0, "note_validity": 0.97},
                "metrics": {"pitch_class_entropy": 2.5 + i * 0.2, "bar_repetition_rate": 0.1 * (i + 1)},
            }
            for i, p in enumerate(paths)
        ],
        "metrics": means,
        "quality_score": quality,
        "quality": {"pitch_class_entropy": {"mean": means["pitch_class_entropy"], "z": -0.5, "similarity": 0.88}},
        "reference": {
            "pitch_class_entropy": {"mean": 2.9, "std": 0.2},
            "bar_repetition_rate": {"mean": 0.15, "std": 0.05},
        }
        if reference
        else {},
    }


def test_samples_model_rounds_metrics_against_the_reference_and_pieces(tmp_path):
    (tmp_path / "samples").mkdir()
    write_symusic_midi(tmp_path / "samples" / "a.mid")
    model = SampleModel(tmp_path)
    assert (
        model.ingest(
            [
                sample_round(100, ["samples/a.mid"], quality=0.6),
                sample_round(200, ["samples/a.mid", "samples/missing.mid"]),
            ]
        )
        == 2
    )
    assert [r.step for r in model.rounds] == [100, 200]
    item = model.rounds[1].samples[0]
    assert item.path == tmp_path / "samples" / "a.mid" and item.syntax_ok is True
    rows = {r.name: r for r in model.metric_rows(item)}
    pce = rows["pitch_class_entropy"]
    assert (pce.value, pce.ref_mean, pce.ref_std) == (2.5, 2.9, 0.2) and pce.z == pytest.approx(-2.0)
    assert pce.similarity == 0.88
    assert [r.quality_score for r in model.rounds] == [0.6, 0.8] and model.rounds[1].means[
        "pitch_class_entropy"
    ] == 2.62
    assert model.piece(item).n_notes == 14
    with pytest.raises(MidiError, match="missing.mid"):
        model.piece(model.rounds[1].samples[1])
    # A sample made on request comes with the metrics `podium sample` left beside its MIDI; none without them.
    manual = model.add_manual(tmp_path / "samples" / "a.mid", 30, "step-0000030", seed=3)
    assert model.piece(manual).n_notes == 14 and manual.metrics == {}
    (tmp_path / "samples" / "a.mid.metrics.json").write_text('{"pitch_class_entropy": 2.4, "groove": "x"}')
    again = model.add_manual(tmp_path / "samples" / "a.mid", 31, "step-0000031", seed=3)
    assert model.piece(again).n_notes == 14 and again.metrics == {"pitch_class_entropy": 2.4}
    # After a rollback to step 150 the run samples again: the round at 200 belonged to the undone stretch.
    model.ingest([sample_round(150, ["samples/a.mid"])])
    assert [r.step for r in model.rounds if not r.manual] == [100, 150] and any(r.manual for r in model.rounds)


# ------------------------------------------------------------------ events and checkpoints


def test_typed_reader_parses_only_the_wanted_types(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        for step in range(50):
            w.emit("metrics", step, loss=1.0)
        w.emit("anomaly", 10, id="x", kind="loss_spike", severity="warning")
        w.emit("checkpoint", 20, path="c", kind="full", reason="interval", size_bytes=1)
    with open(path, "a") as f:
        f.write('{"v": 1, "type": "sample", "time": 1, "step": 3')  # a partial last line waits
    reader = TypedEventReader(path, ["anomaly", "sample"])
    assert [e["type"] for e in reader.read_new()] == ["anomaly"]
    with open(path, "a") as f:
        f.write(', "samples": []}\n')
    assert [e["type"] for e in reader.read_new()] == ["sample"]
    assert len(read_events(path)[0]) == 53
    with open(path, "a") as f:
        f.write('{"type": "anomaly", "oops": 1}\n')  # not an event: counted, skipped
    assert reader.read_new() == [] and reader.garbage == 1
    path.write_text("")  # replaced: read again from the start
    assert reader.read_new() == [] and reader.restarted


def test_typed_reader_finds_compact_json_and_ignores_a_type_named_inside_another_event(tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [
        '{"v":1,"type":"anomaly","time":1,"step":1,"kind":"nan_loss","detail":{}}',  # compact, by another tool
        '{"v": 1, "type": "metrics", "time": 2, "step": 2, "loss": 1.0}',
        # Named twice in a nested object of another event: one line, and not an anomaly.
        '{"v": 1, "type": "status", "time": 3, "step": 3, "state": "running", "message": "",'
        ' "extra": {"type": "anomaly", "inner": {"type":"anomaly"}}}',
        '{"v": 1, "type": "anomaly", "time": 4, "step": 4, "kind": "loss_spike", "detail": {}}',
    ]
    path.write_text("\n".join(lines) + "\n")
    found = TypedEventReader(path, ["anomaly"])._split(path.read_bytes().rstrip(b"\n"))
    assert [json.loads(line)["step"] for line in found] == [1, 3, 4], "each line once, in file order"
    assert [(e["type"], e["step"]) for e in TypedEventReader(path, ["anomaly"]).read_new()] == [
        ("anomaly", 1),
        ("anomaly", 4),
    ]


def fake_checkpoint(folder: Path, step: int, kind: str = "full", **meta) -> Path:
    from engine.contract.manifest import sha256_file, write_manifest

    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(bytes(range(256)) * (step + 1))
    write_manifest(
        folder,
        {
            "step": step,
            "kind": kind,
            "time": 1_700_000_000 + step,
            "reason": "interval",
            "metrics": {"val_loss": 5.0 - step / 100},
            "files": {
                "model.pt": {
                    "part": "model",
                    "size": (folder / "model.pt").stat().st_size,
                    "sha256": sha256_file(folder / "model.pt"),
                }
            },
            **meta,
        },
    )
    return folder


def test_checkpoint_model_lists_protects_and_marks_corruption(tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    for step in (10, 20, 30):
        fake_checkpoint(ckpts / f"step-{step:07d}", step)
    fake_checkpoint(
        tmp_path / "run" / "averages" / "uniform-10-20",
        20,
        kind="weights",
        provenance={
            "method": "uniform",
            "inputs": [{"step": 10, "val_loss": 4.9, "used": True}, {"step": 20, "val_loss": 4.8, "used": True}],
        },
    )
    (ckpts / "step-0000040").mkdir()
    (ckpts / "step-0000040" / "manifest.json").write_text("{ not json")
    model = CheckpointModel(tmp_path / "run")
    names = [r.name for r in model.rows]
    assert names == ["step-0000010", "step-0000020", "uniform-10-20", "step-0000030", "step-0000040"]
    bad = model.row(ckpts / "step-0000040")
    assert bad.integrity == "corrupt" and "unreadable" in bad.problem and not bad.valid
    avg = model.row(tmp_path / "run" / "averages" / "uniform-10-20")
    assert avg.inputs_text() == "step 10 (4.9000), step 20 (4.8000)"
    # The newest valid checkpoint is kept even when a newer one is corrupt.
    assert set(model.protected()) == {ckpts / "step-0000030"}
    ok, refused = model.deletable(model.rows)
    assert ckpts / "step-0000030" not in {r.path for r in ok} and "newest valid" in refused[0]
    # A flipped byte (same size) shows only when hashed.
    target = ckpts / "step-0000020" / "model.pt"
    data = bytearray(target.read_bytes())
    data[7] ^= 0xFF
    target.write_bytes(bytes(data))
    model.refresh()
    assert model.row(target.parent).integrity == "sizes ok"
    signature, problem = model.verify(target.parent)
    model.set_verified(target.parent, problem, signature)
    assert model.row(target.parent).integrity == "corrupt" and "sha256" in model.row(target.parent).problem
    model.refresh()
    assert model.row(target.parent).integrity == "corrupt", (
        "a verdict survives a refresh while the manifest is unchanged"
    )
    assert model.resume_mode(model.row(ckpts / "step-0000030")) == "resume"
    assert model.resume_mode(model.row(ckpts / "step-0000010")) == "fork"
    errors = model.delete([model.row(ckpts / "step-0000010"), model.row(ckpts / "step-0000030")])
    assert errors and not (ckpts / "step-0000010").exists() and (ckpts / "step-0000030").exists()
    assert not any(p.name.startswith(".tmp-") for p in ckpts.iterdir())


def test_cli_reports_parse():
    report = (
        "checkpoint                       step  val_loss  used\n"
        "/r/checkpoints/step-0000005         5    5.6475  yes\n"
        "/r/averages/uniform-5-10  (uniform average of 2)       10    5.4434  \n"
    )
    assert parse_average_report(report) == {
        "path": Path("/r/averages/uniform-5-10"),
        "method": "uniform",
        "used": 2,
        "step": 10,
        "val_loss": 5.4434,
    }
    assert parse_sample_report("wrote /r/s.mid: 38 tokens, 3 notes in 3 track(s), pitches 65-99, 7.1 s")["notes"] == 3
    assert parse_sample_report("nothing") is None
