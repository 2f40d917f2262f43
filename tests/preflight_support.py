"""A real machine for pre-flight tests: trainer checkouts, model files, a dataset of ffmpeg-made clips.

``ready_machine(tmp)`` builds everything a shipped preset needs, so a test starts from a setup with no errors
and changes one thing. Model files are real safetensors / torch-zip files (tests/weights_fixtures.py); the
trainers' checkouts hold the files ``Check install`` looks for, and their python is this interpreter.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from media_fixtures import make_clip, write_caption
from weights_fixtures import wan_dit_tensors, write_safetensors, write_torch_zip

from backends import backend_fields, get_backend
from studio.findings import Finding
from studio.gpu import GpuInfo
from studio.presets import SHIPPED_DIR, Preset, load_preset, set_value
from studio.settings import Settings, TrainerInstall

FIELDS = backend_fields()
GIB = 1024**3
PLENTY_DISK = 10**13
PLENTY_RAM = 256 * GIB
OFFICIAL_CLIP = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"


@dataclass
class Machine:
    settings: Settings
    root: Path

    @property
    def data(self) -> Path:
        return Path(self.settings.data_root)

    @property
    def models(self) -> Path:
        return Path(self.settings.models_root)


def card(gib: float, *, free_gib: float | None = None, index: int = 0) -> GpuInfo:
    """A GPU as NVML reports it (a 24 GiB card: RTX 3090/4090 class)."""
    total = int(gib * 1024)
    free = int((free_gib if free_gib is not None else gib) * 1024)
    return GpuInfo(index=index, name=f"test card {gib:g} GiB", total_mib=total, free_mib=free)


def _install(root: Path, name: str) -> TrainerInstall:
    folder = root / name
    for rel in get_backend(name).required_files:
        target = folder / rel
        if target.suffix:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("# test checkout\n")
        else:
            target.mkdir(parents=True, exist_ok=True)
    return TrainerInstall(install_dir=str(folder), python=sys.executable)


def _wan_models(models: Path) -> None:
    """The files the shipped Wan presets point at (the catalogue's download locations), with real headers."""
    comfy = models / "Wan_2.1_ComfyUI_repackaged" / "split_files" / "diffusion_models"
    write_safetensors(comfy / "wan2.1_t2v_1.3B_bf16.safetensors", wan_dit_tensors(dim=1536))
    write_safetensors(comfy / "wan2.1_i2v_480p_14B_bf16.safetensors",
                      wan_dit_tensors(dim=5120, in_channels=36, image_attention=True))
    write_safetensors(models / "WanVideo_comfy" / "umt5-xxl-enc-bf16.safetensors",
                      {"encoder.block.0.layer.0.SelfAttention.q.weight": ("BF16", (4096, 4096))})
    for folder in ("Wan2.1-T2V-1.3B", "Wan2.1-I2V-14B-480P"):
        base = models / folder
        write_torch_zip(base / "Wan2.1_VAE.pth", ["BFloat16Storage"])
        write_torch_zip(base / "models_t5_umt5-xxl-enc-bf16.pth", ["BFloat16Storage"])
        (base / "google" / "umt5-xxl").mkdir(parents=True, exist_ok=True)
    (models / "Wan2.1-T2V-1.3B" / "config.json").write_text(json.dumps({"model_type": "t2v", "dim": 1536}))
    write_torch_zip(models / "Wan2.1-I2V-14B-480P" / OFFICIAL_CLIP, ["HalfStorage"])


def ready_machine(root: Path, *, clips: int = 2, frames: int = 49, fps: float = 16.0) -> Machine:
    """Settings, installs, model files and a captioned dataset (``${DATA}/my_clips``) under ``root``."""
    settings = Settings(data_root=str(root / "data"), models_root=str(root / "models"),
                        output_root=str(root / "output"), runs_dir=str(root / "runs"),
                        presets_dir=str(root / "presets"))
    settings.trainers = {name: _install(root / "trainers", name) for name in ("musubi_tuner", "diffusion_pipe")}
    _wan_models(Path(settings.models_root))
    dataset = Path(settings.data_root) / "my_clips"
    for i in range(clips):
        write_caption(make_clip(dataset / f"clip{i}.mp4", frames=frames, fps=fps), f"a test pattern, take {i}")
    Path(settings.output_root).mkdir(parents=True, exist_ok=True)
    return Machine(settings, root)


def shipped(name: str, **changes: Any) -> Preset:
    """A shipped preset with ``changes`` applied through the field checks (``dataset__frames=[1, 81]``)."""
    preset = load_preset(SHIPPED_DIR / f"{name}.toml", FIELDS)
    return with_values(preset, {k.replace("__", "."): v for k, v in changes.items()})


def with_values(preset: Preset, changes: dict[str, Any]) -> Preset:
    """A copy with dotted keys set (e.g. a Finding's one-click ``Fix.changes``)."""
    result = preset.copy()
    for dotted, value in changes.items():
        if dotted.startswith("preprocess."):
            continue  # not a preset key: it opens the preprocessing form
        set_value(result, dotted, value, FIELDS)
    return result


def run(preset: Preset, machine: Machine, *, gpu_gib: float | None = 24, media: Any = None,
        disk_free: Any = PLENTY_DISK, ram_total: int | None = PLENTY_RAM) -> list[Finding]:
    from studio.preflight import check

    gpus = [card(gpu_gib)] if gpu_gib else []
    return check(preset, machine.settings, media, gpus, disk_free=disk_free, ram_total=ram_total)


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


def about(findings: list[Finding], field: str, level: str | None = None, *, containing: str = "") -> list[Finding]:
    return [f for f in findings if f.field == field and (level is None or f.level == level)
            and containing in f.message]


def context(preset: Preset, machine: Machine | None = None, *, media: Any = (), gpu_gib: float | None = 24,
            disk_free: Any = PLENTY_DISK, ram_total: int | None = PLENTY_RAM):
    """A CheckContext for calling one rule directly (no dataset scan unless ``media`` is None)."""
    from studio.preflight import make_context

    settings = machine.settings if machine else Settings()
    gpus = [card(gpu_gib)] if gpu_gib else []
    return make_context(preset, settings, list(media) if media is not None else None, gpus,
                        disk_free=disk_free, ram_total=ram_total)
