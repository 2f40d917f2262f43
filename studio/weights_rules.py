"""What each trainer accepts in each model slot, judged from a file's header (studio.safetensors_info).

Every rule cites the trainer source it mirrors. The rules only look at metadata (dtypes, key names, shapes), so
they run in milliseconds on 30 GB files and never unpickle anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.architectures import Architecture
from studio.findings import Finding, Fix
from studio.safetensors_info import FP8_DTYPES, WeightsInfo

OFFICIAL_CLIP = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
# Wan transformer width by architecture (models/wan/configs: 1.3B dim 1536, 14B dim 5120).
WAN_DIM = {"wan2.1-t2v-1.3b": 1536}
WAN_14B_DIM = 5120
# ComfyUI / transformers layout of umT5 (diffusion-pipe models/wan/t5.py umt5_keys_mapping_comfy reads these names).
COMFY_T5_KEYS = ("encoder.block.0.layer.0.SelfAttention.q.weight", "shared.weight")
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.safetensors$")


@dataclass(frozen=True)
class SlotCheck:
    """One model path of a preset, resolved, with what is known about it."""

    dotted: str
    path: Path
    info: WeightsInfo
    backend: str
    arch: Architecture
    preset: Any

    def option(self, dotted: str, default: Any = None) -> Any:
        section, _, key = dotted.rpartition(".")
        return self.preset.values.get(section, {}).get(key, default)

    def error(self, message: str, fix: str = "", action: Fix | None = None) -> Finding:
        return Finding("error", self.dotted, message, fix, action)

    def warning(self, message: str, fix: str = "") -> Finding:
        return Finding("warning", self.dotted, message, fix)


def trainer_label(backend: str) -> str:
    return {"musubi_tuner": "musubi-tuner", "diffusion_pipe": "diffusion-pipe"}.get(backend, backend)


def common_rules(check: SlotCheck) -> list[Finding]:
    """Rules for every weights file: readable, not fp8_scaled, not a LoRA in a base-model slot."""
    info = check.info
    if info.problem:
        return [check.error(f"{check.path.name} cannot be used: {info.problem}",
                            "download the file again (the download tab resumes and verifies it)")]
    findings = []
    if info.fp8_scaled:
        findings.append(check.error(
            f"{check.path.name} is a ComfyUI fp8_scaled file (it has scale_weight tensors). "
            f"{trainer_label(check.backend)} refuses it: diffusion-pipe utils/common.py 'fp8_scaled weights are not "
            "supported', musubi-tuner docs/wan.md 'fp8_scaled models are not supported even with --fp8_scaled'",
            "use the bf16/fp16 file (or plain fp8_e4m3fn) and let memory.fp8_base do the fp8 conversion"))
    if any(".lora_down." in k or ".lora_A." in k or k.startswith("lora_unet_") for k in list(info.tensors)[:200]):
        findings.append(check.error(f"{check.path.name} is a LoRA, not base-model weights", "point this at the base model"))
    return findings


def wan_dit_rules(check: SlotCheck) -> list[Finding]:
    info = check.info
    if info.kind not in ("safetensors", "safetensors_dir"):
        return [check.error(f"{check.path.name}: the Wan transformer must be .safetensors (single file, or for "
                            "diffusion-pipe a folder of shards)")]
    if not info.has_key("blocks.0.cross_attn.k.weight"):
        # musubi wan/modules/model.py detect_wan_sd_dtype: "Could not find the dtype in the model weights".
        return [check.error(f"{check.path.name} is not a Wan transformer (no blocks.0.cross_attn.k.weight)",
                            "choose a Wan2.1/2.2 DiT file, e.g. from the download tab")]
    findings = _wan_variant_rules(check)
    if check.backend == "musubi_tuner":
        findings += _musubi_dtype_rules(check)
    return findings


def _wan_variant_rules(check: SlotCheck) -> list[Finding]:
    info, arch = check.info, check.arch
    findings = []
    dim = (info.shape_of("blocks.0.self_attn.q.weight") or (0,))[0]
    expected = WAN_DIM.get(arch.id, WAN_14B_DIM)
    if dim and dim != expected:
        size = "1.3B" if dim == 1536 else "14B" if dim == WAN_14B_DIM else f"dim {dim}"
        findings.append(check.error(f"{check.path.name} is a {size} Wan transformer but the preset trains {arch.label}",
                                    "pick the transformer that matches the preset's model, or change the model"))
    in_channels = (info.shape_of("patch_embedding.weight") or (0, 0))[1]
    has_image_attention = info.has_key("blocks.0.cross_attn.k_img.weight")
    if arch.i2v and in_channels == 16:
        findings.append(check.error(f"{check.path.name} is a text-to-video transformer; {arch.label} needs the I2V one"))
    if not arch.i2v and in_channels == 36:
        findings.append(check.error(f"{check.path.name} is an image-to-video transformer; {arch.label} is text-to-video"))
    # diffusion-pipe models/wan/wan.py: i2v without cross_attn.k_img is Wan2.2 I2V, with it Wan2.1 I2V.
    if arch.i2v and in_channels == 36 and has_image_attention == arch.two_experts:
        kind = "Wan2.1" if has_image_attention else "Wan2.2"
        findings.append(check.error(f"{check.path.name} is a {kind} I2V transformer, not {arch.label}"))
    return findings


def _musubi_dtype_rules(check: SlotCheck) -> list[Finding]:
    """musubi wan_train_network.py handle_model_specific_args: --mixed_precision must match the DiT dtype."""
    dtype = check.info.dtype_of("blocks.0.cross_attn.k.weight")
    precision = check.option("model.dtype", "bfloat16")
    if dtype == "fp16" and precision != "float16":
        return [check.error(f"{check.path.name} holds fp16 weights; musubi asserts 'DiT weights are in fp16, mixed "
                            "precision must be fp16 or no'", "set model.dtype to float16",
                            Fix("Use float16", {"model.dtype": "float16"}))]
    if dtype == "bf16" and precision != "bfloat16":
        return [check.error(f"{check.path.name} holds bf16 weights; musubi asserts 'DiT weights are in bf16, mixed "
                            "precision must be bf16 or no'", "set model.dtype to bfloat16",
                            Fix("Use bfloat16", {"model.dtype": "bfloat16"}))]
    findings = []
    if dtype in FP8_DTYPES:
        if not check.option("memory.fp8_base", False):
            findings.append(check.error(f"{check.path.name} holds fp8 weights; musubi loads fp8 files only with "
                                        "--fp8_base (docs/wan.md support matrix)", "turn on memory.fp8_base",
                                        Fix("Turn on fp8_base", {"memory.fp8_base": True})))
        if check.option("backend.musubi_tuner.fp8_scaled", False):
            findings.append(check.error(f"{check.path.name} is already fp8; musubi raises 'DiT weights is already in "
                                        "fp8 format, cannot scale to fp8'", "turn off backend.musubi_tuner.fp8_scaled",
                                        Fix("Turn off fp8_scaled", {"backend.musubi_tuner.fp8_scaled": False})))
    return findings


def hunyuan_dit_rules(check: SlotCheck) -> list[Finding]:
    info = check.info
    if info.kind == "pickle" and set(info.pickle_dtypes) & set(FP8_DTYPES):
        return [check.warning(f"{check.path.name} is an fp8 .pt checkpoint; musubi users got NaN loss with the "
                              "official fp8 .pt (musubi-tuner #6)", "use the bf16 mp_rank_00_model_states.pt with fp8_base")]
    return []


def framepack_dit_rules(check: SlotCheck) -> list[Finding]:
    """musubi docs/framepack.md: pass the first of the three shards; the loader reads the others beside it."""
    match = _SHARD.search(check.path.name)
    if not match:
        return []
    count = int(match.group(2))
    stem = check.path.name[: match.start()]
    missing = [f"{stem}-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)
               if not (check.path.parent / f"{stem}-{i:05d}-of-{count:05d}.safetensors").exists()]
    if missing:
        return [check.error(f"{len(missing)} of {count} shards are missing next to {check.path.name}: "
                            + ", ".join(missing), "download the whole FramePack DiT set")]
    return []


def wan_t5_rules(check: SlotCheck) -> list[Finding]:
    info = check.info
    if info.kind == "pickle":
        return []
    comfy_layout = any(info.has_key(k) for k in COMFY_T5_KEYS)
    if check.backend == "musubi_tuner" and comfy_layout:
        # musubi wan/modules/t5.py: load_state_dict(sd, strict=True) with Wan's own key names.
        return [check.error(f"{check.path.name} uses ComfyUI's umT5 key names; musubi's --t5 loads Wan's own names "
                            "strictly and fails", "use the official models_t5_umt5-xxl-enc-bf16.pth (download tab)")]
    if check.backend == "musubi_tuner":
        return [check.warning(f"{check.path.name} is not the official .pth; musubi's docs name "
                              "models_t5_umt5-xxl-enc-bf16.pth", "prefer the official .pth if caching fails")]
    if not comfy_layout and not info.has_key("blocks.0.attn.k.weight"):
        return [check.warning(f"{check.path.name} has neither the ComfyUI nor the Kijai umT5 key layout that "
                              "diffusion-pipe maps (models/wan/t5.py umt5_keys_mapping)")]
    return []


def wan_clip_rules(check: SlotCheck) -> list[Finding]:
    info = check.info
    if info.kind == "pickle" and check.path.name == OFFICIAL_CLIP:
        return []
    if info.kind in ("safetensors", "safetensors_dir") and any(k.startswith("vision_model.") for k in info.tensors):
        return [check.error(f"{check.path.name} is a ComfyUI/transformers CLIP vision file; Wan2.1 I2V needs the "
                            f"official {OFFICIAL_CLIP} (musubi docs/wan.md; ComfyUI's and Kijai's files fail)",
                            "download the Wan2.1 I2V official folder set with CLIP")]
    return [check.warning(f"{check.path.name} is not {OFFICIAL_CLIP}; only the official file is known to work",
                          "download the Wan2.1 I2V official folder set with CLIP")]


def wan_ckpt_rules(check: SlotCheck) -> list[Finding]:
    """diffusion-pipe models/wan/wan.py: what it opens inside ckpt_path."""
    folder, arch = check.path, check.arch
    if not folder.is_dir():
        return [check.error(f"{folder} is a file; ckpt_path must be the official Wan folder")]
    config = folder / "config.json"
    if not config.is_file() and arch.two_experts:
        config = folder / "low_noise_model" / "config.json"
    if not config.is_file():
        return [check.error(f"{folder} has no config.json: it is not an official Wan folder",
                            "download the official folder set for this model (download tab)")]
    findings = _wan_config_rules(check, config)
    expected = [("Wan2.1_VAE.pth", "the VAE"), ("google/umt5-xxl", "the umT5 tokenizer")]
    if not check.option("model.text_encoder"):
        expected.append(("models_t5_umt5-xxl-enc-bf16.pth", "the T5 (or set model.text_encoder to a umT5 file)"))
    if arch.i2v and not arch.two_experts:
        expected += [(OFFICIAL_CLIP, "the I2V CLIP"), ("xlm-roberta-large", "the CLIP tokenizer")]
    for rel, what in expected:
        if not (folder / rel).exists():
            findings.append(check.error(f"{folder} lacks {rel} ({what})", "download the official folder set again"))
    findings += _wan_ckpt_transformer_rules(check)
    return findings


def _wan_config_rules(check: SlotCheck, config: Path) -> list[Finding]:
    import json

    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
        model_type, dim = raw["model_type"], int(raw["dim"])
    except (OSError, ValueError, KeyError, TypeError):
        return [check.error(f"{config} is not a Wan config (model_type, dim)")]
    arch = check.arch
    want_type = "i2v" if arch.i2v else "t2v"
    want_dim = WAN_DIM.get(arch.id, WAN_14B_DIM)
    if model_type != want_type or dim != want_dim:
        return [check.error(f"{check.path} is a {model_type} folder with dim {dim}; {arch.label} needs {want_type} "
                            f"with dim {want_dim} (diffusion-pipe picks the variant from this config.json)",
                            "point ckpt_path at the official folder of the preset's model")]
    return []


def _wan_ckpt_transformer_rules(check: SlotCheck) -> list[Finding]:
    folder, arch = check.path, check.arch
    if arch.two_experts:
        expert = check.option("backend.diffusion_pipe.wan22_expert", "low_noise")
        chosen = check.option("model.dit") if expert == "low_noise" else check.option("model.dit_high_noise")
        source, where = chosen, folder / f"{expert}_model"
    else:
        source, where = check.option("model.dit"), folder
    if source or any(where.glob("*.safetensors")):
        return []
    return [check.error(f"no transformer: model.dit is empty and {where} has no .safetensors shards",
                        "set model.dit to a transformer file or download the complete official folder")]
