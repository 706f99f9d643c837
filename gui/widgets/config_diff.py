"""The config editor's Diff tab: the edited config against the defaults or the open run's ``config.yaml``,
field by field or as a unified diff."""

from __future__ import annotations

from collections.abc import Callable

from PySide6 import QtGui, QtWidgets

from engine.contract import config as config_mod
from gui.models.config_doc import ConfigDocument, diff, read_config_text, unified


class ConfigDiffView(QtWidgets.QWidget):
    def __init__(self, document: ConfigDocument, goto: Callable[[str], None], font: QtGui.QFont):
        super().__init__()
        self.document = document
        self.run_name = ""  # the open run, whose config.yaml is ``run_text`` ("" when it has none)
        self.run_text = ""
        self.problem = ""  # why the open run's config.yaml could not be read
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        bar = QtWidgets.QHBoxLayout()
        bar.addWidget(QtWidgets.QLabel("Compare with"))
        self.compare = QtWidgets.QComboBox()
        self.compare.addItem("defaults", "defaults")
        self.compare.currentIndexChanged.connect(self.refresh)
        bar.addWidget(self.compare)
        self.as_text = QtWidgets.QCheckBox("as text")
        self.as_text.setToolTip("A unified diff of the two configs as the engine writes them")
        self.as_text.toggled.connect(self.refresh)
        bar.addWidget(self.as_text)
        bar.addStretch(1)
        self.count = QtWidgets.QLabel()
        self.count.setObjectName("muted")
        bar.addWidget(self.count)
        layout.addLayout(bar)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderLabels(["Field", "This config", "Defaults"])
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.itemActivated.connect(lambda item: goto(item.text(0)))
        layout.addWidget(self.tree, 1)
        self.text = QtWidgets.QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(font)
        self.text.hide()
        layout.addWidget(self.text, 1)

    def set_run(self, name: str, text: str, problem: str = "") -> None:
        """The open run's name and its config.yaml's text ("" when it has none, or, with ``problem``, when it
        could not be read) become a diff target."""
        self.run_name, self.run_text, self.problem = name, text, problem
        current = self.compare.currentData()
        self.compare.blockSignals(True)
        self.compare.clear()
        self.compare.addItem("defaults", "defaults")
        if text:
            self.compare.addItem(f"run {name}", "run")
        self.compare.setCurrentIndex(max(0, self.compare.findData(current)))
        self.compare.blockSignals(False)
        self.refresh()

    def refresh(self) -> None:
        label = "defaults"
        try:
            if self.compare.currentData() == "run" and self.run_text:
                label = f"run {self.run_name}"
                theirs = read_config_text(self.run_text, f"{self.run_name}/config.yaml")
            else:
                theirs = self.document.defaults
        except config_mod.ConfigError as exc:
            self.tree.clear()
            self.count.setText(f"cannot read {self.run_name}/config.yaml: {exc.problems[0] if exc.problems else exc}")
            return
        mine = self.document.effective()
        rows = diff(mine, theirs)
        self.tree.setHeaderLabels(["Field", "This config", label])
        self.tree.clear()
        for row in rows:
            item = QtWidgets.QTreeWidgetItem([row.path, row.mine, row.theirs])
            item.setToolTip(0, self.document.fields[row.path].description if row.path in self.document.fields else "")
            self.tree.addTopLevelItem(item)
        for col in range(3):
            self.tree.resizeColumnToContents(col)
        self.count.setText(
            f"{len(rows)} field{'s' if len(rows) != 1 else ''} differ"
            + (" (the text is invalid: compared as written)" if self.document.validation.config is None else "")
        )
        self.text.setPlainText(unified(mine, theirs, "this config", label) or "(no differences)")
        self.tree.setVisible(not self.as_text.isChecked())
        self.text.setVisible(self.as_text.isChecked())
        if self.problem:
            self.count.setText(self.problem)
