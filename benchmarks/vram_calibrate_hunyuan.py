"""HunyuanVideo and FramePack drivers for ``benchmarks/vram_calibrate.py`` (musubi-tuner's own model code).

Each driver reproduces what the training script does between loading the DiT and ``optimizer.step()``, with the
same two substitutions as the Wan driver (random weights of the real names/shapes instead of the checkpoint file,
random cache tensors of the shapes the cache scripts write). Trainer files followed (musubi-tuner v0.3.4):

* HunyuanVideo, ``hv_train_network.py``: ``load_transformer`` -> ``hunyuan_model/models.py`` ``load_transformer``
  (``load_dit_model`` under ``init_empty_weights`` with ``dtype = dit_weight_dtype``: e4m3fn with ``--fp8_base``,
  which is the only fp8 mode, ``main()`` forces ``fp8_scaled = False``); ``call_dit`` (guidance vector, RoPE from
  ``get_rotary_pos_embed_by_shape``, ``requires_grad_`` on the noisy input and guidance with checkpointing, the
  DiT under autocast, target ``noise - latents``); LoRA ``networks/lora.py`` (``MMDoubleStreamBlock`` /
  ``MMSingleStreamBlock``, modulation excluded). Text cache (``cache_text_encoder_outputs.py``,
  ``hunyuan_model/text_encoder.py``): LLM states padded to 256 tokens x 4096 with their mask, CLIP-L 768.
* FramePack, ``fpack_train_network.py``: ``load_transformer`` -> ``frame_pack/hunyuan_video_packed.py``
  ``load_packed_model`` (the model is built in the file's dtype, bf16; ``--fp8_scaled`` quantises the blocks'
  Linear weights except names containing "norm" while loading; plain ``--fp8_base`` is the ``transformer.to(e4m3fn)``
  cast in ``trainer_base._prepare_with_accelerator``); ``call_dit`` (distilled guidance, one section: the window's
  latents, clean latents 1x (start + 1 history frame), 2x (2 frames) and 4x (16 frames) with their indices, SigLIP
  image embeddings 729 x 1152, LLaMA states cropped by the model to the caption); LoRA
  ``networks/lora_framepack.py``. Section shapes and indices as ``fpack_cache_latents.py`` writes them
  (default, non-vanilla sampling; the section next to the start frame, padding 0).

Both share ``trainer_base.py``'s order (``_load_dit_and_swap``, ``_build_network``, ``_build_optimizer_and_dataloader``,
``_prepare_with_accelerator``), implemented once in ``vram_calibrate.prepare_for_training``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from vram_calibrate import TEXT_TOKENS, Setting, prepare_for_training, random_state_dict


def _hv(name: str, frames: int, width: int, height: int, **kw: Any) -> Setting:
    return Setting(name=name, task="hv", frames=frames, width=width, height=height, **kw)


def _fp(name: str, width: int, height: int, *, window: int = 9, **kw: Any) -> Setting:
    """One FramePack section; ``frames`` is the shortest clip that has one (window x 4 + 1)."""
    return Setting(name=name, task="framepack", frames=window * 4 + 1, width=width, height=height, window=window, **kw)


FP8, FP8S = {"fp8_base": True}, {"fp8_base": True, "fp8_scaled": True}
# Run with --alloc-conf expandable_segments:True (the studio's setting). Most telling first: --budget-s skips the
# tail. "hunyuan" fits HunyuanVideo's two constants (benchmarks/vram_fit.py fit_hunyuan); "hunyuan-validate" is
# held out: longer clips (the sdpa mask grows with L^2), 720p, other FramePack buckets / windows, batch 2, offload.
SUITES: dict[str, list[Setting]] = {
    "hunyuan": [
        _hv("hv-33f-512sq-fp8", 33, 512, 512, **FP8),
        _fp("fp-37f-640sq-fp8s", 640, 640, **FP8S),
        _hv("hv-33f-544x960-fp8", 33, 960, 544, **FP8),
        _fp("fp-37f-640sq-fp8s-swap23", 640, 640, blocks_to_swap=23, **FP8S),
        _hv("hv-33f-544x960-fp8-swap20", 33, 960, 544, blocks_to_swap=20, **FP8),
        _fp("fp-37f-640sq-bf16", 640, 640),
        _hv("hv-33f-512sq-bf16", 33, 512, 512),
        _hv("hv-33f-544x960-fp8-split", 33, 960, 544, split_attn=True, **FP8),
        _hv("hv-33f-512sq-fp8-swap20", 33, 512, 512, blocks_to_swap=20, **FP8),
        _fp("fp-37f-640sq-fp8", 640, 640, **FP8),
        _hv("hv-25f-544x960-fp8-swap20", 25, 960, 544, blocks_to_swap=20, **FP8),
    ],
    "hunyuan-validate": [
        _hv("v-hv-49f-544x960-fp8-swap30", 49, 960, 544, blocks_to_swap=30, **FP8),
        _fp("v-fp-37f-960x544-fp8s-swap23", 960, 544, blocks_to_swap=23, **FP8S),
        _hv("v-hv-25f-1280x720-fp8-swap20", 25, 1280, 720, blocks_to_swap=20, **FP8),
        _hv("v-hv-65f-512sq-fp8-swap20", 65, 512, 512, blocks_to_swap=20, **FP8),
        _fp("v-fp-21f-640sq-w5-fp8s", 640, 640, window=5, **FP8S),
        _hv("v-hv-33f-512sq-fp8-b2", 33, 512, 512, batch=2, **FP8),
        _fp("v-fp-37f-640sq-fp8s-split-b2", 640, 640, batch=2, split_attn=True, **FP8S),
        _hv("v-hv-1f-1024sq-fp8", 1, 1024, 1024, **FP8),
        _fp("v-fp-37f-640sq-fp8-swap20", 640, 640, blocks_to_swap=20, **FP8),
        _hv("v-hv-33f-544x960-fp8-offload", 33, 960, 544, grad_ckpt_offload=True, **FP8),
        _fp("v-fp-37f-640sq-bf16-swap30", 640, 640, blocks_to_swap=30),
        _hv("v-hv-33f-512sq-fp8-r64-adamw", 33, 512, 512, rank=64, optimizer="adamw", **FP8),
    ],
}

HV_TEXT_LEN = 256  # hunyuan_model/text_encoder.py load_text_encoder_1: text_len = 256 (padding="max_length")
SIGLIP_TOKENS = 729  # sigclip_vision_patch14_384: (384 / 14)^2 = 27 x 27 patch embeddings
SIGLIP_DIM = 1152
# frame_pack/hunyuan_video_packed.py load_packed_model: the constructor arguments it passes (the file has no config).
FRAMEPACK_KWARGS: dict[str, Any] = dict(
    attention_head_dim=128, guidance_embeds=True, has_clean_x_embedder=True, has_image_proj=True, image_proj_dim=1152,
    in_channels=16, mlp_ratio=4.0, num_attention_heads=24, num_layers=20, num_refiner_layers=2, num_single_layers=40,
    out_channels=16, patch_size=2, patch_size_t=1, pooled_projection_dim=768, qk_norm="rms_norm",
    rope_axes_dim=(16, 56, 56), rope_theta=256.0, text_embed_dim=4096,
)


def import_hunyuan(trainer_src: str) -> dict[str, Any]:
    """Import the musubi-tuner modules the HunyuanVideo / FramePack drivers use."""
    src = Path(trainer_src).resolve()
    if not (src / "musubi_tuner" / "frame_pack" / "hunyuan_video_packed.py").is_file():
        raise SystemExit(f"{src} is not musubi-tuner's src folder (no musubi_tuner/frame_pack/hunyuan_video_packed.py)")
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    from musubi_tuner.frame_pack import hunyuan_video_packed as packed
    from musubi_tuner.hunyuan_model import models as hv_models
    from musubi_tuner.modules import fp8_optimization_utils as fp8
    from musubi_tuner.modules.custom_offloading_utils import BlockSwapConfig
    from musubi_tuner.networks import lora, lora_framepack

    return {"hv_models": hv_models, "packed": packed, "lora": lora, "lora_framepack": lora_framepack, "fp8": fp8,
            "BlockSwapConfig": BlockSwapConfig, "framepack_kwargs": dict(FRAMEPACK_KWARGS)}


# Token counts --------------------------------------------------------------------------------------------------


def hv_video_tokens(setting: Setting) -> int:
    """VAE 4x temporal (first frame kept), 8x8 spatial, then 1x2x2 patches (hunyuan_model/models.py PatchEmbed)."""
    return ((setting.frames - 1) // 4 + 1) * (setting.height // 16) * (setting.width // 16)


def framepack_section_tokens(setting: Setting) -> int:
    """One section: window + clean 1x (2 frames) at 1x2x2 patches, clean 2x (2 frames) at 2x4x4, clean 4x
    (16 frames) at 4x8x8, each padded to its kernel (``process_input_hidden_states``, ``pad_for_3d_conv``)."""
    lat_h, lat_w = setting.height // 8, setting.width // 8

    def patches(frames: int, kt: int, ks: int) -> int:
        return -(-frames // kt) * -(-lat_h // ks) * -(-lat_w // ks)

    return patches(setting.window + 2, 1, 2) + patches(2, 2, 4) + patches(16, 4, 8)


def tokens_of(setting: Setting) -> int:
    return framepack_section_tokens(setting) if setting.task == "framepack" else hv_video_tokens(setting)


def context_tokens(setting: Setting) -> int:
    """Non-video tokens in every block's sequence: HV's padded LLM text; FramePack's SigLIP tokens + the caption."""
    return SIGLIP_TOKENS + TEXT_TOKENS if setting.task == "framepack" else HV_TEXT_LEN


# Model loading -------------------------------------------------------------------------------------------------


def _weight_dtypes(setting: Setting, torch: Any) -> tuple[Any, Any]:
    """(file dtype, trainer_base's dit_weight_dtype): e4m3fn with fp8_base, None with fp8_scaled, else bf16."""
    file_dtype = getattr(torch, setting.checkpoint_dtype)
    if not setting.fp8_base:
        return file_dtype, file_dtype
    return file_dtype, (None if setting.fp8_scaled else torch.float8_e4m3fn)


def load_hunyuan(mods: dict[str, Any], setting: Setting, device: Any, torch: Any) -> Any:
    """hunyuan_model/models.py load_transformer, with a random state dict in the requested dtype (what
    ``load_safetensors(..., dtype=dtype)`` returns) instead of the file."""
    from accelerate import init_empty_weights

    _, weight_dtype = _weight_dtypes(setting, torch)
    loading_device = torch.device("cpu") if setting.blocks_to_swap > 0 else device
    factor_kwargs = {"device": loading_device, "dtype": weight_dtype, "attn_mode": "torch",  # --sdpa
                     "split_attn": setting.split_attn}
    with init_empty_weights():
        model = mods["hv_models"].load_dit_model(text_states_dim=4096, text_states_dim_2=768, in_channels=16,
                                                 out_channels=16, factor_kwargs=factor_kwargs)
    state = random_state_dict(model, loading_device, weight_dtype, torch)
    model.load_state_dict(state, strict=True, assign=True)
    return model


def load_framepack(mods: dict[str, Any], setting: Setting, device: Any, torch: Any) -> Any:
    """frame_pack/hunyuan_video_packed.py load_packed_model with a random bf16 state dict: fp8_scaled quantises it
    on the GPU (``optimize_state_dict_with_fp8`` with the module's target/exclude keys) and monkey-patches the
    Linear layers, as ``load_safetensors_with_lora_and_fp8`` + ``apply_fp8_monkey_patch`` do."""
    from accelerate import init_empty_weights

    packed, fp8 = mods["packed"], mods["fp8"]
    file_dtype, _ = _weight_dtypes(setting, torch)
    loading_device = torch.device("cpu") if setting.blocks_to_swap > 0 else device
    with init_empty_weights():
        model = packed.HunyuanVideoTransformer3DModelPacked(**mods["framepack_kwargs"], attn_mode="torch",
                                                            split_attn=setting.split_attn)
    if setting.fp8_scaled:
        state = random_state_dict(model, device, file_dtype, torch)
        state = fp8.optimize_state_dict_with_fp8(state, device, packed.FP8_OPTIMIZATION_TARGET_KEYS,
                                                 packed.FP8_OPTIMIZATION_EXCLUDE_KEYS,
                                                 move_to_device=loading_device == device)
        fp8.apply_fp8_monkey_patch(model, state, use_scaled_mm=False)
        state = {k: v.to(loading_device) for k, v in state.items()}
    else:
        state = random_state_dict(model, loading_device, file_dtype, torch)
    model.load_state_dict(state, strict=True, assign=True)
    return model


def build(mods: dict[str, Any], setting: Setting, device: Any, torch: Any) -> tuple[Any, Any, Any]:
    """DiT + LoRA + optimizer in trainer_base.train()'s order; (model, network, optimizer)."""
    framepack = setting.task == "framepack"
    model = (load_framepack if framepack else load_hunyuan)(mods, setting, device, torch)
    _, weight_dtype = _weight_dtypes(setting, torch)
    # _prepare_with_accelerator: "casting model to fp8" when dit_weight_dtype differs from the bf16 dit_dtype
    # (a no-op for HV, loaded in fp8 already; the plain --fp8_base path for FramePack).
    cast_to = weight_dtype if setting.fp8_base and not setting.fp8_scaled else None
    network_module = mods["lora_framepack"] if framepack else mods["lora"]
    return prepare_for_training(model, setting, device, torch, network_module=network_module,
                                swap_config_class=mods["BlockSwapConfig"], cast_to=cast_to)


# Training step -------------------------------------------------------------------------------------------------


def _backward_and_step(model_pred: Any, target: Any, network: Any, optimizer: Any, torch: Any) -> float:
    """trainer_base compute_loss (MSE in network_dtype fp32, weighting none) + the loop's backward/clip/step."""
    loss = torch.nn.functional.mse_loss(model_pred.to(torch.float32), target, reduction="none").mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(network.get_trainable_params(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _noisy(shape: tuple[int, ...], device: Any, torch: Any) -> tuple[Any, Any, Any, Any]:
    """latents, noise, noisy input and timesteps (flow matching: x_t = (1 - t) x + t n, timesteps t x 1000)."""
    latents = torch.randn(*shape, device=device)  # call_dit casts to network_dtype (fp32)
    noise = torch.randn_like(latents)
    sigmas = torch.rand(shape[0], device=device).view(-1, 1, 1, 1, 1)
    return latents, noise, (1 - sigmas) * latents + sigmas * noise, sigmas.flatten() * 1000


def _text_mask(batch: int, length: int, device: Any, torch: Any, dtype: Any) -> Any:
    mask = torch.zeros(batch, length, dtype=dtype, device=device)
    mask[:, :min(TEXT_TOKENS, length)] = 1
    return mask


def train_step_hunyuan(objects: tuple[Any, Any, Any], setting: Setting, device: Any, torch: Any,
                       mods: dict[str, Any]) -> float:
    """hv_train_network.py call_dit + the trainer loop."""
    model, network, optimizer = objects
    b = setting.batch
    lat_f = (setting.frames - 1) // 4 + 1
    latents, noise, noisy, timesteps = _noisy((b, 16, lat_f, setting.height // 8, setting.width // 8), device, torch)
    guidance = torch.full((b,), 1.0, device=device)  # args.guidance_scale default 1.0
    if setting.grad_ckpt:
        noisy.requires_grad_(True)
        guidance.requires_grad_(True)
    freqs_cos, freqs_sin = mods["hv_models"].get_rotary_pos_embed_by_shape(model, latents.shape[2:])
    llm = torch.randn(b, HV_TEXT_LEN, 4096, device=device, dtype=torch.float16)  # cached in the TE dtype, fp16
    llm_mask = _text_mask(b, HV_TEXT_LEN, device, torch, torch.long)
    clip_l = torch.randn(b, 768, device=device, dtype=torch.float16)
    network.on_step_start()
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        pred = model(noisy, timesteps, text_states=llm, text_mask=llm_mask, text_states_2=clip_l,
                     freqs_cos=freqs_cos, freqs_sin=freqs_sin, guidance=guidance, return_dict=False)
    return _backward_and_step(pred, noise - latents, network, optimizer, torch)


def framepack_indices(window: int, batch: int, device: Any, torch: Any) -> dict[str, Any]:
    """fpack_cache_latents.py encode_and_save_batch: indices split [1, padding, window, 1, 2, 16], padding 0."""
    pre, latent, post, two, four = torch.arange(0, 1 + window + 1 + 2 + 16).split([1, window, 1, 2, 16])
    rows = {"latent_indices": latent, "clean_latent_indices": torch.cat([pre, post]),
            "clean_latent_2x_indices": two, "clean_latent_4x_indices": four}
    return {k: v.unsqueeze(0).expand(batch, -1).to(device) for k, v in rows.items()}


def train_step_framepack(objects: tuple[Any, Any, Any], setting: Setting, device: Any, torch: Any,
                         mods: dict[str, Any]) -> float:
    """fpack_train_network.py call_dit + the trainer loop, on one section of ``latent_window_size`` frames."""
    model, network, optimizer = objects
    b, lat_h, lat_w = setting.batch, setting.height // 8, setting.width // 8
    latents, noise, noisy, timesteps = _noisy((b, 16, setting.window, lat_h, lat_w), device, torch)
    guidance = torch.tensor([1.0 * 1000.0] * b).to(device=device, dtype=torch.float32)  # guidance_scale x 1000

    def clean(frames: int) -> Any:  # the VAE cache is fp16
        return torch.randn(b, 16, frames, lat_h, lat_w, device=device, dtype=torch.float16)

    network.on_step_start()
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        pred = model(
            hidden_states=noisy, timestep=timesteps,
            encoder_hidden_states=torch.randn(b, 512, 4096, device=device, dtype=torch.float16),  # padded to 512
            encoder_attention_mask=_text_mask(b, 512, device, torch, torch.bool),
            pooled_projections=torch.randn(b, 768, device=device, dtype=torch.float16), guidance=guidance,
            clean_latents=clean(2), clean_latents_2x=clean(2), clean_latents_4x=clean(16),
            image_embeddings=torch.randn(b, SIGLIP_TOKENS, SIGLIP_DIM, device=device, dtype=torch.float16),
            return_dict=False, **framepack_indices(setting.window, b, device, torch),
        )[0]
    return _backward_and_step(pred, noise - latents, network, optimizer, torch)


def train_step(objects: tuple[Any, Any, Any], setting: Setting, device: Any, torch: Any,
               mods: dict[str, Any]) -> float:
    step = train_step_framepack if setting.task == "framepack" else train_step_hunyuan
    return step(objects, setting, device, torch, mods)


# CPU smoke -----------------------------------------------------------------------------------------------------


def shrink_for_smoke(mods: dict[str, Any], torch: Any) -> None:
    """Tiny HV/FramePack (2 double + 2 single blocks, width 256) that a CPU can run; same code paths.

    HV's ``get_cu_seqlens`` allocates on "cuda" unconditionally (hunyuan_model/attention.py); on the CPU it is
    replaced by the same computation on the mask's device (the torch/sdpa path only uses it for an assertion)."""
    config = mods["hv_models"].HUNYUAN_VIDEO_CONFIG["HYVideo-T/2-cfgdistill"]
    config.update(mm_double_blocks_depth=2, mm_single_blocks_depth=2, hidden_size=256, heads_num=2)
    mods["framepack_kwargs"].update(num_attention_heads=2, num_layers=2, num_single_layers=2)
    original = mods["hv_models"].get_cu_seqlens

    def cu_seqlens_on_mask_device(text_mask: Any, img_len: int) -> Any:
        batch = text_mask.shape[0]
        text_len, max_len = text_mask.sum(dim=1), text_mask.shape[1] + img_len
        cu = torch.zeros([2 * batch + 1], dtype=torch.int32, device=text_mask.device)
        for i in range(batch):
            cu[2 * i + 1], cu[2 * i + 2] = i * max_len + text_len[i] + img_len, (i + 1) * max_len
        return cu

    mods["hv_models"].get_cu_seqlens = cu_seqlens_on_mask_device if not torch.cuda.is_available() else original
