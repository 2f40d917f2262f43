"""Frame-count and resolution rules, per architecture and trainer (no dataset needed).

* Wan / HunyuanVideo latents are 4x temporal, LTX 8x: a clip must be ``step*N+1`` frames. Both trainers round a
  wrong count *down* without stopping: musubi logs "target_frames are rounded to [...]"
  (dataset/image_video_dataset.py), diffusion-pipe trains ``round_down(bucket-1, round_frames)+1`` frames
  (models/base.py PreprocessMediaFile), so 72 trains as 69 and the user never learns why.
* FramePack trims clips to ``N*latent_window_size*4+1`` frames and stops below ``window*4+1`` (37 for 9) with
  "Not enough frames for FramePack" (fpack_cache_latents.py).
* I2V models learn motion from the first frame: a frame count of 1 (image samples) trains nothing useful and
  diffusion-pipe asserts "i2v/flf2v must train on videos" when an image reaches it (models/wan/wan.py).
* Pixels: both trainers bucket to 16 px (LTX 32, diffusion-pipe ``pixels_round_to_multiple``), so other sizes
  are silently changed.
"""

from __future__ import annotations

from studio.check_context import CheckContext
from studio.findings import Finding, Fix


def frames_present(ctx: CheckContext) -> list[Finding]:
    frames = ctx.get("dataset.frames") or []
    if frames:
        return []
    default = [1, 33] if not ctx.arch.i2v else [33]
    return [Finding("error", "dataset.frames", "no frame counts are set, so no sample can be built",
                    f"give at least one, e.g. {default}", Fix(f"Use frames {default}", {"dataset.frames": default}))]


def frames_valid(ctx: CheckContext) -> list[Finding]:
    arch = ctx.arch
    frames = sorted({int(f) for f in ctx.get("dataset.frames") or []})
    if not arch.is_video or arch.family == "framepack":
        return []
    invalid = [f for f in frames if f > 1 and (f - 1) % arch.frame_step]
    if not invalid:
        return []
    trainer = "musubi-tuner" if ctx.backend == "musubi_tuner" else "diffusion-pipe"
    fixed = sorted({f if f == 1 or (f - 1) % arch.frame_step == 0 else arch.round_frames_down(f) for f in frames})
    pairs = ", ".join(f"{f} -> {arch.round_frames_down(f)} (or {arch.nearest_valid_frames(f)[1]})" for f in invalid)
    return [Finding(
        "warning", "dataset.frames",
        f"{arch.label} needs {arch.frame_step}N+1 frames; {invalid} are not, and {trainer} silently trains fewer: "
        f"{pairs}",
        f"use {fixed}", Fix(f"Use valid frame counts {fixed}", {"dataset.frames": fixed}))]


def framepack_minimum(ctx: CheckContext) -> list[Finding]:
    if ctx.arch.family != "framepack":
        return []
    window = int(ctx.option("latent_window_size", 9) or 9)
    minimum = window * 4 + 1
    frames = sorted({int(f) for f in ctx.get("dataset.frames") or []})
    short = [f for f in frames if f < minimum]
    if not short:
        return []
    kept = sorted({f for f in frames if f >= minimum} or {minimum})
    return [Finding(
        "error", "dataset.frames",
        f"FramePack cuts clips into {window}-latent windows and stops with 'Not enough frames for FramePack' "
        f"below {minimum} frames; {short} are too short",
        f"use frame counts of at least {minimum}, e.g. {kept}",
        Fix(f"Use frames {kept}", {"dataset.frames": kept}))]


def i2v_single_frame(ctx: CheckContext) -> list[Finding]:
    if not ctx.arch.i2v or ctx.arch.family == "framepack":
        return []
    frames = sorted({int(f) for f in ctx.get("dataset.frames") or []})
    if 1 not in frames:
        return []
    kept = [f for f in frames if f > 1] or [33]
    return [Finding(
        "warning", "dataset.frames",
        f"{ctx.arch.label} is image-to-video: 1-frame samples teach no motion, and diffusion-pipe stops with "
        "'i2v/flf2v must train on videos' when an image reaches it",
        f"drop 1 from the frame counts: {kept}", Fix(f"Use frames {kept}", {"dataset.frames": kept}))]


def resolution_multiple(ctx: CheckContext) -> list[Finding]:
    step = 32 if ctx.arch.family == "ltx" else 16
    width, height = ctx.get("dataset.resolution")
    if width % step == 0 and height % step == 0:
        return []
    fixed = [max(step, round(width / step) * step), max(step, round(height / step) * step)]
    return [Finding(
        "warning", "dataset.resolution",
        f"{width}x{height} is not a multiple of {step} px; the trainer buckets it to {fixed[0]}x{fixed[1]} anyway",
        f"use {fixed[0]}x{fixed[1]}", Fix(f"Use {fixed[0]}x{fixed[1]}", {"dataset.resolution": fixed}))]


def musubi_frame_extraction(ctx: CheckContext) -> list[Finding]:
    """musubi: 'chunk' with target 1 turns every frame into a sample; 'uniform' with one sample is 'head'."""
    if ctx.backend != "musubi_tuner":
        return []
    mode = ctx.option("frame_extraction", "head")
    frames = {int(f) for f in ctx.get("dataset.frames") or []}
    key = ctx.option_key("frame_extraction")
    if mode == "chunk" and 1 in frames:
        kept = sorted(frames - {1}) or [33]
        return [Finding("warning", "dataset.frames",
                        "frame_extraction 'chunk' with a frame count of 1 makes every single frame of every clip a "
                        "sample (musubi docs: never put 1 in target_frames with chunk)",
                        f"drop 1: {kept}", Fix(f"Use frames {kept}", {"dataset.frames": kept}))]
    if mode == "uniform" and int(ctx.option("frame_sample", 1) or 1) == 1:
        return [Finding("info", key, "frame_extraction 'uniform' with frame_sample 1 behaves like 'head' (musubi "
                        "switches it with a warning)", "raise frame_sample or choose 'head'",
                        Fix("Use 'head'", {key: "head"}))]
    return []


CHECKS = (frames_present, frames_valid, framepack_minimum, i2v_single_frame, resolution_multiple,
          musubi_frame_extraction)
