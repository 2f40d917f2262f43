"""VRAM estimate of a preset: the memory model (studio.vram_model) on the preset's settings, compared with the GPU,
with a verdict and auto-fit fixes (studio.vram_autofit)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from studio.findings import Fix
from studio.gpu import GpuInfo
from studio.vram_autofit import autofit
from studio.vram_model import (
    DIFFUSION_PIPE,
    GIB,
    LOW_MEMORY_OPTIMIZERS,
    MUSUBI,
    Constants,
    MemorySettings,
    breakdown_of,
    calibration_note,
    host_ram_gib,
    peak_allocated_gib,
)
from studio.vram_preset import max_blocks_to_swap, settings_from_preset

__all__ = ["DIFFUSION_PIPE", "GIB", "LOW_MEMORY_OPTIMIZERS", "MUSUBI", "Constants", "MemorySettings", "VramEstimate",
           "breakdown_of", "estimate", "estimate_settings", "host_ram_gib", "peak_allocated_gib", "usable_gib",
           "verdict_for"]

Verdict = str  # "fits" | "tight" | "wont_fit" | "unknown"
FIT_FRACTION = 0.90  # "fits" leaves 10% of the card free: the model's worst measured error is below that


@dataclass
class VramEstimate:
    total_gib: float
    breakdown: dict[str, float]
    verdict: Verdict
    gpu_gib: float | None
    autofit: list[Fix] = field(default_factory=list)
    text: str = ""
    tokens: int = 0
    host_ram_gib: float = 0.0  # CPU RAM the run needs beyond the OS (weights while loading, swapped blocks)
    settings: MemorySettings | None = None
    calibration: str = ""

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        data = asdict(self)
        data["breakdown"] = {k: round(v, 2) for k, v in self.breakdown.items()}
        data["total_gib"] = round(self.total_gib, 2)
        return data


# Verdict and auto-fit -------------------------------------------------------------------------------------------


def usable_gib(gpus: list[GpuInfo] | None, gpu_gib: float | None) -> float | None:
    """The smallest selected card; its free memory when other processes hold more than 1 GiB of it."""
    if gpu_gib:
        return float(gpu_gib)
    if not gpus:
        return None
    per_card = []
    for gpu in gpus:
        total, free = gpu.total_mib / 1024, gpu.free_mib / 1024
        per_card.append(free if 0 < free < total - 1.0 else total)
    return min(per_card)


def verdict_for(total: float, usable: float | None) -> Verdict:
    if not usable:
        return "unknown"
    if total <= usable * FIT_FRACTION:
        return "fits"
    return "tight" if total <= usable else "wont_fit"


def estimate_settings(ms: MemorySettings, *, usable: float | None = None, max_swap: int = 0,
                      frame_list: tuple[int, ...] = ()) -> VramEstimate:
    parts = breakdown_of(ms)
    total = sum(parts.values())
    verdict = verdict_for(total, usable)
    result = VramEstimate(total, parts, verdict, usable, tokens=ms.tokens(), host_ram_gib=host_ram_gib(ms),
                          settings=ms, calibration=calibration_note(ms))
    if usable and verdict != "fits":
        result.autofit, result.text = autofit(ms, usable * FIT_FRACTION, max_swap=max_swap, frame_list=frame_list)
    elif usable:
        result.text = (f"about {total:.1f} GiB of {usable:.1f} GiB: fits with "
                       f"{usable - total:.1f} GiB to spare")
    return result


def estimate(preset: Any, *, gpus: list[GpuInfo] | None = None, gpu_gib: float | None = None) -> VramEstimate:
    """Peak VRAM of ``preset`` on the given GPUs (or a card of ``gpu_gib``), with a verdict and auto-fit fixes."""
    ms = settings_from_preset(preset)
    frame_list = tuple(int(f) for f in preset.get("dataset.frames") or ())
    return estimate_settings(ms, usable=usable_gib(gpus, gpu_gib), max_swap=max_blocks_to_swap(ms),
                             frame_list=frame_list)
