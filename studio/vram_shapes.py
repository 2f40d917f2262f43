"""Model shapes for the VRAM model: parameters per block, LoRA parameters per rank, tokens per sample.

Counts are computed from the layer structure of the trainers' model code, not typed in:

* Wan2.1 / Wan2.2 (musubi ``wan/modules/model.py`` ``WanAttentionBlock``, configs ``wan/configs/wan_*.py``):
  self- and cross-attention q, k, v, o (``dim x dim`` + bias), RMSNorm on q and k, LayerNorm ``norm3`` with
  affine, FFN ``dim -> ffn -> dim``, modulation ``6 x dim``; I2V blocks add ``k_img``/``v_img`` and ``norm_k_img``.
  musubi's ``networks/lora_wan.py`` puts LoRA on every Linear inside the blocks (norms, embeddings, head excluded).
* HunyuanVideo / FramePack (musubi ``hunyuan_model/models.py``, ``frame_pack/hunyuan_video_packed.py``): 20
  double-stream blocks (img and txt: modulation 6d, qkv 3d, proj, MLP 4d) and 40 single-stream blocks (linear1
  ``d -> 3d + 4d``, linear2 ``5d -> d``, modulation 3d), d = 3072. ``networks/lora.py`` skips ``*_mod``/modulation.
  FramePack's diffusers-style blocks split q/k/v (and the context's add_q/k/v) into separate Linear layers, which
  ``networks/lora_framepack.py`` adapts one by one, and name their modulation ``norm*.linear``: the "norm" exclusion
  of its ``--fp8_scaled`` (``FP8_OPTIMIZATION_EXCLUDE_KEYS``) leaves those 3.4 B parameters in bf16. musubi's
  ``enable_block_swap`` swaps N // 2 double and (N - N // 2) x 2 + 1 single blocks. Every block's sequence holds
  the context tokens next to the video tokens: HV's LLM text padded to 256; FramePack's 729 SigLIP image tokens and
  the caption (cropped to its length at batch 1, else padded to 512).
* LTX-Video 0.9 (diffusers ``LTXVideoTransformer3DModel`` as diffusion-pipe loads it): 28 blocks of self- and
  cross-attention and a 4x FFN, d = 2048; VAE 32x32 spatial, 8x temporal, patch 1.

Checked against the published sizes: Wan2.1 1.3B = 1.42 B, 14B = 14.29 B, HunyuanVideo = 12.8 B parameters, and
against musubi's own meta-models (tests/test_vram.py).
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
    framepack: bool = False  # FramePack's packed HV: separate q/k/v layers, norm-named modulation, image tokens

    # Parameters ------------------------------------------------------------------------------------------------

    def block_params(self) -> int:
        """Average parameters of one swappable block (block swap moves whole blocks)."""
        return self.blocks_params() // self.layers

    def blocks_params(self) -> int:
        return sum(count * params for count, params, _ in self.block_kinds())

    def block_kinds(self) -> list[tuple[int, int, int]]:
        """(count, parameters per block, of which musubi's --fp8_scaled keeps in bf16) for each kind of block."""
        d, f = self.dim, self.ffn
        if self.family == "wan":
            attn = 8 * (d * d + d) + 4 * d + 2 * d  # two attentions; q/k RMSNorms; norm3 weight + bias
            img = 2 * (d * d + d) + d if self.i2v_cross_attn else 0
            return [(self.layers, attn + img + (d * f + f) + (f * d + d) + 6 * d, 0)]
        if self.family == "hunyuan":
            double_mod, single_mod = 2 * (6 * d * d + 6 * d), 3 * d * d + 3 * d  # modulation Linear layers
            double = 2 * (3 * d * d + d * d + 2 * d * f) + double_mod + 2 * 10 * d  # img + txt streams
            single = d * (3 * d + f) + (d + f) * d + single_mod + 4 * d
            skipped_double, skipped_single = (double_mod, single_mod) if self.framepack else (0, 0)
            return [(self.double_blocks, double, skipped_double),
                    (self.layers - self.double_blocks, single, skipped_single)]
        # ltx: self-attention, cross-attention (text already projected to d), FFN, scale-shift table
        return [(self.layers, 8 * (d * d + d) + 2 * d * f + f + d + 6 * d, 0)]

    def swapped_blocks(self, blocks_to_swap: int) -> list[int]:
        """Blocks of each kind that musubi's ``enable_block_swap`` keeps in CPU RAM. HunyuanVideo / FramePack
        (``hunyuan_model/models.py``, ``frame_pack/hunyuan_video_packed.py``): N // 2 double-stream and
        (N - N // 2) x 2 + 1 single-stream blocks; the others swap N blocks of their one kind."""
        kinds = self.block_kinds()
        if blocks_to_swap <= 0:
            return [0] * len(kinds)
        if self.family == "hunyuan":
            double = blocks_to_swap // 2
            return [min(double, kinds[0][0]), min((blocks_to_swap - double) * 2 + 1, kinds[1][0])]
        return [min(blocks_to_swap, kinds[0][0])]

    def resident_block_params(self, blocks_to_swap: int, *, musubi_swap: bool = True) -> tuple[float, float]:
        """(parameters of the blocks left on the GPU, of which musubi's --fp8_scaled keeps in bf16).

        ``musubi_swap`` follows musubi's split by kind; otherwise N average blocks are swapped (diffusion-pipe)."""
        kinds = self.block_kinds()
        if not musubi_swap:
            kept = (self.layers - min(blocks_to_swap, self.layers)) / self.layers
            return (sum(c * p for c, p, _ in kinds) * kept, sum(c * s for c, _, s in kinds) * kept)
        swapped = self.swapped_blocks(blocks_to_swap)
        resident = [(count - gone, params, skipped) for (count, params, skipped), gone in zip(kinds, swapped, strict=True)]
        return (float(sum(c * p for c, p, _ in resident)), float(sum(c * s for c, _, s in resident)))

    def largest_block_params(self) -> int:
        return max(params for _, params, _ in self.block_kinds())

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
            # token refiner: input projection, timestep MLP, pooled-text projection, 2 blocks (qkv, proj, 4x MLP,
            # adaLN 2d, LayerNorms); time, guidance and CLIP-L (768) embedders; final adaLN + projection; patches
            refiner = 2 * self.text_dim * d + 256 * d + 2 * d * d + 2 * (14 * d * d + 13 * d)
            embedders = 2 * (256 * d + d * d + 2 * d) + 768 * d + d * d + 2 * d
            final = 2 * d * d + 2 * d + d * 64 + 64
            patches = self.in_channels * 4 * d + d
            # FramePack: SigLIP projection (1152 -> 3d -> d) and clean-latent patch embedders (1x2x2, 2x4x4, 4x8x8)
            packed = (1152 * 3 * d + 3 * d * d + 4 * d) + (self.in_channels * d * (4 + 32 + 256) + 3 * d)
            return refiner + embedders + final + patches + (packed if self.framepack else 0)
        return 128 * d + self.text_dim * d + d * d + 256 * d + d * 6 * d + d * 128

    def total_params(self) -> int:
        return self.blocks_params() + self.other_params()

    def lora_params_per_rank(self) -> int:
        """LoRA parameters per unit of rank: sum of (in + out) over the adapted Linear layers."""
        d, f = self.dim, self.ffn
        if self.family == "wan":
            per_block = 8 * 2 * d + 2 * (d + f) + (2 * 2 * d if self.i2v_cross_attn else 0)
            return self.layers * per_block
        if self.family == "hunyuan" and self.framepack:  # separate to_q/k/v (+ add_q/k/v), proj_mlp, proj_out
            double = 2 * (3 * 2 * d + 2 * d + (d + f) + (f + d))
            single = 3 * 2 * d + (d + f) + (d + f + d)
            return self.double_blocks * double + (self.layers - self.double_blocks) * single
        if self.family == "hunyuan":
            double = 2 * ((d + 3 * d) + 2 * d + (d + f) + (f + d))
            single = (d + 3 * d + f) + (d + f + d)
            return self.double_blocks * double + (self.layers - self.double_blocks) * single
        return self.layers * (8 * 2 * d + 2 * (d + f))

    # Tokens ----------------------------------------------------------------------------------------------------

    def context_tokens(self, *, batch: int = 1, split_attn: bool = False) -> int:
        """Non-video tokens every block processes with the video tokens (0 where the text is cross-attended)."""
        if self.family != "hunyuan":
            return 0
        if not self.framepack:
            return HV_TEXT_TOKENS
        cropped = batch == 1 and not split_attn  # hunyuan_video_packed.py forward crops the padded LLM states
        return SIGLIP_TOKENS + (FRAMEPACK_CAPTION_TOKENS if cropped else FRAMEPACK_TEXT_PAD)

    def latent_frames(self, frames: int) -> int:
        return (max(frames, 1) - 1) // self.temporal_stride + 1

    def tokens(self, frames: int, width: int, height: int) -> int:
        """Transformer tokens of one sample: latent frames x (H / stride) x (W / stride)."""
        return self.latent_frames(frames) * (height // self.spatial_stride) * (width // self.spatial_stride)


_WAN_1_3B = ModelShape("wan", dim=1536, ffn=8960, layers=30)
_WAN_14B = ModelShape("wan", dim=5120, ffn=13824, layers=40)
_HUNYUAN = ModelShape("hunyuan", dim=3072, ffn=4 * 3072, layers=60, double_blocks=20)
_FRAMEPACK = ModelShape("hunyuan", dim=3072, ffn=4 * 3072, layers=60, double_blocks=20, framepack=True)

SHAPES: dict[str, ModelShape] = {
    "wan2.1-t2v-1.3b": _WAN_1_3B,
    "wan2.1-t2v-14b": _WAN_14B,
    "wan2.1-i2v-14b": ModelShape("wan", dim=5120, ffn=13824, layers=40, in_channels=36, i2v_cross_attn=True),
    "wan2.2-t2v-a14b": ModelShape("wan", dim=5120, ffn=13824, layers=40, per_token_modulation=True),
    "wan2.2-i2v-a14b": ModelShape("wan", dim=5120, ffn=13824, layers=40, in_channels=36, per_token_modulation=True),
    "hunyuan-video": _HUNYUAN,
    "framepack": _FRAMEPACK,
    "ltx-video": ModelShape("ltx", dim=2048, ffn=8192, layers=28, in_channels=128, spatial_stride=32,
                            temporal_stride=8),
}

# Text tokens the transformer cross-attends to (Wan pads the umT5 context to text_len = 512; LTX's T5 context 128).
# HunyuanVideo / FramePack join their context to the video tokens instead (ModelShape.context_tokens).
TEXT_TOKENS = {"wan": 512, "hunyuan": 0, "ltx": 128}
HV_TEXT_TOKENS = 256  # hunyuan_model/text_encoder.py: LLM states padded to text_len = 256
SIGLIP_TOKENS = 729  # FramePack image embeddings: SigLIP patch14 at 384 px, 27 x 27
FRAMEPACK_CAPTION_TOKENS = 128  # a typical caption (cropped at batch 1)
FRAMEPACK_TEXT_PAD = 512  # fpack_cache_text_encoder_outputs.py crop_or_pad_yield_mask(length=512)


def shape_of(arch: Architecture) -> ModelShape:
    try:
        return SHAPES[arch.id]
    except KeyError:
        raise KeyError(f"no VRAM shape for {arch.id!r}; known: {', '.join(SHAPES)}") from None


def framepack_tokens(shape: ModelShape, width: int, height: int, window: int) -> int:
    """Tokens of one FramePack section: the window of latent frames plus its clean-latent context.

    fpack_train_network.py trains ``latent_window_size`` latent frames next to clean latents at 1x (1 start + 1
    previous frame, 1x2x2 patches), 2x (2 frames, 2x4x4 patches) and 4x (16 frames, 4x8x8 patches); the 2x and 4x
    latents are padded up to their kernel first (hunyuan_video_packed.py ``process_input_hidden_states``).
    """
    lat_h, lat_w = height // (shape.spatial_stride // 2), width // (shape.spatial_stride // 2)  # VAE 8x8

    def patches(frames: int, kernel_t: int, kernel_s: int) -> int:
        return -(-frames // kernel_t) * -(-lat_h // kernel_s) * -(-lat_w // kernel_s)

    return patches(window + 2, 1, 2) + patches(2, 2, 4) + patches(16, 4, 8)
