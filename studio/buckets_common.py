"""The records a bucket simulation produces, and helpers both trainers' rules share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.findings import Fix
from studio.media import MediaInfo


@dataclass(frozen=True)
class ClipPlan:
    path: str
    kind: str
    counted_frames: int  # frames the trainer counts (after its fps conversion)
    bucket: int | None  # frame bucket (diffusion-pipe) / longest target (musubi); None when dropped
    samples: int  # training samples per epoch from this file, repeats included, before batch truncation
    resolution_bucket: tuple[int, int] | None
    reason: str
    status: str = "ok"  # ok | dropped | ignored
    windows: tuple[tuple[int, int], ...] = ()  # (first frame, frames) of each clip cut from the file
    # Why it is not ok, for code that reacts to it: unreadable, no_caption, too_short, i2v_image,
    # framepack_short, not_read ("" when ok).
    code: str = ""

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class SizeBucket:
    width: int
    height: int
    frames: int
    items: int  # samples that land here per epoch (repeats included)
    kept: int  # after batching (diffusion-pipe drops the remainder)
    batches: int
    dataset: str = ""  # musubi: "video" or "image" dataset (each batches its own buckets)


@dataclass
class BucketReport:
    clips: list[ClipPlan]
    samples_per_epoch: int
    steps_per_epoch: int
    dropped: list[ClipPlan]
    notes: list[str]
    fixes: list[Fix]
    size_buckets: list[SizeBucket] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # things that stop the trainer, not just skip a clip
    global_batch: int = 1
    backend: str = ""
    architecture: str = ""


@dataclass(frozen=True)
class Batching:
    micro: int
    image_micro: int
    accumulation: int
    gpus: int
    pipeline_stages: int = 1

    @property
    def data_parallel(self) -> int:
        return max(1, self.gpus // max(1, self.pipeline_stages))

    def global_batch(self, frames: int) -> int:
        micro = self.image_micro if frames == 1 else self.micro
        return micro * self.accumulation * self.data_parallel


def backend_table(preset: Any) -> dict[str, Any]:
    return dict(preset.values.get(f"backend.{preset.backend}", {}))


def batching_of(preset: Any) -> Batching:
    table = backend_table(preset)
    micro = int(preset.get("dataset.batch_size"))
    return Batching(micro=micro, image_micro=int(table.get("image_micro_batch_size") or micro),
                    accumulation=int(preset.get("training.gradient_accumulation_steps")),
                    gpus=max(1, len(preset.get("training.gpu_ids") or [])),
                    pipeline_stages=int(table.get("pipeline_stages") or 1))


def round_to_nearest_multiple(value: float, multiple: int) -> int:
    """diffusion-pipe utils/common.py (Python's round: halves go to the even multiple)."""
    return int(round(value / multiple) * multiple)


def dropped_plan(info: MediaInfo, reason: str, *, code: str, counted: int = 0, status: str = "dropped") -> ClipPlan:
    return ClipPlan(info.path, info.kind, counted, None, 0, None, reason, status, code=code)


def unreadable_plan(info: MediaInfo) -> ClipPlan | None:
    if info.error:
        return dropped_plan(info, f"skipped: unreadable ({info.error})", code="unreadable")
    if info.kind == "video" and info.fps <= 0:
        return dropped_plan(info, "skipped: frame rate unknown, the trainer cannot convert it", code="unreadable")
    return None


# diffusion-pipe
