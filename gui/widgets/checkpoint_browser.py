"""The checkpoint browser: a run's checkpoints and averages, their integrity, and what to do with them.

A sortable table (step, time, kind, size, validation loss, quality score,
integrity) from the manifests; verify (sha256 of every file, on a worker
thread); delete (never the newest valid checkpoint nor the one the run
resumes from; asks first); average the selected checkpoints (uniform or
greedy soup) with ``podium checkpoints average``, the result appearing in
the table with its validation loss next to the inputs'; resume from, fork
from, and generate a sample (``podium sample``) from a checkpoint. A
checkpoint that cannot be read is a row marked corrupt with the reason, never
an exception. On a remote workspace the listing, hashing, averaging and
sampling run on its host (:mod:`gui.models.checkpoint_files`,
:mod:`gui.widgets.checkpoint_jobs`), and deleting goes over SFTP with the same
refusals; resuming and forking start ``podium run`` on the host.

Mount it as a dock::

    self.checkpoints = CheckpointBrowser(CheckpointModel())
    self._dock("Checkpoints", "checkpoints", self.checkpoints, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)

and call ``checkpoints.set_access(access)`` and ``checkpoints.set_run(path)`` when the open run changes.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from gui.access.base import RunAccess
from gui.format import format_size
from gui.models.checkpoint_table import CheckpointTable
from gui.models.checkpoints import METHODS, CheckpointModel, CheckpointRow
from gui.models.table import RowTableModel
from gui.widgets.checkpoint_jobs import CheckpointJobs
from gui.widgets.checkpoint_work import HostJob, Lister, Verifier, delete_checkpoints
from gui.widgets.engine_job import EngineJob, JobBar, panel_toolbar

# Hash automatically (after listing) while the unverified checkpoints total less than this; larger ones
# would keep the disk busy for minutes each time a run is opened, so they wait for the Verify button.
AUTO_VERIFY_BYTES = 2 << 30


class CheckpointBrowser(QtWidgets.QWidget):
    resumeRequested = QtCore.Signal(object)  # Path: the run directory to resume
    forkRequested = QtCore.Signal(object)  # Path: the checkpoint to fork a new run from (the config editor takes it)

    def __init__(self, model: CheckpointModel, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.live = False  # set by whoever follows the run: resuming a running run makes no sense
        self._pending_select: Path | None = None
        # Tests answer for the user; a person gets a dialog.
        self.confirm: Callable[[str, str], bool] = lambda title, text: ask_yes(self, title, text)
        self.verifier = Verifier(model.verify, self)
        self.lister = Lister(model.listing, self)
        self.lister.listed.connect(self._listed)
        self.verifier.checked.connect(self._checked)
        self.verifier.done.connect(self._verify_pass_done)
        self._verify_again = False

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.refresh_button = self._button("Refresh", self.refresh, "Re-read the manifests (F5, with the runs list)")
        self.verify_button = self._button(
            "Verify",
            self.verify_selected,
            "Hash every file of the selected checkpoints (all, when none is selected) against its manifest",
        )
        self.delete_button = self._button(
            "Delete…",
            self.delete_selected,
            "Delete the selected checkpoints (never the newest valid one or the one the run resumes from)",
        )
        self.method = QtWidgets.QComboBox()
        self.method.addItems(METHODS)
        self.method.setToolTip(
            "uniform: the mean of the weights. greedy soup: best first, adding each next one only "
            "while the validation loss does not get worse (Wortsman et al. 2022)"
        )
        self.average_button = self._button(
            "Average",
            self.average_selected,
            "Average the selected checkpoints' weights into a new checkpoint under averages/",
        )
        self.resume_button = self._button(
            "Resume from",
            self.resume_from,
            "Continue the run from this checkpoint (its newest valid full one); an older one "
            "continues in a new run forked from it",
        )
        self.fork_button = self._button(
            "Fork from…", self.fork_from, "Start a new run from this checkpoint's weights with a config you edit"
        )
        self.seed = QtWidgets.QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setPrefix("seed ")
        self.seed.setToolTip("Sampling seed: the same seed and checkpoint give the same music")
        self.sample_button = self._button(
            "Generate sample",
            self.generate_sample,
            "Generate a MIDI sample from this checkpoint (main.py sample) and show it in Samples",
        )
        layout.addWidget(
            panel_toolbar(
                self.refresh_button,
                self.verify_button,
                self.delete_button,
                None,
                self.method,
                self.average_button,
                None,
                self.resume_button,
                self.fork_button,
                self.seed,
                self.sample_button,
            )
        )

        self.table_model = CheckpointTable(model, self)
        self.proxy = QtCore.QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.table_model)
        self.proxy.setSortRole(RowTableModel.SORT_ROLE)
        self.table = QtWidgets.QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, QtCore.Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setWordWrap(False)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        layout.addWidget(self.table, 1)
        self.details = QtWidgets.QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setObjectName("muted")
        layout.addWidget(self.details)
        self.job_bar = JobBar()
        layout.addWidget(self.job_bar)
        self.jobs = CheckpointJobs(model, self.job_bar, self.details.setText, self)
        self.jobs.changed.connect(self._selection_changed)
        self.jobs.averaged.connect(self._averaged)
        self.averaged, self.sampleGenerated = self.jobs.averaged, self.jobs.sampleGenerated
        QtGui.QShortcut(QtGui.QKeySequence(QtGui.QKeySequence.StandardKey.Delete), self.table, self.delete_selected)
        self.reload()
        self._auto_verify()

    def _button(self, text: str, slot, tip: str) -> QtWidgets.QPushButton:
        button = QtWidgets.QPushButton(text)
        button.setToolTip(tip)
        button.clicked.connect(lambda _checked=False: slot())  # clicked(bool) must not fill a defaulted parameter
        return button

    # ------------------------------------------------------------------ data

    def set_access(self, access: RunAccess) -> None:
        """The open run's workspace: a remote one's checkpoints are listed, hashed, averaged and sampled on
        its host (call set_run after)."""
        self.model.set_access(access)
        self.jobs.access = access

    def set_run(self, run_dir: Path | None, live: bool = False) -> None:
        self.verifier.cancel()
        self.lister.cancel()
        self._verify_again = False
        self.live = live
        self.model.set_run(run_dir, listing=not self.model.remote)
        self.reload()
        if self.model.remote and run_dir is not None:
            self.details.setText("Listing the checkpoints on the host…")
            self.lister.start()
        else:
            self._auto_verify()

    def refresh(self) -> None:
        """Re-read the manifests (a new checkpoint, one removed by retention); verify what is new."""
        if self.model.remote:
            self.lister.start()  # the host answers off the GUI thread: _listed
            return
        if self.model.refresh():
            self.reload()
        self._auto_verify()

    def _listed(self, listing, error: str) -> None:
        if listing is None:
            self.details.setText(f"Cannot list the checkpoints: {html.escape(error)}")
            return
        if self.model.apply(listing) or self._pending_select is not None:
            self.reload()
        else:
            self._selection_changed()
        self._auto_verify()

    def _averaged(self, path: Path) -> None:
        self._pending_select = path  # the new average is selected and shown, wherever the sort puts it
        if self.model.remote:
            self.lister.start()
            return
        self.model.refresh()
        self.reload()
        self._auto_verify()

    @property
    def job(self) -> EngineJob | HostJob | None:
        return self.jobs.job

    def reload(self) -> None:
        selected = {r.path for r in self.selected_rows()}
        new, self._pending_select = self._pending_select, None
        if new is not None:
            selected = {new}
        self.table_model.reload()
        selection = QtCore.QItemSelection()
        for i, row in enumerate(self.table_model.rows):
            if row.path in selected:
                index = self.proxy.mapFromSource(self.table_model.index(i, 0))
                selection.select(index, index.siblingAtColumn(self.table_model.columnCount() - 1))
                if row.path == new:
                    # A checkpoint just made (an average): shown, wherever the sort puts it.
                    self.table.scrollTo(index)
        self.table.selectionModel().select(selection, QtCore.QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self._selection_changed()

    def _auto_verify(self) -> None:
        pending = self.model.unverified()
        if not pending or sum(r.size or 0 for r in pending) > AUTO_VERIFY_BYTES:
            return
        if self.verifier.busy:
            self._verify_again = True  # after the pass in progress, which may predate these changes
            return
        self._verify([r.path for r in pending])

    def _verify_pass_done(self) -> None:
        if self._verify_again:
            self._verify_again = False
            self._auto_verify()

    def selected_rows(self) -> list[CheckpointRow]:
        rows = []
        for index in self.table.selectionModel().selectedRows():
            row = self.proxy.data(index, RowTableModel.ROW_ROLE)
            if row is not None:
                rows.append(row)
        return sorted(rows, key=lambda r: (r.step if r.step is not None else -1, r.name))

    def select_paths(self, paths: list[Path]) -> None:
        wanted = {Path(p) for p in paths}
        selection = QtCore.QItemSelection()
        for i, row in enumerate(self.table_model.rows):
            if row.path in wanted:
                index = self.proxy.mapFromSource(self.table_model.index(i, 0))
                selection.select(index, index.siblingAtColumn(self.table_model.columnCount() - 1))
        self.table.selectionModel().select(selection, QtCore.QItemSelectionModel.SelectionFlag.ClearAndSelect)

    def _selection_changed(self, *args) -> None:
        rows = self.selected_rows()
        one = rows[0] if len(rows) == 1 else None
        busy = self.jobs.busy
        ok_one = one is not None and one.valid
        self.average_button.setEnabled(not busy and not self.model.average_problems(rows, self.method.currentText()))
        self.average_button.setToolTip(
            "; ".join(self.model.average_problems(rows, self.method.currentText()))
            or "Average the selected checkpoints' weights into a new checkpoint under averages/"
        )
        # On a host, a resume continues the run in place there, so only from a full checkpoint.
        resumes = ok_one and (not self.model.remote or self.model.resume_mode(rows[0]) == "resume")
        self.resume_button.setEnabled(resumes and not self.live and not busy)
        self.fork_button.setEnabled(ok_one)
        self.sample_button.setEnabled(ok_one and not busy)
        self.delete_button.setEnabled(bool(rows) and not busy)
        self.verify_button.setEnabled(bool(self.model.rows))
        self.details.setText(details_html(self.model, self.table_model.protected, rows))

    # ------------------------------------------------------------ verification

    def verify_selected(self) -> None:
        rows = self.selected_rows() or self.model.rows
        self._verify([r.path for r in rows if r.integrity != "corrupt" or r.step is not None])

    def _verify(self, paths: list[Path]) -> None:
        if not paths:
            return
        self.verifier.cancel()
        self.model.mark_verifying(paths)
        self.reload()
        self.verifier.start(paths)

    def _checked(self, path: str, problem, signature) -> None:
        self.model.set_verified(Path(path), problem, signature)
        row = self.model.row(Path(path))
        if row is not None and row.integrity == "sizes ok":
            self._verify_again = True  # changed while it was hashed
        self.reload()

    # --------------------------------------------------------------- deleting

    def delete_selected(self) -> None:
        rows = self.selected_rows()
        if not rows:
            return
        ok, refused = self.model.deletable(rows)
        if not ok:
            self.details.setText("Not deleted: " + html.escape("; ".join(refused)))
            return
        if not self.confirm("Delete checkpoints", delete_question(ok, refused, self.live)):
            return
        errors = delete_checkpoints(self.model, ok)
        if self.model.remote:
            self.lister.start()  # what the host lists now
        self.reload()
        if errors:
            self.details.setText("Not deleted: " + html.escape("; ".join(errors)))

    # ----------------------------------------------------------------- jobs

    def average_selected(self) -> EngineJob | HostJob | None:
        return self.jobs.average(self.selected_rows(), self.method.currentText())

    def generate_sample(self) -> EngineJob | HostJob | None:
        rows = self.selected_rows()
        if len(rows) != 1 or not rows[0].valid:
            return None
        return self.jobs.sample(rows[0], self.seed.value())

    # ------------------------------------------------------------- run actions

    def resume_from(self) -> None:
        rows = self.selected_rows()
        if len(rows) != 1 or self.model.run is None:
            return
        row = rows[0]
        if self.model.resume_mode(row) == "resume":
            if self.confirm("Resume run", f"Continue {self.model.run.root.name} from {row.name} (step {row.step})?"):
                self.resumeRequested.emit(self.model.run.root)
        else:
            # Only the newest full checkpoint resumes the run in place; from any other the run
            # continues as a fork (same state, a new run directory), set up in the config editor.
            self.forkRequested.emit(row.path)

    def fork_from(self) -> None:
        rows = self.selected_rows()
        if len(rows) == 1:
            self.forkRequested.emit(rows[0].path)


def details_html(model: CheckpointModel, protected: dict[Path, str], rows: list[CheckpointRow]) -> str:
    """The line under the table: the run's checkpoints in sum, or the one selected in full."""
    if model.run is None:
        return "No run open."
    if not model.rows:
        return f"No checkpoints in {model.run.checkpoints} yet."
    if len(rows) != 1:
        total = format_size(model.total_size())
        corrupt = sum(1 for r in model.rows if r.integrity == "corrupt")
        text = f"{len(model.rows)} checkpoints, {total}"
        if corrupt:
            text += f", <b style='color:#dc2626'>{corrupt} corrupt</b>"
        if rows:
            text += f" · {len(rows)} selected"
        return text
    row = rows[0]
    parts = [f"<b>{html.escape(row.name)}</b> · {html.escape(str(row.path))}"]
    if row.integrity == "corrupt":
        parts.append(f"<span style='color:#dc2626'>corrupt: {html.escape(row.problem)}</span>")
    if row.provenance:
        avg = f"{row.val_loss:.4f}" if row.val_loss is not None else "?"
        parts.append(
            f"{html.escape(str(row.provenance.get('method', '?')))} average of {html.escape(row.inputs_text())}"
            f" → validation loss <b>{avg}</b>"
        )
    kept = protected.get(row.path)
    if kept:
        parts.append(f"kept: {html.escape(kept)}")
    return "<br>".join(parts)


def delete_question(ok: list[CheckpointRow], refused: list[str], live: bool) -> str:
    size = format_size(sum(r.size or 0 for r in ok))
    names = ", ".join(r.name for r in ok[:6]) + (f" and {len(ok) - 6} more" if len(ok) > 6 else "")
    text = f"Delete {len(ok)} checkpoint{'s' if len(ok) != 1 else ''} ({size})? {names}"
    if refused:
        text += "\n\nKept: " + "; ".join(refused)
    if live:
        text += "\n\nThe run is still going; its retention policy will find these gone, which it tolerates."
    return text


def ask_yes(parent: QtWidgets.QWidget, title: str, text: str) -> bool:
    answer = QtWidgets.QMessageBox.question(
        parent,
        title,
        text,
        QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.Cancel,
        QtWidgets.QMessageBox.StandardButton.Cancel,
    )
    return answer == QtWidgets.QMessageBox.StandardButton.Yes
