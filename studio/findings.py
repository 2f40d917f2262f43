"""Findings: what pre-flight found, in words a user can act on, with a mechanical fix where one exists."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Level = Literal["error", "warning", "info"]
LEVELS: tuple[Level, ...] = ("error", "warning", "info")


@dataclass(frozen=True)
class Fix:
    """A one-click change: preset keys (dotted) and their new values."""

    label: str
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    level: Level
    field: str  # dotted preset key ("dataset.frames"), or "" for the setup as a whole
    message: str  # what will happen if launched as is
    fix: str = ""  # what to change, in words
    action: Fix | None = None  # the same change, applicable with one click

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def has_errors(findings: list[Finding]) -> bool:
    return any(f.level == "error" for f in findings)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (LEVELS.index(f.level), f.field))
