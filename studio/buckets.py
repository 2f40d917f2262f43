"""What the real trainer will do with each clip: frames counted, frame bucket, resolution bucket, samples, steps.

The rules are re-implemented from the trainers' sources and tested against hand-computed cases
(tests/test_buckets.py):

diffusion-pipe (tdrussell/diffusion-pipe @ 8f83dbf)
  * ``utils/dataset.py`` ``DirectoryDataset._metadata_map_fn``: ``frames = int(source_frames * framerate /
    source_fps)``; ``is_video = frames > 1``; a missing caption is skipped (``skip_empty_caption`` default true).
  * ``_find_closest_ar_bucket``: the largest frame bucket <= frames; a video never goes to bucket 1
    ("video with frames=N is being skipped because it is too short"); 1 is always added to ``frame_buckets``.
  * ``ARBucketDataset.cache_latents``: size bucket ``w = sqrt(area*ar)``, ``h = area/w`` rounded to the model's
    ``pixels_round_to_multiple`` (16; LTX 32); AR buckets ``np.geomspace(min_ar, max_ar, num_ar_buckets)`` rounded
    to 3 decimals, or ``[1.0]`` (square crop) when ``enable_ar_bucket`` is off.
  * ``ConcatenatedBatchedDataset._make_divisible_by``: each size bucket is cut to a multiple of the global batch
    (micro batch x gradient accumulation x data-parallel GPUs); too small -> "completely dropped".
  * ``models/base.py`` ``PreprocessMediaFile``: the clip trained has ``round_down(bucket-1, round_frames)+1``
    frames (Wan/Hunyuan 4, LTX 8), cut from the start (``single_beginning``) or the middle.
  * ``train.py``: steps per epoch = ``len(train_dataloader) // gradient_accumulation_steps`` = global batches.

musubi-tuner (kohya-ss/musubi-tuner @ 30c658c)
  * ``dataset/image_video_dataset.py`` ``VideoDataset``: ``target_frames`` rounded down to 4N+1; extraction
    head / chunk / slide / uniform / full; ``uniform`` with ``frame_sample=1`` becomes ``head``.
  * ``dataset/media_utils.py`` ``load_video``: with ``source_fps`` set, frames are dropped by the fractional
    index ``int(k * target_fps / source_fps)`` to 16 fps (Wan), 24 (Hunyuan), 30 (FramePack).
  * ``dataset/bucket.py`` ``BucketSelector``: 16 px resolution buckets of the same area, nearest aspect ratio;
    ``BucketBatchManager``: ``ceil(items / batch_size)`` batches per bucket (nothing dropped).
  * ``fpack_cache_latents.py``: FramePack trains ``floor((latent_f - 1) / window)`` sections per clip, and stops
    with "Not enough frames for FramePack" below ``window * 4 + 1`` frames.
  * ``training/trainer_base.py``: steps per epoch = ``ceil(batches / processes / gradient_accumulation_steps)``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from studio.architectures import Architecture, get_architecture
from studio.bucket_fixes import suggest_fixes
from studio.buckets_common import (
    Batching,
    BucketReport,
    ClipPlan,
    SizeBucket,
    backend_table,
    batching_of,
    dropped_plan,
    round_to_nearest_multiple,
    unreadable_plan,
)
from studio.buckets_musubi import simulate_musubi
from studio.media import MediaInfo

__all__ = ["Batching", "BucketReport", "ClipPlan", "SizeBucket", "dp_counted_frames", "dp_frame_bucket", "simulate"]

# diffusion-pipe examples/dataset.toml: the AR bucket range users start from.
DP_DEFAULT_AR = (0.5, 2.0, 7)


def simulate(preset: Any, media: list[MediaInfo]) -> BucketReport:
    """Per clip, what ``preset.backend`` will train from ``media``; totals, drops, and fixes that help."""
    arch = get_architecture(preset.architecture)
    if preset.backend == "diffusion_pipe":
        report = _simulate_diffusion_pipe(preset, media, arch)
    elif preset.backend == "musubi_tuner":
        report = simulate_musubi(preset, media, arch)
    else:
        raise ValueError(f"no bucket rules for trainer {preset.backend!r}; known: diffusion_pipe, musubi_tuner")
    report.backend, report.architecture = preset.backend, preset.architecture
    _add_common_notes(report, preset, media, arch)
    report.fixes = suggest_fixes(preset, media, report, arch)
    return report


def _dp_ars(preset: Any) -> np.ndarray:
    """AR buckets as the studio's diffusion-pipe backend writes them (backends/diffusion_pipe_config.py): a range
    when ``dataset.enable_bucket`` is on, else the single shape of ``dataset.resolution``."""
    table = backend_table(preset)
    width, height = preset.get("dataset.resolution")
    if not preset.get("dataset.enable_bucket"):
        ars = [width / height]
    elif table.get("ar_buckets"):
        ars = [a[0] / a[1] if isinstance(a, (list, tuple)) else float(a) for a in table["ar_buckets"]]
    else:
        lo, hi, count = (table.get("min_ar", DP_DEFAULT_AR[0]), table.get("max_ar", DP_DEFAULT_AR[1]),
                         table.get("num_ar_buckets", DP_DEFAULT_AR[2]))
        ars = list(np.geomspace(lo, hi, num=int(count)))
    return np.array(sorted({round(float(a), 3) for a in ars}))


def _dp_areas(preset: Any) -> list[float]:
    resolutions = backend_table(preset).get("resolutions") or [list(preset.get("dataset.resolution"))]
    sides = [math.sqrt(r[0] * r[1]) if isinstance(r, (list, tuple)) else float(r) for r in resolutions]
    return [s * s for s in sorted({round(s, 3) for s in sides})]


def dp_frame_bucket(frames: int, buckets: list[int]) -> int | None:
    """``_find_closest_ar_bucket``: the largest bucket <= frames; None when too short; videos never get 1."""
    fitting = [b for b in buckets if b <= frames]
    if not fitting:
        return None
    best = max(fitting)
    if frames > 1 and best == 1:
        return None
    return best


def dp_counted_frames(info: MediaInfo, model_fps: float) -> int:
    """``int(source_frames * framerate / source_fps)``: 57 frames at 30 fps -> 30 for Wan (16 fps)."""
    return int(info.frames * model_fps / info.fps)


def _simulate_diffusion_pipe(preset: Any, media: list[MediaInfo], arch: Architecture) -> BucketReport:
    table = backend_table(preset)
    buckets = sorted({int(f) for f in preset.get("dataset.frames")} | {1})
    ars = _dp_ars(preset)
    log_ars = np.log(ars)
    areas = _dp_areas(preset)
    pixel_step = 32 if arch.family == "ltx" else 16
    repeats = int(preset.get("dataset.num_repeats"))
    skip_uncaptioned = bool(table.get("skip_empty_caption", True))
    middle = table.get("video_clip_mode", "single_beginning") == "single_middle"
    clips: list[ClipPlan] = []
    counts: Counter[tuple[float, int, int, int]] = Counter()
    for info in media:
        bad = unreadable_plan(info)
        if bad:
            clips.append(bad)
            continue
        if info.caption_status == "missing" and skip_uncaptioned:
            clips.append(dropped_plan(info, "skipped: no caption file (diffusion-pipe skip_empty_caption = true)",
                                      code="no_caption"))
            continue
        counted = dp_counted_frames(info, arch.model_fps) if info.kind == "video" else 1
        bucket = dp_frame_bucket(counted, buckets)
        if bucket is None:
            smallest = min((b for b in buckets if b > 1), default=1)
            clips.append(dropped_plan(info, f"skipped: too short ({counted} frames at {arch.model_fps:g} fps, "
                                            f"smallest video bucket is {smallest})", code="too_short", counted=counted))
            continue
        if arch.i2v and bucket == 1:
            clips.append(dropped_plan(info, "skipped: I2V trains on videos only (an image here stops the run)",
                                      code="i2v_image", counted=counted))
            continue
        ar = ars[int(np.argmin(np.abs(np.log(info.width / info.height) - log_ars)))]
        sizes = []
        for area in areas:
            width = math.sqrt(area * ar)
            size = (round_to_nearest_multiple(width, pixel_step), round_to_nearest_multiple(area / width, pixel_step))
            sizes.append(size)
            counts[(float(ar), size[0], size[1], bucket)] += repeats
        trained = (bucket - 1) // arch.frame_step * arch.frame_step + 1 if bucket > 1 else 1
        start = (counted - trained) // 2 if middle and bucket > 1 else 0
        if info.kind == "video":
            reason = f"{info.frames} frames at {info.fps:g} fps = {counted} at {arch.model_fps:g} fps -> bucket {bucket}"
            if trained != bucket:
                reason += f" (trained as {trained} frames: {arch.frame_step}N+1)"
        else:
            reason = "image -> bucket 1"
        clips.append(ClipPlan(info.path, info.kind, counted, bucket, repeats * len(areas), sizes[0], reason,
                              windows=((start, trained),)))
    batching = batching_of(preset)
    size_buckets = []
    for (_ar, width, height, frames), items in sorted(counts.items(), key=lambda kv: (kv[0][3], kv[0][1], kv[0][2])):
        global_batch = batching.global_batch(frames)
        batches = items // global_batch
        size_buckets.append(SizeBucket(width, height, frames, items, batches * global_batch, batches))
    report = BucketReport(clips, sum(b.kept for b in size_buckets), sum(b.batches for b in size_buckets),
                          [c for c in clips if c.status != "ok"], [], [], size_buckets,
                          global_batch=batching.global_batch(buckets[-1]))
    _dp_notes(report, preset, buckets, arch, batching)
    return report


def _dp_notes(report: BucketReport, preset: Any, buckets: list[int], arch: Architecture, batching: Batching) -> None:
    invalid = [b for b in buckets if b > 1 and not arch.valid_frames(b)]
    if invalid:
        report.notes.append(f"frame buckets {invalid} are not {arch.frame_step}N+1: diffusion-pipe trains them as "
                            f"{[arch.round_frames_down(b) for b in invalid]} frames")
    if not preset.get("dataset.enable_bucket"):
        width, height = preset.get("dataset.resolution")
        report.notes.append(f"aspect buckets are off: every clip is cropped to the {width}x{height} shape")
    for bucket in report.size_buckets:
        lost = bucket.items - bucket.kept
        if bucket.kept == 0:
            report.notes.append(f"size bucket {bucket.width}x{bucket.height}x{bucket.frames} is dropped completely: "
                                f"{bucket.items} samples < global batch {batching.global_batch(bucket.frames)}")
        elif lost:
            report.notes.append(f"size bucket {bucket.width}x{bucket.height}x{bucket.frames}: {lost} of "
                                f"{bucket.items} samples dropped each epoch to fill whole batches")
    if report.clips and not report.samples_per_epoch:
        report.errors.append("no sample survives batching: diffusion-pipe stops with 'Processed dataset was empty. "
                             "Probably caused by rounding down for each size bucket.'")
    if any(c.code == "i2v_image" for c in report.clips):
        report.errors.append("I2V models train on videos only: diffusion-pipe asserts 'i2v/flf2v must train on "
                             "videos, but got an image'; move the images out of the folder")


# Notes that hold for any trainer


def _add_common_notes(report: BucketReport, preset: Any, media: list[MediaInfo], arch: Architecture) -> None:
    videos = [m for m in media if m.kind == "video" and m.ok]
    images = [m for m in media if m.kind == "image" and m.ok]
    if arch.i2v and not videos:
        report.errors.append(f"{arch.label} is an image-to-video model: it needs videos, and this folder has none")
    elif arch.i2v and images and report.backend == "musubi_tuner":
        report.notes.append("I2V trains on videos; the images here are not used")
    if report.backend == "musubi_tuner":
        fps_off = sorted({round(m.fps, 3) for m in videos if abs(m.fps - arch.model_fps) > 0.01})
        source_fps = backend_table(preset).get("source_fps")
        if fps_off and not source_fps:
            report.notes.append(f"clips at {fps_off} fps are used frame by frame (source_fps not set), so motion "
                                f"plays at a different speed than the model's {arch.model_fps:g} fps")
    if report.backend == "diffusion_pipe":
        resampled = Counter(round(m.fps, 3) for m in videos if abs(m.fps - arch.model_fps) > 0.01)
        if resampled:
            listed = ", ".join(f"{n} at {fps:g} fps" for fps, n in sorted(resampled.items()))
            report.notes.append(f"diffusion-pipe resamples every clip to {arch.model_fps:g} fps before counting "
                                f"frames ({listed})")
    reasons: dict[str, int] = defaultdict(int)
    for clip in report.dropped:
        reasons[clip.reason.split(" (")[0]] += 1
    for reason, count in sorted(reasons.items()):
        report.notes.append(f"{count} file(s): {reason}")
