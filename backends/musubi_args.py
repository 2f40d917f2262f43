"""Command lines for musubi-tuner: latent caching, text-encoder caching and ``accelerate launch`` training.

Argument names are those of kohya-ss/musubi-tuner v0.3.4 (commit 30c658c): ``training/parser_common.py``
(common training flags), ``wan_train_network.py`` / ``hv_train_network.py`` / ``fpack_train_network.py``
(model-specific flags), ``cache_latents.py`` / ``wan_cache_latents.py`` / ``fpack_cache_latents.py`` and the
``*_cache_text_encoder_outputs.py`` scripts (caching flags). Every script module ends in
``if __name__ == "__main__": main()``, so each runs as ``python -m musubi_tuner.<module>`` from the trainer's env.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

from backends.base import PlanError, fmt_float, require_path
from studio.architectures import Architecture


@dataclass(frozen=True)
class ArchSpec:
    """What differs between musubi's model families."""

    code: str  # musubi's architecture short name (dataset/architectures.py), the suffix of its cache files
    cache_latents: str  # script modules under musubi_tuner
    cache_text: str
    train: str
    network_module: str
    max_blocks_to_swap: int  # the model's enable_block_swap assertion
    fp8_text_flag: str  # low-memory flag of the text-encoder caching script
    cache_name: str  # folder under <dataset>/cache
    task: str = ""  # Wan --task (wan/configs/__init__.py WAN_CONFIGS)


_WAN = {"code": "wan", "cache_latents": "wan_cache_latents", "cache_text": "wan_cache_text_encoder_outputs",
        "train": "wan_train_network", "network_module": "networks.lora_wan", "fp8_text_flag": "--fp8_t5"}
# Cache folders differ where the cached latents differ although musubi names the files alike: I2V latents carry the
# first-frame image latents (and, for Wan2.1, CLIP features), so a T2V cache handed to I2V training fails with
# KeyError 'latents_image' / 'clip' when --skip_existing keeps it (musubi issue #101).
ARCH_SPECS: dict[str, ArchSpec] = {
    # wan/modules/model.py enable_block_swap: blocks_to_swap <= num_blocks - 1 (30 blocks in 1.3B, 40 in 14B).
    "wan2.1-t2v-1.3b": ArchSpec(**_WAN, max_blocks_to_swap=29, cache_name="musubi_wan", task="t2v-1.3B"),
    "wan2.1-t2v-14b": ArchSpec(**_WAN, max_blocks_to_swap=39, cache_name="musubi_wan", task="t2v-14B"),
    "wan2.1-i2v-14b": ArchSpec(**_WAN, max_blocks_to_swap=39, cache_name="musubi_wan_i2v", task="i2v-14B"),
    "wan2.2-t2v-a14b": ArchSpec(**_WAN, max_blocks_to_swap=39, cache_name="musubi_wan", task="t2v-A14B"),
    "wan2.2-i2v-a14b": ArchSpec(**_WAN, max_blocks_to_swap=39, cache_name="musubi_wan22_i2v", task="i2v-A14B"),
    # hunyuan_model/models.py enable_block_swap: N//2 double blocks <= 19 and (N - N//2)*2+1 single blocks <= 39.
    "hunyuan-video": ArchSpec("hv", "cache_latents", "cache_text_encoder_outputs", "hv_train_network", "networks.lora",
                              38, "--fp8_llm", "musubi_hv"),
    # frame_pack/hunyuan_video_packed.py: the same assertion over 20 double / 40 single blocks.
    "framepack": ArchSpec("fp", "fpack_cache_latents", "fpack_cache_text_encoder_outputs", "fpack_train_network",
                          "networks.lora_framepack", 38, "--fp8_llm", "musubi_fp"),
}

MIXED_PRECISION = {"bfloat16": "bf16", "float16": "fp16"}
SAVE_PRECISION = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
# trainer_base.py get_optimizer: AdamW, AdamW8bit and AdaFactor by name, anything else as a dotted class path.
OPTIMIZERS = {"adamw": "AdamW", "adamw8bit": "AdamW8bit", "adafactor": "AdaFactor", "prodigy": "prodigyopt.Prodigy"}
TEXT_ENCODER_BATCH = 16  # the batch size every musubi doc uses for text-encoder caching


def mixed_precision(preset: Any) -> str:
    """--mixed_precision must match the DiT weights (wan_train_network.py asserts bf16 weights -> bf16)."""
    return MIXED_PRECISION[preset.get("model.dtype")]


def optimizer_args(preset: Any) -> tuple[list[str], list[str]]:
    """``--optimizer_type`` and ``--optimizer_args``, plus notes; unsupported optimizers raise PlanError."""
    kind = preset.get("optimizer.type")
    if kind not in OPTIMIZERS:
        raise PlanError(
            "optimizer.type",
            f"{kind!r} is not available in musubi-tuner; choose one of {', '.join(OPTIMIZERS)} "
            "(adamw8bitkahan and adamw_optimi are diffusion-pipe optimizers)",
        )
    # get_optimizer splits each item on "=" and ast.literal_eval()s the value.
    decay = f"weight_decay={fmt_float(preset.get('optimizer.weight_decay'))}"
    if kind == "adafactor":
        # Without relative_step=False musubi's Adafactor ignores the learning rate and swaps in its own schedule.
        extra = [decay, "relative_step=False", "scale_parameter=False", "warmup_init=False"]
    else:
        beta1, beta2 = _betas(preset)
        extra = [f"betas=({fmt_float(beta1)},{fmt_float(beta2)})", f"eps={preset.get('optimizer.eps')!r}", decay]
    notes = []
    if kind == "prodigy":
        notes.append("Prodigy comes from the prodigyopt package: run `pip install prodigyopt` in musubi-tuner's "
                     "environment. Prodigy finds its own step size; learning_rate 1.0 is the usual setting.")
    return ["--optimizer_type", OPTIMIZERS[kind], "--optimizer_args", *extra], notes


def _betas(preset: Any) -> tuple[float, float]:
    betas = preset.get("optimizer.betas")
    if len(betas) != 2:
        raise PlanError("optimizer.betas", f"has {len(betas)} values; give two, e.g. [0.9, 0.99]")
    return betas[0], betas[1]


def schedule_args(preset: Any) -> list[str]:
    scheduler = preset.get("optimizer.lr_scheduler")
    warmup = preset.get("optimizer.warmup_steps")
    if scheduler == "constant":
        if warmup:
            # trainer_base.py get_lr_scheduler: "constant does not require `num_warmup_steps`" (ValueError).
            raise PlanError(
                "optimizer.warmup_steps",
                f"is {warmup}, but musubi's constant schedule takes no warm-up; set warmup_steps = 0 or "
                "lr_scheduler = 'constant_with_warmup'",
            )
        return ["--lr_scheduler", "constant"]
    return ["--lr_scheduler", scheduler, "--lr_warmup_steps", str(warmup)]


# networks/lora.py create_network reads these kwargs; patterns go through ast.literal_eval there.
NETWORK_ARG_KEYS = ("loraplus_lr_ratio", "rank_dropout", "module_dropout", "include_patterns", "exclude_patterns")
_NETWORK_FIELD = "backend.musubi_tuner.network_args"


def parse_network_args(text: str) -> list[str]:
    """Validate ``key=value`` items (space separated) against the allowlist; returns them for --network_args."""
    items = text.split()
    seen: set[str] = set()
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise PlanError(_NETWORK_FIELD, f"{item!r} is not key=value, e.g. loraplus_lr_ratio=4")
        if key not in NETWORK_ARG_KEYS:
            raise PlanError(_NETWORK_FIELD, f"{key!r} is not allowed; use one of {', '.join(NETWORK_ARG_KEYS)}")
        if key in seen:
            raise PlanError(_NETWORK_FIELD, f"{key!r} is given twice; keep one")
        seen.add(key)
        if "=" in value:  # musubi splits each item with split("=") and expects exactly two parts
            raise PlanError(_NETWORK_FIELD, f"the value of {key} contains '='; musubi cannot read that")
        _check_network_value(key, value)
    return items


def _check_network_value(key: str, value: str) -> None:
    if key.endswith("_patterns"):
        try:
            patterns = ast.literal_eval(value)
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise ValueError
            for pattern in patterns:
                re.compile(pattern)
        except (ValueError, SyntaxError, re.error):
            raise PlanError(
                _NETWORK_FIELD, f"{key} must be a list of regular expressions without spaces, e.g. ['.*ffn.*']"
            ) from None
        return
    try:
        number = float(value)
    except ValueError:
        raise PlanError(_NETWORK_FIELD, f"{key} must be a number, got {value!r}") from None
    upper = 1000.0 if key == "loraplus_lr_ratio" else 1.0
    if not 0.0 <= number <= upper:
        raise PlanError(_NETWORK_FIELD, f"{key} must be between 0 and {fmt_float(upper)}, got {value}")


def timestep_args(preset: Any, arch: Architecture) -> tuple[list[str], list[str]]:
    opt = _musubi(preset)
    args = ["--timestep_sampling", opt["timestep_sampling"], "--discrete_flow_shift",
            fmt_float(preset.get("training.flow_shift")), "--weighting_scheme", opt["weighting_scheme"]]
    low, high = opt["min_timestep"], opt["max_timestep"]
    if high and low >= high:
        raise PlanError("backend.musubi_tuner.min_timestep", f"is {low}, not below max_timestep {high}; lower it")
    if low:
        args += ["--min_timestep", str(low)]
    if high:
        args += ["--max_timestep", str(high)]
    if opt["preserve_distribution_shape"]:
        args.append("--preserve_distribution_shape")
    notes: list[str] = []
    if arch.two_experts:
        args += _wan22_args(preset, arch, notes)
    return args, notes


def _wan22_args(preset: Any, arch: Architecture, notes: list[str]) -> list[str]:
    opt = _musubi(preset)
    args = []
    if preset.get("model.dit_high_noise"):  # passed with --dit; see train_script_args
        if opt["offload_inactive_dit"]:
            if preset.get("memory.blocks_to_swap"):
                # wan_train_network.py: "Block swap is not supported with offloading inactive DiT".
                raise PlanError(
                    "backend.musubi_tuner.offload_inactive_dit",
                    "cannot be combined with memory.blocks_to_swap; turn one of them off",
                )
            args.append("--offload_inactive_dit")
    else:
        notes.append(
            f"Wan2.2 trains only the expert in model.dit. For that expert set min/max timestep (low-noise 0-"
            f"{arch.default_boundary}, high-noise {arch.default_boundary}-1000) with preserve_distribution_shape, "
            "as the musubi docs recommend."
        )
    if opt["timestep_boundary"]:
        # The training script declares --timestep_boundary type=int (0-1000); "0.9" would be an argparse error.
        args += ["--timestep_boundary", str(opt["timestep_boundary"])]
    return args


def _musubi(preset: Any) -> dict[str, Any]:
    return preset.values["backend.musubi_tuner"]


def accelerate_config(*, gpu_ids: list[int], precision: str, port: int) -> str:
    """Our own accelerate config file, so a user's ``accelerate config`` default (DeepSpeed, FSDP, other GPUs; see
    accelerate/commands/launch.py _validate_launch_command) cannot change how this run starts."""
    multi = len(gpu_ids) > 1
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU" if multi else "NO",
        "mixed_precision": precision,
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": len(gpu_ids),
        "gpu_ids": ",".join(str(i) for i in gpu_ids),
        "main_training_function": "main",
        "use_cpu": False,
        "debug": False,
        "dynamo_backend": "NO",
    }
    if multi:
        config["main_process_port"] = port
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def launch_args(*, config_path: str, gpu_ids: list[int], precision: str, port: int) -> list[str]:
    """``python -m accelerate.commands.launch`` options (accelerate 1.6.0, musubi's pin; launch.py has the
    ``__main__`` guard). accelerate maps --gpu_ids to CUDA_VISIBLE_DEVICES for the training processes."""
    args = ["-m", "accelerate.commands.launch", "--config_file", config_path, "--num_cpu_threads_per_process", "1",
            "--num_processes", str(len(gpu_ids)), "--num_machines", "1",
            "--gpu_ids", ",".join(str(i) for i in gpu_ids), "--mixed_precision", precision]
    if len(gpu_ids) > 1:
        args += ["--multi_gpu", "--main_process_port", str(port)]
    return args


@dataclass(frozen=True)
class CacheRequest:
    """Inputs of the two caching commands."""

    dataset_config: str
    skip_existing: bool


def cache_latents_args(preset: Any, arch: Architecture, request: CacheRequest) -> list[str]:
    spec = ARCH_SPECS[arch.id]
    opt = _musubi(preset)
    args = ["-m", f"musubi_tuner.{spec.cache_latents}", "--dataset_config", request.dataset_config,
            "--vae", require_path(preset, "model.vae", "the VAE file")]
    if spec.code == "wan":
        if arch.i2v:
            args.append("--i2v")  # wan_cache_latents.py: first-frame image latents for I2V training
            if arch.id == "wan2.1-i2v-14b":
                args += ["--clip", require_path(preset, "model.clip",
                                                "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth")]
        if opt["vae_cache_cpu"]:
            args.append("--vae_cache_cpu")
    else:  # cache_latents.py hv_setup_parser, shared by HunyuanVideo and FramePack
        if spec.code == "fp":
            args += ["--image_encoder", require_path(preset, "model.image_encoder", "the SigLIP image encoder")]
        if opt["vae_chunk_size"]:
            args += ["--vae_chunk_size", str(opt["vae_chunk_size"])]
        if opt["vae_tiling"]:
            args.append("--vae_tiling")
    if request.skip_existing:
        args.append("--skip_existing")
    return args


def cache_text_args(preset: Any, arch: Architecture, request: CacheRequest) -> list[str]:
    spec = ARCH_SPECS[arch.id]
    args = ["-m", f"musubi_tuner.{spec.cache_text}", "--dataset_config", request.dataset_config]
    if spec.code == "wan":
        args += ["--t5", require_path(preset, "model.text_encoder", "models_t5_umt5-xxl-enc-bf16.pth")]
    else:
        args += ["--text_encoder1", require_path(preset, "model.text_encoder", "llava_llama3_fp16.safetensors"),
                 "--text_encoder2", require_path(preset, "model.text_encoder_2", "clip_l.safetensors")]
    args += ["--batch_size", str(TEXT_ENCODER_BATCH)]
    if preset.get("memory.fp8_text_encoder"):
        args.append(spec.fp8_text_flag)
    if request.skip_existing:
        args.append("--skip_existing")
    return args


@dataclass(frozen=True)
class TrainRequest:
    """Run-specific inputs of the training command."""

    dataset_config: str
    output_name: str
    logging_dir: str
    resume_from: str = ""
    epochs: int = 0  # --max_train_epochs; 0 = train by max_steps instead


def train_script_args(preset: Any, arch: Architecture, request: TrainRequest) -> tuple[list[str], list[str]]:
    """The training script's own arguments (after ``accelerate launch``), and notes about them."""
    spec = ARCH_SPECS[arch.id]
    args = ["-m", f"musubi_tuner.{spec.train}"]
    if spec.task:
        args += ["--task", spec.task]
    args += ["--dit", require_path(preset, "model.dit", "the DiT weights file")]
    if arch.two_experts and preset.get("model.dit_high_noise"):
        # Wan2.2: --dit is the low-noise expert; with --dit_high_noise both experts' LoRAs are trained.
        args += ["--dit_high_noise", preset.get("model.dit_high_noise")]
    if spec.code == "fp":
        # fpack_train_network.py requires every model for its sample/step setup, and the cache's window size.
        args += ["--vae", require_path(preset, "model.vae", "the VAE file"),
                 "--text_encoder1", require_path(preset, "model.text_encoder", "llava_llama3_fp16.safetensors"),
                 "--text_encoder2", require_path(preset, "model.text_encoder_2", "clip_l.safetensors"),
                 "--image_encoder", require_path(preset, "model.image_encoder", "the SigLIP image encoder"),
                 "--latent_window_size", str(_musubi(preset)["latent_window_size"])]
    args += ["--dataset_config", request.dataset_config, *attention_args(preset, arch),
             "--mixed_precision", mixed_precision(preset), *memory_args(preset, arch)]
    optimizer, notes = optimizer_args(preset)
    args += [*optimizer, "--learning_rate", fmt_float(preset.get("optimizer.learning_rate")),
             *schedule_args(preset), "--max_grad_norm", fmt_float(preset.get("optimizer.max_grad_norm"))]
    args += _network_args(preset, spec)
    timesteps, timestep_notes = timestep_args(preset, arch)
    args += timesteps
    notes += timestep_notes
    args += _loop_args(preset, request)
    return args, notes


def attention_args(preset: Any, arch: Architecture) -> list[str]:
    opt = _musubi(preset)
    mode = opt["attention"]
    if mode == "flash3" and arch.family == "hunyuan":
        raise PlanError("backend.musubi_tuner.attention", "flash3 does not support HunyuanVideo; use sdpa")
    if arch.id == "framepack" and preset.get("dataset.batch_size") > 1 and not opt["split_attn"]:
        # docs/framepack.md: batch size > 1 with sdpa or xformers "will always result in an error".
        raise PlanError(
            "backend.musubi_tuner.split_attn",
            "must be on for FramePack with dataset.batch_size > 1; turn it on or set batch_size = 1",
        )
    # parser_common.py: exactly one of --sdpa/--flash_attn/--xformers/--flash3, else trainer_base raises.
    return [f"--{mode}", "--split_attn"] if opt["split_attn"] else [f"--{mode}"]


def memory_args(preset: Any, arch: Architecture) -> list[str]:
    opt = _musubi(preset)
    args = []
    if preset.get("memory.fp8_base"):
        args.append("--fp8_base")
    if arch.id == "framepack" and preset.get("model.dtype") != "bfloat16":
        # fpack_train_network.py main(): args.dit_dtype = "bfloat16"  # fixed
        raise PlanError("model.dtype", "FramePack trains in bfloat16 only; set model.dtype = 'bfloat16'")
    if opt["fp8_scaled"] and arch.family != "hunyuan":
        if not preset.get("memory.fp8_base"):
            # trainer_base.py: assert not args.fp8_scaled or args.fp8_base
            raise PlanError("backend.musubi_tuner.fp8_scaled", "needs memory.fp8_base = true; turn both on or off")
        args.append("--fp8_scaled")
    elif opt["fp8_scaled"]:
        raise PlanError("backend.musubi_tuner.fp8_scaled", "is not supported for HunyuanVideo; use fp8_base alone")
    swap = preset.get("memory.blocks_to_swap")
    limit = ARCH_SPECS[arch.id].max_blocks_to_swap
    if swap > limit:
        raise PlanError("memory.blocks_to_swap", f"is {swap}; {arch.label} can swap at most {limit} blocks")
    if swap:
        args += ["--blocks_to_swap", str(swap)]
    if preset.get("memory.gradient_checkpointing"):
        args.append("--gradient_checkpointing")
    return args


def _network_args(preset: Any, spec: ArchSpec) -> list[str]:
    args = ["--network_module", spec.network_module, "--network_dim", str(preset.get("network.rank")),
            # parser_common.py: --network_alpha defaults to 1, not to the rank, so it is always passed.
            "--network_alpha", fmt_float(preset.get("network.alpha"))]
    if preset.get("network.dropout"):
        args += ["--network_dropout", fmt_float(preset.get("network.dropout"))]
    extra = parse_network_args(_musubi(preset)["network_args"])
    if extra:
        args += ["--network_args", *extra]
    return args


def _loop_args(preset: Any, request: TrainRequest) -> list[str]:
    workers = _musubi(preset)["max_data_loader_n_workers"]
    args = ["--max_data_loader_n_workers", str(workers)]
    if workers:  # torch's DataLoader refuses persistent workers when there are none
        args.append("--persistent_data_loader_workers")
    if request.epochs:
        args += ["--max_train_epochs", str(request.epochs)]
    else:  # --max_train_epochs would override the step count (trainer_base.py), so it is left out
        args += ["--max_train_steps", str(preset.get("training.max_steps"))]
    args += ["--save_every_n_epochs", str(preset.get("training.save_every_n_epochs"))]
    if preset.get("training.save_state"):
        args.append("--save_state")
    args += ["--seed", str(preset.get("training.seed")),
             "--gradient_accumulation_steps", str(preset.get("training.gradient_accumulation_steps")),
             "--save_precision", SAVE_PRECISION[preset.get("output.save_dtype")],
             "--output_dir", preset.get("output.dir"), "--output_name", request.output_name,
             # --logging_dir alone would enable TensorBoard too; naming it keeps the intent explicit.
             "--logging_dir", request.logging_dir, "--log_with", "tensorboard"]
    if request.resume_from:
        args += ["--resume", request.resume_from]
    return args
