"""musubi-tuner's dataset TOML: only the keys its voluptuous schema allows, with the exact types it checks.

Source (kohya-ss/musubi-tuner v0.3.4): ``src/musubi_tuner/dataset/config_utils.py`` ``ConfigSanitizer`` validates
with ``Schema`` in PREVENT_EXTRA mode and plain ``isinstance`` checks, so an unknown key or ``source_fps = 30``
(an int) is refused. A ``[[datasets]]`` entry is a video dataset when it has ``video_directory``; a video dataset
reads videos only (``datasources.VideoDirectoryDatasource`` uses ``glob_videos``), so images in a mixed folder need
an image dataset of their own, with its own cache directory ("cache directory should be unique for each dataset").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from backends.base import PlanError
from studio.architectures import Architecture

# dataset/media_utils.py IMAGE_EXTENSIONS / VIDEO_EXTENSIONS (lower case; musubi globs both cases, not recursively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".avif", ".jxl")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".flv", ".wmv", ".m4v", ".mpg", ".mpeg")
# image_video_dataset.py VideoDataset: "all architectures require frames to be divisible by 4" (+1).
VAE_FRAME_STRIDE = 4

@dataclass(frozen=True)
class FolderContents:
    """What musubi would find in the dataset folder (top level only, as its globs do)."""

    exists: bool
    videos: int = 0
    images: int = 0


def scan_folder(path: str) -> FolderContents:
    folder = Path(path)
    if not folder.is_dir():
        return FolderContents(exists=False)
    videos = images = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            suffix = os.path.splitext(entry.name)[1].lower()
            if suffix in VIDEO_EXTENSIONS and entry.is_file():
                videos += 1
            elif suffix in IMAGE_EXTENSIONS and entry.is_file():
                images += 1
    return FolderContents(True, videos, images)


def round_target_frames(frames: list[int]) -> list[int]:
    """musubi's rule for ``target_frames``: sorted, unique, each rounded down to N*4+1."""
    return sorted({(f - 1) // VAE_FRAME_STRIDE * VAE_FRAME_STRIDE + 1 for f in frames})


@dataclass(frozen=True)
class FrameSettings:
    """How clips become samples; mirrors the video keys of the dataset TOML."""

    target_frames: list[int]
    extraction: str
    stride: int
    sample: int
    max_frames: int
    source_fps: float  # 0 = keep the clip's frames

    def video_keys(self) -> dict[str, Any]:
        """Only the keys that matter for this extraction mode, so the file says what it does."""
        keys: dict[str, Any] = {"frame_extraction": self.extraction}
        if self.extraction == "full":
            keys["max_frames"] = self.max_frames
        else:
            keys["target_frames"] = list(self.target_frames)
        if self.extraction == "slide":
            keys["frame_stride"] = self.stride
        if self.extraction == "uniform":
            keys["frame_sample"] = self.sample
        if self.source_fps > 0:
            keys["source_fps"] = float(self.source_fps)
        return keys


@dataclass
class DatasetLayout:
    """The datasets musubi gets for one folder, and what the user should know about that choice."""

    video: bool
    image: bool
    notes: list[str] = field(default_factory=list)


def choose_layout(arch: Architecture, contents: FolderContents, *, include_images: bool, folder: str) -> DatasetLayout:
    """Video dataset, image dataset or both for ``folder``.

    A folder that does not exist yet (presets, CI) is planned as a video dataset: this studio trains video LoRAs.
    Image-to-video models learn from a clip's first frame, so they get videos only.
    """
    if not contents.exists or (contents.videos == 0 and contents.images == 0):
        return DatasetLayout(video=True, image=False)
    if contents.videos == 0:
        if arch.i2v:
            raise PlanError(
                "dataset.path",
                f"{folder} holds only images; {arch.label} is an image-to-video model and trains on videos. "
                "Add clips (with caption files) or choose a text-to-video architecture",
            )
        return DatasetLayout(video=False, image=True)
    if contents.images == 0:
        return DatasetLayout(video=True, image=False)
    if arch.i2v or not include_images:
        why = "image-to-video models train on videos" if arch.i2v else "backend.musubi_tuner.include_images is off"
        return DatasetLayout(True, False, [
            f"{contents.images} image(s) in {folder} are not used ({why}); only the {contents.videos} video(s) are."
        ])
    return DatasetLayout(True, True, [
        f"{folder} holds {contents.videos} video(s) and {contents.images} image(s): musubi trains them as two "
        "datasets (videos, images) with separate caches."
    ])


@dataclass(frozen=True)
class DatasetFile:
    """Everything the dataset TOML says, all paths absolute."""

    folder: str
    cache_dir: str
    resolution: list[int]  # [W, H]
    caption_extension: str
    batch_size: int
    num_repeats: int
    enable_bucket: bool
    frames: FrameSettings
    layout: DatasetLayout
    latent_window_size: int = 0  # FramePack only (fp_latent_window_size); 0 = not written


def image_cache_dir(cache_dir: str) -> str:
    return cache_dir + "_images"


def render_dataset_toml(spec: DatasetFile) -> str:
    """The dataset config as TOML text with exact types (tomlkit keeps 30.0 a float, [832, 480] a list)."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment("musubi-tuner dataset config written by Video LoRA Studio; regenerated for every run."))
    general = tomlkit.table()
    general["resolution"] = [int(v) for v in spec.resolution]
    general["caption_extension"] = spec.caption_extension
    general["batch_size"] = int(spec.batch_size)
    general["num_repeats"] = int(spec.num_repeats)
    general["enable_bucket"] = bool(spec.enable_bucket)
    doc["general"] = general
    datasets = tomlkit.aot()
    if spec.layout.video:
        video = tomlkit.table()
        video["video_directory"] = spec.folder
        video["cache_directory"] = spec.cache_dir
        for key, value in spec.frames.video_keys().items():
            video[key] = value
        if spec.latent_window_size:
            video["fp_latent_window_size"] = int(spec.latent_window_size)
        datasets.append(video)
    if spec.layout.image:
        image = tomlkit.table()
        image["image_directory"] = spec.folder
        image["cache_directory"] = image_cache_dir(spec.cache_dir) if spec.layout.video else spec.cache_dir
        datasets.append(image)
    doc["datasets"] = datasets
    return tomlkit.dumps(doc)


def check_framepack_frames(frames: FrameSettings, window: int) -> None:
    """fpack_cache_latents.py raises "Not enough frames for FramePack" below window*4+1 frames per sample."""
    needed = window * 4 + 1
    if frames.extraction == "full":
        if frames.max_frames < needed:
            raise PlanError(
                "backend.musubi_tuner.max_frames",
                f"is {frames.max_frames}; FramePack with latent window {window} needs samples of at least {needed} "
                f"frames. Set max_frames to {needed} or more",
            )
        return
    short = [f for f in frames.target_frames if f < needed]
    if short:
        raise PlanError(
            "dataset.frames",
            f"FramePack with latent window {window} needs samples of at least {needed} frames, but frames has "
            f"{short}. Use frames like [{needed}, {needed + window * 4}], or frame_extraction = 'full' with "
            f"max_frames >= {needed} (what the musubi docs recommend)",
        )
