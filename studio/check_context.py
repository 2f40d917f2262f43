"""What every pre-flight check looks at: the preset (machine paths and as written), settings, media, GPUs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from studio.architectures import Architecture
from studio.findings import Finding
from studio.gpu import GpuInfo
from studio.media import MediaInfo
from studio.presets import Preset
from studio.settings import Settings

Check = Callable[["CheckContext"], list[Finding]]


@dataclass
class CheckContext:
    """Everything a check may look at. ``preset`` has machine paths (roots resolved) when they resolve."""

    preset: Preset
    original: Preset  # as the user wrote it (``${DATA}/...``), for messages and fixes
    settings: Settings
    arch: Architecture
    media: list[MediaInfo] | None  # None = the dataset folder could not be scanned
    gpus: list[GpuInfo]  # the GPUs this run will use
    disk_free: Callable[[str], int | None]
    ram_total: int | None  # bytes
    cache: dict[str, Any] = field(default_factory=dict)  # shared results (bucket report, VRAM estimate)

    @property
    def backend(self) -> str:
        return self.preset.backend

    @property
    def table(self) -> dict[str, Any]:
        """The preset's ``[backend.<name>]`` values (read with .get: fields may be added or renamed)."""
        return self.preset.values.get(f"backend.{self.preset.backend}", {})

    def get(self, dotted: str, default: Any = None) -> Any:
        section, _, key = dotted.rpartition(".")
        return self.preset.values.get(section, {}).get(key, default)

    def raw(self, dotted: str) -> Any:
        """The value as written in the preset (before ``${ROOT}`` expansion)."""
        section, _, key = dotted.rpartition(".")
        return self.original.values.get(section, {}).get(key)

    def option(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)

    def option_key(self, key: str) -> str:
        return f"backend.{self.backend}.{key}"
