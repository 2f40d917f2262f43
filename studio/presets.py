"""Presets: portable, versioned TOML files that describe one training setup.

A preset is untrusted input (teammates exchange them): it is parsed with size limits, every key is checked
against the declared fields, and nothing in it is ever executed or used as an executable.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from studio.atomic import write_text_atomic
from studio.fields import Field, PresetError
from studio.schema import COMMON_FIELDS, COMMON_SECTIONS, META_KEYS, SCHEMA_VERSION
from studio.tomlcompat import tomllib

MAX_PRESET_BYTES = 256 * 1024
_NAME = re.compile(r"^[\w][\w .+()-]{0,79}$")
_ROOT_VAR = re.compile(r"\$\{([A-Za-z_]+)\}")

# (backend name) -> fields of its [backend.<name>] table. Filled by backends/__init__.py so the core needs no
# import of any trainer module.
BackendFields = Mapping[str, tuple[Field, ...]]


@dataclass
class Preset:
    meta: dict[str, Any]
    values: dict[str, dict[str, Any]]  # "dataset" -> {...}, ..., "backend.musubi_tuner" -> {...}
    source: str = ""  # the file it came from, for messages
    extra_backends: dict[str, dict[str, Any]] = field(default_factory=dict)  # other trainers' tables, kept as-is

    @property
    def backend(self) -> str:
        return self.meta["backend"]

    @property
    def architecture(self) -> str:
        return self.meta["architecture"]

    @property
    def name(self) -> str:
        return self.meta["name"]

    def get(self, dotted: str) -> Any:
        section, _, key = dotted.rpartition(".")
        if section == "meta":
            return self.meta[key]
        return self.values[section][key]

    def copy(self) -> Preset:
        return copy.deepcopy(self)


# Migrations: schema N -> N+1, each a pure function on the raw TOML dict.


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 (the first drafts) called the LoRA rank ``network.dim`` and kept the learning rate under
    ``training``; schema 2 follows the common trainer vocabulary."""
    network = raw.setdefault("network", {})
    if "dim" in network:
        network["rank"] = network.pop("dim")
    training = raw.setdefault("training", {})
    if "learning_rate" in training:
        raw.setdefault("optimizer", {})["learning_rate"] = training.pop("learning_rate")
    raw["meta"]["schema_version"] = 2
    return raw


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


def field_map(backend_fields: BackendFields, backend: str) -> dict[str, Field]:
    fields = {f.path: f for f in COMMON_FIELDS}
    fields.update({f.path: f for f in backend_fields.get(backend, ())})
    return fields


def default_values(backend_fields: BackendFields, backend: str) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = {s: {} for s in COMMON_SECTIONS}
    values[f"backend.{backend}"] = {}
    for f in field_map(backend_fields, backend).values():
        values.setdefault(f.section, {})[f.key] = copy.deepcopy(f.default)
    return values


def new_preset(backend_fields: BackendFields, backend: str, architecture: str, name: str) -> Preset:
    check_name(name)
    meta = {"schema_version": SCHEMA_VERSION, "backend": backend, "architecture": architecture, "name": name,
            "notes": "", "trainer_version": ""}
    return Preset(meta, default_values(backend_fields, backend))


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise PresetError(
            "meta.name",
            f"{name!r} is not a usable preset name; use letters, digits, spaces and . _ - + ( ), "
            "at most 80 characters, not starting with a dot",
        )
    return name


def parse_preset(text: str | bytes, backend_fields: BackendFields, source: str = "") -> Preset:
    """Parse and check a preset file's text. Raises PresetError naming the key and what is allowed."""
    if len(text) > MAX_PRESET_BYTES:
        raise PresetError("", f"file is {len(text):,} bytes; a preset is at most {MAX_PRESET_BYTES:,} bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise PresetError("", "file is not UTF-8 text; a preset is a TOML text file") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError("", f"not valid TOML: {exc}") from None
    return preset_from_dict(raw, backend_fields, source)


def preset_from_dict(raw: dict[str, Any], backend_fields: BackendFields, source: str = "") -> Preset:
    raw = copy.deepcopy(raw)
    meta = raw.get("meta")
    if not isinstance(meta, dict):
        raise PresetError("meta", "missing [meta] table; a preset starts with [meta] schema_version, backend, ...")
    raw = _migrate(raw)
    meta = raw["meta"]
    _check_keys("meta", meta, META_KEYS)
    backend = meta.get("backend")
    if backend not in backend_fields:
        raise PresetError("meta.backend", f"got {backend!r}; expected one of {', '.join(sorted(backend_fields))}")
    from studio.architectures import ARCHITECTURES

    if meta.get("architecture") not in ARCHITECTURES:
        raise PresetError(
            "meta.architecture", f"got {meta.get('architecture')!r}; expected one of {', '.join(ARCHITECTURES)}"
        )
    check_name(meta.get("name"))
    for key in ("notes", "trainer_version"):
        if not isinstance(meta.setdefault(key, ""), str):
            raise PresetError(f"meta.{key}", "expected text")
    fields = field_map(backend_fields, backend)
    values = default_values(backend_fields, backend)
    extra_backends: dict[str, dict[str, Any]] = {}
    backend_tables = raw.pop("backend", {})
    if not isinstance(backend_tables, dict):
        raise PresetError("backend", "expected tables like [backend.musubi_tuner]")
    for name, table in backend_tables.items():
        if name != backend:
            if name not in backend_fields:
                raise PresetError(f"backend.{name}", f"unknown trainer; known: {', '.join(sorted(backend_fields))}")
            extra_backends[name] = table
            continue
        raw[f"backend.{name}"] = table
    for section, table in raw.items():
        if section == "meta":
            continue
        if section not in values:
            raise PresetError(section, f"unknown section{_suggest(section, values)}; allowed: {', '.join(values)}")
        if not isinstance(table, dict):
            raise PresetError(section, "expected a table")
        allowed = [k for k in values[section]]
        _check_keys(section, table, allowed)
        for key, value in table.items():
            values[section][key] = fields[f"{section}.{key}"].coerce(value)
    return Preset(meta, values, source, extra_backends)


def _migrate(raw: dict[str, Any]) -> dict[str, Any]:
    version = raw["meta"].get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise PresetError("meta.schema_version", f"got {version!r}; expected a whole number like {SCHEMA_VERSION}")
    if version > SCHEMA_VERSION:
        raise PresetError(
            "meta.schema_version",
            f"this preset was written by a newer Video LoRA Studio (schema {version}); this version reads up to "
            f"schema {SCHEMA_VERSION}. Update the studio to open it.",
        )
    if version < 1:
        raise PresetError("meta.schema_version", f"got {version}; schema versions start at 1")
    while version < SCHEMA_VERSION:
        raw = MIGRATIONS[version](raw)
        version = raw["meta"]["schema_version"]
    return raw


def _check_keys(section: str, table: dict[str, Any], allowed: list[str] | tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            raise PresetError(
                f"{section}.{key}", f"unknown key{_suggest(key, allowed)}; allowed in [{section}]: {', '.join(allowed)}"
            )


def _suggest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def dump_preset(preset: Preset) -> str:
    """The preset as TOML text: every key written explicitly so the file means the same on any version."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment("Video LoRA Studio preset. Keys are documented in docs/presets.md."))
    meta = tomlkit.table()
    for key in META_KEYS:
        meta[key] = preset.meta.get(key, "")
    doc["meta"] = meta
    backend_table = tomlkit.table(is_super_table=True)
    for section, table in preset.values.items():
        target = tomlkit.table()
        for key, value in table.items():
            target[key] = value
        if section.startswith("backend."):
            backend_table[section.split(".", 1)[1]] = target
        else:
            doc[section] = target
    for name, table in preset.extra_backends.items():
        backend_table[name] = table
    doc["backend"] = backend_table
    return tomlkit.dumps(doc)


def set_value(preset: Preset, dotted: str, value: Any, backend_fields: BackendFields) -> None:
    """Set one key after checking it; raises PresetError naming the key."""
    fields = field_map(backend_fields, preset.backend)
    if dotted not in fields:
        raise PresetError(dotted, f"unknown key{_suggest(dotted, fields)}")
    f = fields[dotted]
    preset.values[f.section][f.key] = f.coerce(value)


def apply_overrides(preset: Preset, overrides: list[str], backend_fields: BackendFields) -> Preset:
    """Apply ``section.key=value`` strings (CLI ``--set``); the value is read as TOML, else as text."""
    result = preset.copy()
    for item in overrides:
        dotted, sep, text = item.partition("=")
        if not sep:
            raise PresetError(item, "expected section.key=value, e.g. training.epochs=10")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        set_value(result, dotted.strip(), value, backend_fields)
    return result


def switch_backend(preset: Preset, backend: str, backend_fields: BackendFields) -> Preset:
    """Same common sections, the other trainer's table (kept from before, or its defaults)."""
    result = preset.copy()
    old = result.backend
    result.extra_backends[old] = result.values.pop(f"backend.{old}")
    table = default_values(backend_fields, backend)[f"backend.{backend}"]
    for key, value in result.extra_backends.pop(backend, {}).items():
        if f"backend.{backend}.{key}" in field_map(backend_fields, backend):
            table[key] = value
    result.values[f"backend.{backend}"] = table
    result.meta["backend"] = backend
    return result


# Paths and roots


def path_fields(preset: Preset, backend_fields: BackendFields) -> list[Field]:
    return [f for f in field_map(backend_fields, preset.backend).values() if f.kind == "path"]


def resolve_path(value: str, roots: Mapping[str, str], dotted: str = "") -> str:
    """Expand ``${DATA}`` style roots. Refuses unknown roots and ``..`` that climbs out of a root."""
    if not value:
        return value
    match = _ROOT_VAR.match(value)
    if _ROOT_VAR.search(value) and not match:
        raise PresetError(dotted, f"{value!r}: a root like ${{DATA}} may only stand at the start of a path")
    if not match:
        return value
    name = match.group(1)
    if name not in roots:
        raise PresetError(dotted, f"{value!r}: unknown root ${{{name}}}; use ${{DATA}}, ${{MODELS}} or ${{OUTPUT}}")
    if not roots[name]:
        raise PresetError(dotted, f"{value!r}: the {name} folder is not set in the machine settings")
    rest = value[match.end():].lstrip("/\\")
    if ".." in Path(rest).parts:
        raise PresetError(dotted, f"{value!r}: '..' may not climb out of ${{{name}}}; write the path from the root")
    return str(Path(roots[name], rest)) if rest else roots[name]


def resolved(preset: Preset, roots: Mapping[str, str], backend_fields: BackendFields) -> Preset:
    """A copy whose path fields are absolute paths on this machine."""
    result = preset.copy()
    for f in path_fields(preset, backend_fields):
        value = result.values[f.section][f.key]
        result.values[f.section][f.key] = resolve_path(value, roots, f.path)
    return result


def unresolved_paths(preset: Preset, roots: Mapping[str, str], backend_fields: BackendFields) -> list[str]:
    """Messages for every non-empty path that is invalid or does not exist on this machine (import report)."""
    problems = []
    for f in path_fields(preset, backend_fields):
        value = preset.values[f.section][f.key]
        if not value:
            continue
        try:
            path = resolve_path(value, roots, f.path)
        except PresetError as exc:
            problems.append(str(exc))
            continue
        if f.path == "output.dir":
            continue  # created by the trainer
        if not Path(path).exists():
            problems.append(f"{f.path}: {value!r} -> {path} does not exist on this machine")
    return problems


def portable(preset: Preset, roots: Mapping[str, str], backend_fields: BackendFields) -> Preset:
    """A copy with absolute paths under a root rewritten as ``${ROOT}/...`` (for export)."""
    result = preset.copy()
    ordered = sorted(((k, v) for k, v in roots.items() if v), key=lambda kv: -len(kv[1]))
    for f in path_fields(preset, backend_fields):
        value = result.values[f.section][f.key]
        if not value or value.startswith("${"):
            continue
        for name, root in ordered:
            root_path = Path(root)
            try:
                rel = Path(value).relative_to(root_path)
            except ValueError:
                continue
            result.values[f.section][f.key] = f"${{{name}}}/{rel.as_posix()}" if rel.parts else f"${{{name}}}"
            break
    return result


# The preset library: shipped presets (read-only) and the user's own


SHIPPED_DIR = Path(__file__).resolve().parent.parent / "presets"


def preset_filename(name: str) -> str:
    return re.sub(r"[^\w.+-]+", "_", check_name(name)).strip("_") + ".toml"


def list_presets(user_dir: str | Path | None, backend_fields: BackendFields) -> dict[str, Path]:
    """name -> file, user presets overriding shipped ones of the same name. Broken files are skipped."""
    found: dict[str, Path] = {}
    for folder in (SHIPPED_DIR, Path(user_dir) if user_dir else None):
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                found[load_preset(path, backend_fields).name] = path
            except (PresetError, OSError):
                continue
    return found


def load_preset(path: str | Path, backend_fields: BackendFields) -> Preset:
    target = Path(path)
    size = target.stat().st_size
    if size > MAX_PRESET_BYTES:
        raise PresetError("", f"{target.name} is {size:,} bytes; a preset is at most {MAX_PRESET_BYTES:,} bytes")
    return parse_preset(target.read_bytes(), backend_fields, str(target))


def save_preset(preset: Preset, user_dir: str | Path) -> Path:
    """Save into the user's preset folder (never over a shipped preset), atomically."""
    target = Path(user_dir) / preset_filename(preset.name)
    return write_text_atomic(target, dump_preset(preset))
