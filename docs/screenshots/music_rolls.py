"""docs/music.md's figure: three samples of a run beside three real chorales, in the app's piano roll.

    python docs/screenshots/music_rolls.py RUN_DIR [--out docs/screenshots/music-vs-bach.png] [--size 1600x1000]

The samples are the run's last evaluation's first three (its MIDI files, as the
samples dock shows them); the chorales are the first three validation pieces of
the run's split, read from the run's data cache (the MIDI files the corpus was
exported to). Both are drawn by ``gui.widgets.piano_roll.PianoRoll``, the
samples dock's own widget, so the two columns compare as the app shows them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

from PySide6 import QtWidgets  # noqa: E402

from engine.contract.config import validate  # noqa: E402
from engine.contract.events import read_events  # noqa: E402
from engine.contract.safe_yaml import parse_yaml  # noqa: E402
from engine.music.data import load_corpus, split_pieces  # noqa: E402
from gui.models.midi import read_midi  # noqa: E402
from gui.widgets.piano_roll import PianoRoll  # noqa: E402

SHOWN = 3


def last_samples(run_dir: Path) -> tuple[int, list[Path]]:
    events, _ = read_events(run_dir / "events.jsonl")
    last = [e for e in events if e["type"] == "sample"][-1]
    return last["step"], [run_dir / "samples" / Path(s["path"]).name for s in last["samples"][:SHOWN]]


def validation_chorales(run_dir: Path) -> list[Path]:
    data = next(e for e in read_events(run_dir / "events.jsonl")[0] if e["type"] == "data")
    corpus = load_corpus(Path(data["cache"]))
    cfg = validate(parse_yaml((run_dir / "config.yaml").read_text()))
    _, val_ids = split_pieces(corpus.names, cfg.data.val_fraction, cfg.data.split_seed)
    return [Path(data["cache"]) / "midi" / corpus.names[i] for i in val_ids[:SHOWN]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots" / "music-vs-bach.png")
    parser.add_argument("--size", default="1600x1000")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    app = QtWidgets.QApplication([])
    step, samples = last_samples(args.run_dir)
    chorales = validation_chorales(args.run_dir)
    # Every roll shows the same span, the longest sample's, so note density compares at one time scale.
    span = max(read_midi(path).duration_s for path in samples)
    page = QtWidgets.QWidget()
    grid = QtWidgets.QGridLayout(page)
    for column, (heading, paths) in enumerate(
        [(f"Samples at step {step}", samples), (f"Held-out Bach chorales (their first {span:.0f} s)", chorales)]
    ):
        label = QtWidgets.QLabel(f"<b>{heading}</b>")
        grid.addWidget(label, 0, column)
        for row, path in enumerate(paths, 1):
            roll = PianoRoll()
            roll.set_piece(read_midi(path), path.name)
            roll.fit()
            roll.view.setXRange(0.0, span, padding=0.02)
            grid.addWidget(roll, row, column)
    page.resize(width, height)
    page.show()
    for _ in range(3):
        app.processEvents()
    page.grab().save(str(args.out))
    print(
        json.dumps({"out": str(args.out), "samples": [str(p) for p in samples], "chorales": [p.name for p in chorales]})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
