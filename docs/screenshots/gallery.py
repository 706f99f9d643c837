"""Every panel of the window at the two screen sizes users reported from, in both themes.

    python docs/screenshots/gallery.py [--run RUN_DIR] [--study WORKSPACE/studies/NAME] [--only study]

Without ``--run`` it trains the 2-rank smoke config (resources/smoke.yaml, about two minutes on a laptop CPU)
so that checkpoints, samples, alerts and the log are real. With ``--study``, a finished study's folder, the
study panel (and the runs table with the study's trials grouped) is shot too, as ``study-THEME-WxH.png``.
The PNGs land in docs/screenshots/gallery/ as ``PANEL-THEME-WxH.png``; look at them after any layout change.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = HERE / "gallery"
SIZES = ("1600x1000", "1280x720")
THEMES = ("light", "dark")
# The dashboard alone, then each dock brought to the front (gui/app.py's --dock names).
PANELS = ("dashboard", "alerts", "checkpoints", "config", "samples", "log", "events", "music")


def smoke_run(workspace: Path) -> Path:
    run = workspace / "smoke"
    subprocess.run(
        [sys.executable, "-m", "engine", "run", "-c", "resources/smoke.yaml", "-r", str(run), "--nproc", "2"],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return run


def shoot(run: Path, panel: str, theme: str, size: str, workspace: Path | None = None) -> Path:
    """One PNG; a study's folder as ``workspace`` opens the study panel on it."""
    png = OUT / f"{panel}-{theme}-{size}.png"
    dock = [] if panel in ("dashboard", "study") else ["--dock", panel]
    subprocess.run(
        [sys.executable, "main.py", "--open", str(run), "--workspace", str(workspace or run.parent), "--theme", theme]
        + ["--size", size, *dock, "--screenshot", str(png)],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return png


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished run to show (default: train the smoke config)")
    parser.add_argument("--study", type=Path, help="a finished study's folder (WORKSPACE/studies/NAME) to show")
    parser.add_argument("--only", choices=[*PANELS, "study"], action="append", help="just these panels")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run.resolve() if args.run else smoke_run(Path(tmp))
        panels = [*PANELS, *(["study"] if args.study else [])]
        for panel in [p for p in panels if not args.only or p in args.only]:
            workspace = args.study.resolve() if panel == "study" else None
            for theme in THEMES:
                for size in SIZES:
                    png = shoot(run, panel, theme, size, workspace)
                    print(png.relative_to(REPO), f"{png.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
