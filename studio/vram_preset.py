"""Read the VRAM model's settings from a preset, and the preset keys each memory setting lives in.

Backend-specific keys are read with ``dict.get`` so a preset of either trainer (or an older one) always works.
"""

from __future__ import annotations

from typing import Any

from studio.architectures import get_architecture
from studio.vram_model import MemorySettings

# Where each memory setting lives in a preset (auto-fit writes these keys).
KEY_GRAD_CKPT = "memory.gradient_checkpointing"
KEY_FP8 = "memory.fp8_base"
KEY_SWAP = "memory.blocks_to_swap"
KEY_OPTIMIZER = "optimizer.type"
KEY_FRAMES = "dataset.frames"
KEY_RESOLUTION = "dataset.resolution"
KEY_DP_CKPT_MODE = "backend.diffusion_pipe.activation_checkpointing_mode"


def backend_table(preset: Any) -> dict[str, Any]:
    return dict(preset.values.get(f"backend.{preset.backend}", {}))


def trained_frames(preset: Any) -> int:
    """The longest sample the trainer will build from ``dataset.frames`` (both trainers round down to N*step+1)."""
    arch = get_architecture(preset.architecture)
    table = backend_table(preset)
    asked = [int(f) for f in preset.get("dataset.frames") or [1]]
    if preset.backend == "musubi_tuner" and table.get("frame_extraction") == "full":
        asked = [int(table.get("max_frames") or 129)]
    return max(arch.round_frames_down(f) for f in asked)


def settings_from_preset(preset: Any) -> MemorySettings:
    arch = get_architecture(preset.architecture)
    table = backend_table(preset)
    width, height = preset.get("dataset.resolution")
    if preset.backend == "diffusion_pipe":
        offload = table.get("activation_checkpointing_mode") == "unsloth"
    else:
        offload = bool(table.get("gradient_checkpointing_cpu_offload", False))
    both_experts = (preset.backend == "musubi_tuner" and arch.two_experts and bool(preset.get("model.dit_high_noise"))
                    and not table.get("offload_inactive_dit", False))
    return MemorySettings(
        trainer=preset.backend,
        arch_id=arch.id,
        frames=trained_frames(preset),
        width=int(width),
        height=int(height),
        batch=int(preset.get("dataset.batch_size")),
        rank=int(preset.get("network.rank")),
        optimizer=str(preset.get("optimizer.type")),
        fp8=bool(preset.get("memory.fp8_base")),
        fp8_scaled=bool(table.get("fp8_scaled", False)),  # only takes effect with fp8 (weight_bytes)
        grad_ckpt=bool(preset.get("memory.gradient_checkpointing")),
        ckpt_offload=offload,
        blocks_to_swap=int(preset.get("memory.blocks_to_swap")),
        both_experts_on_gpu=both_experts,
        window=int(table.get("latent_window_size") or 9),
        # musubi's attention backend (diffusion-pipe's HunyuanVideo builds no (L x L) mask, so the default fits it)
        attention=str(table.get("attention") or "sdpa") if preset.backend == "musubi_tuner" else "sdpa",
        split_attn=bool(table.get("split_attn", False)),
    )


def max_blocks_to_swap(ms: MemorySettings) -> int:
    """The trainer's own limit (its enable_block_swap assertion), from the backend modules."""
    arch = ms.arch
    if ms.trainer == "musubi_tuner":
        from backends.musubi_args import ARCH_SPECS

        spec = ARCH_SPECS.get(arch.id)
        return spec.max_blocks_to_swap if spec else 0
    if ms.trainer == "diffusion_pipe":
        from backends.diffusion_pipe_config import HUNYUAN_MAX_SWAP, WAN_14B_BLOCKS, WAN_BLOCKS

        if arch.family == "ltx":
            return 0
        if arch.family == "hunyuan":
            return HUNYUAN_MAX_SWAP
        return WAN_BLOCKS.get(arch.id, WAN_14B_BLOCKS) - 2
    return 0
