"""Generate docs/presets.md from the Field declarations, so the documentation cannot drift from the code.

    python -m studio.docs_gen            # rewrite docs/presets.md
    python -m studio.docs_gen --check    # exit 1 if it is out of date (the test suite runs this)
"""

from __future__ import annotations

import sys
from pathlib import Path

from studio.fields import Field
from studio.schema import COMMON_FIELDS, COMMON_SECTIONS, META_KEYS, SCHEMA_VERSION

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "presets.md"

INTRO = f"""# Preset keys

A preset is one TOML file (schema version {SCHEMA_VERSION}) that describes a training setup. It is portable: paths
may start with `${{DATA}}`, `${{MODELS}}` or `${{OUTPUT}}`, which each machine resolves from its own settings, and it
never holds secrets, trainer install folders or python executables (those live in the machine settings only).
Nothing in a preset is ever executed.

This file is generated from the code (`python -m studio.docs_gen`); the test suite fails when it is out of date.

## [meta]

| key | meaning |
|---|---|
| `schema_version` | preset format version; older versions are migrated on load, newer ones are refused |
| `backend` | trainer: `musubi_tuner` or `diffusion_pipe` |
| `architecture` | model: see the architecture ids below |
| `name` | preset name (letters, digits, space, `. _ - + ( )`; also the file name) |
| `notes` | free text: what the preset is for |
| `trainer_version` | the trainer release/commit the preset was verified with |
"""


def field_rows(fields: tuple[Field, ...] | list[Field]) -> list[str]:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for f in fields:
        only = f" Only for: {', '.join(f.only_for)}." if f.only_for else ""
        rows.append(f"| `{f.key}` | {f.allowed()} | `{_default(f)}` | {f.help}{only} |")
    return rows


def _default(f: Field) -> str:
    return repr(f.default).replace("'", '"') if not isinstance(f.default, bool) else str(f.default).lower()


def render() -> str:
    from backends import backend_names, get_backend
    from studio.architectures import ARCHITECTURES

    assert set(META_KEYS) >= {"schema_version", "backend", "architecture", "name"}
    parts = [INTRO]
    for section in COMMON_SECTIONS:
        parts.append(f"## [{section}]\n")
        parts.extend(field_rows([f for f in COMMON_FIELDS if f.section == section]))
        parts.append("")
    for name in backend_names():
        backend = get_backend(name)
        parts.append(f"## [backend.{name}] ({backend.label})\n")
        parts.append("Architectures: " + ", ".join(f"`{a}`" for a in backend.architecture_ids) + "\n")
        parts.extend(field_rows(backend.options))
        parts.append("")
    parts.append("## Shipped presets\n")
    parts.append("| file | trainer | model | what it is for |")
    parts.append("|---|---|---|---|")
    parts.extend(_shipped_rows())
    parts.append("")
    parts.append("## Architecture ids\n")
    parts.append("| id | model | frames | model fps |")
    parts.append("|---|---|---|---|")
    for arch in ARCHITECTURES.values():
        rule = f"{arch.frame_step}N+1" + (f", at least {arch.min_frames}" if arch.min_frames > 1 else "")
        parts.append(f"| `{arch.id}` | {arch.label} | {rule} | {arch.model_fps:g} |")
    return "\n".join(parts).rstrip() + "\n"


def _shipped_rows() -> list[str]:
    from backends import backend_fields
    from studio.presets import SHIPPED_DIR, load_preset

    rows = []
    for path in sorted(SHIPPED_DIR.glob("*.toml")):
        preset = load_preset(path, backend_fields())
        notes = " ".join(preset.meta.get("notes", "").split()).replace("|", "/")
        rows.append(f"| `presets/{path.name}` | {preset.backend} | `{preset.architecture}` | {notes} |")
    return rows


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
        if current != text:
            print("docs/presets.md is out of date: run `python -m studio.docs_gen`", file=sys.stderr)
            return 1
        return 0
    from studio.atomic import write_text_atomic

    write_text_atomic(DOC_PATH, text)
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
