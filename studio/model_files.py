"""The bridge between downloaded sets and presets: fill a preset's model paths, check the files it points at.

``fill_preset_paths`` writes ``${MODELS}/<set folder>/<file>`` paths (portable between machines) into the keys the
catalogue names for the preset's trainer. ``check_model_files`` reports, per model slot the trainer reads, whether
the file is there, readable, and of a format and dtype that trainer accepts (rules in studio.weights_rules).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio import weights_rules as rules
from studio.architectures import Architecture, get_architecture
from studio.catalogue import ModelSet, get_set, load_catalogue
from studio.fields import Field, PresetError
from studio.findings import Finding, Fix
from studio.presets import Preset, resolve_path, set_value
from studio.safetensors_info import WeightsInfo, inspect_weights
from studio.settings import Settings

BackendFields = Mapping[str, tuple[Field, ...]]
Rule = Callable[[rules.SlotCheck], list[Finding]]


def models_path(model_set: ModelSet, rel: str) -> str:
    """The portable preset value for a file of a set: ``${MODELS}/<target>[/<rel>]``."""
    return "${MODELS}/" + model_set.target + ("" if rel in ("", ".") else "/" + rel)


def fill_preset_paths(preset: Preset, set_id: str, settings: Settings, *,
                      catalogue: dict[str, ModelSet] | None = None, fields: BackendFields | None = None) -> Preset:
    """A copy of ``preset`` whose model paths (and the values those files require) come from set ``set_id``.

    Paths are written ``${MODELS}``-relative, so the preset works on any machine whose settings name a models
    folder; ``settings`` is part of the contract for callers that resolve them right after.
    Raises PresetError when the set is for another trainer or model, naming what to choose instead.
    """
    model_set = get_set(set_id, catalogue)
    if preset.backend not in model_set.trainers:
        raise PresetError("meta.backend", f"'{model_set.title}' is for {', '.join(model_set.trainers)}; this preset "
                                          f"trains with {preset.backend}. Pick a set listed for {preset.backend}")
    if preset.architecture not in model_set.architectures:
        raise PresetError("meta.architecture", f"'{model_set.title}' is for {', '.join(model_set.architectures)}; "
                                               f"this preset trains {preset.architecture}")
    if fields is None:
        from backends import backend_fields

        fields = backend_fields()
    result = preset.copy()
    for dotted, rel in model_set.fills_for(preset.backend).items():
        set_value(result, dotted, models_path(model_set, rel), fields)
    for dotted, value in model_set.values_for(preset.backend).items():
        set_value(result, dotted, value, fields)
    return result


def filled_changes(before: Preset, after: Preset) -> dict[str, tuple[Any, Any]]:
    """dotted key -> (old, new) for the values a fill changed (for the UI report)."""
    changes = {}
    for section, table in after.values.items():
        for key, value in table.items():
            old = before.values.get(section, {}).get(key)
            if old != value:
                changes[f"{section}.{key}"] = (old, value)
    return changes


# Checking ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    dotted: str
    required: bool
    rule: Rule | None = None
    folder: bool = False  # the trainer expects a folder here


def slots_for(backend: str, arch: Architecture, preset: Preset) -> list[Slot]:
    """The model paths ``backend`` reads for ``arch``, whether each is required, and the rule for its content."""
    family = arch.family
    if backend == "musubi_tuner":
        dit_rule = {"wan": rules.wan_dit_rules, "hunyuan": rules.hunyuan_dit_rules,
                    "framepack": rules.framepack_dit_rules}.get(family)
        slots = [Slot("model.dit", True, dit_rule), Slot("model.vae", True),
                 Slot("model.text_encoder", True, rules.wan_t5_rules if family == "wan" else None)]
        if family == "wan" and arch.two_experts:
            slots.append(Slot("model.dit_high_noise", False, rules.wan_dit_rules))
        if family in ("hunyuan", "framepack"):
            slots.append(Slot("model.text_encoder_2", True))
        if family == "framepack":
            slots.append(Slot("model.image_encoder", True))
        if family == "wan" and arch.i2v and not arch.two_experts:
            slots.append(Slot("model.clip", True, rules.wan_clip_rules))
        return slots
    if backend == "diffusion_pipe":
        ckpt = "backend.diffusion_pipe.ckpt_path"
        if family == "wan":
            slots = [Slot(ckpt, True, rules.wan_ckpt_rules, folder=True), Slot("model.dit", False, rules.wan_dit_rules),
                     Slot("model.text_encoder", False, rules.wan_t5_rules)]
            if arch.two_experts:
                slots.append(Slot("model.dit_high_noise", False, rules.wan_dit_rules))
            return slots
        if family == "hunyuan":
            # models/hunyuan_video.py: the official ckpts folder, or every part (parts override the folder).
            parts_required = not _value(preset, ckpt)
            return [Slot(ckpt, False, folder=True), Slot("model.dit", parts_required),
                    Slot("model.vae", parts_required), Slot("model.text_encoder", parts_required, folder=True),
                    Slot("model.text_encoder_2", parts_required, folder=True)]
        if family == "ltx":
            return [Slot(ckpt, True, folder=True), Slot("model.dit", True)]
    return []


def _value(preset: Preset, dotted: str) -> Any:
    section, _, key = dotted.rpartition(".")
    return preset.values.get(section, {}).get(key, "")


def check_model_files(preset: Preset, settings: Settings, *,
                      catalogue: dict[str, ModelSet] | None = None) -> list[Finding]:
    """Findings for every model path the preset's trainer reads: missing, unreadable, wrong format or dtype."""
    arch = get_architecture(preset.architecture)
    sets = catalogue if catalogue is not None else load_catalogue()
    roots = settings.roots()
    findings: list[Finding] = []
    for slot in slots_for(preset.backend, arch, preset):
        value = _value(preset, slot.dotted)
        if not value:
            if slot.required:
                what = f"not set; {rules.trainer_label(preset.backend)} needs it for {arch.label}"
                findings.append(_missing(slot.dotted, what, preset, arch, sets, settings))
            continue
        try:
            path = Path(resolve_path(value, roots, slot.dotted))
        except PresetError as exc:
            findings.append(Finding("error", slot.dotted, exc.message, "write the path from a root like ${MODELS}"))
            continue
        if not path.exists():
            findings.append(_missing(slot.dotted, f"{path} does not exist", preset, arch, sets, settings))
            continue
        findings += _check_slot(slot, path, preset, arch)
    return findings


def _check_slot(slot: Slot, path: Path, preset: Preset, arch: Architecture) -> list[Finding]:
    if slot.folder and not path.is_dir():
        return [Finding("error", slot.dotted, f"{path} is a file; {rules.trainer_label(preset.backend)} expects a "
                                              "folder here", "point it at the model folder")]
    if slot.rule is rules.wan_ckpt_rules:
        folder = WeightsInfo(str(path), "unknown")  # the folder rules open the files they need themselves
        return rules.wan_ckpt_rules(rules.SlotCheck(slot.dotted, path, folder, preset.backend, arch, preset))
    if path.is_dir() and not slot.folder and preset.backend == "musubi_tuner":
        return [Finding("error", slot.dotted, f"{path} is a folder; musubi-tuner expects a weights file here",
                        "point it at the .safetensors/.pth file")]
    info = inspect_weights(path)
    check = rules.SlotCheck(slot.dotted, path, info, preset.backend, arch, preset)
    findings = rules.common_rules(check)
    if not info.problem and slot.rule is not None:
        findings += slot.rule(check)
    if not any(f.level == "error" for f in findings) and info.kind != "unknown":
        findings.append(Finding("info", slot.dotted, f"{path.name}: {info.summary()}"))
    return findings


def _missing(dotted: str, what: str, preset: Preset, arch: Architecture, sets: dict[str, ModelSet],
             settings: Settings) -> Finding:
    """A missing model path, with the catalogue sets that provide it, and a one-click fix if one is downloaded."""
    offers = sorted(((s, s.fills_for(preset.backend)[dotted]) for s in sets.values()
                     if s.applies_to(preset.backend, arch.id) and dotted in s.fills_for(preset.backend)),
                    key=lambda offer: offer[0].approx_gb)  # the smallest download that provides the file first
    if not offers:
        return Finding("error", dotted, what, "set the path to the model file")
    for model_set, rel in offers:
        value = models_path(model_set, rel)
        if settings.models_root and Path(resolve_path(value, settings.roots(), dotted)).exists():
            return Finding("error", dotted, f"{what}; {model_set.title} is already downloaded",
                           f"use {value}", Fix(f"Use {model_set.id}", {dotted: value}))
    names = ", ".join(s.id for s, _ in offers[:3])
    return Finding("error", dotted, what,
                   f"download one of: {names} (download tab, or python app.py download {offers[0][0].id})")
