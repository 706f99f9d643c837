"""The three boundaries of DESIGN.md, enforced mechanically."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENGINE_MODULES = sorted(
    ".".join(p.relative_to(REPO).with_suffix("").parts) for p in (REPO / "engine").rglob("*.py") if p.stem != "__init__"
)
# The modules the GUI may import: they must not pull in torch or the music libraries.
LIGHT_MODULES = [
    "engine.contract.events",
    "engine.contract.config",
    "engine.contract.rundir",
    "engine.contract.commands",
    "engine.contract.manifest",
    "engine.launcher.launch",
    "engine.contract.progress",
    "engine.launcher.cli",
    "engine.music.metrics",
    "engine.monitoring.anomaly",
    "engine.contract.monitor_config",
    "engine.checkpoints.retention",
    "engine.contract.search_space",
    "engine.studies.hpo",
    "engine.studies.scaling",
]

BLOCKER = """
import sys
class Block:
    def __init__(self, names): self.names = names
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in self.names:
            raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, Block(set(sys.argv[1].split(','))))
import importlib
for module in sys.argv[2:]:
    importlib.import_module(module)
print('imported', len(sys.argv) - 2)
"""


def _import_with_blocked(blocked: list[str], modules: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(blocked), *modules],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_every_engine_module_imports_without_qt():
    result = _import_with_blocked(["PySide6", "pyqtgraph", "shiboken6", "gui"], ENGINE_MODULES)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_modules_import_without_torch_or_music_libraries(module):
    result = _import_with_blocked(["torch", "miditok", "music21", "symusic"], [module])
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_control_and_checkpoint_listing_cli_run_without_torch(smoke_run):
    code = BLOCKER.replace(
        "import importlib\nfor module in sys.argv[2:]:\n    importlib.import_module(module)\n"
        "print('imported', len(sys.argv) - 2)\n",
        "from engine.launcher.cli import main\nsys.exit(main(sys.argv[2:]))\n",
    )
    listed = subprocess.run(
        [sys.executable, "-c", code, "torch,miditok,music21,symusic", "checkpoints", "list", str(smoke_run)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "step-0000030" in listed.stdout and "ok" in listed.stdout
