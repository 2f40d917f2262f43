"""The model architectures the studio knows, with the facts every trainer agrees on.

Frame rules and fps come from the trainers' sources (see docs/presets.md for citations):
Wan / HunyuanVideo latents are 4x temporal so clips are 4N+1 frames; LTX and CogVideoX need 8N+1.
The fps is what diffusion-pipe resamples to (``framerate`` in models/wan.py, hunyuan_video.py, ltx_video.py)
and what musubi's ``source_fps`` drops frames to.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    id: str
    label: str
    family: str  # wan | hunyuan | framepack | ltx | cogvideox | flux
    frame_step: int  # clips are frame_step*N+1 frames; 0 = image-only model
    model_fps: float
    i2v: bool = False
    min_frames: int = 1
    # Wan2.2 A14B trains one of two experts, split at a timestep boundary (0..1000).
    two_experts: bool = False
    default_boundary: int = 0

    @property
    def is_video(self) -> bool:
        return self.frame_step > 0

    def valid_frames(self, frames: int) -> bool:
        if not self.is_video:
            return frames == 1
        return frames >= 1 and (frames - 1) % self.frame_step == 0 and (frames == 1 or frames >= self.min_frames)

    def round_frames_down(self, frames: int) -> int:
        """The largest valid frame count <= ``frames`` (what musubi does to target_frames)."""
        if not self.is_video or frames < 1:
            return 1
        return (frames - 1) // self.frame_step * self.frame_step + 1

    def nearest_valid_frames(self, frames: int) -> tuple[int, int]:
        """The valid counts just below and just above ``frames``."""
        below = self.round_frames_down(frames)
        above = below if below == frames else below + self.frame_step
        return below, above


ARCHITECTURES: dict[str, Architecture] = {
    a.id: a
    for a in (
        Architecture("wan2.1-t2v-1.3b", "Wan2.1 T2V 1.3B", "wan", 4, 16.0),
        Architecture("wan2.1-t2v-14b", "Wan2.1 T2V 14B", "wan", 4, 16.0),
        Architecture("wan2.1-i2v-14b", "Wan2.1 I2V 14B (480P/720P)", "wan", 4, 16.0, i2v=True),
        Architecture("wan2.2-t2v-a14b", "Wan2.2 T2V A14B", "wan", 4, 16.0, two_experts=True, default_boundary=875),
        Architecture(
            "wan2.2-i2v-a14b", "Wan2.2 I2V A14B", "wan", 4, 16.0, i2v=True, two_experts=True, default_boundary=900
        ),
        Architecture("hunyuan-video", "HunyuanVideo (13B)", "hunyuan", 4, 24.0),
        # FramePack trims clips to N*latent_window_size*4+1 frames; with the default window 9 the minimum is 37
        # (musubi fpack_cache_latents.py: "Not enough frames for FramePack").
        Architecture("framepack", "FramePack (HunyuanVideo I2V)", "framepack", 4, 30.0, i2v=True, min_frames=37),
        Architecture("ltx-video", "LTX-Video", "ltx", 8, 25.0),
    )
}


def get_architecture(arch_id: str) -> Architecture:
    try:
        return ARCHITECTURES[arch_id]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise KeyError(f"unknown architecture {arch_id!r}; known: {known}") from None
