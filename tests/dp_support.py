"""Shared fixtures for the diffusion-pipe backend tests: fixed machine settings and preset loading."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from backends.base import Plan, PlanOptions
from backends.diffusion_pipe import DiffusionPipe
from studio.presets import Preset, load_preset, new_preset, set_value
from studio.settings import Settings, TrainerInstall

REPO = Path(__file__).resolve().parent.parent
PRESETS = sorted((REPO / "presets").glob("diffusion-pipe-*.toml"))
BACKEND = DiffusionPipe()
FIELDS = {"diffusion_pipe": BACKEND.options}
INSTALL = "/opt/diffusion-pipe"
PYTHON = "/opt/diffusion-pipe/venv/bin/python"


def fixed_settings(**changes: Any) -> Settings:
    """The golden machine: roots /data, /models, /out and the trainer in /opt/diffusion-pipe."""
    settings = Settings(data_root="/data", models_root="/models", output_root="/out", runs_dir="/runs")
    settings.trainers["diffusion_pipe"] = TrainerInstall(INSTALL, PYTHON)
    return replace(settings, **changes)


def shipped(stem: str) -> Preset:
    return load_preset(REPO / "presets" / f"{stem}.toml", FIELDS)


def preset_for(architecture: str, **values: Any) -> Preset:
    """A fresh preset for ``architecture`` with the model paths each family needs, plus ``values``
    (dotted keys written with "__" for ".", e.g. memory__fp8_base=True)."""
    preset = new_preset(FIELDS, "diffusion_pipe", architecture, "test-preset")
    base = {
        "dataset.path": "${DATA}/clips",
        "model.dit": "${MODELS}/dit.safetensors",
        "backend.diffusion_pipe.ckpt_path": "${MODELS}/official",
    }
    if architecture == "hunyuan-video":
        base.update({"model.vae": "${MODELS}/vae.safetensors", "model.text_encoder": "${MODELS}/llm",
                     "model.text_encoder_2": "${MODELS}/clip"})
    base.update({key.replace("__", "."): value for key, value in values.items()})
    for dotted, value in base.items():
        set_value(preset, dotted, value, FIELDS)
    return preset


def make_plan(preset: Preset, run_dir: Path | str = "/runs/job", settings: Settings | None = None,
              **options: Any) -> Plan:
    return BACKEND.plan(preset, settings or fixed_settings(), str(run_dir), PlanOptions(**options))
