"""Shared setup for the musubi-tuner backend tests: fixed machine settings and preset loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.base import PlanOptions
from backends.musubi_tuner import MusubiTuner
from studio.presets import Preset, load_preset, set_value
from studio.settings import Settings, TrainerInstall

REPO = Path(__file__).resolve().parent.parent
PRESETS = sorted((REPO / "presets").glob("musubi-*.toml"))
# Only this backend's table: the tests must not depend on other trainers' modules being importable.
FIELDS = {"musubi_tuner": MusubiTuner.options}
INSTALL = "/opt/musubi_tuner"
PYTHON = "/opt/musubi_tuner/venv/bin/python"


def fixed_settings(**roots: str) -> Settings:
    settings = Settings(data_root=roots.get("data", "/data"), models_root=roots.get("models", "/models"),
                        output_root=roots.get("output", "/out"))
    settings.trainers["musubi_tuner"] = TrainerInstall(INSTALL, PYTHON)
    return settings


def preset(stem: str, **changes: Any) -> Preset:
    """A shipped preset with ``section__key=value`` changes (``backend__musubi_tuner__x`` for the backend table)."""
    loaded = load_preset(REPO / "presets" / f"{stem}.toml", FIELDS)
    for dotted, value in changes.items():
        set_value(loaded, dotted.replace("__", "."), value, FIELDS)
    return loaded


def plan_of(loaded: Preset, run_dir: Path, settings: Settings | None = None, **options: Any):
    return MusubiTuner().plan(loaded, settings or fixed_settings(), str(run_dir), PlanOptions(**options))


def step(plan, name: str) -> list[str]:
    return next(s.argv for s in plan.steps if s.name == name)


def value_after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def script_part(argv: list[str]) -> list[str]:
    """The training script's own arguments: everything after the second ``-m``."""
    second = [i for i, a in enumerate(argv) if a == "-m"][1]
    return argv[second:]
