"""Trainer backends. Adding a trainer = one module with a Backend subclass, listed here, plus presets and tests."""

from __future__ import annotations

from functools import cache

from backends.base import Backend, Plan, PlanError, PlanOptions, Step
from studio.fields import Field

_MODULES = {
    "musubi_tuner": ("backends.musubi_tuner", "MusubiTuner"),
    "diffusion_pipe": ("backends.diffusion_pipe", "DiffusionPipe"),
}


@cache
def get_backend(name: str) -> Backend:
    if name not in _MODULES:
        raise KeyError(f"unknown trainer {name!r}; known: {', '.join(_MODULES)}")
    import importlib

    module_name, class_name = _MODULES[name]
    return getattr(importlib.import_module(module_name), class_name)()


def backend_names() -> tuple[str, ...]:
    return tuple(_MODULES)


def backend_fields() -> dict[str, tuple[Field, ...]]:
    """The [backend.<name>] fields of every trainer, for parsing presets."""
    return {name: get_backend(name).options for name in _MODULES}


__all__ = ["Backend", "Plan", "PlanError", "PlanOptions", "Step", "backend_fields", "backend_names", "get_backend"]
