"""Preprocessing with ffmpeg into a NEW folder: change fps, trim, crop/resize, frames, image formats, first frames.

Originals are never touched: the output folder must be new (or empty) and may not be the source folder or lie
inside it. Each file is one ffmpeg process (argv list, never a shell) writing into a private temp folder that is
moved into place only when ffmpeg succeeded, so a failed or cancelled file leaves nothing half-written. Files run
in parallel (a thread per running process); ``studio.preprocess_run`` runs the jobs, this module plans them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from studio.media import MediaInfo

Operation = Literal["fps", "trim", "crop_resize", "extract_frames", "convert_images", "first_frame"]
OPERATIONS: tuple[str, ...] = ("fps", "trim", "crop_resize", "extract_frames", "convert_images", "first_frame")
IMAGE_FORMATS = ("jpg", "png")
VIDEO_ENCODE = ["-c:v", "libx264", "-preset", "medium", "-crf", "17", "-pix_fmt", "yuv420p", "-an",
                "-movflags", "+faststart"]
# yuv420p needs even sides; this is a no-op for even sizes and trims one pixel otherwise.
EVEN_SIZE = "scale=trunc(iw/2)*2:trunc(ih/2)*2"


class PreprocessError(ValueError):
    """A job that cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class PreprocessOptions:
    operation: str
    fps: float = 16.0  # fps
    frames: int = 33  # trim: keep the first N frames
    width: int = 832  # crop_resize target
    height: int = 480
    every_n: int = 8  # extract_frames: every Nth frame
    image_format: str = "jpg"  # convert_images / extract_frames / first_frame output
    copy_captions: bool = True
    caption_extension: str = ".txt"

    def check(self) -> None:
        if self.operation not in OPERATIONS:
            raise PreprocessError(f"unknown operation {self.operation!r}; choose one of {', '.join(OPERATIONS)}")
        if self.operation == "fps" and not 1 <= self.fps <= 240:
            raise PreprocessError(f"fps {self.fps:g} is out of range; use 1 to 240 (Wan 16, Hunyuan 24, LTX 25)")
        if self.operation == "trim" and not 1 <= self.frames <= 100_000:
            raise PreprocessError(f"trim length {self.frames} is out of range; use 1 or more frames")
        if self.operation == "crop_resize" and not (16 <= self.width <= 8192 and 16 <= self.height <= 8192):
            raise PreprocessError(f"target size {self.width}x{self.height} is out of range; use 16 to 8192 px")
        if self.operation == "crop_resize" and (self.width % 2 or self.height % 2):
            raise PreprocessError(f"target size {self.width}x{self.height} must be even (video encoders need it); "
                                  "trainers prefer multiples of 16")
        if self.operation == "extract_frames" and not 1 <= self.every_n <= 10_000:
            raise PreprocessError(f"every_n {self.every_n} is out of range; use 1 or more")
        if self.image_format not in IMAGE_FORMATS:
            raise PreprocessError(f"image format {self.image_format!r}; choose jpg or png")


@dataclass(frozen=True)
class CropBox:
    """The region of the source kept before scaling (x, y from the top-left), in source pixels."""

    x: int
    y: int
    width: int
    height: int


def crop_box(src_width: int, src_height: int, dst_width: int, dst_height: int) -> CropBox:
    """Center crop with the target's aspect, as large as the source allows: crop, never stretch."""
    if min(src_width, src_height, dst_width, dst_height) <= 0:
        raise PreprocessError("sizes must be positive")
    scale = max(dst_width / src_width, dst_height / src_height)
    width = min(src_width, round(dst_width / scale))
    height = min(src_height, round(dst_height / scale))
    width, height = width - width % 2, height - height % 2
    return CropBox((src_width - width) // 2, (src_height - height) // 2, width, height)


@dataclass(frozen=True)
class Task:
    """One ffmpeg run: ``argv`` writes into ``work_dir``; on success its files move to the output folder."""

    source: str
    argv: list[str]
    work_dir: str
    output_stem: str
    caption_text: str | None = None  # copied beside every output when copy_captions is on
    note: str = ""


@dataclass
class JobPlan:
    tasks: list[Task]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    output_dir: str = ""


@cache
def ffmpeg_executable() -> str:
    """The ffmpeg binary shipped by imageio-ffmpeg, else one on PATH. Never a path from a preset or text box."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        found = shutil.which("ffmpeg")
        if not found:
            raise PreprocessError("no ffmpeg found: install imageio-ffmpeg (pip) or put ffmpeg on PATH") from None
        return found


def base_argv() -> list[str]:
    return [ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]


def check_output_dir(source_dir: str | Path, output_dir: str | Path) -> Path:
    """The output folder, resolved: new or empty, never the source folder or inside it."""
    source, output = Path(source_dir).resolve(), Path(output_dir).resolve()
    if output == source or output.is_relative_to(source):
        raise PreprocessError(f"output folder {output} is the source folder or inside it; choose a new folder "
                              "next to it, e.g. " + str(source.parent / (source.name + "_16fps")))
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise PreprocessError(f"output folder {output} already exists and is not empty; choose a new folder")
    return output


def plan_job(options: PreprocessOptions, media: list[MediaInfo], *, source_dir: str | Path,
             output_dir: str | Path) -> JobPlan:
    """Which files the operation applies to and the exact ffmpeg argv for each."""
    options.check()
    output = check_output_dir(source_dir, output_dir)
    plan = JobPlan([], output_dir=str(output))
    used_stems: set[str] = set()
    for index, info in enumerate(media):
        why = _not_applicable(options, info)
        if why:
            plan.skipped.append((info.path, why))
            continue
        stem = _unique_stem(Path(info.path), used_stems)
        work = output / ".studio-partial" / f"{index:05d}"
        argv = [*base_argv(), "-i", info.path, *_operation_args(options, info, work, stem)]
        caption = _caption_of(info.path, options) if options.copy_captions else None
        note = ""
        if options.operation == "trim" and info.frames < options.frames:
            note = f"only {info.frames} frames: kept all of them"
        plan.tasks.append(Task(info.path, argv, str(work), stem, caption, note))
    return plan


def _not_applicable(options: PreprocessOptions, info: MediaInfo) -> str:
    if info.error:
        return f"unreadable: {info.error}"
    if options.operation == "convert_images":
        return "" if info.kind == "image" else "not an image"
    if options.operation == "crop_resize":
        return ""
    return "" if info.kind == "video" else "not a video"


def _unique_stem(path: Path, used: set[str]) -> str:
    """``a.mp4`` and ``a.mkv`` both become ``a.mp4``: the second keeps its old suffix in the name."""
    stem = path.stem
    if stem in used:
        stem = f"{path.stem}_{path.suffix.lstrip('.').lower()}"
    while stem in used:
        stem += "_"
    used.add(stem)
    return stem


def _caption_of(media_path: str, options: PreprocessOptions) -> str | None:
    from studio.captions import read_caption

    return read_caption(media_path, options.caption_extension)


def _operation_args(options: PreprocessOptions, info: MediaInfo, work: Path, stem: str) -> list[str]:
    image_out = str(work / f"{stem}.{options.image_format}")
    jpeg_quality = ["-q:v", "2"] if options.image_format == "jpg" else []
    if options.operation == "fps":
        return ["-vf", f"fps={options.fps:g},{EVEN_SIZE}", *VIDEO_ENCODE, str(work / f"{stem}.mp4")]
    if options.operation == "trim":
        return ["-frames:v", str(options.frames), "-vf", EVEN_SIZE, *VIDEO_ENCODE, str(work / f"{stem}.mp4")]
    if options.operation == "crop_resize":
        box = crop_box(info.width, info.height, options.width, options.height)
        scale = f"crop={box.width}:{box.height}:{box.x}:{box.y},scale={options.width}:{options.height}:flags=lanczos"
        if info.kind == "image":
            return ["-vf", scale, "-frames:v", "1", "-update", "1", *jpeg_quality, image_out]
        return ["-vf", scale, *VIDEO_ENCODE, str(work / f"{stem}.mp4")]
    if options.operation == "extract_frames":
        pattern = str(work / f"{stem}_%05d.{options.image_format}")
        return ["-vf", f"select=not(mod(n\\,{options.every_n}))", "-fps_mode", "vfr", *jpeg_quality, pattern]
    # convert_images and first_frame: one still image
    return ["-frames:v", "1", "-update", "1", *jpeg_quality, image_out]


# What this ffmpeg build can read (the form says so instead of failing on the first file)


@cache
def decodable_image_formats() -> dict[str, bool]:
    """Input image formats this ffmpeg decodes: ``{"webp": True, "heic": False, ...}``."""
    exe = ffmpeg_executable()
    decoders = subprocess.run([exe, "-hide_banner", "-decoders"], capture_output=True, text=True, timeout=30).stdout
    names = set(re.findall(r"^\s*V\S*\s+(\S+)", decoders, flags=re.MULTILINE))
    version = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"version n?(\d+)\.(\d+)", version)
    major_minor = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    return {
        "png": "png" in names, "jpg/jfif": "mjpeg" in names, "webp": "webp" in names,
        "avif": bool(names & {"libdav1d", "av1", "libaom-av1"}), "bmp": "bmp" in names, "gif": "gif" in names,
        "tiff": "tiff" in names, "jxl": "libjxl" in names,
        # HEIF still images are read by the mov demuxer from FFmpeg 7.1 on, decoded with hevc.
        "heic": "hevc" in names and major_minor >= (7, 1),
    }


def crop_preview(source: str | Path, box: CropBox, output_png: str | Path) -> Path:
    """The first frame of ``source`` with the crop box drawn on it, for the form's preview."""
    output = Path(output_png)
    output.parent.mkdir(parents=True, exist_ok=True)
    draw = f"drawbox=x={box.x}:y={box.y}:w={box.width}:h={box.height}:color=red@0.9:t=3"
    argv = [*base_argv(), "-i", str(source), "-frames:v", "1", "-vf", draw, "-update", "1", str(output)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise PreprocessError(f"could not render the preview of {Path(source).name}: {result.stderr.strip()[-300:]}")
    return output
