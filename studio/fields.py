"""Typed preset fields: one declaration gives the TOML type check, the GUI widget, the help text and the docs.

A field never guesses: a value of the wrong type is refused with a message that names the key and what is
allowed, because the trainers themselves are strict (musubi's voluptuous schema rejects ``source_fps = 30``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

# Kinds a field can have. "path" is a string that may start with a root variable (${DATA} ...).
KINDS = ("int", "float", "bool", "str", "name", "path", "choice", "int_list", "float_list", "size")

MAX_STRING = 4096
MAX_LIST = 64
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# File-name-safe: becomes part of output file names, so no separators, no shell metacharacters.
_SAFE_NAME = re.compile(r"^[\w][\w.+-]{0,79}$")


class PresetError(ValueError):
    """A preset value or file that cannot be used. ``field`` is the dotted key it concerns ("" = whole file)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


@dataclass(frozen=True)
class Field:
    """One preset key. ``section`` is "dataset", "model", ... or "backend.<name>" for trainer-specific keys."""

    section: str
    key: str
    kind: str
    default: Any
    help: str
    help_zh: str = ""
    label: str = ""
    label_zh: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    # Which architectures the field applies to (empty = all); the GUI hides the rest.
    only_for: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown field kind {self.kind!r} for {self.section}.{self.key}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"choice field {self.section}.{self.key} needs choices")

    @property
    def path(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def title(self) -> str:
        return self.label or self.key.replace("_", " ").capitalize()

    def applies_to(self, architecture: str) -> bool:
        return not self.only_for or architecture in self.only_for

    def allowed(self) -> str:
        """A short human description of what the field accepts, used in every error message."""
        bounds = ""
        if self.minimum is not None and self.maximum is not None:
            bounds = f" from {_fmt(self.minimum)} to {_fmt(self.maximum)}"
        elif self.minimum is not None:
            bounds = f" >= {_fmt(self.minimum)}"
        elif self.maximum is not None:
            bounds = f" <= {_fmt(self.maximum)}"
        return {
            "int": f"a whole number{bounds}",
            "float": f"a number{bounds}",
            "bool": "true or false",
            "str": "text",
            "name": "a file-name-safe name: letters, digits, _ . + - (no spaces or slashes), at most 80",
            "path": "a path, optionally starting with ${DATA}, ${MODELS} or ${OUTPUT}",
            "choice": "one of " + ", ".join(repr(c) for c in self.choices),
            "int_list": f"a list of whole numbers{bounds}, e.g. [1, 33]",
            "float_list": f"a list of numbers{bounds}, e.g. [0.9, 0.99]",
            "size": "[width, height] in pixels, e.g. [832, 480]",
        }[self.kind]

    def coerce(self, value: Any) -> Any:
        """Return ``value`` checked against this field, or raise PresetError naming the key."""
        try:
            return _COERCERS[self.kind](self, value)
        except PresetError:
            raise
        except (TypeError, ValueError):
            raise PresetError(self.path, f"got {_show(value)}; expected {self.allowed()}") from None


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_bounds(f: Field, number: float) -> None:
    if isinstance(number, float) and not math.isfinite(number):
        raise PresetError(f.path, f"got {number}; expected {f.allowed()}")
    if (f.minimum is not None and number < f.minimum) or (f.maximum is not None and number > f.maximum):
        raise PresetError(f.path, f"got {_fmt(number)}; expected {f.allowed()}")


def _as_int(f: Field, value: Any) -> int:
    # bool is an int in Python; "true" for a frame count is a mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise PresetError(f.path, f"got {_show(value)}; expected {f.allowed()}")
    _check_bounds(f, value)
    return int(value)


def _as_float(f: Field, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PresetError(f.path, f"got {_show(value)}; expected {f.allowed()}")
    number = float(value)
    _check_bounds(f, number)
    return number


def _as_bool(f: Field, value: Any) -> bool:
    if not isinstance(value, bool):
        raise PresetError(f.path, f"got {_show(value)}; expected {f.allowed()}")
    return value


def _as_str(f: Field, value: Any) -> str:
    if not isinstance(value, str):
        raise PresetError(f.path, f"got {_show(value)}; expected {f.allowed()}")
    if len(value) > MAX_STRING:
        raise PresetError(f.path, f"text is {len(value)} characters long; at most {MAX_STRING} are allowed")
    if _CONTROL_CHARS.search(value):
        raise PresetError(f.path, "contains control characters; remove them")
    return value


def _as_name(f: Field, value: Any) -> str:
    text = _as_str(f, value)
    if not _SAFE_NAME.match(text) or ".." in text:
        raise PresetError(f.path, f"got {_show(value)}; expected {f.allowed()}")
    return text


def _as_path(f: Field, value: Any) -> str:
    text = _as_str(f, value).strip()
    if "\n" in text or "\t" in text:
        raise PresetError(f.path, "a path cannot contain line breaks or tabs")
    return text


def _as_choice(f: Field, value: Any) -> str:
    text = _as_str(f, value)
    if text not in f.choices:
        raise PresetError(f.path, f"got {_show(value)}; expected {f.allowed()}")
    return text


def _as_list(f: Field, value: Any, item: Any) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise PresetError(f.path, f"got {_show(value)}; expected {f.allowed()}")
    if len(value) > MAX_LIST:
        raise PresetError(f.path, f"has {len(value)} entries; at most {MAX_LIST} are allowed")
    return [item(f, v) for v in value]


def _as_size(f: Field, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise PresetError(f.path, f"got {_show(value)}; expected {f.allowed()}")
    sized = Field(f.section, f.key, "int", 0, f.help, minimum=64, maximum=8192)
    return [_as_int(sized, v) for v in value]


_COERCERS = {
    "int": _as_int,
    "float": _as_float,
    "bool": _as_bool,
    "str": _as_str,
    "name": _as_name,
    "path": _as_path,
    "choice": _as_choice,
    "int_list": lambda f, v: _as_list(f, v, _as_int),
    "float_list": lambda f, v: _as_list(f, v, _as_float),
    "size": _as_size,
}
