"""The study panel on a study in PostgreSQL (the real server of tests/test_hpo_postgres.py): read live, the
password never shown nor written."""

from __future__ import annotations

import optuna
import pytest

from engine.studies.hpo import Controller, StudyOptions
from tests.conftest import REPO, SMOKE
from tests.test_hpo import FAKE_TRIAL, SPACE_2D, fake_command
from tests.test_hpo_postgres import PASSWORD, files_holding, postgres  # noqa: F401 (the fixture)


@pytest.mark.slow
def test_the_study_panel_reads_a_postgresql_study_live_and_never_shows_its_password(
    qtbot,
    tmp_path,
    workspace,
    monkeypatch,
    postgres,  # noqa: F811
):
    from gui.widgets.study_panel import StudyPanel

    fake = tmp_path / "fake_trial.py"
    fake.write_text(FAKE_TRIAL)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE_2D)
    monkeypatch.setenv("PODIUM_REPO", str(REPO))
    monkeypatch.setenv("FAKE_STEPS", "4")
    # Another host ran the study: this workspace holds nothing of it, the database everything.
    other_host = tmp_path / "host-b"
    opts = StudyOptions(study="pg-panel", workspace=other_host, base=SMOKE, space=space, trials=3, storage=postgres)
    Controller(opts, command=fake_command(fake), out=lambda line: None).run()

    panel = StudyPanel(workspace, poll_ms=100)
    qtbot.addWidget(panel)
    panel.resize(1500, 860)
    panel.show()
    panel.select_study("pg-panel")
    panel.storage.url_edit.setText(postgres)
    panel.storage.url_edit.editingFinished.emit()
    assert PASSWORD not in panel.storage.url_edit.text() and panel.storage.url_edit.text().startswith("postgresql://")
    assert panel.storage.password_edit.echoMode() == panel.storage.password_edit.EchoMode.Password
    qtbot.waitUntil(lambda: panel.table_model.rowCount() == 3, timeout=30000)
    assert "3/3 trials done" in panel.status.text() and not panel.setup.start_button.isEnabled()

    # Live: a trial another worker finishes now appears without anything done here.
    study = optuna.load_study(study_name="pg-panel", storage=postgres)
    done = study.trials[0]
    study.add_trial(optuna.trial.create_trial(params=done.params, distributions=done.distributions, value=0.125))
    qtbot.waitUntil(lambda: panel.table_model.rowCount() == 4, timeout=30000)
    assert any(t.value == 0.125 for t in panel.model.trials)

    # A wrong password is said, naming the server but neither password.
    panel.storage.password_edit.setText("not-the-password")
    panel.storage.password_edit.editingFinished.emit()
    qtbot.waitUntil(lambda: "password authentication failed" in panel.status.text(), timeout=30000)
    shown = panel.status.text()
    assert PASSWORD not in shown and "not-the-password" not in shown and "127.0.0.1" in shown
    assert files_holding(workspace.parent, PASSWORD) == []
