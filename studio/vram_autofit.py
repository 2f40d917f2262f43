"""Auto-fit: the cheapest change that makes a run fit the card, and the largest frames / resolution that fit.

Changes are tried in order of what they cost: gradient checkpointing (about 30% slower, same result), an 8-bit
optimizer (same result within noise), fp8 base weights (slightly lower quality), block swap (slower, needs RAM),
checkpoint offload to RAM (diffusion-pipe 'unsloth'); fewer frames or pixels change what is learned, so they are
offered separately. Every suggestion is a ``Fix`` the GUI applies with one click.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from studio.findings import Fix
from studio.vram_model import LOW_MEMORY_OPTIMIZERS, MemorySettings, breakdown_of
from studio.vram_preset import (
    KEY_DP_CKPT_MODE,
    KEY_FP8,
    KEY_FRAMES,
    KEY_GRAD_CKPT,
    KEY_OPTIMIZER,
    KEY_RESOLUTION,
    KEY_SWAP,
)

MEMORY_HUNGRY_OPTIMIZERS = ("adamw", "adamw_optimi", "prodigy")


@dataclass(frozen=True)
class Change:
    label: str
    changes: dict[str, object]
    settings: MemorySettings


def total_gib(ms: MemorySettings) -> float:
    return sum(breakdown_of(ms).values())


def _single_changes(ms: MemorySettings, budget: float, max_swap: int) -> list[Change]:
    """Each memory option on its own, cheapest first (only those that change something)."""
    options: list[Change] = []
    if not ms.grad_ckpt:
        options.append(Change("turn on gradient checkpointing", {KEY_GRAD_CKPT: True}, replace(ms, grad_ckpt=True)))
    low = LOW_MEMORY_OPTIMIZERS.get(ms.trainer)
    if low and ms.optimizer in MEMORY_HUNGRY_OPTIMIZERS:
        options.append(Change(f"use the {low} optimizer", {KEY_OPTIMIZER: low}, replace(ms, optimizer=low)))
    if not ms.fp8:
        options.append(Change("keep the base model in fp8", {KEY_FP8: True}, replace(ms, fp8=True)))
    swap = _least_swap(ms, budget, max_swap)
    if swap:
        options.append(Change(f"swap {swap} blocks to CPU RAM", {KEY_SWAP: swap}, replace(ms, blocks_to_swap=swap)))
    if ms.trainer == "diffusion_pipe" and ms.grad_ckpt and not ms.ckpt_offload:
        options.append(Change("offload checkpointed activations to RAM ('unsloth')", {KEY_DP_CKPT_MODE: "unsloth"},
                              replace(ms, ckpt_offload=True)))
    return options


def _least_swap(ms: MemorySettings, budget: float, max_swap: int) -> int:
    """The fewest blocks to swap that fit, else the maximum (0 when swapping more is impossible)."""
    if max_swap <= ms.blocks_to_swap:
        return 0
    for swap in range(ms.blocks_to_swap + 1, max_swap + 1):
        if total_gib(replace(ms, blocks_to_swap=swap)) <= budget:
            return swap
    return max_swap


def cheapest_change(ms: MemorySettings, budget: float, max_swap: int) -> tuple[Change | None, Change | None]:
    """(the cheapest change that fits, or None; every option stacked with the most swap, or None if no option).

    The first single option that fits wins; else options are stacked in cost order, each time with the fewest
    swapped blocks that fit, until the run fits."""
    singles = _single_changes(ms, budget, max_swap)
    for option in singles:
        if total_gib(option.settings) <= budget:
            return option, option
    labels: list[str] = []
    changes: dict[str, object] = {}
    current = ms
    for option in [o for o in singles if o.changes.keys() != {KEY_SWAP}]:
        labels.append(option.label)
        changes.update(option.changes)
        current = _apply(current, option.changes)
        fitted = _with_swap(current, budget, max_swap, labels, changes)
        if fitted is not None:
            return fitted, fitted
    fitted = _with_swap(current, budget, max_swap, labels, changes)
    if fitted is not None:
        return fitted, fitted
    swap = _least_swap(current, budget, max_swap)
    if swap:
        labels.append(f"swap {swap} blocks to CPU RAM")
        changes[KEY_SWAP] = swap
        current = replace(current, blocks_to_swap=swap)
    return None, (Change(" + ".join(labels), changes, current) if changes else None)


def _with_swap(ms: MemorySettings, budget: float, max_swap: int, labels: list[str],
               changes: dict[str, object]) -> Change | None:
    if total_gib(ms) <= budget:
        return Change(" + ".join(labels), dict(changes), ms)
    swap = _least_swap(ms, budget, max_swap)
    if swap and total_gib(replace(ms, blocks_to_swap=swap)) <= budget:
        label = " + ".join([*labels, f"swap {swap} blocks to CPU RAM"])
        return Change(label, {**changes, KEY_SWAP: swap}, replace(ms, blocks_to_swap=swap))
    return None


def _apply(ms: MemorySettings, changes: dict[str, object]) -> MemorySettings:
    setters: dict[str, Callable[[MemorySettings, object], MemorySettings]] = {
        KEY_GRAD_CKPT: lambda m, v: replace(m, grad_ckpt=bool(v)),
        KEY_OPTIMIZER: lambda m, v: replace(m, optimizer=str(v)),
        KEY_FP8: lambda m, v: replace(m, fp8=bool(v)),
        KEY_SWAP: lambda m, v: replace(m, blocks_to_swap=int(v)),  # type: ignore[call-overload]
        KEY_DP_CKPT_MODE: lambda m, v: replace(m, ckpt_offload=v == "unsloth"),
    }
    for key, value in changes.items():
        ms = setters[key](ms, value)
    return ms


def largest_frames(ms: MemorySettings, budget: float) -> int | None:
    """The most frames (valid for the architecture, at most the current count) that fit as set now."""
    arch = ms.arch
    if arch.family == "framepack" or ms.frames <= 1:
        return None
    frames = ms.frames
    smallest = max(arch.min_frames, arch.frame_step + 1)
    while frames >= smallest:
        if total_gib(replace(ms, frames=frames)) <= budget:
            return frames
        frames -= arch.frame_step
    return None


def largest_resolution(ms: MemorySettings, budget: float) -> tuple[int, int] | None:
    """The largest same-aspect resolution (multiples of 16 px) that fits as set now."""
    step = 32 if ms.arch.family == "ltx" else 16
    for percent in range(95, 20, -5):
        width = max(step, round(ms.width * percent / 100 / step) * step)
        height = max(step, round(ms.height * percent / 100 / step) * step)
        if (width, height) != (ms.width, ms.height) and total_gib(replace(ms, width=width, height=height)) <= budget:
            return width, height
    return None


def autofit(ms: MemorySettings, budget: float, *, max_swap: int,
            frame_list: tuple[int, ...] = ()) -> tuple[list[Fix], str]:
    """Fixes (cheapest first) and a sentence for each, to fit within ``budget`` GiB.

    ``frame_list`` is the preset's ``dataset.frames``: the frames fix keeps the counts below the new maximum.
    When no memory option is enough, the frames and resolution fixes include every memory option as well."""
    fixes: list[Fix] = []
    lines = [f"needs about {total_gib(ms):.1f} GiB; the target is {budget:.1f} GiB (90% of the card)"]
    change, stacked = cheapest_change(ms, budget, max_swap)
    if change is not None:
        after = total_gib(change.settings)
        fixes.append(Fix(_sentence(f"{change.label} (about {after:.1f} GiB)"), change.changes))
        lines.append(f"cheapest change: {change.label} -> about {after:.1f} GiB")
    base, extra = ms, {}
    if change is None:
        lines.append("memory options alone are not enough")
        if stacked is not None:
            base, extra = stacked.settings, stacked.changes
    frames = largest_frames(base, budget)
    if frames is not None and frames < base.frames:
        kept = sorted({f for f in frame_list if f <= frames and ms.arch.valid_frames(f)} | {frames})
        shrunk, changes = _trim_swap(replace(base, frames=frames), budget, extra)
        after = total_gib(shrunk)
        fixes.append(Fix(_sentence(f"{_prefix(changes)}train at most {frames} frames (about {after:.1f} GiB)"),
                         {**changes, KEY_FRAMES: kept}))
        lines.append(f"or {_prefix(changes)}train at most {frames} frames -> about {after:.1f} GiB")
    size = largest_resolution(base, budget)
    if size is not None:
        shrunk, changes = _trim_swap(replace(base, width=size[0], height=size[1]), budget, extra)
        after = total_gib(shrunk)
        fixes.append(Fix(_sentence(f"{_prefix(changes)}train at {size[0]}x{size[1]} (about {after:.1f} GiB)"),
                         {**changes, KEY_RESOLUTION: list(size)}))
        lines.append(f"or {_prefix(changes)}train at {size[0]}x{size[1]} -> about {after:.1f} GiB")
    if not fixes:
        lines.append("this card is too small for the model even at the smallest settings")
    return fixes, "; ".join(lines)


_LABELS = {KEY_GRAD_CKPT: "gradient checkpointing", KEY_OPTIMIZER: "an 8-bit optimizer", KEY_FP8: "fp8 base",
           KEY_DP_CKPT_MODE: "'unsloth' checkpointing"}


def _trim_swap(ms: MemorySettings, budget: float, changes: dict[str, object]) -> tuple[MemorySettings, dict]:
    """With smaller samples fewer blocks may need swapping: keep the fewest that still fit."""
    if KEY_SWAP not in changes:
        return ms, dict(changes)
    for swap in range(0, ms.blocks_to_swap + 1):
        candidate = replace(ms, blocks_to_swap=swap)
        if total_gib(candidate) <= budget:
            trimmed = {k: v for k, v in changes.items() if k != KEY_SWAP}
            return candidate, ({**trimmed, KEY_SWAP: swap} if swap else trimmed)
    return ms, dict(changes)


def _prefix(changes: dict[str, object]) -> str:
    """'with fp8 base and 20 swapped blocks, ' for the memory options a frames/resolution fix also turns on."""
    parts = [_LABELS[k] for k in changes if k in _LABELS]
    if KEY_SWAP in changes:
        parts.append(f"{changes[KEY_SWAP]} swapped blocks")
    return f"with {' and '.join(parts)}, " if parts else ""


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
