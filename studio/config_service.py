"""What the Config tab shows beside the form: the generated files and commands, and the findings."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from studio.fields import PresetError
from studio.findings import Finding, Fix
from studio.presets import Preset, set_value
from studio.settings import Settings


@dataclass
class Preview:
    files: dict[str, str] = field(default_factory=dict)
    commands: str = ""
    notes: list[str] = field(default_factory=list)
    error: str = ""


def format_steps(steps: Iterable) -> str:
    """Steps as copy-pasteable shell lines (display only: the runner executes argv lists, never this text)."""
    blocks = []
    for number, step in enumerate(steps, 1):
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(step.env.items()))
        command = " \\\n    ".join(_argv_lines(step.argv))
        blocks.append(f"# step {number}: {step.name}\ncd {shlex.quote(step.cwd or '.')}\n{env} \\\n  {command}")
    return "\n\n".join(blocks)


def _argv_lines(argv: list[str]) -> list[str]:
    """Group each --flag with its values so a long command stays readable."""
    lines: list[list[str]] = [[]]
    for arg in argv:
        if arg.startswith("--") and lines[-1]:
            lines.append([])
        lines[-1].append(shlex.quote(arg))
    return [" ".join(parts) for parts in lines]


def preview_plan(preset: Preset, settings: Settings) -> Preview:
    from backends import PlanOptions, get_backend

    run_dir = str(Path(settings.runs_dir or ".") / "<job>")
    try:
        plan = get_backend(preset.backend).plan(preset, settings, run_dir, PlanOptions())
    except PresetError as exc:
        return Preview(error=str(exc))
    return Preview(files=dict(plan.files), commands=format_steps(plan.steps), notes=list(plan.notes))


def findings_for(preset: Preset, settings: Settings) -> list[Finding]:
    """Pre-flight findings for the form (no dataset scan: the Dataset tab and Start add those)."""
    from studio.preflight import check

    return check(preset, settings, media=None, gpus=None)


def apply_fix(preset: Preset, fix: Fix) -> Preset:
    from backends import backend_fields

    result = preset.copy()
    fields = backend_fields()
    for dotted, value in fix.changes.items():
        set_value(result, dotted, value, fields)
    return result


def findings_markdown(findings: list[Finding], section: str | None = None) -> str:
    icons = {"error": "⛔", "warning": "⚠️", "info": "ℹ️"}
    chosen = [f for f in findings if section is None or f.field.split(".")[0] == section
              or (section == "backend" and f.field.startswith("backend."))]
    lines = []
    for f in chosen:
        where = f"`{f.field}` " if f.field else ""
        fix = f" — **{f.fix}**" if f.fix else ""
        lines.append(f"- {icons[f.level]} {where}{f.message}{fix}")
    return "\n".join(lines)
