"""The README's first two commands are the whole set-up; CI runs the second verbatim."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks]


def test_ci_runs_the_readme_test_command():
    first, second = _readme_commands()[:2]
    ci = (REPO / ".ci" / "run").read_text()
    assert second in ci.splitlines()
    assert first.endswith("main.py") and "torch==2.13.0" in first and "torch==2.13.0" in second
    assert "pytest" in second
