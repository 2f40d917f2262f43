"""One-click fixes for what the bucket simulation found.

A fix is a ``studio.findings.Fix``: dotted preset keys and their new values. Keys under ``preprocess.`` are not
preset keys: they ask the GUI to open the preprocessing form with those values (e.g. ``preprocess.fps = 16``),
because some problems are solved by changing the clips rather than the settings.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from studio.architectures import Architecture
from studio.findings import Fix
from studio.media import MediaInfo

PREPROCESS_PREFIX = "preprocess."


def is_preprocess_fix(fix: Fix) -> bool:
    return bool(fix.changes) and all(k.startswith(PREPROCESS_PREFIX) for k in fix.changes)


def suggest_fixes(preset: Any, media: list[MediaInfo], report: Any, arch: Architecture) -> list[Fix]:
    fixes: list[Fix] = []
    for make in (_short_clip_fix, _invalid_frames_fix, _batch_fix, _source_fps_fix, _preprocess_fps_fix):
        fix = make(preset, media, report, arch)
        if fix is not None and fix not in fixes:
            fixes.append(fix)
    return fixes


def _current_frames(preset: Any) -> list[int]:
    return sorted({int(f) for f in preset.get("dataset.frames")})


def _short_clip_fix(preset: Any, media: list[MediaInfo], report: Any, arch: Architecture) -> Fix | None:
    """Add the largest valid frame count every too-short clip reaches, so they train instead of being skipped."""
    if arch.family == "framepack":
        return _framepack_fix(preset, report, arch)
    short = [c.counted_frames for c in report.dropped if c.code == "too_short"]
    reachable = [arch.round_frames_down(n) for n in short if arch.round_frames_down(n) > 1]
    if not reachable:
        return None
    new_bucket = min(reachable)
    frames = sorted({f for f in _current_frames(preset) if f == 1 or arch.valid_frames(f)} | {new_bucket})
    if report.backend == "diffusion_pipe" and 1 not in frames:
        frames.insert(0, 1)
    rescued = sum(1 for n in short if arch.round_frames_down(n) >= new_bucket)
    return Fix(f"Add {new_bucket} to the frame counts: {rescued} short clip(s) train instead of being skipped",
               {"dataset.frames": frames})


def _framepack_fix(preset: Any, report: Any, arch: Architecture) -> Fix | None:
    window = int(preset.values.get("backend.musubi_tuner", {}).get("latent_window_size") or 9)
    minimum = window * 4 + 1
    problems = [c for c in report.dropped if c.code in ("framepack_short", "too_short")]
    if not problems:
        return None
    long_enough = [c.counted_frames for c in problems if c.counted_frames >= minimum]
    kept = [f for f in _current_frames(preset) if f >= minimum]
    if long_enough:
        kept.append(arch.round_frames_down(min(long_enough)))
    if not kept:
        return None
    frames = sorted(set(kept))
    return Fix(f"Use FramePack-sized frame counts {frames} (each at least {minimum})", {"dataset.frames": frames})


def _invalid_frames_fix(preset: Any, media: list[MediaInfo], report: Any, arch: Architecture) -> Fix | None:
    """Frame counts that are not 4N+1 / 8N+1 are silently rounded down by both trainers: make that explicit."""
    current = _current_frames(preset)
    invalid = [f for f in current if f > 1 and not arch.valid_frames(f)]
    if not invalid or arch.family == "framepack":
        return None
    frames = sorted({f if f == 1 or arch.valid_frames(f) else arch.round_frames_down(f) for f in current})
    return Fix(f"Use valid frame counts {frames} ({arch.frame_step}N+1, what the trainer really uses)",
               {"dataset.frames": frames})


def _batch_fix(preset: Any, media: list[MediaInfo], report: Any, arch: Architecture) -> Fix | None:
    """diffusion-pipe drops the remainder of every size bucket; a global batch of 1 drops nothing."""
    if report.backend != "diffusion_pipe" or report.global_batch <= 1:
        return None
    lost = sum(b.items - b.kept for b in report.size_buckets)
    if not lost:
        return None
    return Fix(f"Set batch size and gradient accumulation to 1: {lost} sample(s) per epoch stop being dropped",
               {"dataset.batch_size": 1, "training.gradient_accumulation_steps": 1})


def _video_fps(media: list[MediaInfo]) -> Counter[float]:
    return Counter(round(m.fps, 3) for m in media if m.kind == "video" and m.ok and m.fps > 0)


def _source_fps_fix(preset: Any, media: list[MediaInfo], report: Any, arch: Architecture) -> Fix | None:
    """musubi-tuner plays clips frame by frame unless ``source_fps`` is set; offer it when every clip agrees."""
    if report.backend != "musubi_tuner":
        return None
    table = preset.values.get("backend.musubi_tuner", {})
    rates = _video_fps(media)
    if table.get("source_fps") or len(rates) != 1:
        return None
    fps = next(iter(rates))
    if abs(fps - arch.model_fps) <= 0.01:
        return None
    return Fix(f"Set source_fps = {fps:g}: musubi-tuner drops frames to {arch.model_fps:g} fps so motion keeps its "
               "speed", {"backend.musubi_tuner.source_fps": float(fps)})


def _preprocess_fps_fix(preset: Any, media: list[MediaInfo], report: Any, arch: Architecture) -> Fix | None:
    rates = _video_fps(media)
    off = sum(n for fps, n in rates.items() if abs(fps - arch.model_fps) > 0.01)
    if not off:
        return None
    return Fix(f"Preprocess {off} clip(s) to {arch.model_fps:g} fps, the model's rate, so what trains is what you see",
               {"preprocess.operation": "fps", "preprocess.fps": arch.model_fps})
