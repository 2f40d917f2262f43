"""Caption files: the same-name ``.txt`` next to each clip, read, edited and changed in bulk with undo.

Both trainers read ``<stem><caption_extension>`` beside the media file and ``.strip()`` it
(diffusion-pipe ``utils/dataset.py`` ``_metadata_map_fn``: ``with_suffix('.txt')``; musubi-tuner
``dataset/datasources.py`` ``VideoDirectoryDatasource.get_caption``). Every write goes through
``write_text_atomic`` so a crash leaves the old caption, never half a file. A bulk change is previewed first
(``preview_*`` returns ``(caption file, old, new)`` rows) and applied with ``apply_changes``, which records the
previous texts on disk *before* writing so ``undo_last`` can restore them even after a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from studio.atomic import write_text_atomic

CaptionStatus = Literal["missing", "empty", "present"]
UNDO_FILE = ".studio_caption_undo.json"
UNDO_DEPTH = 20  # bulk operations kept for undo, newest last
MAX_CAPTION_CHARS = 20_000  # a caption is a sentence or a paragraph; more is a wrong file

# One row of a preview: the caption file, its text now (None = no file) and the text it would get.
Change = tuple[str, "str | None", str]


def caption_path(media_path: str | os.PathLike[str], caption_extension: str = ".txt") -> Path:
    """``clip.mp4`` -> ``clip.txt``: the trainers replace the suffix, they do not append to it."""
    return Path(media_path).with_suffix(caption_extension)


def read_caption(media_path: str | os.PathLike[str], caption_extension: str = ".txt") -> str | None:
    """The caption text as stored (None when there is no caption file)."""
    try:
        return caption_path(media_path, caption_extension).read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return None


def caption_status(media_path: str | os.PathLike[str], caption_extension: str = ".txt") -> tuple[CaptionStatus, str]:
    """("missing" | "empty" | "present", first non-empty line). Empty = only whitespace, which trains unconditioned."""
    text = read_caption(media_path, caption_extension)
    if text is None:
        return "missing", ""
    stripped = text.strip()
    if not stripped:
        return "empty", ""
    return "present", stripped.splitlines()[0].strip()


def write_caption(media_path: str | os.PathLike[str], text: str, caption_extension: str = ".txt") -> Path:
    """Write one caption atomically. Refuses text that is clearly not a caption."""
    _check_text(text)
    return write_text_atomic(caption_path(media_path, caption_extension), text)


def _check_text(text: str) -> None:
    if len(text) > MAX_CAPTION_CHARS:
        raise ValueError(f"caption is {len(text):,} characters; at most {MAX_CAPTION_CHARS:,} are allowed")
    if "\x00" in text:
        raise ValueError("caption contains a NUL character; paste plain text")


# Previews: nothing is written. Each returns only the files that would change.


def preview_fill_missing(media: Iterable[str | os.PathLike[str]], text: str, *,
                         caption_extension: str = ".txt") -> list[Change]:
    """Give every file without a caption (or with an empty one) the same caption, as the seeds' users do."""
    if not text.strip():
        raise ValueError("the caption to fill in is empty; type the text every uncaptioned clip should get")
    rows = []
    for path in media:
        old = read_caption(path, caption_extension)
        if old is None or not old.strip():
            rows.append((str(caption_path(path, caption_extension)), old, text.strip()))
    return rows


def preview_add_trigger(media: Iterable[str | os.PathLike[str]], trigger: str, *, separator: str = ", ",
                        caption_extension: str = ".txt") -> list[Change]:
    """Put ``trigger`` in front of every caption that does not start with it already (missing -> just the trigger)."""
    trigger = _check_trigger(trigger)
    rows = []
    for path in media:
        old = read_caption(path, caption_extension)
        body = (old or "").strip()
        if _starts_with_trigger(body, trigger):
            continue
        new = f"{trigger}{separator}{body}" if body else trigger
        rows.append((str(caption_path(path, caption_extension)), old, new))
    return rows


def preview_remove_trigger(media: Iterable[str | os.PathLike[str]], trigger: str, *,
                           caption_extension: str = ".txt") -> list[Change]:
    """Remove a leading ``trigger`` (and the comma/space after it) from every caption that starts with it."""
    trigger = _check_trigger(trigger)
    rows = []
    for path in media:
        old = read_caption(path, caption_extension)
        body = (old or "").strip()
        if not _starts_with_trigger(body, trigger):
            continue
        new = body[len(trigger):].lstrip(" ,;:.\t")
        rows.append((str(caption_path(path, caption_extension)), old, new))
    return rows


def preview_replace(media: Iterable[str | os.PathLike[str]], find: str, replace: str, *, case_sensitive: bool = True,
                    caption_extension: str = ".txt") -> list[Change]:
    """Literal find & replace in every existing caption (no regular expressions: users paste words, not patterns)."""
    if not find:
        raise ValueError("'find' is empty; type the word or phrase to replace")
    pattern = re.compile(re.escape(find), 0 if case_sensitive else re.IGNORECASE)
    rows = []
    for path in media:
        old = read_caption(path, caption_extension)
        if old is None:
            continue
        new = pattern.sub(lambda _match: replace, old)
        if new != old:
            rows.append((str(caption_path(path, caption_extension)), old, new))
    return rows


def _check_trigger(trigger: str) -> str:
    trigger = trigger.strip()
    if not trigger:
        raise ValueError("the trigger word is empty; type the word to add or remove, e.g. 'sks style'")
    if "\n" in trigger:
        raise ValueError("the trigger word must be on one line")
    return trigger


def _starts_with_trigger(body: str, trigger: str) -> bool:
    """True when ``body`` starts with the whole trigger, not with a longer word that begins like it."""
    if not body.startswith(trigger):
        return False
    rest = body[len(trigger):]
    return not rest or not (rest[0].isalnum() or rest[0] == "_")


# Apply and undo


@dataclass
class UndoEntry:
    file: str
    old: str | None  # None: the file did not exist, so undo deletes it
    new: str


@dataclass
class UndoRecord:
    label: str
    folder: str
    created: float
    entries: list[UndoEntry] = field(default_factory=list)


@dataclass
class UndoResult:
    restored: list[str]
    conflicts: list[str]  # edited again after the bulk change: left alone, so no later edit is lost
    label: str = ""


def undo_file(folder: str | os.PathLike[str], undo_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the undo history of ``folder`` lives (inside the dataset folder unless ``undo_dir`` is given).

    Neither trainer reads it: diffusion-pipe skips ``.json`` files and musubi-tuner globs media extensions only.
    """
    if undo_dir is None:
        return Path(folder) / UNDO_FILE
    import hashlib

    digest = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:16]
    return Path(undo_dir) / f"caption_undo_{digest}.json"


def apply_changes(changes: list[Change], *, folder: str | os.PathLike[str], label: str,
                  undo_dir: str | os.PathLike[str] | None = None) -> UndoRecord:
    """Write previewed changes. The undo record is saved first, so an interrupted apply can still be undone."""
    folder_path = Path(folder).resolve()
    for file, _old, new in changes:
        if not Path(file).resolve().is_relative_to(folder_path):
            raise ValueError(f"{file} is outside the dataset folder {folder_path}; refusing to write it")
        _check_text(new)
    record = UndoRecord(label, str(folder_path), time.time(),
                        [UndoEntry(file, old, new) for file, old, new in changes])
    if not changes:
        return record
    history = _load_history(folder_path, undo_dir)
    history.append(record)
    _save_history(folder_path, undo_dir, history[-UNDO_DEPTH:])
    for entry in record.entries:
        write_text_atomic(entry.file, entry.new)
    return record


def undo_last(folder: str | os.PathLike[str], *, undo_dir: str | os.PathLike[str] | None = None) -> UndoResult:
    """Undo the newest bulk change of ``folder``. Files edited since then are reported, not overwritten."""
    folder_path = Path(folder).resolve()
    history = _load_history(folder_path, undo_dir)
    if not history:
        raise LookupError("there is no bulk caption change to undo in this folder")
    record = history.pop()
    restored, conflicts = [], []
    for entry in record.entries:
        target = Path(entry.file)
        current = target.read_text(encoding="utf-8", errors="replace") if target.exists() else None
        if current != entry.new:
            conflicts.append(entry.file)
            continue
        if entry.old is None:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
        else:
            write_text_atomic(target, entry.old)
        restored.append(entry.file)
    _save_history(folder_path, undo_dir, history)
    return UndoResult(restored, conflicts, record.label)


def undo_available(folder: str | os.PathLike[str], *, undo_dir: str | os.PathLike[str] | None = None) -> str:
    """The label of the change ``undo_last`` would revert, or "" when there is none."""
    history = _load_history(Path(folder).resolve(), undo_dir)
    return history[-1].label if history else ""


def _load_history(folder: Path, undo_dir: str | os.PathLike[str] | None) -> list[UndoRecord]:
    path = undo_file(folder, undo_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is damaged ({exc}); delete it to start a new undo history") from None
    return [UndoRecord(r["label"], r["folder"], r["created"], [UndoEntry(**e) for e in r["entries"]])
            for r in raw.get("records", [])]


def _save_history(folder: Path, undo_dir: str | os.PathLike[str] | None, history: list[UndoRecord]) -> None:
    path = undo_file(folder, undo_dir)
    if not history:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    payload = {"version": 1, "records": [asdict(r) for r in history]}
    write_text_atomic(path, json.dumps(payload, ensure_ascii=False, indent=1))
