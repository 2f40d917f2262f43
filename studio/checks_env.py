"""This machine: trainer install and python, free disk for caches and outputs, RAM for block swap, GPUs, VRAM.

Nothing here runs a process: "Check install" (studio.install_check) imports the trainer's modules in its own
python; pre-flight only looks at files, so it stays instant and testable.
"""

from __future__ import annotations

from pathlib import Path

from studio.check_context import CheckContext
from studio.findings import Finding
from studio.vram_shapes import shape_of

GIB = 1024**3
WAN22_OFFLOAD_SHARED_GIB = 42  # musubi docs/wan.md: --offload_inactive_dit needs about 42 GB of shared memory


def install(ctx: CheckContext) -> list[Finding]:
    from backends import get_backend

    backend = get_backend(ctx.backend)
    trainer = ctx.settings.trainer(ctx.backend)
    where = f"Settings > {backend.label}"
    if not trainer.install_dir:
        return [Finding("error", "", f"{backend.label} is not installed in the settings (no install folder)",
                        f"set {where} > install folder to your {backend.label} checkout")]
    folder = Path(trainer.install_dir)
    if not folder.is_dir():
        return [Finding("error", "", f"{backend.label} install folder {folder} does not exist",
                        f"correct {where} > install folder")]
    findings = []
    missing = [rel for rel in getattr(backend, "required_files", ()) if not (folder / rel).exists()]
    if missing:
        findings.append(Finding("error", "", f"{folder} is not a complete {backend.label} checkout: "
                                f"{', '.join(missing)} missing", "clone it again with --recurse-submodules, or run "
                                "git submodule update in it"))
    python = trainer.python_path()
    if not python:
        findings.append(Finding("error", "", f"{backend.label}'s python is not set and {folder} has no venv",
                                f"set {where} > python to the interpreter of its environment"))
    elif not Path(python).is_file():
        findings.append(Finding("error", "", f"{backend.label}'s python {python} does not exist",
                                f"correct {where} > python (the trainer's venv/conda interpreter)"))
    return findings


def disk_space(ctx: CheckContext) -> list[Finding]:
    need_cache, need_out = cache_bytes(ctx), output_bytes(ctx)
    findings = []
    for key, folder, need, what in (("dataset.path", ctx.get("dataset.path"), need_cache, "latent and text caches"),
                                    ("output.dir", ctx.get("output.dir"), need_out, "LoRA files and checkpoints")):
        if not folder or not need:
            continue
        free = ctx.disk_free(folder)
        if free is None:
            continue
        if free < need:
            findings.append(Finding("error", key, f"{what} need about {need / GIB:.1f} GiB but only "
                                    f"{free / GIB:.1f} GiB is free under {folder}: the run would stop when the disk "
                                    "fills", "free disk space or move the folder to a larger disk"))
        elif free < 2 * need:
            findings.append(Finding("warning", key, f"{what} need about {need / GIB:.1f} GiB; {free / GIB:.1f} GiB "
                                    f"is free under {folder}", "free some space before long runs"))
    return findings


def cache_bytes(ctx: CheckContext) -> int:
    """Latent + text-encoder caches for the scanned media (one file per clip window, bf16)."""
    media = [m for m in ctx.media or [] if m.ok]
    if not media:
        return 0
    shape = shape_of(ctx.arch)
    width, height = ctx.get("dataset.resolution")
    report = ctx.cache.get("buckets")
    frames = max(int(f) for f in ctx.get("dataset.frames") or [1])
    windows = sum(max(1, len(c.windows)) for c in report.clips if c.status == "ok") if report else len(media)
    latent_pixels = (height // (shape.spatial_stride // 2)) * (width // (shape.spatial_stride // 2))
    channels = 36 if ctx.arch.i2v else shape.in_channels
    latent = channels * shape.latent_frames(frames) * latent_pixels * 2
    text = 512 * shape.text_dim * 2  # upper bound: a full-length context per caption
    return int(windows * latent + len(media) * text)


def output_bytes(ctx: CheckContext) -> int:
    """LoRA files for every save plus resumable state (parameters and optimizer moments in fp32)."""
    params = shape_of(ctx.arch).lora_params_per_rank() * int(ctx.get("network.rank"))
    save_bytes = {"float32": 4, "bfloat16": 2, "float16": 2}.get(ctx.get("output.save_dtype"), 2)
    saves = int(ctx.get("training.epochs")) // max(1, int(ctx.get("training.save_every_n_epochs"))) + 1
    states = 2 if (ctx.get("training.save_state") or ctx.backend == "diffusion_pipe") else 0
    return int(params * (saves * save_bytes + states * 12))


def host_ram(ctx: CheckContext) -> list[Finding]:
    if not ctx.ram_total:
        return []
    from studio.vram import host_ram_gib
    from studio.vram_preset import settings_from_preset

    ms = settings_from_preset(ctx.preset)
    need = host_ram_gib(ms)
    if ctx.backend == "musubi_tuner" and ctx.option("offload_inactive_dit") and ctx.get("model.dit_high_noise"):
        need += WAN22_OFFLOAD_SHARED_GIB
    total = ctx.ram_total / GIB
    reason = f"swapping {ms.blocks_to_swap} blocks" if ms.blocks_to_swap else "loading the model"
    if need > total:
        return [Finding("error", "memory.blocks_to_swap" if ms.blocks_to_swap else "",
                        f"{reason} needs about {need:.0f} GiB of RAM; this machine has {total:.0f} GiB, so the run "
                        "would be killed or swap to disk (musubi #202, diffusion-pipe #164)",
                        "swap fewer blocks (use fp8 instead), or add RAM/swap space")]
    if need > 0.85 * total:
        return [Finding("warning", "memory.blocks_to_swap" if ms.blocks_to_swap else "",
                        f"{reason} needs about {need:.0f} of {total:.0f} GiB RAM: little is left for data loading",
                        "close other programs, or swap fewer blocks")]
    return []


def gpus(ctx: CheckContext) -> list[Finding]:
    wanted = list(ctx.get("training.gpu_ids") or [])
    found = {g.index for g in ctx.gpus}
    missing = [i for i in wanted if i not in found]
    if missing:
        return [Finding("error", "training.gpu_ids", f"GPU {missing} not found on this machine",
                        "pick GPUs from the GPU panel (indices as nvidia-smi shows them)")]
    if not ctx.gpus:
        return [Finding("warning", "", "no NVIDIA GPU detected (no driver or NVML): the VRAM check cannot compare "
                        "with a card", "install the NVIDIA driver, or check on the training machine")]
    return []


def vram(ctx: CheckContext) -> list[Finding]:
    from studio.vram import estimate

    result = estimate(ctx.preset, gpus=ctx.gpus or None)
    ctx.cache["vram"] = result
    top = ", ".join(f"{k} {v:.1f}" for k, v in sorted(result.breakdown.items(), key=lambda kv: -kv[1])[:3])
    summary = f"estimated peak {result.total_gib:.1f} GiB ({top} GiB)"
    if result.verdict == "unknown":
        return [Finding("info", "memory.gradient_checkpointing", f"{summary}; no GPU to compare with", "")]
    card = f"{result.gpu_gib:.1f} GiB"
    action = result.autofit[0] if result.autofit else None
    # Shown next to the setting the cheapest fix changes (the Config tab places findings by field).
    field = next(iter(action.changes)) if action else "memory.gradient_checkpointing"
    if result.verdict == "wont_fit":
        return [Finding("error", field, f"will run out of GPU memory: {summary} on a {card} card", result.text,
                        action)]
    if result.verdict == "tight":
        return [Finding("warning", field, f"may run out of GPU memory: {summary} of {card}, within the model's "
                        "error", result.text, action)]
    return [Finding("info", "memory.gradient_checkpointing", f"{summary} of {card}: fits", "")]


CHECKS = (install, disk_space, host_ram, gpus, vram)
