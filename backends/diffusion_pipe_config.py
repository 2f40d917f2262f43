"""Preset -> diffusion-pipe's two TOML files (the dataset config and the main training config).

Everything here is pure: a resolved preset (absolute paths) in, TOML text out. Key names and defaults follow
tdrussell/diffusion-pipe at the commit in DIFFUSION_PIPE_VERSION; each mapping names the file that reads the key.
diffusion-pipe loads both files with the ``toml`` package (train.py ``toml.load``), so only plain TOML is written:
no dotted keys, no mixed-type arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table

from backends.base import PlanError, require_path
from backends.diffusion_pipe_options import SECTION
from studio.architectures import Architecture

# The studio's optimizer names -> diffusion-pipe [optimizer] type. train.py get_optimizer() lower-cases the type for
# its own optimizers and looks any other name up as an exact class name in pytorch_optimizer (AdaFactor, Prodigy).
OPTIMIZER_TYPES = {
    "adamw": "adamw",
    "adamw8bit": "adamw8bit",
    "adamw_optimi": "adamw_optimi",
    "adamw8bitkahan": "AdamW8bitKahan",
    "adafactor": "AdaFactor",
    "prodigy": "Prodigy",
}
# train.py accepts only these lr_scheduler values; warm-up is a separate key applied before any of them.
SCHEDULERS = {"constant": "constant", "constant_with_warmup": "constant", "linear": "linear", "cosine": "cosine"}
MODEL_TYPES = {"wan": "wan", "hunyuan": "hunyuan-video", "ltx": "ltx-video"}
# Transformer blocks per model: the trainer asserts blocks_to_swap <= blocks - 2 (models/wan/wan.py
# enable_block_swap). HunyuanVideo swaps n//2 of its 20 double blocks and (n - n//2)*2 + 1 of its 40 single blocks
# (models/hunyuan_video.py), so 36 is the largest n that passes both of its asserts.
WAN_BLOCKS = {"wan2.1-t2v-1.3b": 30}
WAN_14B_BLOCKS = 40
HUNYUAN_MAX_SWAP = 36
EVAL_NAME = "eval"
WEIGHT_FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".gguf", ".ckpt")


@dataclass(frozen=True)
class ConfigPaths:
    """Absolute paths the main config points at."""

    output_dir: str
    dataset_file: str
    eval_file: str = ""  # "" = no eval dataset


def option(preset: Any, key: str) -> Any:
    return preset.get(f"{SECTION}.{key}")


# dataset.toml ------------------------------------------------------------------------------------------------------


def dataset_toml(preset: Any, *, directory: str, num_repeats: int) -> str:
    """The dataset config (utils/dataset.py DirectoryDataset) for one media folder."""
    if preset.get("dataset.caption_extension") != ".txt":
        raise PlanError(
            "dataset.caption_extension",
            "diffusion-pipe only reads <media name>.txt captions (utils/dataset.py: with_suffix('.txt')); "
            "set it to .txt and name the caption files accordingly",
        )
    frames = sorted(set(preset.get("dataset.frames")))
    if not frames:
        raise PlanError("dataset.frames", "is empty; give at least one frame count, e.g. [1, 33]")
    width, height = preset.get("dataset.resolution")
    doc = _document(preset, "dataset config")
    # [[W, H]] only sets the pixel area (sqrt(W*H)); the shape comes from the aspect-ratio buckets below.
    doc["resolutions"] = [[width, height]]
    doc["enable_ar_bucket"] = True
    if preset.get("dataset.enable_bucket"):
        min_ar, max_ar = option(preset, "min_ar"), option(preset, "max_ar")
        if min_ar > max_ar:
            raise PlanError(f"{SECTION}.min_ar", f"{min_ar} is above max_ar {max_ar}; swap the two values")
        doc["min_ar"] = min_ar
        doc["max_ar"] = max_ar
        doc["num_ar_buckets"] = option(preset, "num_ar_buckets")
    else:
        # diffusion-pipe's enable_ar_bucket = false crops everything to a square (DirectoryDataset: ars = [1.0]);
        # "no buckets" in the studio means one shape, dataset.resolution, so that is the single bucket.
        doc["ar_buckets"] = [[width, height]]
    # The trainer appends bucket 1 for images itself; videos go to the longest bucket <= their length.
    doc["frame_buckets"] = frames
    doc["skip_empty_caption"] = option(preset, "skip_empty_caption")
    entry = tomlkit.table()
    entry["path"] = directory
    entry["num_repeats"] = num_repeats
    directories = tomlkit.aot()
    directories.append(entry)
    doc["directory"] = directories
    return tomlkit.dumps(doc)


# config.toml -------------------------------------------------------------------------------------------------------


def config_toml(preset: Any, arch: Architecture, paths: ConfigPaths) -> str:
    """The main config (train.py set_config_defaults and the DeepSpeed settings read in __main__)."""
    doc = _document(preset, "training config")
    doc["output_dir"] = paths.output_dir
    doc["dataset"] = paths.dataset_file
    _training_keys(doc, preset, arch)
    if paths.eval_file:
        # The table form: a plain string entry crashes the config copy on a fresh run (train.py copies
        # eval_dataset['config']).
        entry = tomlkit.inline_table()
        entry.update({"name": EVAL_NAME, "config": paths.eval_file})
        doc["eval_datasets"] = [entry]
        doc["eval_every_n_epochs"] = option(preset, "eval_every_n_epochs")
        doc["eval_before_first_step"] = option(preset, "eval_before_first_step")
    doc["model"] = _table(model_table(preset, arch))
    doc["adapter"] = _table(adapter_table(preset))
    doc["optimizer"] = _table(optimizer_table(preset))
    return tomlkit.dumps(doc)


def _training_keys(doc: Any, preset: Any, arch: Architecture) -> None:
    doc["epochs"] = preset.get("training.epochs")
    if preset.get("training.max_steps") > 0:
        doc["max_steps"] = preset.get("training.max_steps")  # train.py: `'max_steps' in config` stops the run
    doc["micro_batch_size_per_gpu"] = preset.get("dataset.batch_size")
    doc["pipeline_stages"] = option(preset, "pipeline_stages")
    doc["gradient_accumulation_steps"] = preset.get("training.gradient_accumulation_steps")
    doc["gradient_clipping"] = preset.get("optimizer.max_grad_norm")
    doc["warmup_steps"] = preset.get("optimizer.warmup_steps")
    doc["lr_scheduler"] = SCHEDULERS[preset.get("optimizer.lr_scheduler")]
    doc["save_every_n_epochs"] = preset.get("training.save_every_n_epochs")
    minutes = preset.get("training.checkpoint_every_n_minutes")
    if minutes > 0:
        # Omitted for 0: utils/saver.py need_to_checkpoint() would then checkpoint after every step
        # ("(now - last) / 60 > 0"). Without the key the trainer checkpoints once, at the end.
        doc["checkpoint_every_n_minutes"] = minutes
    doc["activation_checkpointing"] = _activation_checkpointing(preset)
    swap = blocks_to_swap(preset, arch)
    if swap:
        doc["blocks_to_swap"] = swap
    doc["save_dtype"] = preset.get("output.save_dtype")
    doc["caching_batch_size"] = option(preset, "caching_batch_size")
    doc["steps_per_print"] = option(preset, "steps_per_print")
    doc["video_clip_mode"] = option(preset, "video_clip_mode")


def _activation_checkpointing(preset: Any) -> bool | str:
    if not preset.get("memory.gradient_checkpointing"):
        return False
    return "unsloth" if option(preset, "activation_checkpointing_mode") == "unsloth" else True


def blocks_to_swap(preset: Any, arch: Architecture) -> int:
    """memory.blocks_to_swap, checked against what the model's enable_block_swap() accepts."""
    swap = preset.get("memory.blocks_to_swap")
    if not swap:
        return 0
    if arch.family == "ltx":
        raise PlanError("memory.blocks_to_swap", "diffusion-pipe has no block swap for LTX-Video; set it to 0")
    if option(preset, "pipeline_stages") != 1:
        raise PlanError(
            "memory.blocks_to_swap",
            "block swap only works with pipeline_stages = 1 (train.py assert); set blocks_to_swap to 0 or "
            "backend.diffusion_pipe.pipeline_stages to 1",
        )
    limit = HUNYUAN_MAX_SWAP if arch.family == "hunyuan" else WAN_BLOCKS.get(arch.id, WAN_14B_BLOCKS) - 2
    if swap > limit:
        raise PlanError("memory.blocks_to_swap", f"{arch.label} can swap at most {limit} blocks; got {swap}")
    return swap


# [model] -----------------------------------------------------------------------------------------------------------


def model_table(preset: Any, arch: Architecture) -> dict[str, Any]:
    table: dict[str, Any] = {"type": MODEL_TYPES[arch.family]}
    if arch.family == "wan":
        table.update(_wan_paths(preset, arch))
    elif arch.family == "hunyuan":
        table.update(_hunyuan_paths(preset))
    else:
        table.update(_ltx_paths(preset))
    table["dtype"] = preset.get("model.dtype")
    if preset.get("memory.fp8_base"):
        table["transformer_dtype"] = "float8"  # utils/common.py DTYPE_MAP: float8 = e4m3fn
    if arch.family == "wan" and preset.get("memory.fp8_text_encoder"):
        table["text_encoder_fp8"] = True  # models/wan/wan.py casts the umT5 weights to e4m3fn
    table["timestep_sample_method"] = option(preset, "timestep_sample_method")
    if arch.family in ("wan", "hunyuan"):
        # Read by models/wan/wan.py and models/hunyuan_video.py prepare_inputs; models/ltx_video.py has no shift.
        table["shift"] = preset.get("training.flow_shift")
    if arch.two_experts:
        table.update(_wan22_timestep_range(preset, arch))
    if arch.family == "ltx" and option(preset, "first_frame_conditioning_p") > 0:
        table["first_frame_conditioning_p"] = option(preset, "first_frame_conditioning_p")
    return table


def _wan_paths(preset: Any, arch: Architecture) -> dict[str, str]:
    ckpt = require_path(
        preset, f"{SECTION}.ckpt_path",
        "the official Wan-AI model folder (config.json, VAE, tokenizer); diffusion-pipe needs it even with a "
        "ComfyUI transformer file",
    )
    paths = {"ckpt_path": ckpt}
    transformer = preset.get("model.dit")
    if arch.two_experts:
        expert = option(preset, "wan22_expert")
        chosen = preset.get("model.dit") if expert == "low_noise" else preset.get("model.dit_high_noise")
        # The official A14B folder keeps each expert in its own subfolder (docs/supported_models.md, Wan2.2).
        transformer = chosen or str(Path(ckpt) / f"{expert}_model")
    if transformer:
        paths["transformer_path"] = transformer
    if preset.get("model.text_encoder"):
        paths["llm_path"] = preset.get("model.text_encoder")
    return paths


def _wan22_timestep_range(preset: Any, arch: Architecture) -> dict[str, float]:
    """min_t / max_t (models/wan/wan.py slice_t_distribution); t = 1 is pure noise."""
    mode = option(preset, "timestep_range")
    if mode == "full":
        return {}
    if mode == "custom":
        min_t, max_t = option(preset, "min_t"), option(preset, "max_t")
        if min_t >= max_t:
            raise PlanError(f"{SECTION}.min_t", f"min_t {min_t} must be below max_t {max_t}")
        return {"min_t": min_t, "max_t": max_t}
    boundary = arch.default_boundary / 1000
    if option(preset, "wan22_expert") == "low_noise":
        return {"min_t": 0.0, "max_t": boundary}
    return {"min_t": boundary, "max_t": 1.0}


def _hunyuan_paths(preset: Any) -> dict[str, str]:
    """models/hunyuan_video.py: ckpt_path (official layout) or every ComfyUI-style part; parts override ckpt_path."""
    parts = {
        "transformer_path": "model.dit",
        "vae_path": "model.vae",
        "llm_path": "model.text_encoder",
        "clip_path": "model.text_encoder_2",
    }
    paths: dict[str, str] = {}
    ckpt = option(preset, "ckpt_path")
    if ckpt:
        paths["ckpt_path"] = ckpt
    for key, dotted in parts.items():
        value = preset.get(dotted)
        if value and key in ("llm_path", "clip_path") and Path(value).suffix.lower() in WEIGHT_FILE_SUFFIXES:
            raise PlanError(
                dotted,
                "diffusion-pipe loads HunyuanVideo's text encoders with transformers from_pretrained "
                "(HunyuanVideo hyvideo/text_encoder), so this must be a model folder such as "
                "llava-llama-3-8b-text-encoder-tokenizer or clip-vit-large-patch14, not a single weights file",
            )
        if value:
            paths[key] = value
        elif not ckpt:
            raise PlanError(
                dotted,
                "is empty; HunyuanVideo needs the DiT, VAE, LLM text encoder and CLIP files, or set "
                f"{SECTION}.ckpt_path to the official HunyuanVideo ckpts folder",
            )
    return paths


def _ltx_paths(preset: Any) -> dict[str, str]:
    """models/ltx_video.py reads both keys unconditionally."""
    return {
        "diffusers_path": require_path(
            preset, f"{SECTION}.ckpt_path", "the Diffusers LTX-Video folder (text encoder and scheduler come from it)"
        ),
        "single_file_path": require_path(preset, "model.dit", "an LTX-Video single-file checkpoint (.safetensors)"),
    }


# [adapter] and [optimizer] -----------------------------------------------------------------------------------------


def adapter_table(preset: Any) -> dict[str, Any]:
    # No alpha: train.py set_config_defaults raises NotImplementedError when it is present and forces alpha = rank.
    return {
        "type": "lora",
        "rank": preset.get("network.rank"),
        "dtype": preset.get("model.dtype"),
        "dropout": preset.get("network.dropout"),
    }


def optimizer_table(preset: Any) -> dict[str, Any]:
    """Every key but type is passed to the optimizer's constructor (train.py get_optimizer), so only keys its
    signature accepts are written."""
    name = preset.get("optimizer.type")
    betas = preset.get("optimizer.betas")
    if len(betas) != 2:
        raise PlanError("optimizer.betas", f"needs exactly two numbers [beta1, beta2]; got {len(betas)}")
    table: dict[str, Any] = {
        "type": OPTIMIZER_TYPES[name],
        "lr": preset.get("optimizer.learning_rate"),
        "betas": betas,
        "weight_decay": preset.get("optimizer.weight_decay"),
    }
    if name == "adafactor":
        # pytorch_optimizer AdaFactor ignores lr unless relative_step is off, and scales it by the weights' RMS
        # unless scale_parameter is off; its epsilons are eps1/eps2, not eps.
        table["relative_step"] = False
        table["scale_parameter"] = False
    else:
        table["eps"] = preset.get("optimizer.eps")
    if name == "adamw8bitkahan":
        table["stabilize"] = option(preset, "kahan_stabilize")  # optimizers/adamw_8bit.py AdamW8bitKahan
    return table


# helpers -----------------------------------------------------------------------------------------------------------


def _document(preset: Any, what: str) -> Any:
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"diffusion-pipe {what} written by Video LoRA Studio from preset {preset.name!r}."))
    doc.add(tomlkit.comment("Regenerated on every run: change the preset, not this file."))
    return doc


def _table(values: dict[str, Any]) -> Table:
    table = tomlkit.table()
    table.update(values)
    return table
