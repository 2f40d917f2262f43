"""The dataset as scanned: what each trainer will read, skip or stop on.

Per-clip rules (fps resampling, frame buckets, batching) come from ``studio.buckets.simulate``, which replays
both trainers' dataset code; this module turns its report into findings and adds what only matters at launch:
captions (diffusion-pipe skips uncaptioned media; musubi stops caching on an uncaptioned video, media_utils.py),
unreadable files, I2V without videos, and caches built from other data (``studio.fingerprint``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from studio.check_context import CheckContext
from studio.findings import Finding, Fix
from studio.media import MediaInfo

SHOWN = 4  # file names listed in one message


def _names(media: Iterable[MediaInfo]) -> str:
    names = [m.name for m in media]
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def dataset_present(ctx: CheckContext) -> list[Finding]:
    folder = ctx.get("dataset.path") or ""
    if ctx.media is None:
        return [Finding("error", "dataset.path", f"dataset folder {folder or '(not set)'} does not exist",
                        "pick the folder with your clips and their caption files")]
    if not ctx.media:
        return [Finding("error", "dataset.path", f"{folder} holds no video or image files (sub-folders are not read)",
                        "put the clips directly in this folder, each with a same-name .txt caption")]
    return []


def unreadable(ctx: CheckContext) -> list[Finding]:
    bad = [m for m in ctx.media or [] if m.error]
    if not bad:
        return []
    return [Finding("error", "dataset.path",
                    f"{len(bad)} file(s) cannot be decoded ({_names(bad)}: {bad[0].error}); caching stops on them",
                    "delete or re-encode them (Dataset tab > preprocess)")]


def captions(ctx: CheckContext) -> list[Finding]:
    media = [m for m in ctx.media or [] if m.ok]
    missing = [m for m in media if m.caption_status == "missing"]
    empty = [m for m in media if m.caption_status == "empty"]
    extension = ctx.get("dataset.caption_extension") or ".txt"
    findings = []
    videos = [m for m in missing if m.kind == "video"]
    if ctx.backend == "musubi_tuner" and videos:
        findings.append(Finding("error", "dataset.caption_extension",
                                f"{len(videos)} video(s) have no {extension} caption ({_names(videos)}); musubi-tuner "
                                "stops text-encoder caching with FileNotFoundError",
                                f"write a {extension} file next to each (Dataset tab > captions)"))
    skipped = [m for m in missing if not (ctx.backend == "musubi_tuner" and m.kind == "video")]
    if skipped:
        how = ("diffusion-pipe skips them ('Cound not find caption')" if ctx.backend == "diffusion_pipe"
               and ctx.option("skip_empty_caption", True) else "they train with an empty caption")
        if ctx.backend == "musubi_tuner":
            how = "musubi-tuner silently skips images without captions"
        findings.append(Finding("warning", "dataset.caption_extension",
                                f"{len(skipped)} file(s) have no {extension} caption ({_names(skipped)}): {how}",
                                f"write a {extension} file next to each"))
    if empty:
        findings.append(Finding("warning", "dataset.caption_extension",
                                f"{len(empty)} caption file(s) are empty ({_names(empty)}): those samples teach the "
                                "look without a trigger word", "write at least a trigger word in each"))
    return findings


def i2v_media(ctx: CheckContext) -> list[Finding]:
    if not ctx.arch.i2v or not ctx.media:
        return []
    videos = [m for m in ctx.media if m.ok and m.kind == "video"]
    images = [m for m in ctx.media if m.ok and m.kind == "image"]
    if not videos:
        return [Finding("error", "dataset.path", f"{ctx.arch.label} trains on videos only and the dataset has none "
                        "(the seeds: 'I2V训练必须使用视频，否则报错')", "add video clips, or choose a T2V model")]
    if images and ctx.backend == "diffusion_pipe":
        return [Finding("error", "dataset.path",
                        f"{len(images)} image(s) ({_names(images)}) in an I2V dataset: diffusion-pipe asserts "
                        "'i2v/flf2v must train on videos, but got an image'", "move the images out of the folder")]
    if images:
        return [Finding("info", "dataset.path", f"{len(images)} image(s) are ignored: I2V trains on videos", "")]
    return []


def buckets(ctx: CheckContext) -> list[Finding]:
    """Frame/size buckets as the trainer will build them: dropped clips, empty buckets, fps conversion."""
    media = [m for m in ctx.media or [] if m.ok]
    if not media:
        return []
    from studio.buckets import simulate

    report = simulate(ctx.preset, ctx.media or [])
    ctx.cache["buckets"] = report
    # Caption, I2V and per-clip errors are reported by the checks above and below with their own fixes.
    covered = ("caption", "I2V", "image-to-video", "caching will stop")
    findings = [Finding("error", "dataset.frames", error, "see the Dataset tab's bucket table")
                for error in report.errors if not any(word in error for word in covered)]
    framepack_short = [c for c in report.dropped if c.code == "framepack_short"]
    if framepack_short:
        findings.append(Finding("error", "dataset.path",
                                f"{len(framepack_short)} clip(s) are too short for FramePack "
                                f"({', '.join(c.name for c in framepack_short[:SHOWN])}): "
                                f"{framepack_short[0].reason.removeprefix('error: ')}",
                                "re-export them longer or move them out of the folder"))
    short = [c for c in report.dropped if c.code == "too_short"]
    if short:
        counted = ", ".join(f"{c.name}: {c.counted_frames}" for c in short[:SHOWN])
        fps_note = (f" after diffusion-pipe converts them to {ctx.arch.model_fps:g} fps"
                    if ctx.backend == "diffusion_pipe" else "")
        findings.append(Finding("warning", "dataset.frames",
                                f"{len(short)} clip(s) are shorter than every frame count{fps_note} and are skipped "
                                f"({counted} frames)", "add a frame count they reach, or re-export longer clips",
                                _fix_for(report.fixes, "dataset.frames")))
    lost = sum(b.items - b.kept for b in report.size_buckets)
    if lost and report.samples_per_epoch:
        findings.append(Finding("warning", "dataset.batch_size",
                                f"{lost} sample(s) per epoch are dropped to fill whole batches of "
                                f"{report.global_batch} (diffusion-pipe cuts every size bucket to a multiple)",
                                "use batch size 1, or more clips per bucket",
                                _fix_for(report.fixes, "dataset.batch_size")))
    findings.extend(_unused_frame_counts(ctx, report))
    findings.extend(_fps_findings(ctx, report))
    if report.samples_per_epoch and not findings:
        findings.append(Finding("info", "dataset.frames",
                                f"{report.samples_per_epoch} samples and {report.steps_per_epoch} steps per epoch", ""))
    return findings


def _unused_frame_counts(ctx: CheckContext, report) -> list[Finding]:
    """Frame counts no clip is long enough for: the user asked for 81-frame training and gets none."""
    arch = ctx.arch
    if arch.family == "framepack" or not report.size_buckets:
        return []
    asked = sorted({int(f) for f in ctx.get("dataset.frames") or [] if int(f) > 1})
    used = {arch.round_frames_down(b.frames) for b in report.size_buckets}
    unused = [f for f in asked if arch.round_frames_down(f) not in used]
    if not unused:
        return []
    longest = max((c.counted_frames for c in report.clips if c.kind == "video" and c.status == "ok"), default=0)
    kept = sorted({int(f) for f in ctx.get("dataset.frames") or []} - set(unused))
    fix = Fix(f"Use frames {kept}", {"dataset.frames": kept}) if kept else None
    return [Finding("warning", "dataset.frames",
                    f"no clip reaches frame count {unused} (the longest has {longest} frames as the trainer counts "
                    "them), so nothing trains at that length", "use longer clips or drop that frame count", fix)]


def _fps_findings(ctx: CheckContext, report) -> list[Finding]:
    off = [m for m in ctx.media or [] if m.ok and m.kind == "video" and m.fps > 0
           and abs(m.fps - ctx.arch.model_fps) > 0.01]
    if not off:
        return []
    rates = sorted({round(m.fps, 3) for m in off})
    if ctx.backend == "diffusion_pipe":
        return [Finding("info", "dataset.path",
                        f"{len(off)} clip(s) at {rates} fps: diffusion-pipe resamples them to "
                        f"{ctx.arch.model_fps:g} fps before counting frames, so a clip has fewer frames than its file "
                        "(57 frames at 30 fps count as 30)", "preprocess the clips to the model's fps to see exactly "
                        "what trains", _fix_for(report.fixes, "preprocess.fps"))]
    if ctx.option("source_fps"):
        return []
    return [Finding("warning", ctx.option_key("source_fps"),
                    f"{len(off)} clip(s) at {rates} fps are used frame by frame (source_fps is not set): motion is "
                    f"learned {rates[0] / ctx.arch.model_fps:.2g}x slower than the model's {ctx.arch.model_fps:g} fps",
                    "set source_fps to the clips' frame rate (a float, e.g. 30.0) so musubi drops frames to match",
                    _fix_for(report.fixes, ctx.option_key("source_fps")))]


def _fix_for(fixes: list[Fix], key: str) -> Fix | None:
    return next((f for f in fixes if key in f.changes), None)


def stale_cache(ctx: CheckContext) -> list[Finding]:
    if not ctx.media or not ctx.get("dataset.path") or not Path(ctx.get("dataset.path")).is_dir():
        return []
    from studio.fingerprint import cache_status

    try:
        status = cache_status(ctx.original, ctx.media, ctx.settings)
    except (OSError, ValueError):
        return []
    if not status.stale:
        return []
    return [Finding("warning", "dataset.path",
                    f"the dataset changed since its cache was built ({status.reason}); the run rebuilds the cache "
                    "first, which takes a while", "nothing to change: the studio passes --regenerate_cache / drops "
                    "--skip_existing for this run")]


CHECKS = (dataset_present, unreadable, captions, i2v_media, buckets, stale_cache)
