"""Workspaces the app opens by URL: a local folder or ``ssh://[user@]host[:port]/path``.

Here live what the window needs beyond the run-access layer for a remote workspace: the first contact
(an unknown host key is shown and asked about, as ``ssh`` asks), the per-host ``podium`` command
(QSettings), the runs list computed on the host in one call (``podium runs --json``), the runs panel's
"disconnected, retrying" line, and the Open workspace dialog that takes a folder or a URL.
"""

from __future__ import annotations

import functools
import html
import json
import posixpath
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from PySide6 import QtCore, QtWidgets

from engine.contract.rundir import RunSummary
from engine.contract.studies import STUDIES
from gui.access import CommandTimeout, RunAccess, Unreachable, open_access
from gui.access.host_rows import summary_of

# asyncssh takes half a second to import: a window that never opens a remote workspace never pays it.
if TYPE_CHECKING:
    from gui.access.hostkeys import UnknownHost
    from gui.access.ssh import SshAccess

T = TypeVar("T")
RECENT_KEY = "workspaces/recent"
RECENT_MAX = 10


def is_remote(url: str | Path) -> bool:
    return str(url).startswith("ssh://")


def podium_command(settings: QtCore.QSettings, host: str) -> str:
    """How ``podium`` is started on ``host`` (e.g. ``~/venv/bin/python -m engine``); ``podium`` by default."""
    from gui.access.ssh_url import DEFAULT_PODIUM

    return str(settings.value(f"remote/{host}/podium", "") or DEFAULT_PODIUM)


def set_podium_command(settings: QtCore.QSettings, host: str, command: str) -> None:
    from gui.access.ssh_url import DEFAULT_PODIUM

    settings.setValue(f"remote/{host}/podium", command.strip() or DEFAULT_PODIUM)


def remember(settings: QtCore.QSettings, url: str) -> None:
    """The workspace to open next time, first among the recent ones."""
    settings.setValue("workspace", url)
    recent = [u for u in recent_workspaces(settings) if u != url]
    settings.setValue(RECENT_KEY, json.dumps([url, *recent][:RECENT_MAX]))


def recent_workspaces(settings: QtCore.QSettings) -> list[str]:
    try:
        recent = json.loads(str(settings.value(RECENT_KEY, "[]")))
    except ValueError:
        return []
    return [u for u in recent if isinstance(u, str)] if isinstance(recent, list) else []


def ask_host_key(parent: QtWidgets.QWidget | None, unknown: UnknownHost) -> bool:
    answer = QtWidgets.QMessageBox.question(
        parent,
        "Unknown host",
        f"{unknown}\n\nAre you sure you want to continue connecting? Its key is added to known_hosts.",
        QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No,
        QtWidgets.QMessageBox.StandardButton.No,
    )
    return answer == QtWidgets.QMessageBox.StandardButton.Yes


def connect(
    url: str,
    settings: QtCore.QSettings,
    parent: QtWidgets.QWidget | None = None,
    ask: Callable[[QtWidgets.QWidget | None, UnknownHost], bool] = ask_host_key,
) -> SshAccess | None:
    """The access to a remote workspace after a first contact, or None (and a message) when refused.

    The contact (asyncssh's import, the connection, up to its timeout when the host does not answer) is
    made in a thread while this thread's event loop keeps turning; a question about the host's key and
    every message are shown here. An unreachable host still gives an access: its list shows
    "disconnected, retrying" until it answers.
    """
    from gui.access.ssh_url import SshUrlError, parse_url

    def first_contact(access: SshAccess | None) -> tuple[SshAccess, Any]:
        from gui.access.hostkeys import HostKeyError
        from gui.access.ssh import SshAccess

        access = access or SshAccess(url, command)
        try:
            return access, access.stat(access.root)
        except (HostKeyError, Unreachable) as exc:
            return access, exc

    try:
        _user, host, _port, _path = parse_url(url)
    except SshUrlError as exc:
        QtWidgets.QMessageBox.warning(parent, "Not a workspace", str(exc))
        return None
    command = podium_command(settings, host)
    access: SshAccess | None = None
    while True:
        try:
            access, found = in_background(functools.partial(first_contact, access))
        except Cancelled:
            return None
        from gui.access.hostkeys import HostKeyError, UnknownHost, accept  # loaded by the contact, in its thread

        if isinstance(found, UnknownHost):
            if ask(parent, found):
                accept(found)
                continue
            access.close()
            return None
        if isinstance(found, HostKeyError):
            QtWidgets.QMessageBox.critical(parent, "Host key refused", str(found))
            access.close()
            return None
        if isinstance(found, Unreachable):
            return access
        if found is None or not found.is_dir:
            QtWidgets.QMessageBox.warning(parent, "Not a workspace", f"{access.label()}: no such folder on {host}")
            access.close()
            return None
        return access


class Cancelled(Unreachable):
    """The app quit while :func:`in_background` waited: the work's answer will never be read."""


def in_background(work: Callable[[], T]) -> T:
    """``work()`` run in a thread while this (the GUI) thread's event loop keeps turning: the window paints
    and answers meanwhile, so its actions can be triggered again: callers refuse while theirs is in flight.
    Its result, or its exception raised here; :class:`Cancelled` when the app quits first."""
    outcome: list[Any] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # handed to the caller, whatever it is
            outcome.append((False, exc))
        done.set()

    threading.Thread(target=run, daemon=True, name="podium-connect").start()
    loop = QtCore.QEventLoop()
    timer = QtCore.QTimer(interval=20)
    timer.timeout.connect(lambda: loop.quit() if done.is_set() else None)
    timer.start()
    if not done.is_set():
        loop.exec()
    timer.stop()
    if not outcome:  # QCoreApplication.quit() ends every event loop, this one too
        raise Cancelled("cancelled: the app quit before the host answered")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


class RemoteIndex:
    """The runs list of a remote workspace, from one ``podium runs --json`` on the host when something
    changed there: each refresh first stats, in one round trip, the folders and the listed runs' event
    files; when none changed, the last list stands, and is computed again only every ``QUIET_S`` (a
    launcher may die, or a run stall, without a byte written).

    Stands in for :class:`gui.models.workspace.WorkspaceIndex` in the runs panel's watcher.
    """

    QUIET_S = 10.0

    def __init__(self, access: RunAccess):
        self.access = access
        self.root = Path(access.root)
        self.problem: str | None = None
        self.listed_at = float("-inf")  # time.monotonic() of the last podium runs
        self._last: list[RunSummary] = []
        self._seen: list[Any] = []

    def refresh(self, now: float | None = None) -> list[RunSummary]:
        try:
            seen: list[Any] = self.access.stat_many(self._watched())
            # SFTP gives whole-second times: a run made in the second of the last listing changes no stat.
            seen.append(sorted(self.access.listdir(self.access.root)))
        except Unreachable:
            self.problem = "disconnected, retrying"
            return self._last
        if seen == self._seen and self.problem is None and time.monotonic() - self.listed_at < self.QUIET_S:
            return self._last
        self._seen = seen
        self.listed_at = time.monotonic()
        return self._list()

    def _watched(self) -> list[str]:
        """What changes when a run or trial appears or goes (its folder) or writes (its events)."""
        root = self.access.root
        studies = posixpath.join(root, STUDIES)
        trials = sorted({str(s.path.parent) for s in self._last if str(s.path.parent) != root})
        return [root, studies, *trials, *(posixpath.join(str(s.path), "events.jsonl") for s in self._last)]

    def _list(self) -> list[RunSummary]:
        asked = time.monotonic()
        try:
            result = self.access.podium("runs", "--json", self.access.root, timeout=60)
        except Unreachable:
            self.problem = "disconnected, retrying"
            return self._last
        except CommandTimeout as exc:
            self.problem = f"the host is slow to answer: {exc}"
            return self._last
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines() or [f"exit {result.returncode}"]
            self.problem = f"podium runs failed on the host: {lines[-1]}"
            if result.returncode == 127:  # the shell found no such command
                self.problem += " (set how podium starts there: File > Open workspace…)"
            return self._last
        try:
            rows = json.loads(result.stdout)
        except ValueError:
            rows = None
        if not isinstance(rows, list):
            self.problem = "podium runs on the host printed no list (is the host's podium this version?)"
            return self._last
        self.problem = None
        root = self.access.root.rstrip("/") + "/"
        # A host's listing is hostile input too: a row outside the workspace would be read and steered as a
        # folder on this machine.
        listed = (summary_of(row, asked) for row in rows)
        self._last = [s for s in listed if s is not None and f"{s.path}/".startswith(root)]
        return self._last


def show_problem(label: QtWidgets.QLabel, access: RunAccess, index: RemoteIndex) -> None:
    """The runs panel's heading for a remote workspace: where, and whether it answers."""
    text = f"<b>Runs on</b> {access.label()}"
    if index.problem:
        text += f" <span style='color:#c0392b'>— {index.problem}</span>"
    label.setText(text)
    label.setToolTip(access.url + (f"\n{index.problem}" if index.problem else ""))


class WorkspaceDialog(QtWidgets.QDialog):
    """File > Open workspace: a folder, or ssh://[user@]host[:port]/path with the host's podium command."""

    def __init__(self, settings: QtCore.QSettings, current: str, parent: QtWidgets.QWidget | None = None):
        from gui.access.ssh_url import DEFAULT_PODIUM

        super().__init__(parent)
        self.settings = settings
        self.setWindowTitle("Open workspace")
        form = QtWidgets.QFormLayout(self)
        self.location = QtWidgets.QComboBox()
        self.location.setEditable(True)
        self.location.addItems([current, *(u for u in recent_workspaces(settings) if u != current)])
        self.location.setMinimumWidth(420)
        edit = self.location.lineEdit()
        if edit is not None:
            edit.setPlaceholderText("/path/to/runs  or  ssh://user@host/path/to/runs")
        browse = QtWidgets.QPushButton("Folder…")
        browse.clicked.connect(self._browse)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.location, 1)
        row.addWidget(browse)
        form.addRow("Runs folder or URL", row)
        self.command = QtWidgets.QLineEdit()
        self.command.setPlaceholderText(f"{DEFAULT_PODIUM}   (e.g. ~/venv/bin/python -m engine)")
        self.command.setToolTip("How podium is started on that host, for listing, steering and new runs")
        form.addRow("podium on the host", self.command)
        self.error = QtWidgets.QLabel()
        self.error.setObjectName("muted")
        self.error.setWordWrap(True)
        form.addRow(self.error)
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Open | QtWidgets.QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.location.currentTextChanged.connect(self._location_changed)
        self._location_changed(self.location.currentText())

    def url(self) -> str:
        return self.location.currentText().strip()

    def _browse(self) -> None:
        start = self.url() if not is_remote(self.url()) else str(Path.home())
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Runs folder", start)
        if path:
            self.location.setCurrentText(path)

    def _location_changed(self, text: str) -> None:
        remote = is_remote(text.strip())
        self.command.setEnabled(remote)
        self.error.clear()
        if remote:
            from gui.access.ssh_url import DEFAULT_PODIUM, SshUrlError, parse_url

            try:
                host = parse_url(text.strip())[1]
            except SshUrlError:
                return
            stored = podium_command(self.settings, host)
            self.command.setText("" if stored == DEFAULT_PODIUM else stored)

    def _accept(self) -> None:
        url = self.url()
        if not url:
            self.error.setText("Give a folder, or ssh://[user@]host[:port]/absolute/path")
            return
        if is_remote(url):
            from gui.access.ssh_url import SshUrlError, parse_url

            try:
                host = parse_url(url)[1]
            except SshUrlError as exc:
                self.error.setText(str(exc))
                return
            set_podium_command(self.settings, host, self.command.text())
        elif not Path(url).expanduser().is_dir():
            self.error.setText(f"{url}: not a folder on this machine")
            return
        self.accept()


def local_folder(url: str) -> Path:
    """The folder a window lists before (or instead of) a remote workspace: ./runs for a URL."""
    return Path.cwd() / "runs" if is_remote(url) else Path(url).expanduser().resolve()


class Workspaces(QtCore.QObject):
    """The window's current workspace: its access (one per workspace, closed when another is opened),
    its runs list and the heading above it."""

    def __init__(self, window: Any, url: str):
        super().__init__(window)
        self.window = window
        self.access: RunAccess = open_access(local_folder(url))
        self.connecting = self.connecting_url = ""  # a first contact under way: its host and URL
        window.watcher.refreshed.connect(self._on_refreshed)
        if is_remote(url):
            self.open(url)

    @property
    def remote(self) -> bool:
        return self.access.remote

    def open(self, url: str) -> bool:
        """List the runs of ``url`` (a folder or ssh://...); False, with the reason shown, when refused."""
        from gui.models.lab import LabIndex, Scan

        watcher = self.window.watcher
        access: RunAccess
        if self.connecting:
            self.window.statusBar().showMessage(
                f"still connecting to {self.connecting}; try again when it answers", 5000
            )
            return False
        if is_remote(url):
            remote = self._connect(url)
            if remote is None:
                return False
            access = remote
        else:
            url = str(local_folder(url))
            access = open_access(url)
        old, self.access = self.access, access
        self.window.runs_panel.model.set_scan(Scan(Path(access.root), [], {}))
        if access.remote:
            index = RemoteIndex(access)
            watcher.index = index
            show_problem(self.window.runs_panel.folder, access, index)  # at once, before the first list
        else:
            if not isinstance(watcher.index, LabIndex):  # back from a server: studies and notes again
                watcher.index = LabIndex(Path(url))
            watcher.set_root(Path(url))  # a study's folder opens its study in its workspace
        watcher.refresh()
        remember(self.window.settings, url)
        if old is not access:
            old.close()
        return True

    def _connect(self, url: str) -> SshAccess | None:
        """The first contact, with "connecting to HOST…" above the runs list and in the status bar meanwhile
        (the window stays responsive; a second workspace is refused until this one answers)."""
        folder = self.window.runs_panel.folder
        before = (folder.text(), folder.toolTip())
        self.connecting, self.connecting_url = urlsplit(url).hostname or url, url
        folder.setText(self._connecting_heading(url))
        self.window.statusBar().showMessage(f"connecting to {self.connecting}…")
        try:
            remote = connect(url, self.window.settings, self.window)
        finally:
            self.connecting = ""
            self.window.statusBar().clearMessage()
        if remote is None:
            folder.setText(before[0])
            folder.setToolTip(before[1])
        return remote

    def _connecting_heading(self, url: str) -> str:
        # The host first: a narrow panel elides the end of the line, and the list below is still the old one.
        return f"<b>Connecting to {html.escape(self.connecting)}…</b> <i>{html.escape(url)}</i>"

    def choose(self) -> None:
        dialog = WorkspaceDialog(self.window.settings, self.access.url, self.window)
        if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted:
            self.open(dialog.url())

    def access_for(self, run: Path) -> RunAccess | None:
        """The remote workspace's access for a run under it; None for a run on this disk."""
        if self.access.remote and Path(self.access.root) in Path(run).parents:
            return self.access
        return None

    def start_run(self, request: Any) -> Any:
        """``podium run`` on the host, detached there (gui/remote_launch.py)."""
        from gui.remote_launch import start_run

        return start_run(self.window, self.access, request)

    def start_edited(self, request: Any) -> Any:
        """``podium run`` on the host of a config edited here, forked from its checkpoint there when it names one."""
        from gui.remote_launch import start_edited

        return start_edited(self.window, self.access, request)

    def resume(self, run_dir: Path) -> Any:
        """``podium run --resume`` of a server's run, on its host (gui/remote_launch.py)."""
        from gui.remote_launch import resume

        return resume(self.window, self.access, run_dir)

    def _on_refreshed(self, _root: Path, _runs: list[RunSummary]) -> None:
        if self.connecting:  # the old workspace's list refreshed meanwhile: the heading still says why it waits
            self.window.runs_panel.folder.setText(self._connecting_heading(self.connecting_url))
            return
        index = self.window.watcher.index
        if isinstance(index, RemoteIndex) and index.access is self.access:
            show_problem(self.window.runs_panel.folder, self.access, index)

    def close(self) -> None:
        self.access.close()
