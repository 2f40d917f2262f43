"""diffusion-pipe backend: the [model] table per model family, Wan2.2 experts, block swap limits and the notes
for common keys the trainer has no place for. Sources: models/wan/wan.py, models/hunyuan_video.py,
models/ltx_video.py, docs/supported_models.md (tdrussell/diffusion-pipe 8f83dbf).
"""

from __future__ import annotations

from typing import Any

import pytest
from dp_support import make_plan, preset_for

from backends.base import PlanError
from studio.tomlcompat import tomllib


def model_of(architecture: str, **values: Any) -> dict[str, Any]:
    return tomllib.loads(make_plan(preset_for(architecture, **values)).files["config.toml"])["model"]


def refused(architecture: str, **values: Any) -> PlanError:
    with pytest.raises(PlanError) as err:
        make_plan(preset_for(architecture, **values))
    return err.value


# --- Wan2.1 -------------------------------------------------------------------------------------------------------


def test_wan_comfyui_transformer_and_umt5_with_the_official_folder() -> None:
    model = model_of("wan2.1-t2v-1.3b", model__text_encoder="${MODELS}/umt5-xxl-enc-bf16.safetensors")
    assert model == {
        "type": "wan", "ckpt_path": "/models/official", "transformer_path": "/models/dit.safetensors",
        "llm_path": "/models/umt5-xxl-enc-bf16.safetensors", "dtype": "bfloat16",
        "timestep_sample_method": "logit_normal", "shift": 3.0,
    }


def test_wan_without_dit_or_text_encoder_loads_them_from_ckpt_path() -> None:
    model = model_of("wan2.1-t2v-14b", model__dit="", backend__diffusion_pipe__timestep_sample_method="uniform")
    assert "transformer_path" not in model and "llm_path" not in model
    assert model["timestep_sample_method"] == "uniform"


def test_wan_needs_the_official_folder() -> None:
    error = refused("wan2.1-t2v-1.3b", backend__diffusion_pipe__ckpt_path="")
    assert error.field == "backend.diffusion_pipe.ckpt_path" and "official" in error.message


def test_wan_i2v_clip_and_vae_are_noted_as_unused() -> None:
    plan = make_plan(preset_for("wan2.1-i2v-14b", model__clip="${MODELS}/clip.pth", model__vae="${MODELS}/vae.pth"))
    joined = "\n".join(plan.notes)
    assert "model.clip is set but not used" in joined and "model.vae is set but not used" in joined
    assert not any("model.clip" in n or "model.vae" in n for n in make_plan(preset_for("wan2.1-i2v-14b")).notes)


# --- Wan2.2 A14B experts ------------------------------------------------------------------------------------------


def test_wan22_low_noise_expert_trains_model_dit_below_the_boundary() -> None:
    model = model_of("wan2.2-t2v-a14b", model__dit_high_noise="${MODELS}/high.safetensors")
    assert model["transformer_path"] == "/models/dit.safetensors"
    assert (model["min_t"], model["max_t"]) == (0.0, 0.875)


def test_wan22_high_noise_expert_trains_dit_high_noise_above_the_boundary() -> None:
    model = model_of("wan2.2-t2v-a14b", model__dit_high_noise="${MODELS}/high.safetensors",
                     backend__diffusion_pipe__wan22_expert="high_noise")
    assert model["transformer_path"] == "/models/high.safetensors"
    assert (model["min_t"], model["max_t"]) == (0.875, 1.0)


def test_wan22_i2v_boundary_is_0_9_and_empty_expert_uses_the_official_subfolder() -> None:
    model = model_of("wan2.2-i2v-a14b", model__dit="", backend__diffusion_pipe__wan22_expert="high_noise")
    assert model["transformer_path"] == "/models/official/high_noise_model"
    assert (model["min_t"], model["max_t"]) == (0.9, 1.0)
    assert model_of("wan2.2-i2v-a14b", model__dit="")["transformer_path"] == "/models/official/low_noise_model"


def test_wan22_full_and_custom_timestep_ranges() -> None:
    full = model_of("wan2.2-t2v-a14b", backend__diffusion_pipe__timestep_range="full")
    assert "min_t" not in full and "max_t" not in full
    custom = model_of("wan2.2-t2v-a14b", backend__diffusion_pipe__timestep_range="custom",
                      backend__diffusion_pipe__min_t=0.2, backend__diffusion_pipe__max_t=0.9)
    assert (custom["min_t"], custom["max_t"]) == (0.2, 0.9)
    error = refused("wan2.2-t2v-a14b", backend__diffusion_pipe__timestep_range="custom",
                    backend__diffusion_pipe__min_t=0.9, backend__diffusion_pipe__max_t=0.5)
    assert error.field == "backend.diffusion_pipe.min_t"


def test_wan21_never_gets_a_timestep_slice() -> None:
    model = model_of("wan2.1-t2v-14b", backend__diffusion_pipe__timestep_range="custom",
                     backend__diffusion_pipe__min_t=0.2)
    assert "min_t" not in model and "max_t" not in model


def test_wan22_notes_the_expert_that_is_not_trained() -> None:
    plan = make_plan(preset_for("wan2.2-t2v-a14b", model__dit_high_noise="${MODELS}/high.safetensors"))
    assert any(n.startswith("model.dit_high_noise is set but not used") for n in plan.notes)
    plan = make_plan(preset_for("wan2.2-t2v-a14b", backend__diffusion_pipe__wan22_expert="high_noise"))
    assert any(n.startswith("model.dit is set but not used") for n in plan.notes)
    plan = make_plan(preset_for("wan2.2-t2v-a14b"))
    assert not any("model.dit" in n for n in plan.notes)


# --- HunyuanVideo ---------------------------------------------------------------------------------------------------


def test_hunyuan_comfyui_parts() -> None:
    model = model_of("hunyuan-video", backend__diffusion_pipe__ckpt_path="", memory__fp8_base=True)
    assert model == {
        "type": "hunyuan-video", "transformer_path": "/models/dit.safetensors", "vae_path": "/models/vae.safetensors",
        "llm_path": "/models/llm", "clip_path": "/models/clip", "dtype": "bfloat16", "transformer_dtype": "float8",
        "timestep_sample_method": "logit_normal", "shift": 3.0,
    }


def test_hunyuan_official_folder_alone_is_enough() -> None:
    model = model_of("hunyuan-video", model__dit="", model__vae="", model__text_encoder="", model__text_encoder_2="")
    assert model["ckpt_path"] == "/models/official"
    assert not {"transformer_path", "vae_path", "llm_path", "clip_path"} & set(model)


def test_hunyuan_without_official_folder_needs_every_part() -> None:
    error = refused("hunyuan-video", backend__diffusion_pipe__ckpt_path="", model__vae="")
    assert error.field == "model.vae" and "ckpt_path" in error.message


@pytest.mark.parametrize("dotted", ["model__text_encoder", "model__text_encoder_2"])
def test_hunyuan_text_encoders_must_be_folders(dotted: str) -> None:
    error = refused("hunyuan-video", **{dotted: "${MODELS}/llava_llama3_fp16.safetensors"})
    assert error.field == dotted.replace("__", ".") and "folder" in error.message


# --- LTX-Video ------------------------------------------------------------------------------------------------------


def test_ltx_reads_the_diffusers_folder_and_the_single_file() -> None:
    model = model_of("ltx-video", backend__diffusion_pipe__first_frame_conditioning_p=0.5)
    assert model == {
        "type": "ltx-video", "diffusers_path": "/models/official", "single_file_path": "/models/dit.safetensors",
        "dtype": "bfloat16", "timestep_sample_method": "logit_normal", "first_frame_conditioning_p": 0.5,
    }
    assert "first_frame_conditioning_p" not in model_of("ltx-video")


@pytest.mark.parametrize(("key", "field"), [
    ("backend__diffusion_pipe__ckpt_path", "backend.diffusion_pipe.ckpt_path"), ("model__dit", "model.dit"),
])
def test_ltx_needs_both_paths(key: str, field: str) -> None:
    assert refused("ltx-video", **{key: ""}).field == field


def test_ltx_text_encoder_and_vae_are_noted_as_unused() -> None:
    plan = make_plan(preset_for("ltx-video", model__text_encoder="${MODELS}/t5", model__vae="${MODELS}/vae"))
    assert any(n.startswith("model.text_encoder is set but not used") for n in plan.notes)
    assert any(n.startswith("model.vae is set but not used") for n in plan.notes)


# --- architectures, block swap, other notes ------------------------------------------------------------------------


def test_framepack_is_not_a_diffusion_pipe_model() -> None:
    error = refused("framepack")
    assert error.field == "meta.architecture" and "wan2.1-t2v-1.3b" in error.message


@pytest.mark.parametrize(("architecture", "limit"), [
    ("wan2.1-t2v-1.3b", 28), ("wan2.1-t2v-14b", 38), ("wan2.2-i2v-a14b", 38), ("hunyuan-video", 36),
])
def test_block_swap_limits(architecture: str, limit: int) -> None:
    config = tomllib.loads(make_plan(preset_for(architecture, memory__blocks_to_swap=limit)).files["config.toml"])
    assert config["blocks_to_swap"] == limit
    error = refused(architecture, memory__blocks_to_swap=limit + 1)
    assert error.field == "memory.blocks_to_swap" and f"at most {limit}" in error.message


def test_no_block_swap_key_when_zero() -> None:
    assert "blocks_to_swap" not in tomllib.loads(make_plan(preset_for("wan2.1-t2v-14b")).files["config.toml"])


def test_block_swap_is_refused_for_ltx_and_with_pipeline_stages() -> None:
    assert "LTX" in refused("ltx-video", memory__blocks_to_swap=4).message
    error = refused("wan2.1-t2v-14b", memory__blocks_to_swap=8, backend__diffusion_pipe__pipeline_stages=2)
    assert error.field == "memory.blocks_to_swap" and "pipeline_stages" in error.message


def test_seed_note_only_when_changed() -> None:
    assert any(n.startswith("training.seed") for n in make_plan(preset_for("ltx-video", training__seed=7)).notes)
    assert not any(n.startswith("training.seed") for n in make_plan(preset_for("ltx-video")).notes)


def test_plan_does_not_change_the_callers_preset() -> None:
    preset = preset_for("wan2.1-t2v-1.3b")
    make_plan(preset)
    assert preset.get("dataset.path") == "${DATA}/clips"
