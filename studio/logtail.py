"""The last few hundred lines of a log that grows by gigabytes, at a cost of O(new bytes) per refresh.

Shown the way a terminal would: a tqdm bar redrawn with ``\\r`` a million times is one line holding its last
state, not a million lines. Several viewers of one job share one tail (one read per tick, not one per viewer).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict, deque
from pathlib import Path

DEFAULT_LINES = 300
INITIAL_BYTES = 256 * 1024  # a first look at a 1 GB log reads only its end
MAX_READ = 4 * 1024 * 1024  # a burst bigger than this between ticks is skipped to its end


def collapse_cr(line: str) -> str:
    """What a terminal shows for a line redrawn with carriage returns: the last non-empty redraw."""
    if "\r" not in line:
        return line
    for part in reversed(line.split("\r")):
        if part:
            return part
    return ""


class LogTail:
    def __init__(self, path: str | os.PathLike[str], max_lines: int = DEFAULT_LINES) -> None:
        self.path = Path(path)
        self.max_lines = max_lines
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.offset = -1  # -1 = never read
        self._partial = b""
        self._skip_first = False
        self.version = 0
        self.bytes_read = 0  # total bytes this tail ever read (the benchmark checks it is O(new bytes))
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Read what was appended since the last call; True when the visible text changed."""
        with self._lock:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                return False
            if self.offset < 0 or size < self.offset:
                self._reset(start=max(0, size - INITIAL_BYTES))
            elif size - self.offset > MAX_READ:
                self._reset(start=size - MAX_READ)
            if size == self.offset:
                return False
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(size - self.offset)
            self.bytes_read += len(data)
            self.offset += len(data)
            self._take(data)
            self.version += 1
            return True

    def _reset(self, start: int) -> None:
        self.lines.clear()
        self.offset = start
        self._partial = b""
        self._skip_first = start > 0  # the first line read is cut in the middle

    def _take(self, data: bytes) -> None:
        chunks = (self._partial + data).split(b"\n")
        partial = chunks.pop()
        if self._skip_first and chunks:
            chunks.pop(0)
            self._skip_first = False
        for raw in chunks:
            self.lines.append(collapse_cr(raw.decode("utf-8", "replace")).rstrip())
        # A bar redrawn for hours without a newline would grow forever: keep only its last redraw.
        cut = partial.rfind(b"\r", 0, max(len(partial) - 1, 0))
        self._partial = partial[cut:] if cut > 0 else partial

    def text(self) -> str:
        with self._lock:
            current = collapse_cr(self._partial.decode("utf-8", "replace")).rstrip()
            lines = list(self.lines)
        if current:
            lines.append(current)
        return "\n".join(lines[-self.max_lines:])


_TAILS: OrderedDict[tuple[str, int], LogTail] = OrderedDict()
_TAILS_LOCK = threading.Lock()


def shared_tail(path: str | os.PathLike[str], max_lines: int = DEFAULT_LINES) -> LogTail:
    """The process-wide tail of ``path``, refreshed; the 16 most recently used are kept."""
    key = (str(Path(path).resolve()), max_lines)
    with _TAILS_LOCK:
        tail = _TAILS.pop(key, None) or LogTail(key[0], max_lines)
        _TAILS[key] = tail
        while len(_TAILS) > 16:
            _TAILS.popitem(last=False)
    tail.refresh()
    return tail


def last_lines(path: str | os.PathLike[str], count: int = 40, max_bytes: int = 64 * 1024) -> list[str]:
    """The last ``count`` display lines of a file (for failure messages), reading at most ``max_bytes``."""
    tail = LogTail(path, max_lines=count)
    try:
        size = Path(path).stat().st_size
    except FileNotFoundError:
        return []
    tail._reset(start=max(0, size - max_bytes))
    tail.refresh()
    return [line for line in tail.text().splitlines() if line.strip()][-count:]


def read_range(path: str | os.PathLike[str], start: int, end: int | None = None, max_bytes: int = 512 * 1024) -> str:
    """Text of ``path`` between two offsets, at most the last ``max_bytes`` of that range (for reason matching)."""
    try:
        size = Path(path).stat().st_size
    except FileNotFoundError:
        return ""
    end = size if end is None else min(end, size)
    start = max(start, end - max_bytes, 0)
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(max(end - start, 0))
    return "\n".join(collapse_cr(line) for line in data.decode("utf-8", "replace").split("\n"))
