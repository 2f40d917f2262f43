"""Helpers every CLI sub-command shares: settings, presets by name or path, JSON or text output."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from studio.presets import Preset, apply_overrides, list_presets, load_preset
from studio.settings import Settings, load_settings


def add_common_options(parser: argparse.ArgumentParser, *, takes_preset: bool = False) -> None:
    parser.add_argument("--settings", metavar="FILE", help="machine settings file (default: ~/.video-lora-studio/settings.toml)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    if takes_preset:
        parser.add_argument("preset", help="preset name (see `presets`) or path to a preset .toml")
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                            help="override one preset value (repeatable), e.g. --set training.epochs=8")


def settings_arg(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "settings", None))


def load_preset_arg(args: argparse.Namespace, settings: Settings | None = None) -> Preset:
    """The preset named or pointed at by ``args.preset``, with ``--set`` overrides applied."""
    from backends import backend_fields

    settings = settings or settings_arg(args)
    fields = backend_fields()
    target = Path(args.preset)
    if target.suffix == ".toml" or target.exists():
        if not target.is_file():
            raise FileNotFoundError(f"preset file {target} does not exist")
        preset = load_preset(target, fields)
    else:
        library = list_presets(settings.presets_dir, fields)
        if args.preset not in library:
            names = ", ".join(sorted(library)) or "(none)"
            raise LookupError(f"no preset named {args.preset!r}; known presets: {names}")
        preset = load_preset(library[args.preset], fields)
    return apply_overrides(preset, getattr(args, "overrides", []) or [], fields)


def to_jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    """Print ``payload`` as JSON with --json, else the human-readable ``text``."""
    if getattr(args, "json", False):
        json.dump(to_jsonable(payload), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text.rstrip("\n") + "\n")
