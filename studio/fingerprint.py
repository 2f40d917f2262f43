"""Cache staleness: a fingerprint of the dataset and the cache-relevant settings, recorded when caches are built.

Both trainers reuse caches they should not: musubi-tuner names latent caches by stem, frame window, original
size and architecture only (``--skip_existing`` keeps a latent of an edited clip), and diffusion-pipe's own
fingerprint covers metadata, not pixels (the seeds: "delete the cache folder by hand when the data changes").
The runner records a fingerprint after caching and compares before the next run; when it differs, the plan
gets ``regenerate_cache`` (diffusion-pipe ``--regenerate_cache``; musubi re-caches without ``--skip_existing``).

The record lives in ``<dataset>/cache/studio_fingerprint_<backend>_<arch>.json`` next to the trainers' caches;
neither trainer reads files from that sub-folder as media.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.atomic import write_text_atomic
from studio.captions import caption_path
from studio.media import MediaInfo
from studio.presets import resolve_path

# Preset keys whose change changes what is cached (latents or text-encoder outputs).
CACHE_KEYS = ("dataset.resolution", "dataset.frames", "dataset.enable_bucket", "dataset.caption_extension",
              "model.vae", "model.text_encoder", "model.text_encoder_2", "model.clip", "model.image_encoder",
              "memory.fp8_text_encoder")
# Trainer-specific keys that change the cache when a backend declares them.
BACKEND_CACHE_KEYS = ("frame_extraction", "frame_stride", "frame_sample", "max_frames", "source_fps",
                      "latent_window_size", "include_images", "bucket_no_upscale", "one_frame", "f1", "min_ar", "max_ar",
                      "num_ar_buckets", "ar_buckets", "resolutions", "video_clip_mode", "skip_empty_caption")
RECORD_VERSION = 1


@dataclass(frozen=True)
class CacheStatus:
    stale: bool
    reason: str
    exists: bool


def _settings_part(preset: Any) -> dict[str, Any]:
    from studio.architectures import get_architecture

    arch = get_architecture(preset.architecture)
    part: dict[str, Any] = {"backend": preset.backend, "architecture": preset.architecture, "i2v": arch.i2v}
    for dotted in CACHE_KEYS:
        section, _, key = dotted.partition(".")
        part[dotted] = preset.values.get(section, {}).get(key)
    table = preset.values.get(f"backend.{preset.backend}", {})
    for key in BACKEND_CACHE_KEYS:
        if key in table:
            part[f"backend.{preset.backend}.{key}"] = table[key]
    return part


def _files_part(preset: Any, media: list[MediaInfo]) -> dict[str, list[Any]]:
    extension = preset.values.get("dataset", {}).get("caption_extension", ".txt")
    files = {}
    for info in sorted(media, key=lambda m: m.name):
        try:
            caption = caption_path(info.path, extension).read_bytes()
            caption_hash = hashlib.sha256(caption).hexdigest()[:16]
        except FileNotFoundError:
            caption_hash = ""
        files[info.name] = [info.size_bytes, round(info.mtime, 3), caption_hash]
    return files


def _digest(files: dict[str, list[Any]], settings: dict[str, Any]) -> str:
    payload = json.dumps({"files": files, "settings": settings}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def dataset_fingerprint(preset: Any, media: list[MediaInfo]) -> str:
    """A hex digest over file names, sizes, mtimes, caption texts and the cache-relevant preset settings."""
    return _digest(_files_part(preset, media), _settings_part(preset))


def fingerprint_path(preset: Any, settings: Any) -> Path:
    folder = resolve_path(preset.get("dataset.path"), settings.roots(), "dataset.path")
    arch = preset.architecture.replace("/", "_")
    return Path(folder) / "cache" / f"studio_fingerprint_{preset.backend}_{arch}.json"


def record_cache_fingerprint(preset: Any, media: list[MediaInfo], settings: Any) -> Path:
    """Store the fingerprint after the caches were built (the runner calls this when caching succeeded)."""
    files, part = _files_part(preset, media), _settings_part(preset)
    record = {"version": RECORD_VERSION, "fingerprint": _digest(files, part), "recorded": time.time(),
              "files": files, "settings": part}
    return write_text_atomic(fingerprint_path(preset, settings), json.dumps(record, indent=1, ensure_ascii=False,
                                                                             default=str))


def cache_status(preset: Any, media: list[MediaInfo], settings: Any) -> CacheStatus:
    """Is the recorded cache stale for this dataset and preset? The reason names what changed."""
    path = fingerprint_path(preset, settings)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _unrecorded(path)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return CacheStatus(True, f"{path.name} is damaged; rebuilding the cache to be safe", True)
    files, part = _files_part(preset, media), _settings_part(preset)
    if record.get("fingerprint") == _digest(files, part):
        return CacheStatus(False, "dataset and cache settings unchanged since the cache was built", True)
    return CacheStatus(True, _describe_change(record, files, part), True)


def _unrecorded(path: Path) -> CacheStatus:
    cache_dir = path.parent
    others = [p for p in cache_dir.iterdir() if not p.name.startswith("studio_fingerprint_")] \
        if cache_dir.is_dir() else []
    if others:
        return CacheStatus(True, f"{cache_dir} holds a cache the studio did not record; rebuilding it to be safe",
                           False)
    return CacheStatus(False, "no cache yet: the trainer builds it on the first run", False)


def _describe_change(record: dict[str, Any], files: dict[str, list[Any]], part: dict[str, Any]) -> str:
    old_files, old_part = record.get("files", {}), record.get("settings", {})
    added = sorted(set(files) - set(old_files))
    removed = sorted(set(old_files) - set(files))
    common = set(files) & set(old_files)
    media_changed = sorted(n for n in common if files[n][:2] != old_files[n][:2])
    captions_changed = sorted(n for n in common if files[n][2] != old_files[n][2])
    reasons = []
    for label, names in (("added", added), ("removed", removed), ("changed", media_changed),
                         ("caption changed", captions_changed)):
        if names:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            reasons.append(f"{label}: {shown}")
    for key in sorted(set(part) | set(old_part)):
        if part.get(key) != old_part.get(key):
            reasons.append(f"{key}: {old_part.get(key)!r} -> {part.get(key)!r}")
    return "; ".join(reasons) or "the fingerprint format changed"
