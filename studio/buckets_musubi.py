"""musubi-tuner's dataset rules (see studio/buckets.py for the source files each rule comes from)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from studio.architectures import Architecture
from studio.buckets_common import (
    BucketReport,
    ClipPlan,
    SizeBucket,
    backend_table,
    batching_of,
    dropped_plan,
    unreadable_plan,
)
from studio.media import MediaInfo

# musubi-tuner dataset/media_utils.py VIDEO_EXTENSIONS (it globs exactly these, upper and lower case).
MUSUBI_VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".avi", ".mkv", ".mov", ".flv", ".wmv", ".m4v", ".mpg", ".mpeg"})
# dataset/media_utils.py IMAGE_EXTENSIONS (jxl only with an optional plugin, so not counted on).
MUSUBI_IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".avif"})
MUSUBI_ARCH_FAMILIES = ("wan", "hunyuan", "framepack")
EXTRACTION_MODES = ("head", "chunk", "slide", "uniform", "full")


def musubi_target_frames(frames: list[int]) -> list[int]:
    """``VideoDataset.__init__``: every target rounded down to N*4+1, de-duplicated, sorted."""
    return sorted({(int(f) - 1) // 4 * 4 + 1 for f in frames})


def musubi_frames_after_fps(frames: int, source_fps: float | None, target_fps: float) -> int:
    """``load_video``: how many frames survive ``source_fps`` -> target fps dropping (same float steps as musubi)."""
    if not source_fps:
        return frames
    delta = target_fps / source_fps
    kept, previous, position = 0, -1, 0.0
    for _ in range(frames):
        index = int(position)
        position += delta
        if index != previous:
            previous = index
            kept += 1
    return kept


def musubi_windows(frame_count: int, targets: list[int], mode: str, *, stride: int = 1, samples: int = 1,
                   max_frames: int = 129) -> list[tuple[int, int]]:
    """``retrieve_latent_cache_batches``: (start, frames) cut from a clip of ``frame_count`` frames.

    Duplicates collapse because each window is one cache file named by start and length.
    """
    if mode == "uniform" and samples == 1:
        mode = "head"
    windows: list[tuple[int, int]] = []
    if mode == "head":
        windows = [(0, t) for t in targets if frame_count >= t]
    elif mode == "chunk":
        windows = [(i, t) for t in targets for i in range(0, frame_count, t) if i + t <= frame_count]
    elif mode == "slide":
        windows = [(i, t) for t in targets if frame_count >= t for i in range(0, frame_count - t + 1, stride)]
    elif mode == "uniform":
        windows = [(int(i), t) for t in targets if frame_count >= t
                   for i in np.linspace(0, frame_count - t, samples, dtype=int)]
    elif mode == "full":
        length = min(frame_count, max_frames)
        windows = [(0, (length - 1) // 4 * 4 + 1)]
    else:
        raise ValueError(f"frame_extraction {mode!r} is not supported; use one of {', '.join(EXTRACTION_MODES)}")
    return sorted(set(windows))


class MusubiBucketSelector:
    """``dataset/bucket.py`` BucketSelector: same-area buckets in 16 px steps, nearest aspect ratio."""

    def __init__(self, resolution: tuple[int, int], *, enable_bucket: bool, no_upscale: bool, steps: int = 16) -> None:
        self.area = resolution[0] * resolution[1]
        self.steps = steps
        self.no_upscale = no_upscale and enable_bucket
        if not enable_bucket:
            self.resolutions = [tuple(resolution)]
        else:
            sqrt_size = int(math.sqrt(self.area))
            min_size = (sqrt_size // 2) - (sqrt_size // 2) % steps
            found = set()
            for w in range(min_size, sqrt_size + steps, steps):
                h = self.area // w - (self.area // w) % steps
                found.update({(w, h), (h, w)})
            self.resolutions = sorted(found)
        self.aspect_ratios = np.array([w / h for w, h in self.resolutions])

    def bucket(self, size: tuple[int, int]) -> tuple[int, int]:
        width, height = size
        if self.no_upscale and width * height <= self.area:
            return width - width % self.steps, height - height % self.steps
        index = int(np.abs(self.aspect_ratios - width / height).argmin())
        return self.resolutions[index]


@dataclass(frozen=True)
class MusubiRules:
    """The dataset settings musubi-tuner applies to every clip of one video dataset."""

    arch: Architecture
    targets: list[int]
    mode: str
    stride: int
    samples: int
    max_frames: int
    source_fps: float | None
    window: int  # FramePack latent window size
    selector: MusubiBucketSelector
    repeats: int
    # The studio's musubi backend adds an image dataset for the folder's images (backend.musubi_tuner.
    # include_images, text-to-video models only); musubi's video dataset alone ignores images.
    images_used: bool = True

    @classmethod
    def from_preset(cls, preset: Any, arch: Architecture) -> MusubiRules:
        table = backend_table(preset)
        selector = MusubiBucketSelector(tuple(preset.get("dataset.resolution")),
                                        enable_bucket=bool(preset.get("dataset.enable_bucket")),
                                        no_upscale=bool(table.get("bucket_no_upscale", False)))
        return cls(arch, musubi_target_frames(list(preset.get("dataset.frames"))),
                   str(table.get("frame_extraction") or "head"), int(table.get("frame_stride") or 1),
                   int(table.get("frame_sample") or 1), int(table.get("max_frames") or 129),
                   float(table.get("source_fps") or 0) or None, int(table.get("latent_window_size") or 9),
                   selector, int(preset.get("dataset.num_repeats")),
                   bool(table.get("include_images", True)) and not arch.i2v)

    def sections(self, frames: int) -> int:
        """Samples one cut clip yields: FramePack trains each latent window section separately."""
        if self.arch.family != "framepack":
            return 1
        return (((frames - 1) // 4 + 1) - 1) // self.window

    def plan_image(self, info: MediaInfo) -> ClipPlan:
        """The image dataset: ``glob_images`` keeps only images that have a caption file, silently."""
        if not self.images_used:
            why = "image-to-video models train on videos" if self.arch.i2v else "include_images is off"
            return dropped_plan(info, f"ignored: {why}", code="not_read", status="ignored")
        suffix = Path(info.path).suffix.lower()
        if suffix not in MUSUBI_IMAGE_EXTENSIONS:
            return dropped_plan(info, f"ignored: musubi-tuner does not read {suffix} images (convert to jpg/png)",
                                code="not_read", status="ignored")
        bad = unreadable_plan(info)
        if bad:
            return bad
        if info.caption_status == "missing":
            return dropped_plan(info, "skipped: no caption file (musubi leaves such images out silently)",
                                code="no_caption")
        return ClipPlan(info.path, "image", 1, 1, self.repeats, self.selector.bucket((info.width, info.height)),
                        "image -> image dataset", windows=((0, 1),))

    def plan(self, info: MediaInfo) -> ClipPlan:
        if info.kind == "image":
            return self.plan_image(info)
        suffix = Path(info.path).suffix.lower()
        if suffix not in MUSUBI_VIDEO_EXTENSIONS:
            return dropped_plan(info, f"ignored: musubi-tuner does not read {suffix} files", code="not_read",
                                status="ignored")
        bad = unreadable_plan(info)
        if bad:
            return bad
        if info.caption_status == "missing":
            return dropped_plan(info, "error: no caption file (musubi-tuner stops caching with FileNotFoundError)",
                                code="no_caption")
        counted = musubi_frames_after_fps(info.frames, self.source_fps, self.arch.model_fps)
        windows = musubi_windows(counted, self.targets, self.mode, stride=self.stride, samples=self.samples,
                                 max_frames=self.max_frames)
        short = [w for w in windows if self.sections(w[1]) < 1]
        if short:
            return dropped_plan(info, f"error: FramePack needs >= {self.window * 4 + 1} frames per clip, got "
                                  f"{short[0][1]} (caching stops with 'Not enough frames for FramePack')",
                                code="framepack_short", counted=counted)
        if not windows:
            return dropped_plan(info, f"skipped: too short ({counted} frames, shortest target is {self.targets[0]})",
                                code="too_short", counted=counted)
        lengths = sorted({f for _s, f in windows})
        fps_text = f" -> {counted} at {self.arch.model_fps:g} fps" if self.source_fps else ""
        reason = f"{info.frames} frames{fps_text}: {len(windows)} clip(s) of {lengths} frames ({self.mode})"
        samples = sum(self.sections(f) for _s, f in windows) * self.repeats
        return ClipPlan(info.path, "video", counted, max(lengths), samples,
                        self.selector.bucket((info.width, info.height)), reason, windows=tuple(windows))


def simulate_musubi(preset: Any, media: list[MediaInfo], arch: Architecture) -> BucketReport:
    batching = batching_of(preset)
    report = BucketReport([], 0, 0, [], [], [], global_batch=batching.micro)
    if arch.family not in MUSUBI_ARCH_FAMILIES:
        report.errors.append(f"musubi-tuner has no video training for {arch.label}")
        return report
    rules = MusubiRules.from_preset(preset, arch)
    counts: Counter[tuple[str, int, int, int]] = Counter()
    for info in media:
        plan = rules.plan(info)
        report.clips.append(plan)
        for _start, frames in plan.windows:
            # Images and videos are two musubi datasets, each batching its own buckets.
            counts[(plan.kind, *plan.resolution_bucket, frames)] += rules.sections(frames) * rules.repeats
    for (kind, width, height, frames), items in sorted(counts.items(), key=lambda kv: (kv[0][3], kv[0][0], kv[0][1:])):
        report.size_buckets.append(SizeBucket(width, height, frames, items, items, math.ceil(items / batching.micro),
                                              dataset=kind))
    report.dropped = [c for c in report.clips if c.status != "ok"]
    report.samples_per_epoch = sum(b.items for b in report.size_buckets)
    batches = sum(b.batches for b in report.size_buckets)
    report.steps_per_epoch = math.ceil(batches / batching.gpus / batching.accumulation)
    _musubi_notes(report, preset, rules.targets, rules.mode)
    return report


def _musubi_notes(report: BucketReport, preset: Any, targets: list[int], mode: str) -> None:
    asked = sorted({int(f) for f in preset.get("dataset.frames")})
    if asked != targets:
        report.notes.append(f"target_frames {asked} are rounded to {targets} (musubi-tuner: 'target_frames are "
                            "rounded to ...')")
    if mode == "chunk" and 1 in targets:
        report.notes.append("frame_extraction 'chunk' with target 1 turns every frame into a sample; drop 1")
    if any(c.code in ("no_caption", "framepack_short") for c in report.clips):
        report.errors.append("caching will stop: fix the clips marked 'error' first")
