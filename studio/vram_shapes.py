"""Model shapes for the VRAM model: parameters per block, LoRA parameters per rank, tokens per sample.

Counts are computed from the layer structure of the trainers' model code, not typed in:

* Wan2.1 / Wan2.2 (musubi ``wan/modules/model.py`` ``WanAttentionBlock``, configs ``wan/configs/wan_*.py``):
  self- and cross-attention q, k, v, o (``dim x dim`` + bias), RMSNorm on q and k, LayerNorm ``norm3`` with
  affine, FFN ``dim -> ffn -> dim``, modulation ``6 x dim``; I2V blocks add ``k_img``/``v_img`` and ``norm_k_img``.
  musubi's ``networks/lora_wan.py`` puts LoRA on every Linear inside the blocks (norms, embeddings, head excluded).
* HunyuanVideo / FramePack (musubi ``hunyuan_model/models.py``, ``frame_pack/hunyuan_video_packed.py``): 20
  double-stream blocks (img and txt: modulation 6d, qkv 3d, proj, MLP 4d) and 40 single-stream blocks (linear1
  ``d -> 3d + 4d``, linear2 ``5d -> d``, modulation 3d), d = 3072. ``networks/lora.py`` skips ``*_mod``/modulation.
* LTX-Video 0.9 (diffusers ``LTXVideoTransformer3DModel`` as diffusion-pipe loads it): 28 blocks of self- and
  cross-attention and a 4x FFN, d = 2048; VAE 32x32 spatial, 8x temporal, patch 1.

Checked against the published sizes: Wan2.1 1.3B = 1.42 B, 14B = 14.29 B, HunyuanVideo = 12.8 B parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.architectures import Architecture


@dataclass(frozen=True)
class ModelShape:
    family: str  # "wan" | "hunyuan" | "ltx"
    dim: int
    ffn: int
    layers: int  # transformer blocks that block swap and checkpointing work on
    text_dim: int = 4096
    in_channels: int = 16
    i2v_cross_attn: bool = False  # Wan2.1 I2V: image cross-attention (k_img, v_img) and CLIP projection
    per_token_modulation: bool = False  # Wan2.2: the time embedding is per token (fp32 e and e0 of shape [L, 6d])
    spatial_stride: int = 16  # pixels per token side: VAE 8 x patch 2 (LTX: VAE 32 x patch 1)
    temporal_stride: int = 4  # frames per latent frame after the first
    double_blocks: int = 0  # HunyuanVideo-style double-stream blocks (the rest of ``layers`` are single-stream)

    # Parameters ------------------------------------------------------------------------------------------------

    def block_params(self) -> int:
        """Average parameters of one swappable block (block swap moves whole blocks)."""
        return self.blocks_params() // self.layers

    def blocks_params(self) -> int:
        d, f = self.dim, self.ffn
        if self.family == "wan":
            attn = 8 * (d * d + d) + 4 * d + 2 * d  # two attentions; q/k RMSNorms; norm3 weight + bias
            img = 2 * (d * d + d) + d if self.i2v_cross_attn else 0
            return self.layers * (attn + img + (d * f + f) + (f * d + d) + 6 * d)
        if self.family == "hunyuan":
            double = 2 * (6 * d * d + 3 * d * d + d * d + 2 * d * f) + 2 * 10 * d  # img + txt streams
            single = d * (3 * d + f) + (d + f) * d + 3 * d * d + 4 * d
            singles = self.layers - self.double_blocks
            return self.double_blocks * double + singles * single
        # ltx: self-attention, cross-attention (text already projected to d), FFN, scale-shift table
        return self.layers * (8 * (d * d + d) + 2 * d * f + f + d + 6 * d)

    def other_params(self) -> int:
        """Embeddings and head: never swapped, kept on the GPU."""
        d = self.dim
        if self.family == "wan":
            embed = self.in_channels * 4 * d + d + self.text_dim * d + d + d * d + d  # patch + text MLP
            time = 256 * d + d + d * d + d + d * 6 * d + 6 * d
            head = d * 16 * 4 + 64 + 2 * d
            img = 1280 * 1280 + 1280 * d + 2 * 1280 + 2 * d if self.i2v_cross_attn else 0
            return embed + time + head + img
        if self.family == "hunyuan":
            refiner = 2 * (4 * d * d + 2 * d * self.ffn) + self.text_dim * d  # token refiner + its input projection
            return refiner + 768 * d + 3 * 256 * d + 2 * d * d + d * 64 + 2 * d * d
        return 128 * d + self.text_dim * d + d * d + 256 * d + d * 6 * d + d * 128

    def total_params(self) -> int:
        return self.blocks_params() + self.other_params()

    def lora_params_per_rank(self) -> int:
        """LoRA parameters per unit of rank: sum of (in + out) over the adapted Linear layers."""
        d, f = self.dim, self.ffn
        if self.family == "wan":
            per_block = 8 * 2 * d + 2 * (d + f) + (2 * 2 * d if self.i2v_cross_attn else 0)
            return self.layers * per_block
        if self.family == "hunyuan":
            double = 2 * ((d + 3 * d) + 2 * d + (d + f) + (f + d))
            single = (d + 3 * d + f) + (d + f + d)
            return self.double_blocks * double + (self.layers - self.double_blocks) * single
        return self.layers * (8 * 2 * d + 2 * (d + f))

    # Tokens ----------------------------------------------------------------------------------------------------

    def latent_frames(self, frames: int) -> int:
        return (max(frames, 1) - 1) // self.temporal_stride + 1

    def tokens(self, frames: int, width: int, height: int) -> int:
        """Transformer tokens of one sample: latent frames x (H / stride) x (W / stride)."""
        return self.latent_frames(frames) * (height // self.spatial_stride) * (width // self.spatial_stride)


_WAN_1_3B = ModelShape("wan", dim=1536, ffn=8960, layers=30)
_WAN_14B = ModelShape("wan", dim=5120, ffn=13824, layers=40)
_HUNYUAN = ModelShape("hunyuan", dim=3072, ffn=4 * 3072, layers=60, double_blocks=20)

SHAPES: dict[str, ModelShape] = {
    "wan2.1-t2v-1.3b": _WAN_1_3B,
    "wan2.1-t2v-14b": _WAN_14B,
    "wan2.1-i2v-14b": ModelShape("wan", dim=5120, ffn=13824, layers=40, in_channels=36, i2v_cross_attn=True),
    "wan2.2-t2v-a14b": ModelShape("wan", dim=5120, ffn=13824, layers=40, per_token_modulation=True),
    "wan2.2-i2v-a14b": ModelShape("wan", dim=5120, ffn=13824, layers=40, in_channels=36, per_token_modulation=True),
    "hunyuan-video": _HUNYUAN,
    "framepack": _HUNYUAN,
    "ltx-video": ModelShape("ltx", dim=2048, ffn=8192, layers=28, in_channels=128, spatial_stride=32,
                            temporal_stride=8),
}

# Text tokens the transformer attends to (Wan pads the umT5 context to text_len = 512; HunyuanVideo's LLaVA
# context is up to 256 tokens joined to the video tokens in its attention; LTX's T5 context 128).
TEXT_TOKENS = {"wan": 512, "hunyuan": 256, "ltx": 128}


def shape_of(arch: Architecture) -> ModelShape:
    try:
        return SHAPES[arch.id]
    except KeyError:
        raise KeyError(f"no VRAM shape for {arch.id!r}; known: {', '.join(SHAPES)}") from None


def framepack_tokens(shape: ModelShape, width: int, height: int, window: int) -> int:
    """Tokens of one FramePack section: the window of latent frames plus its clean-latent context.

    fpack_train_network.py trains ``latent_window_size`` latent frames next to clean latents at 1x (1 start + 1
    previous), 2x (2 frames, 2x2x2 downsampled) and 4x (16 frames, 4x4x4 downsampled) compression.
    """
    per_frame = (height // shape.spatial_stride) * (width // shape.spatial_stride)
    return int(per_frame * (window + 2 + 2 / 8 + 16 / 64))
