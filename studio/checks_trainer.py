"""Trainer quirks: settings each trainer rejects, ignores or turns into a lost or NaN run.

Sources (docs/reference and the trainers at the commits the backends were verified against):
diffusion-pipe 8f83dbf ``train.py`` / ``utils/saver.py`` / ``models/*.py``; musubi-tuner 30c658c
``training/parser_common.py``, ``training/trainer_base.py``, ``modules/custom_offloading_utils.py``.
"""

from __future__ import annotations

from studio.check_context import CheckContext
from studio.findings import Finding, Fix

MUSUBI_OPTIMIZERS = ("adamw", "adamw8bit", "adafactor", "prodigy")  # backends/musubi_args.py OPTIMIZERS


def dp_alpha(ctx: CheckContext) -> list[Finding]:
    """diffusion-pipe forces alpha = rank; an ``alpha`` key in [adapter] raises NotImplementedError."""
    if ctx.backend != "diffusion_pipe":
        return []
    rank, alpha = ctx.get("network.rank"), float(ctx.get("network.alpha"))
    if alpha in (0.0, float(rank)):
        return []
    return [Finding(
        "warning", "network.alpha",
        f"diffusion-pipe always trains with alpha = rank ({rank}); alpha {alpha:g} is ignored, so the effective "
        f"learning rate is {rank / alpha:.2g}x what the same preset gives on musubi-tuner",
        f"set alpha to {rank} so the preset means the same on both trainers",
        Fix(f"Set alpha = {rank}", {"network.alpha": float(rank)}))]


def musubi_alpha(ctx: CheckContext) -> list[Finding]:
    """musubi passes --network_alpha literally (its default is 1, not the rank): alpha/rank scales the LR."""
    if ctx.backend != "musubi_tuner":
        return []
    rank, alpha = ctx.get("network.rank"), float(ctx.get("network.alpha"))
    if alpha > rank:
        return [Finding("warning", "network.alpha",
                        f"alpha {alpha:g} is above the rank {rank}: LoRA updates are scaled up {alpha / rank:.2g}x, "
                        "which often diverges (loss nan)",
                        f"use alpha <= rank, e.g. {rank}", Fix(f"Set alpha = {rank}", {"network.alpha": float(rank)}))]
    if 0 < alpha * 16 < rank:
        return [Finding("info", "network.alpha",
                        f"alpha {alpha:g} with rank {rank} scales LoRA updates by {alpha / rank:.3g}; raise the "
                        "learning rate to match (musubi's own default alpha is 1)", "")]
    return []


def resume_possible(ctx: CheckContext) -> list[Finding]:
    if ctx.backend == "diffusion_pipe" and not ctx.get("training.checkpoint_every_n_minutes"):
        return [Finding(
            "warning", "training.checkpoint_every_n_minutes",
            "diffusion-pipe writes no resumable checkpoint until the run ends: after a crash "
            "--resume_from_checkpoint fails with 'Unable to find latest file' (diffusion-pipe #73, #159, #387)",
            "checkpoint every 30 minutes", Fix("Checkpoint every 30 min", {"training.checkpoint_every_n_minutes": 30}))]
    if ctx.backend == "musubi_tuner" and not ctx.get("training.save_state"):
        return [Finding("warning", "training.save_state",
                        "without --save_state musubi-tuner saves only LoRA weights: a stopped run cannot be resumed "
                        "with its optimizer state", "keep the training state",
                        Fix("Save resumable state", {"training.save_state": True}))]
    return []


def optimizer_available(ctx: CheckContext) -> list[Finding]:
    kind = ctx.get("optimizer.type")
    if ctx.backend == "musubi_tuner" and kind not in MUSUBI_OPTIMIZERS:
        return [Finding("error", "optimizer.type",
                        f"{kind} exists only in diffusion-pipe; musubi-tuner's get_optimizer has no such optimizer",
                        "use adamw8bit (the musubi docs' choice)", Fix("Use adamw8bit", {"optimizer.type": "adamw8bit"}))]
    return []


def learning_rate_risk(ctx: CheckContext) -> list[Finding]:
    lr, kind = ctx.get("optimizer.learning_rate"), ctx.get("optimizer.type")
    if kind == "prodigy" or lr < 1e-3:
        return []
    return [Finding("warning", "optimizer.learning_rate",
                    f"a learning rate of {lr:g} is 5-50x the usual LoRA range (5e-5 to 2e-4); runs like this end in "
                    "'loss nan' or a burnt-in LoRA (CogVideo #458, DiffSynth #1385)", "use 2e-4 or lower",
                    Fix("Use learning rate 2e-4", {"optimizer.learning_rate": 2e-4}))]


def fp16_risk(ctx: CheckContext) -> list[Finding]:
    """diffusion-pipe builds its DeepSpeed config without an fp16 section, so float16 trains without loss scaling."""
    if ctx.backend != "diffusion_pipe" or ctx.get("model.dtype") != "float16":
        return []
    return [Finding("warning", "model.dtype",
                    "diffusion-pipe trains float16 without loss scaling: gradients underflow or overflow and the "
                    "loss goes nan (the seeds saw the same after switching bf16 -> fp16)",
                    "use bfloat16 (any GPU from RTX 30xx on supports it)",
                    Fix("Use bfloat16", {"model.dtype": "bfloat16"}))]


def swap_limits(ctx: CheckContext) -> list[Finding]:
    from studio.vram_preset import max_blocks_to_swap, settings_from_preset

    swap = int(ctx.get("memory.blocks_to_swap") or 0)
    if not swap:
        return []
    limit = max_blocks_to_swap(settings_from_preset(ctx.preset))
    trainer = "musubi-tuner" if ctx.backend == "musubi_tuner" else "diffusion-pipe"
    if limit == 0:
        return [Finding("error", "memory.blocks_to_swap", f"{trainer} has no block swap for {ctx.arch.label}",
                        "set it to 0", Fix("No block swap", {"memory.blocks_to_swap": 0}))]
    findings = []
    if swap > limit:
        findings.append(Finding("error", "memory.blocks_to_swap",
                                f"{trainer} can swap at most {limit} blocks of {ctx.arch.label} (its enable_block_swap "
                                f"assertion); {swap} stops the run at start", f"use {limit}",
                                Fix(f"Swap {limit} blocks", {"memory.blocks_to_swap": limit})))
    if ctx.backend == "diffusion_pipe" and int(ctx.option("pipeline_stages", 1) or 1) != 1:
        findings.append(Finding("error", "memory.blocks_to_swap",
                                "diffusion-pipe's block swap needs pipeline_stages = 1 (train.py assertion)",
                                "use one pipeline stage or no block swap",
                                Fix("One pipeline stage", {ctx.option_key("pipeline_stages"): 1})))
    if ctx.backend == "musubi_tuner" and ctx.option("offload_inactive_dit"):
        findings.append(Finding("error", ctx.option_key("offload_inactive_dit"),
                                "musubi-tuner cannot offload the idle Wan2.2 expert while swapping blocks",
                                "turn one of them off", Fix("Keep the idle expert on the GPU",
                                                            {ctx.option_key("offload_inactive_dit"): False})))
    return findings


def fp8_flags(ctx: CheckContext) -> list[Finding]:
    if ctx.backend != "musubi_tuner" or not ctx.option("fp8_scaled"):
        return []
    key = ctx.option_key("fp8_scaled")
    if ctx.arch.family == "hunyuan":
        return [Finding("error", key, "musubi-tuner does not support --fp8_scaled for HunyuanVideo",
                        "use fp8 base alone", Fix("fp8 base without scaling", {key: False, "memory.fp8_base": True}))]
    if not ctx.get("memory.fp8_base"):
        return [Finding("error", key, "--fp8_scaled needs --fp8_base (trainer_base.py: 'fp8_scaled requires "
                        "fp8_base')", "turn on fp8 base too", Fix("Turn on fp8 base", {"memory.fp8_base": True}))]
    return []


def musubi_schedule(ctx: CheckContext) -> list[Finding]:
    if ctx.backend != "musubi_tuner":
        return []
    if ctx.get("optimizer.lr_scheduler") == "constant" and ctx.get("optimizer.warmup_steps"):
        return [Finding("error", "optimizer.warmup_steps",
                        "musubi's constant schedule takes no warm-up and stops with 'constant does not require "
                        "num_warmup_steps'", "use constant_with_warmup (or no warm-up)",
                        Fix("Use constant_with_warmup", {"optimizer.lr_scheduler": "constant_with_warmup"}))]
    return []


def framepack_batch(ctx: CheckContext) -> list[Finding]:
    if ctx.arch.id != "framepack" or ctx.get("dataset.batch_size") <= 1 or ctx.option("split_attn"):
        return []
    key = ctx.option_key("split_attn")
    return [Finding("error", key, "FramePack with batch size > 1 fails with sdpa/xformers unless attention is split "
                    "(musubi docs/framepack.md)", "turn on split attention", Fix("Split attention", {key: True}))]


def save_interval(ctx: CheckContext) -> list[Finding]:
    epochs, every = ctx.get("training.epochs"), ctx.get("training.save_every_n_epochs")
    if ctx.get("training.max_steps") or every <= epochs:
        return []
    return [Finding("info", "training.save_every_n_epochs",
                    f"saves every {every} epochs but trains {epochs}: only the final LoRA is written, so there are "
                    "no earlier epochs to compare", f"save every {max(1, epochs // 4)} epochs",
                    Fix("Save more often", {"training.save_every_n_epochs": max(1, epochs // 4)}))]


def attention_install(ctx: CheckContext) -> list[Finding]:
    mode = ctx.option("attention", "sdpa") if ctx.backend == "musubi_tuner" else "sdpa"
    if mode == "sdpa":
        return []
    return [Finding("info", ctx.option_key("attention"),
                    f"--{mode} needs its package in musubi-tuner's environment; Settings > Check install shows "
                    "whether it imports", "")]


def gpu_ids_unique(ctx: CheckContext) -> list[Finding]:
    ids = list(ctx.get("training.gpu_ids") or [])
    if len(ids) == len(set(ids)):
        return []
    unique = sorted(set(ids))
    return [Finding("error", "training.gpu_ids", f"{ids} lists a GPU twice", f"use {unique}",
                    Fix(f"Use GPUs {unique}", {"training.gpu_ids": unique}))]


CHECKS = (dp_alpha, musubi_alpha, resume_possible, optimizer_available, learning_rate_risk, fp16_risk, swap_limits,
          fp8_flags, musubi_schedule, framepack_batch, save_interval, attention_install, gpu_ids_unique)
