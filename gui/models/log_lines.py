"""engine.log's lines, each with where it came from and how serious it is, for the Log pane's filters.

The launcher prefixes its own lines ``[launcher]:`` and torchrun each rank's ``[rankN]:``
(``engine/launcher/launch.py``); what torchrun's agent says itself has no prefix. The level is
read from the line: a Python traceback (every line of it), torchrun's glog-style ``E``/``W``/``I``
prefixes, logging's level names, or words such as "error" and "failed".
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass

LEVELS = ("ERROR", "WARNING", "INFO")
TORCHRUN = "torchrun"  # the source of lines without a prefix: torchrun's agent, or output before it started

_PREFIX = re.compile(r"^\[(launcher|rank\d+|default\d+)\]:? ?")
_GLOG = re.compile(r"^([EWIF])\d{4} \d\d:\d\d:\d\d")
_ERROR = re.compile(r"\b(ERROR|CRITICAL|FATAL)\b|(?i:\b(error|failed|fatal|exception|traceback)\b)")
_WARNING = re.compile(r"\bWARNING\b|(?i:\bwarn(ing)?s?\b)|Warning:")
_TRACEBACK = "Traceback (most recent call last):"


@dataclass(frozen=True, slots=True)
class LogLine:
    text: str  # as written, prefix included
    source: str  # "launcher", "rank0", ... or TORCHRUN
    level: str  # one of LEVELS


def classify(text: str, in_traceback: bool) -> tuple[str, str, bool]:
    """(source, level, whether the next line of this source is still inside a traceback)."""
    match = _PREFIX.match(text)
    source = match.group(1).replace("default", "rank") if match else TORCHRUN
    body = text[match.end() :] if match else text
    if body.startswith(_TRACEBACK):
        return source, "ERROR", True
    if in_traceback:
        # Its frames are indented; the exception's own line (not indented) ends it.
        return source, "ERROR", body[:1].isspace()
    glog = _GLOG.match(body)
    if glog:
        return source, {"E": "ERROR", "F": "ERROR", "W": "WARNING"}.get(glog.group(1), "INFO"), False
    if _ERROR.search(body):
        return source, "ERROR", False
    if _WARNING.search(body):
        return source, "WARNING", False
    return source, "INFO", False


class LogLines:
    """The last ``keep`` lines of a log, classified as they arrive (a traceback per source)."""

    def __init__(self, keep: int = 20_000):
        self.lines: collections.deque[LogLine] = collections.deque(maxlen=keep)
        self.sources: list[str] = []  # in the order first seen
        self._in_traceback: dict[str, bool] = {}

    def clear(self) -> None:
        self.lines.clear()
        self.sources.clear()
        self._in_traceback.clear()

    def add(self, texts: list[str]) -> list[LogLine]:
        added = []
        for text in texts:
            match = _PREFIX.match(text)
            key = match.group(1) if match else TORCHRUN
            source, level, self._in_traceback[key] = classify(text, self._in_traceback.get(key, False))
            if source not in self.sources:
                self.sources.append(source)
            added.append(LogLine(text, source, level))
        self.lines.extend(added)
        return added


def accepts(line: LogLine, level: str, source: str | None, needle: str) -> bool:
    """Whether ``line`` passes the filters: at least ``level`` serious, from ``source`` (None: any), and
    holding ``needle`` (any case; empty: any line)."""
    return (
        LEVELS.index(line.level) <= LEVELS.index(level)
        and (source is None or line.source == source)
        and (not needle or needle.lower() in line.text.lower())
    )
