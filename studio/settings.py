"""Machine settings: what is true of *this* computer. Secrets, trainer installs and python executables live here
and only here, never in a preset or an export, because presets travel between teammates.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import tomlkit

from studio.atomic import write_text_atomic
from studio.tomlcompat import tomllib

TRAINER_NAMES = ("musubi_tuner", "diffusion_pipe", "diffsynth", "cogvideox", "sd_scripts")
ROOT_NAMES = ("DATA", "MODELS", "OUTPUT")


class SettingsError(ValueError):
    pass


@dataclass
class TrainerInstall:
    install_dir: str = ""  # the trainer's git checkout
    python: str = ""  # the python of the trainer's own venv/conda env

    def python_path(self) -> str:
        """The configured interpreter, or the venv's python inside the install dir, or ""."""
        if self.python:
            return self.python
        if self.install_dir:
            for candidate in (".venv/bin/python", "venv/bin/python", ".venv/Scripts/python.exe"):
                path = Path(self.install_dir, candidate)
                if path.exists():
                    return str(path)
        return ""


@dataclass
class Settings:
    data_root: str = ""
    models_root: str = ""
    output_root: str = ""
    runs_dir: str = ""  # where the studio keeps its own job folders
    presets_dir: str = ""  # the user's saved presets
    hf_token: str = ""
    hf_endpoint: str = ""
    default_gpu: int = 0
    language: str = "en"
    trainers: dict[str, TrainerInstall] = field(default_factory=lambda: {n: TrainerInstall() for n in TRAINER_NAMES})
    path: str = ""  # the file these settings came from

    def trainer(self, name: str) -> TrainerInstall:
        return self.trainers.get(name, TrainerInstall())

    def roots(self) -> dict[str, str]:
        return {"DATA": self.data_root, "MODELS": self.models_root, "OUTPUT": self.output_root}

    def redacted(self) -> dict[str, Any]:
        data = asdict(self)
        data["hf_token"] = "***" if self.hf_token else ""
        return data


def studio_home() -> Path:
    """``$VIDEO_LORA_STUDIO_HOME`` or ~/.video-lora-studio: settings, user presets and runs."""
    env = os.environ.get("VIDEO_LORA_STUDIO_HOME")
    return Path(env).expanduser() if env else Path.home() / ".video-lora-studio"


def default_settings_path() -> Path:
    return studio_home() / "settings.toml"


def with_defaults(settings: Settings) -> Settings:
    """Fill empty folders with places under the studio home so a fresh install works at once."""
    home = studio_home()
    return replace(
        settings,
        data_root=settings.data_root or str(home / "data"),
        models_root=settings.models_root or str(home / "models"),
        output_root=settings.output_root or str(home / "output"),
        runs_dir=settings.runs_dir or str(home / "runs"),
        presets_dir=settings.presets_dir or str(home / "presets"),
    )


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    target = Path(path) if path else default_settings_path()
    if not target.exists():
        return with_defaults(Settings(path=str(target)))
    try:
        raw = tomllib.loads(target.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{target}: not valid TOML ({exc}); fix or delete the file") from None
    return with_defaults(settings_from_dict(raw, str(target)))


def settings_from_dict(raw: dict[str, Any], path: str = "") -> Settings:
    settings = Settings(path=path)
    for key, value in raw.items():
        if key == "trainers":
            if not isinstance(value, dict):
                raise SettingsError("trainers: expected a table of [trainers.<name>]")
            for name, install in value.items():
                if name not in TRAINER_NAMES:
                    raise SettingsError(f"trainers.{name}: unknown trainer; known: {', '.join(TRAINER_NAMES)}")
                if not isinstance(install, dict) or set(install) - {"install_dir", "python"}:
                    raise SettingsError(f"trainers.{name}: only install_dir and python are allowed")
                settings.trainers[name] = TrainerInstall(**{k: str(v) for k, v in install.items()})
        elif key in ("default_gpu",):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SettingsError("default_gpu: expected a GPU index >= 0")
            settings.default_gpu = value
        elif key in Settings.__dataclass_fields__ and key not in ("path", "trainers"):
            if not isinstance(value, str):
                raise SettingsError(f"{key}: expected text")
            setattr(settings, key, value)
        else:
            raise SettingsError(f"{key}: unknown setting")
    return settings


def save_settings(settings: Settings, path: str | os.PathLike[str] | None = None) -> Path:
    """Write atomically with mode 0600: the file may hold the HF token."""
    target = Path(path or settings.path or default_settings_path())
    doc = tomlkit.document()
    doc.add(tomlkit.comment("Video LoRA Studio machine settings: this computer only. Never share this file."))
    data = asdict(settings)
    data.pop("path")
    trainers = data.pop("trainers")
    for key, value in data.items():
        doc[key] = value
    table = tomlkit.table()
    for name, install in trainers.items():
        sub = tomlkit.table()
        sub["install_dir"] = install["install_dir"]
        sub["python"] = install["python"]
        table[name] = sub
    doc["trainers"] = table
    return write_text_atomic(target, tomlkit.dumps(doc), mode=0o600)


def discover_pythons(install_dir: str = "") -> list[str]:
    """Interpreters a trainer could run in: venvs inside its checkout and conda envs in the usual places.

    The GUI offers only these (plus what the settings file already names): a path typed into a browser is never
    used as an executable.
    """
    home = Path.home()
    patterns = []
    if install_dir:
        patterns += [Path(install_dir) / name / "bin" / "python" for name in ("venv", ".venv", "env")]
        patterns += [Path(install_dir) / name / "Scripts" / "python.exe" for name in ("venv", ".venv")]
    for conda in (home / "miniconda3", home / "anaconda3", home / "miniforge3", Path("/opt/conda")):
        if conda.is_dir():
            patterns += sorted((conda / "envs").glob("*/bin/python"))
    return [str(p) for p in patterns if p.is_file() and os.access(p, os.X_OK)]


def set_setting(settings: Settings, dotted: str, value: str) -> Settings:
    """Change one setting from the command line (``trainers.musubi_tuner.python`` style keys)."""
    data = asdict(settings)
    if dotted.startswith("trainers."):
        _, name, key = [*dotted.split("."), "", ""][:3]
        if name not in TRAINER_NAMES or key not in ("install_dir", "python"):
            raise SettingsError(f"{dotted}: expected trainers.<{'|'.join(TRAINER_NAMES)}>.<install_dir|python>")
        data["trainers"][name][key] = value
    elif dotted == "default_gpu":
        if not value.isdigit():
            raise SettingsError("default_gpu: expected a GPU index like 0")
        data["default_gpu"] = int(value)
    elif dotted in data and dotted not in ("path", "trainers"):
        data[dotted] = value
    else:
        raise SettingsError(f"{dotted}: unknown setting; known: {', '.join(k for k in data if k != 'path')}")
    path = data.pop("path")
    return settings_from_dict(data, path)
