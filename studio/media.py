"""Media facts for one dataset file, as the scanner reports them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MediaInfo:
    path: str
    kind: Literal["video", "image"]
    width: int = 0
    height: int = 0
    frames: int = 0  # decoded frame count (images: 1)
    fps: float = 0.0
    duration: float = 0.0
    codec: str = ""
    size_bytes: int = 0
    mtime: float = 0.0
    caption_status: Literal["missing", "empty", "present"] = "missing"
    caption_first_line: str = ""
    error: str = ""  # non-empty when the file could not be read
