"""A preset form built from Field declarations: one widget per key, values collected by key, never by position.

kohya_ss passes ~275 widgets positionally and a misplaced one shifts every later value; here every event receives a
``{component: value}`` dict and each component knows its dotted key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from gui.i18n import tr
from studio.fields import Field, PresetError
from studio.presets import Preset

LIST_KINDS = ("int_list", "float_list", "size")


@dataclass
class FormField:
    field: Field
    component: gr.components.Component


def make_component(f: Field, value: Any, visible: bool) -> gr.components.Component:
    label = tr(f"field.{f.path}", f.title, f.label_zh or f.title)
    info = tr(f"field.{f.path}.help", f.help, f.help_zh or f.help)
    elem_id = "f-" + f.path.replace(".", "-")
    if f.kind == "bool":
        return gr.Checkbox(value=value, label=label, info=info, elem_id=elem_id, visible=visible)
    if f.kind == "choice":
        return gr.Dropdown(choices=list(f.choices), value=value, label=label, info=info, elem_id=elem_id,
                           visible=visible)
    if f.kind in ("int", "float"):
        return gr.Number(value=value, label=label, info=info, elem_id=elem_id, visible=visible,
                         precision=0 if f.kind == "int" else None, minimum=f.minimum, maximum=f.maximum)
    if f.kind in LIST_KINDS:
        return gr.Textbox(value=to_widget(f, value), label=label, info=info, elem_id=elem_id, visible=visible,
                          placeholder="1, 33" if f.kind != "size" else "832, 480")
    return gr.Textbox(value=value, label=label, info=info, elem_id=elem_id, visible=visible,
                      placeholder="${MODELS}/..." if f.kind == "path" else "")


def to_widget(f: Field, value: Any) -> Any:
    """Preset value -> what the widget shows (lists as "1, 33")."""
    if f.kind in LIST_KINDS:
        return ", ".join(_num(v) for v in value)
    return value


def _num(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() and abs(value) >= 1 else str(value)


def from_widget(f: Field, value: Any) -> Any:
    """Widget value -> preset value, checked by the field. Raises PresetError naming the key."""
    if f.kind in LIST_KINDS:
        text = (value or "").replace("[", " ").replace("]", " ").replace("x", ",").replace("×", ",")
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            numbers = [float(p) if f.kind == "float_list" else int(float(p)) for p in parts]
        except ValueError:
            raise PresetError(f.path, f"{value!r} is not {f.allowed()}") from None
        return f.coerce(numbers)
    if f.kind == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)
    if f.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if value is None:
        raise PresetError(f.path, f"is empty; expected {f.allowed()}")
    return f.coerce(value)


class PresetForm:
    """All widgets of the preset editor and the conversions between them and a Preset."""

    def __init__(self) -> None:
        self.items: list[FormField] = []

    def add(self, fields: Iterable[Field], preset: Preset) -> None:
        """Create the widgets for ``fields`` in the current layout context, showing ``preset``'s values."""
        for f in fields:
            value = preset.values.get(f.section, {}).get(f.key, f.default)
            self.items.append(FormField(f, make_component(f, value, _visible(f, preset.backend, preset.architecture))))

    @property
    def components(self) -> list[gr.components.Component]:
        return [item.component for item in self.items]

    def collect(self, data: dict[Any, Any], preset: Preset) -> tuple[Preset, list[PresetError]]:
        """Copy widget values for ``preset``'s backend into a new Preset; errors are returned, not raised."""
        result = preset.copy()
        errors: list[PresetError] = []
        for item in self.items:
            f = item.field
            if f.section not in result.values or item.component not in data:
                continue  # another trainer's options
            try:
                result.values[f.section][f.key] = from_widget(f, data[item.component])
            except PresetError as exc:
                errors.append(exc)
        return result, errors

    def updates_for(self, preset: Preset) -> list[Any]:
        """Widget updates that show ``preset``; fields of other trainers keep their value but are hidden."""
        updates = []
        for item in self.items:
            f = item.field
            visible = _visible(f, preset.backend, preset.architecture)
            if f.section in preset.values and f.key in preset.values[f.section]:
                updates.append(gr.update(value=to_widget(f, preset.values[f.section][f.key]), visible=visible))
            else:
                updates.append(gr.update(visible=visible))
        return updates

    def visibility_for(self, backend: str, architecture: str) -> list[Any]:
        return [gr.update(visible=_visible(item.field, backend, architecture)) for item in self.items]


def _visible(f: Field, backend: str, architecture: str) -> bool:
    """Only this trainer's options and the fields that apply to this model are shown."""
    mine = not f.section.startswith("backend.") or f.section == f"backend.{backend}"
    return mine and f.applies_to(architecture)
