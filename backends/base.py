"""The backend contract: a trainer turns a preset into a Plan of files and argv steps.

A backend never starts a process, touches the GUI or reads the process table: it only describes what to run,
so plans are testable on a machine with no GPU and no trainer installed.
"""

from __future__ import annotations

import glob
import os
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from studio.architectures import Architecture, get_architecture
from studio.fields import Field, PresetError
from studio.settings import Settings, TrainerInstall


class PlanError(PresetError):
    """The preset cannot be turned into a command for this trainer; ``field`` says which key to change."""


@dataclass(frozen=True)
class Step:
    """One process to run. ``argv[0]`` is always an executable from the machine settings, never from a preset."""

    name: str
    argv: list[str]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class OutputSpec:
    """Where a run's results land, as globs relative to the output folder (``{run}`` = trainer run folder)."""

    output_dir: str
    lora_globs: tuple[str, ...]
    checkpoint_globs: tuple[str, ...] = ()
    tensorboard_dirs: tuple[str, ...] = ()
    # Text the trainer prints only when it finished properly (diffusion-pipe exits 0 on some dataset errors).
    completion_marker: str = ""


@dataclass(frozen=True)
class Outputs:
    loras: list[str]
    checkpoints: list[str]
    tensorboard_dirs: list[str]


@dataclass
class PlanOptions:
    """Choices made at launch time rather than in the preset."""

    gpu_ids: list[int] = field(default_factory=list)  # resolved GPU indices; empty = trainer default
    gpu_names: list[str] = field(default_factory=list)  # names of the chosen GPUs, for vendor quirks
    regenerate_cache: bool = False  # the dataset changed since the cache was built
    cache_only: bool = False
    resume_from: str = ""  # a checkpoint reported by find_checkpoints(), or "" for a fresh run
    master_port: int = 29500  # distributed rendezvous port; unique per concurrent run


@dataclass
class Plan:
    backend: str
    architecture: str
    run_dir: str
    files: dict[str, str]  # path relative to run_dir -> text
    steps: list[Step]
    outputs: OutputSpec
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_files(self) -> list[Path]:
        """Write the plan's files into run_dir atomically; returns their absolute paths."""
        from studio.atomic import write_text_atomic

        written = []
        for rel, text in self.files.items():
            target = Path(self.run_dir, rel)
            if not target.resolve().is_relative_to(Path(self.run_dir).resolve()):
                raise PlanError("", f"plan file {rel!r} would be written outside the run folder")
            written.append(write_text_atomic(target, text))
        return written


class Backend(ABC):
    """One trainer. A new trainer is one subclass in its own module, its presets and its tests."""

    name: str = ""
    label: str = ""
    # Architecture ids (see studio.architectures) this trainer can train.
    architecture_ids: tuple[str, ...] = ()
    # Fields of the preset's [backend.<name>] table.
    options: tuple[Field, ...] = ()
    # What "Check install" verifies: modules the trainer's python must import, files its checkout must have,
    # and the install steps shown when something is missing.
    probe_modules: tuple[str, ...] = ()
    required_files: tuple[str, ...] = ()
    install_steps: str = ""

    @property
    def architectures(self) -> dict[str, Architecture]:
        return {a: get_architecture(a) for a in self.architecture_ids}

    @abstractmethod
    def plan(self, preset: Any, settings: Settings, run_dir: str, options: PlanOptions | None = None) -> Plan:
        """Files and ordered steps that run this preset with the real trainer."""

    @abstractmethod
    def output_spec(self, preset: Any, settings: Settings) -> OutputSpec:
        """How to find this preset's outputs."""

    @abstractmethod
    def find_checkpoints(self, preset: Any, settings: Settings) -> list[str]:
        """Resume points for this preset, newest last (run-folder names or state dirs)."""

    def find_outputs(self, spec: OutputSpec) -> Outputs:
        """Existing files matching the spec's globs, sorted by modification time."""

        def matches(patterns: tuple[str, ...]) -> list[str]:
            found: set[str] = set()
            for pattern in patterns:
                found.update(glob.glob(os.path.join(glob.escape(spec.output_dir), pattern)))
            return sorted(found, key=lambda p: (os.path.getmtime(p), p))

        return Outputs(matches(spec.lora_globs), matches(spec.checkpoint_globs), matches(spec.tensorboard_dirs))

    # Shared helpers for subclasses ---------------------------------------------------------------------

    def architecture_of(self, preset: Any) -> Architecture:
        arch_id = preset.meta["architecture"]
        if arch_id not in self.architecture_ids:
            raise PlanError(
                "meta.architecture",
                f"{self.label} cannot train {arch_id!r}; choose one of {', '.join(self.architecture_ids)}",
            )
        return get_architecture(arch_id)

    def install(self, settings: Settings) -> TrainerInstall:
        return settings.trainer(self.name)


def gpu_env(options: PlanOptions) -> dict[str, str]:
    """Environment every trainer process gets, whatever the trainer."""
    env = {
        "PYTHONUNBUFFERED": "1",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        # NVML (the studio's GPU list) numbers GPUs in PCI order, CUDA by default fastest first: make them agree
        # so "GPU 1" in the GUI is GPU 1 for the trainer.
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    if any(needs_nccl_p2p_off(name) for name in options.gpu_names):
        # RTX 40xx consumer cards hang in NCCL P2P/IB setup (diffusion-pipe README launch line).
        env.update({"NCCL_P2P_DISABLE": "1", "NCCL_IB_DISABLE": "1"})
    return env


_RTX_40 = re.compile(r"\bRTX\s*40\d0\b|\bRTX\s*4000\b", re.IGNORECASE)


def needs_nccl_p2p_off(gpu_name: str) -> bool:
    """True for the GeForce RTX 40xx series (4060 ... 4090) and the RTX 4000 Ada workstation card."""
    return bool(_RTX_40.search(gpu_name))


def require_path(preset: Any, dotted: str, purpose: str) -> str:
    value = preset.get(dotted)
    if not value:
        raise PlanError(dotted, f"is empty; set it to {purpose}")
    return value


def fmt_float(value: float) -> str:
    """Floats as the trainers' argparse reads them, without trailing noise (2e-4 -> '0.0002')."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text
