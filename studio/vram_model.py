"""Peak GPU memory of a LoRA training run, from first principles, calibrated on the real trainer.

The model adds up what lives on the GPU at the peak of a training step (docs/vram.md explains each term and the
measurements behind the constants):

* base weights: the blocks kept on the GPU (all but ``blocks_to_swap``) plus embeddings/head, at 2 bytes per
  parameter (bf16/fp16) or 1 (fp8). musubi's ``--fp8_base`` casts the whole DiT to e4m3fn; ``--fp8_scaled``
  quantises only the blocks' Linear weights (plus a fp32 scale per 64 values); diffusion-pipe's
  ``transformer_dtype = 'float8'`` keeps norms, embeddings and modulation in the model dtype;
* LoRA: parameters + optimizer states (+ the gradients that exist at the peak). musubi keeps LoRA in fp32
  (trainer_base.py ``network_dtype = torch.float32``), diffusion-pipe in the model dtype (``[adapter] dtype``);
* activations: per token of the largest sample. With gradient checkpointing each block saves its bf16 input
  (2 bytes x dim) and one block at a time is recomputed (a workspace of W_d x dim + W_f x ffn bytes per token);
  without it every block keeps its whole activation set (A_d x dim + A_f x ffn per token). Wan2.2's per-token
  fp32 time modulation adds E_d x dim. Tokens = latent frames x (H/16) x (W/16) (VAE 4x temporal, 8x8 spatial,
  2x2 patches), plus the context tokens HunyuanVideo / FramePack join to them, times the batch size;
* HunyuanVideo with musubi's sdpa and no --split_attn: a (batch, 1, L, L) bool attention mask over video + text
  tokens, which sdpa turns into a bf16 bias in every attention call (3 bytes per element);
* FramePack with fp8 base weights but not fp8_scaled and no block swap: the loader puts the bf16 model on the GPU
  before the trainer casts it to fp8, so the card must hold that first;
* fp8: the block being computed holds bf16 copies of its fp8 weights (autocast casts them for every matmul);
* a fixed workspace (cuBLAS, RoPE tables, text context), the allocator's slack with
  ``expandable_segments:True`` (how the studio launches trainers) and the CUDA context.

The constants in MUSUBI were fitted by ``benchmarks/vram_fit.py`` to peaks measured with
``benchmarks/vram_calibrate.py`` on musubi-tuner's own Wan training step (H100, torch 2.11); its HunyuanVideo /
FramePack steps (measured the same way) fit the two ``hunyuan_*`` constants, everything else about them comes from
musubi's code (block kinds, swap split, fp8_scaled exclusions, context tokens, mask). diffusion-pipe and LTX reuse
the constants with the differences named in DIFFUSION_PIPE and ``calibration_note``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from studio.architectures import Architecture, get_architecture
from studio.vram_shapes import TEXT_TOKENS, ModelShape, framepack_tokens, shape_of

GIB = 1024**3
LOW_MEMORY_OPTIMIZERS = {"musubi_tuner": "adamw8bit", "diffusion_pipe": "adamw8bitkahan"}


@dataclass(frozen=True)
class Constants:
    """Bytes per token and fixed terms; see the module docstring for what each multiplies."""

    checkpoint_bytes: float = 2.0  # bf16 block input saved per block (theory: the block's x is bf16)
    work_d: float = 45.6  # one block's recompute + backward workspace, bytes per token per dim ...
    work_f: float = 8.84  # ... and per FFN unit
    nogc_d: float = 47.3  # every block's activations without checkpointing, per token per dim ...
    nogc_f: float = 3.62  # ... and per FFN unit
    wan22_d: float = 56.9  # Wan2.2 fp32 per-token modulation (e, e0 and the block's copy), per token per dim
    overhead_gib: float = 0.10  # cuBLAS workspace, RoPE/frequency tables, text context
    grad_fraction: float = 0.10  # share of the LoRA gradients allocated at the peak (the backward is under way)
    lora_bytes: float = 4.0  # bytes per LoRA parameter (fp32)
    activation_scale: float = 1.0
    slack_fraction: float = 0.03  # allocator slack over activations with expandable_segments:True
    fp8_slack: float = 1.0  # fp8: bf16 weight copies made and freed for every matmul leave this much unused
    context_gib: float = 0.8  # CUDA context + library handles (H100, torch 2.11: 0.75-0.83 GiB)
    # musubi's HunyuanVideo / FramePack blocks (fitted on benchmarks/data/vram_hunyuan_h100.json): bytes per token
    # relative to the Wan-fitted terms, and the allocator slack over their activations (their large single tensors,
    # e.g. linear1's 7 x dim output, fragment the cache more than Wan's).
    hunyuan_activation_scale: float = 0.916
    hunyuan_slack_fraction: float = 0.103


MUSUBI = Constants()
# diffusion-pipe: LoRA in bf16 (adapter dtype = model dtype) and every activation path in bf16 (models/wan/model.py
# has no .float() residual). Its author's measured slope, 3.5 GB per 5,120 tokens on Wan 14B (diffusion-pipe #153),
# is 0.89x musubi's measured 0.763 MB/token; DeepSpeed's pipeline engine adds buffers of its own.
DIFFUSION_PIPE = replace(MUSUBI, lora_bytes=2.0, activation_scale=0.9, overhead_gib=0.6,
                         hunyuan_activation_scale=1.0, hunyuan_slack_fraction=MUSUBI.slack_fraction)  # not measured

# Optimizer state bytes per LoRA parameter, by LoRA dtype width (fp32 musubi, bf16 diffusion-pipe).
OPTIMIZER_STATE_BYTES = {
    "adamw": lambda width: 2 * width,  # exp_avg + exp_avg_sq in the parameter dtype
    "adamw8bit": lambda width: 2.03,  # bitsandbytes: two uint8 states + fp32 absmax per 256 values
    "adamw8bitkahan": lambda width: 2.03 + 2,  # 8-bit states + a bf16 Kahan compensation buffer
    "adamw_optimi": lambda width: 2 * width + 2,  # optimi AdamW: states in param dtype + Kahan buffer
    "adafactor": lambda width: 0.1 * width,  # factored second moment: rows + columns only
    "prodigy": lambda width: 4 * width,  # exp_avg, exp_avg_sq, s, p0
}


@dataclass(frozen=True)
class MemorySettings:
    """What the memory model reads from a preset (kept separate so the calibration can build it directly)."""

    trainer: str
    arch_id: str
    frames: int
    width: int
    height: int
    batch: int = 1
    rank: int = 32
    optimizer: str = "adamw8bit"
    fp8: bool = False
    fp8_scaled: bool = False  # musubi --fp8_scaled; applies when fp8 is on (auto-fit may turn fp8 on)
    grad_ckpt: bool = True
    ckpt_offload: bool = False  # musubi --gradient_checkpointing_cpu_offload / diffusion-pipe 'unsloth'
    blocks_to_swap: int = 0
    both_experts_on_gpu: bool = False  # musubi Wan2.2 with --dit_high_noise and no --offload_inactive_dit
    window: int = 9  # FramePack latent window
    attention: str = "sdpa"  # musubi --sdpa / --flash_attn / --xformers / --sage_attn / --flash3
    split_attn: bool = False  # musubi --split_attn

    @property
    def arch(self) -> Architecture:
        return get_architecture(self.arch_id)

    def tokens(self) -> int:
        shape = shape_of(self.arch)
        if self.arch.family == "framepack":
            return framepack_tokens(shape, self.width, self.height, self.window)
        return shape.tokens(self.frames, self.width, self.height)

    def sequence_tokens(self) -> int:
        """Tokens each block processes for one sample: the video tokens and any joined context tokens."""
        return self.tokens() + shape_of(self.arch).context_tokens(batch=self.batch, split_attn=self.split_attn)


# Terms --------------------------------------------------------------------------------------------------------


def constants_for(trainer: str) -> Constants:
    return DIFFUSION_PIPE if trainer == "diffusion_pipe" else MUSUBI


def weight_bytes(ms: MemorySettings, shape: ModelShape) -> float:
    """Base weights resident on the GPU (musubi swaps blocks by kind: ModelShape.swapped_blocks)."""
    musubi = ms.trainer == "musubi_tuner"
    resident, skipped = shape.resident_block_params(ms.blocks_to_swap, musubi_swap=musubi)
    if not ms.fp8:
        block_bytes, other_bytes = 2.0, 2.0
    elif musubi and not ms.fp8_scaled:
        block_bytes, other_bytes = 1.0, 1.0  # model.to(float8_e4m3fn): everything, embeddings included
    else:
        block_bytes, other_bytes = 1.0 + 4 / 64, 2.0  # quantised Linear weights (+ scales); the rest stays bf16
    if not (musubi and ms.fp8 and ms.fp8_scaled):
        skipped = 0.0  # only musubi's fp8_scaled exclusion list leaves block weights (FramePack's modulation) bf16
    total = (resident - skipped) * block_bytes + skipped * 2.0 + shape.other_params() * other_bytes
    return total * (2 if ms.both_experts_on_gpu else 1)


def load_peak_bytes(ms: MemorySettings, shape: ModelShape) -> float:
    """GPU memory while loading, where it exceeds the resident weights: FramePack's ``load_packed_model`` ignores
    ``dit_weight_dtype`` and loads the bf16 file onto the GPU when no block is swapped; plain ``--fp8_base`` casts
    it afterwards (trainer_base ``_prepare_with_accelerator``), fp8_scaled quantises it tensor by tensor."""
    if ms.trainer == "musubi_tuner" and shape.framepack and ms.fp8 and not ms.fp8_scaled and ms.blocks_to_swap == 0:
        return shape.total_params() * 2.0
    return 0.0


def attention_mask_bytes(ms: MemorySettings, shape: ModelShape) -> float:
    """HunyuanVideo with --sdpa and no --split_attn (hunyuan_model/models.py forward): a bool (batch, 1, L, L) mask
    over video + padded text tokens, converted by sdpa into a bf16 bias for each attention call: 3 bytes/element.
    Measured: 0.88 GiB between split and unsplit attention at L = 18,616 (3 x L^2 = 0.97 GiB)."""
    if ms.trainer != "musubi_tuner" or shape.family != "hunyuan" or shape.framepack:
        return 0.0
    if ms.attention != "sdpa" or ms.split_attn:
        return 0.0
    return 3.0 * ms.sequence_tokens() ** 2 * ms.batch


def lora_bytes(ms: MemorySettings, shape: ModelShape, c: Constants) -> tuple[float, float]:
    """(parameters + gradients at the peak, optimizer states) in bytes."""
    params = shape.lora_params_per_rank() * ms.rank
    state = OPTIMIZER_STATE_BYTES.get(ms.optimizer, OPTIMIZER_STATE_BYTES["adamw"])(c.lora_bytes)
    return params * c.lora_bytes * (1 + c.grad_fraction), params * state


def activation_bytes(ms: MemorySettings, shape: ModelShape, c: Constants) -> float:
    tokens = ms.sequence_tokens() * ms.batch
    d, f = shape.dim, shape.ffn
    if ms.grad_ckpt:
        saved = 0.0 if ms.ckpt_offload else c.checkpoint_bytes * shape.layers * d
        per_token = saved + c.work_d * d + c.work_f * f
    else:
        per_token = shape.layers * (c.nogc_d * d + c.nogc_f * f)
    if shape.per_token_modulation:
        per_token += c.wan22_d * d
    family_scale = c.hunyuan_activation_scale if shape.family == "hunyuan" else 1.0
    return tokens * per_token * c.activation_scale * family_scale


def dequant_bytes(ms: MemorySettings, shape: ModelShape) -> float:
    """bf16 copies of fp8 block weights held for the backward: one block when checkpointing, else every block."""
    if not ms.fp8:
        return 0.0
    blocks = 1 if ms.grad_ckpt else shape.layers
    return blocks * shape.block_params() * 2.0


def text_bytes(ms: MemorySettings, shape: ModelShape) -> float:
    """Text context kept per sample for every block's cross-attention (bf16)."""
    return TEXT_TOKENS[shape.family] * shape.dim * 2.0 * ms.batch


def slack_fraction(shape: ModelShape, c: Constants) -> float:
    return c.hunyuan_slack_fraction if shape.family == "hunyuan" else c.slack_fraction


def breakdown_of(ms: MemorySettings) -> dict[str, float]:
    """Each term in GiB; the sum is the estimated peak as nvidia-smi shows it."""
    shape = shape_of(ms.arch)
    c = constants_for(ms.trainer)
    lora, states = lora_bytes(ms, shape, c)
    activations = activation_bytes(ms, shape, c)
    dequant = dequant_bytes(ms, shape)
    mask = attention_mask_bytes(ms, shape)
    parts = {
        "base weights": weight_bytes(ms, shape) / GIB,
        "LoRA parameters + gradients": lora / GIB,
        "optimizer states": states / GIB,
        "activations": activations / GIB,
        **({"sdpa attention mask": mask / GIB} if mask else {}),  # only where musubi builds one (HunyuanVideo)
        "fp8 dequantised weights": dequant / GIB,
        "workspace": c.overhead_gib + text_bytes(ms, shape) / GIB,
        "allocator slack": (slack_fraction(shape, c) * activations + c.fp8_slack * dequant) / GIB,
        "CUDA context": c.context_gib,
    }
    loading = (load_peak_bytes(ms, shape) / GIB + c.overhead_gib + c.context_gib) if load_peak_bytes(ms, shape) else 0
    if loading > sum(parts.values()):  # the load, not the training step, sets the peak
        parts[LOAD_TERM] = loading - sum(parts.values())
    return parts


LOAD_TERM = "bf16 weights while loading (before the fp8 cast)"
NOT_ALLOCATED_IN_STEP = ("allocator slack", "CUDA context", LOAD_TERM)


def peak_allocated_gib(ms: MemorySettings) -> float:
    """What ``torch.cuda.max_memory_allocated`` reports over the training steps (no slack, no context, not the
    load): for the calibration tables."""
    parts = breakdown_of(ms)
    return sum(v for k, v in parts.items() if k not in NOT_ALLOCATED_IN_STEP)


def host_ram_gib(ms: MemorySettings) -> float:
    """CPU RAM for the weights: the loaders read the whole bf16 model into RAM first when blocks are swapped
    (musubi ``loading_device = cpu``; diffusion-pipe always loads on the CPU), then swapped blocks stay there."""
    shape = shape_of(ms.arch)
    full = shape.total_params() * 2.0 * (2 if ms.arch.two_experts and ms.both_experts_on_gpu else 1)
    loads_on_cpu = ms.blocks_to_swap > 0 or ms.trainer == "diffusion_pipe"
    return (full if loads_on_cpu else 0.0) / GIB + 4.0  # + data loader, Python, CUDA host allocations


def calibration_note(ms: MemorySettings) -> str:
    arch = ms.arch
    if ms.trainer == "musubi_tuner" and arch.family in ("wan", "hunyuan", "framepack"):
        return f"calibrated: musubi-tuner {arch.label} training step measured on the GPU (docs/vram.md)"
    if arch.family == "wan":
        return ("Wan constants measured on musubi-tuner, scaled to diffusion-pipe's bf16 LoRA and its published "
                "activation slope (docs/vram.md)")
    return (f"first principles for {arch.label} with the constants measured on Wan (same DiT building blocks); "
            "not measured on this architecture")
