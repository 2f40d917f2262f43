"""Shipped presets point at exactly the files the download tab fetches.

A new user downloads the catalogue's sets (studio/catalogue.toml) into ${MODELS} and loads a shipped preset: every
model path in it must be one that some set's fills write for that preset's trainer and model (model_files.
models_path: ``${MODELS}/<set target>/<path in repo>``), and the values those files require (e.g. float16 weights for
fp16 experts) must already be set. A preset path that drifts from the catalogue fails here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from backends import backend_fields
from studio.architectures import get_architecture
from studio.catalogue import SHIPPED_CATALOGUE, ModelSet, load_catalogue
from studio.model_files import models_path, slots_for
from studio.presets import SHIPPED_DIR, Preset, field_map, load_preset

FIELDS = backend_fields()
CATALOGUE = load_catalogue(SHIPPED_CATALOGUE)  # the shipped one only: a user's own sets must not excuse a preset
SHIPPED = sorted(SHIPPED_DIR.glob("*.toml"))


@dataclass(frozen=True)
class Mismatch:
    dotted: str
    value: str
    problem: str


def model_path_keys(preset: Preset) -> list[str]:
    """The preset keys that name model files: model.<path fields> and backend.<trainer>.ckpt_path."""
    return [dotted for dotted, f in field_map(FIELDS, preset.backend).items()
            if f.kind == "path" and (f.section == "model" or (f.section.startswith("backend.") and f.key == "ckpt_path"))]


def supplying_sets(preset: Preset, dotted: str, value: str, catalogue: dict[str, ModelSet]) -> list[ModelSet]:
    """Sets for the preset's trainer and model whose fill writes exactly ``value`` into ``dotted``."""
    return [s for s in catalogue.values() if s.applies_to(preset.backend, preset.architecture)
            and dotted in s.fills_for(preset.backend) and models_path(s, s.fills_for(preset.backend)[dotted]) == value]


def catalogue_mismatches(preset: Preset, catalogue: dict[str, ModelSet] = CATALOGUE) -> list[Mismatch]:
    """Model paths no set provides, or provided only by sets whose required values the preset contradicts."""
    found = []
    for dotted in model_path_keys(preset):
        value = preset.get(dotted)
        if not value:
            continue
        sets = supplying_sets(preset, dotted, value, catalogue)
        if not sets:
            found.append(Mismatch(dotted, value, "no catalogue set downloads this path"))
            continue
        consistent = [s for s in sets
                      if all(preset.get(key) == wanted for key, wanted in s.values_for(preset.backend).items())]
        if not consistent:
            wanted = {k: v for s in sets for k, v in s.values_for(preset.backend).items()}
            found.append(Mismatch(dotted, value, f"the file needs {wanted} (set {sets[0].id})"))
    return found


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_model_path_is_a_catalogue_download_location(path):
    preset = load_preset(path, FIELDS)
    assert catalogue_mismatches(preset) == []


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_path_the_trainer_requires_is_set_in_the_shipped_preset(path):
    """Guards the check above against passing vacuously on an emptied path."""
    preset = load_preset(path, FIELDS)
    arch = get_architecture(preset.architecture)
    unset = [slot.dotted for slot in slots_for(preset.backend, arch, preset) if slot.required and not preset.get(slot.dotted)]
    assert unset == []
    assert any(preset.get(dotted) for dotted in model_path_keys(preset))


def test_there_are_shipped_presets_of_both_trainers():
    backends = {load_preset(p, FIELDS).backend for p in SHIPPED}
    assert backends == {"musubi_tuner", "diffusion_pipe"}


def shipped(name: str) -> Preset:
    return load_preset(SHIPPED_DIR / f"{name}.toml", FIELDS)


def test_a_path_that_drifted_from_the_catalogue_is_reported():
    preset = shipped("diffusion-pipe-wan21-t2v-1.3b-24gb").copy()
    preset.values["model"]["dit"] = "${MODELS}/wan2.1_t2v_1.3B_bf16.safetensors"  # the file, not where it lands
    preset.values["backend.diffusion_pipe"]["ckpt_path"] = "${MODELS}/Wan2.1-T2V-14B"  # another model's folder
    assert {(m.dotted, m.problem) for m in catalogue_mismatches(preset)} == {
        ("model.dit", "no catalogue set downloads this path"),
        ("backend.diffusion_pipe.ckpt_path", "no catalogue set downloads this path"),
    }


def test_a_path_offered_only_for_another_trainer_is_reported():
    # ComfyUI's llava_llama3_fp16 file is a musubi set's (hunyuan-video-comfy-text-encoders); diffusion-pipe's llm_path
    # needs the transformers folder, so no diffusion-pipe set fills it.
    preset = shipped("diffusion-pipe-hunyuan-video-24gb").copy()
    preset.values["model"]["text_encoder"] = shipped("musubi-hunyuan-video-24gb").get("model.text_encoder")
    assert [m.dotted for m in catalogue_mismatches(preset)] == ["model.text_encoder"]


def test_a_path_whose_set_requires_another_value_is_reported():
    preset = shipped("musubi-wan22-t2v-a14b-80gb").copy()
    preset.values["model"]["dtype"] = "bfloat16"  # the experts are fp16 files: musubi needs float16
    problems = {m.dotted: m.problem for m in catalogue_mismatches(preset)}
    assert set(problems) == {"model.dit", "model.dit_high_noise"}
    assert "float16" in problems["model.dit"]


def test_a_path_outside_models_or_in_a_user_folder_is_reported():
    preset = shipped("musubi-hunyuan-video-24gb").copy()
    preset.values["model"]["vae"] = "/home/me/models/HunyuanVideo/hunyuan-video-t2v-720p/vae/pytorch_model.pt"
    assert [m.dotted for m in catalogue_mismatches(preset)] == ["model.vae"]
