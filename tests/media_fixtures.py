"""Real media for tests: tiny clips and images made by the ffmpeg that imageio-ffmpeg ships.

Other areas may reuse these (``from tests.media_fixtures import make_clip``). Every helper writes a real file
that PyAV and the trainers' readers open; nothing is mocked.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _run(args: list[str]) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
                   check=True, timeout=120)


def make_clip(path: Path, *, frames: int, fps: float, size: tuple[int, int] = (64, 64),
              pattern: str = "testsrc2", codec: str = "libx264") -> Path:
    """A clip of exactly ``frames`` frames at ``fps`` (mp4/mkv/webm/mov by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    source = f"{pattern}=size={width}x{height}:rate={fps}"
    encode = ["-c:v", codec, "-pix_fmt", "yuv420p"] if codec == "libx264" else ["-c:v", codec]
    if codec == "libx264":
        encode += ["-preset", "ultrafast"]
    _run(["-f", "lavfi", "-i", source, "-frames:v", str(frames), *encode, str(path)])
    return path


def make_image(path: Path, *, size: tuple[int, int] = (64, 48), pattern: str = "testsrc2") -> Path:
    """One still image; the format follows the suffix (png, jpg, webp, avif, bmp ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    extra = ["-c:v", "libaom-av1", "-still-picture", "1"] if path.suffix.lower() == ".avif" else []
    if path.suffix.lower() == ".jfif":
        extra = ["-c:v", "mjpeg", "-f", "image2"]
    _run(["-f", "lavfi", "-i", f"{pattern}=size={width}x{height}:rate=1", "-frames:v", "1", *extra, str(path)])
    return path


def make_corrupt(path: Path, *, source: Path | None = None, keep_bytes: int = 2000) -> Path:
    """A truncated video (the first bytes of a real one) or plain garbage: what a broken download looks like."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()[:keep_bytes] if source else b"\x00\x01not a video at all" * 50
    path.write_bytes(data)
    return path


def write_caption(media: Path, text: str) -> Path:
    caption = media.with_suffix(".txt")
    caption.write_text(text, encoding="utf-8")
    return caption
