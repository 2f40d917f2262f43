"""Media facts for every file of a dataset folder, as the scanner reports them.

``scan_folder`` probes each video and image in parallel with PyAV in threads: no process is started per file,
which on 2 cores is ~12x faster than one ``ffmpeg -i`` process per file (benchmarks/bench_scan.py: 1,000 clips
in 0.55 s instead of ~6.8 s). Results are cached in a JSON file keyed by path + size + mtime, so an unchanged
folder re-scans without opening a single media file. Captions are read on every scan (they change often and
are tiny).

Frame counts are exact: the container's own count where it keeps one (MP4/MOV ``stts``), else the number of
video packets (Matroska/WebM keep none), which is what diffusion-pipe's ``get_frame_count`` and musubi-tuner's
full decode both arrive at for constant-frame-rate clips.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from studio.atomic import write_text_atomic
from studio.captions import caption_status

# Videos: musubi-tuner's list (dataset/media_utils.py VIDEO_EXTENSIONS) plus the common containers that
# diffusion-pipe also opens (it takes every imageio video extension, utils/common.py VIDEO_EXTENSIONS).
VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".avi", ".mkv", ".mov", ".flv", ".wmv", ".m4v", ".mpg", ".mpeg",
                              ".ts", ".m2ts", ".mts", ".3gp", ".ogv", ".mxf"})
# Images: musubi-tuner's IMAGE_EXTENSIONS (png jpg jpeg webp bmp avif, + jxl) plus what Pillow opens for
# diffusion-pipe (gif, jfif, tiff) and phone photos (heic/heif) so they are listed and can be converted.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".avif", ".jxl", ".gif", ".jfif",
                              ".tif", ".tiff", ".heic", ".heif"})
PROBE_CACHE_VERSION = 1


@dataclass(frozen=True)
class MediaInfo:
    path: str
    kind: Literal["video", "image"]
    width: int = 0
    height: int = 0
    frames: int = 0  # exact frame count (images: 1)
    fps: float = 0.0
    duration: float = 0.0
    codec: str = ""
    size_bytes: int = 0
    mtime: float = 0.0
    caption_status: Literal["missing", "empty", "present"] = "missing"
    caption_first_line: str = ""
    error: str = ""  # non-empty when the file could not be read
    frame_source: str = ""  # "container" | "packets" | "image": where the frame count came from
    animated: bool = False  # an image file holding several frames (GIF, animated WebP)

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def ok(self) -> bool:
        return not self.error

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MediaInfo:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def media_kind(path: str | os.PathLike[str]) -> Literal["video", "image"] | None:
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    return None


# Probing one file


def probe_file(path: str | os.PathLike[str]) -> MediaInfo:
    """Resolution, frames, fps, duration and codec of one file. Never raises: a bad file gets ``error`` set."""
    target = Path(path)
    kind = media_kind(target) or "video"
    try:
        stat = target.stat()
    except OSError as exc:
        return MediaInfo(str(target), kind, error=f"cannot read: {exc.strerror or exc}")
    base = MediaInfo(str(target), kind, size_bytes=stat.st_size, mtime=stat.st_mtime)
    if stat.st_size == 0:
        return replace(base, error="empty file (0 bytes)")
    try:
        facts = _probe_image(target) if kind == "image" else _probe_video(target)
    except Exception as exc:  # PyAV/Pillow raise many types for damaged files; the scan must go on
        return replace(base, error=f"cannot read: {_short_error(exc)}")
    return replace(base, **facts)


def _probe_video(path: Path) -> dict[str, Any]:
    import av

    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.video:
            raise ValueError("no video stream in this file")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        frames, source = int(stream.frames or 0), "container"
        if frames <= 0:
            # Matroska/WebM/AVI headers keep no count: count packets (no decoding, so it stays cheap).
            frames = sum(1 for packet in container.demux(stream) if packet.size)
            source = "packets"
        if frames <= 0:
            raise ValueError("the video stream has no frames")
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        else:
            duration = frames / fps if fps else 0.0
        context = stream.codec_context
        return {"width": int(context.width or stream.width), "height": int(context.height or stream.height),
                "frames": frames, "fps": fps, "duration": round(duration, 4), "codec": context.name,
                "frame_source": source}


def _probe_image(path: Path) -> dict[str, Any]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            frames = int(getattr(image, "n_frames", 1) or 1)
            return {"width": width, "height": height, "frames": 1, "codec": (image.format or "").lower(),
                    "frame_source": "image", "animated": frames > 1}
    except UnidentifiedImageError:
        pass  # HEIC and friends: Pillow has no plugin, ffmpeg may still decode it
    facts = _probe_video(path)
    facts.update(frames=1, fps=0.0, duration=0.0, frame_source="image")
    return facts


def _short_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    # PyAV appends ": '<path>'"; the table already shows the file.
    text = text.split(": '/")[0]
    return text[:200]


# The probe cache: path -> {size, mtime_ns, info}


def load_probe_cache(path: str | os.PathLike[str] | None) -> dict[str, dict[str, Any]]:
    if path is None:
        return {}
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}  # a damaged cache only costs a cold scan
    if raw.get("version") != PROBE_CACHE_VERSION or not isinstance(raw.get("entries"), dict):
        return {}
    return raw["entries"]


def save_probe_cache(path: str | os.PathLike[str], entries: dict[str, dict[str, Any]]) -> None:
    payload = {"version": PROBE_CACHE_VERSION, "entries": entries}
    write_text_atomic(path, json.dumps(payload, ensure_ascii=False, separators=(",", ":")))


def default_probe_cache(folder: str | os.PathLike[str]) -> Path:
    """One cache file per dataset folder under the studio home, so datasets stay free of studio files."""
    import hashlib

    from studio.settings import studio_home

    digest = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:20]
    return studio_home() / "cache" / "probe" / f"{digest}.json"


# Scanning a folder


def list_media(folder: str | os.PathLike[str]) -> list[os.DirEntry[str]]:
    """Media files directly in ``folder`` (not sub-folders: neither trainer recurses), sorted by name."""
    with os.scandir(folder) as entries:
        found = [e for e in entries if media_kind(e.name) and e.is_file()]
    return sorted(found, key=lambda e: e.name)


def scan_folder(path: str | os.PathLike[str], *, probe_cache: str | os.PathLike[str] | None = None,
                workers: int | None = None, caption_extension: str = ".txt") -> list[MediaInfo]:
    """Every video and image in ``path`` with its facts and caption status. Only a missing folder raises."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {folder} does not exist or is not a folder")
    entries = list_media(folder)
    cached = load_probe_cache(probe_cache)
    results: dict[str, MediaInfo] = {}
    to_probe: list[str] = []
    fresh_cache: dict[str, dict[str, Any]] = {}
    for entry in entries:
        stat = entry.stat()
        key = entry.path
        hit = cached.get(key)
        if hit and hit.get("size") == stat.st_size and hit.get("mtime_ns") == stat.st_mtime_ns:
            results[key] = MediaInfo.from_dict(hit["info"])
            fresh_cache[key] = hit
        else:
            to_probe.append(key)
    for info in _probe_many(to_probe, workers):
        results[info.path] = info
        stat_key = _stat_key(info.path)
        if stat_key is not None:
            fresh_cache[info.path] = {"size": stat_key[0], "mtime_ns": stat_key[1], "info": info.to_dict()}
    if probe_cache is not None and (to_probe or set(fresh_cache) != set(cached)):
        # Entries of files that are gone are dropped; other folders' caches live in other files.
        save_probe_cache(probe_cache, fresh_cache)
    return [with_caption(results[e.path], caption_extension) for e in entries]


def _stat_key(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _probe_many(paths: list[str], workers: int | None) -> Iterable[MediaInfo]:
    if not paths:
        return []
    count = workers or min(8, 2 * (os.cpu_count() or 1))  # measured best near 2x cores (bench_scan.py)
    if count <= 1 or len(paths) == 1:
        return [probe_file(p) for p in paths]
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="probe") as pool:
        return list(pool.map(probe_file, paths))


def with_caption(info: MediaInfo, caption_extension: str = ".txt") -> MediaInfo:
    status, first_line = caption_status(info.path, caption_extension)
    return replace(info, caption_status=status, caption_first_line=first_line)


# Problems any trainer would have with a file (preset-specific ones come from studio.buckets)


def media_problems(info: MediaInfo) -> list[str]:
    problems = []
    if info.error:
        problems.append(info.error)
        return problems
    if info.caption_status == "missing":
        problems.append("no caption file")
    elif info.caption_status == "empty":
        problems.append("caption is empty")
    if info.kind == "video" and info.fps <= 0:
        problems.append("frame rate unknown")
    if info.kind == "image" and info.animated:
        problems.append("animated image: diffusion-pipe refuses animated WebP, others use the first frame only")
    if info.kind == "image" and Path(info.path).suffix.lower() in (".heic", ".heif", ".gif", ".jfif", ".tif",
                                                                    ".tiff"):
        problems.append("format not read by musubi-tuner: convert to jpg/png")
    if info.width and info.height and min(info.width, info.height) < 64:
        problems.append(f"very small ({info.width}x{info.height})")
    return problems


def summarize(media: list[MediaInfo]) -> dict[str, Any]:
    """Counts for the summary line and the CLI's JSON."""
    videos = [m for m in media if m.kind == "video" and m.ok]
    return {
        "files": len(media),
        "videos": len(videos),
        "images": sum(1 for m in media if m.kind == "image" and m.ok),
        "unreadable": sum(1 for m in media if not m.ok),
        "missing_captions": sum(1 for m in media if m.caption_status == "missing"),
        "empty_captions": sum(1 for m in media if m.caption_status == "empty"),
        "total_video_seconds": round(sum(m.duration for m in videos), 2),
        "fps_values": sorted({round(m.fps, 3) for m in videos}),
    }


def dataset_folder(text: str, data_root: str | os.PathLike[str]) -> Path:
    """A folder the user typed or picked, resolved and checked to stay inside the data root.

    Accepts ``${DATA}/clips``, ``clips`` (relative to the root) or an absolute path under the root. Symlinks are
    resolved first, so a link cannot lead out of the root.
    """
    root = Path(data_root).expanduser().resolve()
    value = (text or "").strip()
    if not value:
        raise ValueError("no folder given; pick one from the list or type a folder under the data root")
    if value.startswith("${DATA}"):
        value = value[len("${DATA}"):].lstrip("/\\")
    candidate = Path(value).expanduser()
    folder = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if folder != root and not folder.is_relative_to(root):
        raise ValueError(f"{folder} is outside the data folder {root}; datasets must live under it "
                         "(change the data folder in Settings)")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist; create it or pick another folder")
    return folder


def sub_folders(data_root: str | os.PathLike[str], *, depth: int = 2) -> list[str]:
    """Folders under the data root (as ``${DATA}/...``), for the folder picker."""
    root = Path(data_root).expanduser()
    if not root.is_dir():
        return []
    found = []
    for current, dirs, _files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "cache")
        rel = Path(current).relative_to(root)
        if len(rel.parts) >= depth:
            dirs[:] = []
        if rel.parts:
            found.append("${DATA}/" + rel.as_posix())
    return found
