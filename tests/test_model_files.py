"""Filling a preset from a downloaded set, and checking model files against what each trainer accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from download_support import run_cli
from weights_fixtures import wan_dit_tensors, write_safetensors, write_torch_zip

from backends import backend_fields
from studio.catalogue import CatalogueError, load_catalogue, parse_catalogue
from studio.fields import PresetError
from studio.model_files import check_model_files, fill_preset_paths, filled_changes
from studio.presets import load_preset, new_preset, resolve_path
from studio.settings import Settings

FIELDS = backend_fields()
CATALOGUE = load_catalogue()
PRESETS = Path(__file__).resolve().parent.parent / "presets"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(models_root=str(tmp_path / "models"), presets_dir=str(tmp_path / "presets"),
                    data_root=str(tmp_path / "data"), output_root=str(tmp_path / "out"))


def preset(backend: str, arch: str, **values):
    result = new_preset(FIELDS, backend, arch, "test preset")
    for dotted, value in values.items():
        section, _, key = dotted.replace("__", ".").rpartition(".")
        result.values[section][key] = value
    return result


def on_disk(settings: Settings, value: str) -> Path:
    return Path(resolve_path(value, settings.roots()))


def by_field(findings, level="error"):
    return {f.field: f for f in findings if f.level == level}


# Catalogue ------------------------------------------------------------------------------------------------------


def test_shipped_catalogue_covers_every_required_musubi_and_diffusion_pipe_slot(settings):
    """For each (trainer, model) some set provides every path the trainer needs (no dead ends in the tab)."""
    from studio.architectures import get_architecture
    from studio.model_files import slots_for

    for backend in ("musubi_tuner", "diffusion_pipe"):
        for arch_id in ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b", "wan2.2-t2v-a14b", "wan2.2-i2v-a14b",
                        "hunyuan-video", "framepack"):
            if arch_id == "framepack" and backend == "diffusion_pipe":
                continue
            p = new_preset(FIELDS, backend, arch_id, "x")
            for slot in slots_for(backend, get_architecture(arch_id), p):
                if not slot.required:
                    continue
                offers = [s.id for s in CATALOGUE.values()
                          if s.applies_to(backend, arch_id) and slot.dotted in s.fills_for(backend)]
                assert offers, f"no set fills {slot.dotted} for {backend} {arch_id}"


def test_catalogue_refuses_fills_its_patterns_would_not_download():
    text = """[[sets]]
id = "bad"
title = "t"
trainers = ["musubi_tuner"]
architectures = ["wan2.1-t2v-1.3b"]
hf_repo = "Org/Repo"
ignore = ["*.pth"]
target = "Repo"
approx_gb = 1.0
fills = { "model.vae" = "Wan2.1_VAE.pth" }
"""
    with pytest.raises(CatalogueError, match="excluded by the set's allow/ignore patterns"):
        parse_catalogue(text, "test")
    assert parse_catalogue(text.replace('ignore = ["*.pth"]', 'ignore = ["*.bin"]'), "test")[0].id == "bad"


@pytest.mark.parametrize("change, message", [
    (('trainers = ["musubi_tuner"]', 'trainers = ["kohya"]'), "trainer 'kohya' unknown"),
    (('target = "Repo"', 'target = "../escape"'), "without '..'"),
    (('"model.vae"', '"backend.diffusion_pipe.ckpt_path"'), "not a model path field"),
    (('approx_gb = 1.0', 'approx_gb = -1'), "positive"),
    (('hf_repo = "Org/Repo"', 'hf_repo = "not a repo"'), "owner/name"),
])
def test_catalogue_validation_messages(change, message):
    text = """[[sets]]
id = "bad"
title = "t"
trainers = ["musubi_tuner"]
architectures = ["wan2.1-t2v-1.3b"]
hf_repo = "Org/Repo"
target = "Repo"
approx_gb = 1.0
fills = { "model.vae" = "Wan2.1_VAE.pth" }
"""
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(text.replace(*change), "test")


def test_user_catalogue_adds_sets_and_may_not_shadow_shipped_ones(studio_home):
    extra = studio_home / "catalogue.toml"
    extra.write_text('[[sets]]\nid = "my-vae"\ntitle = "Mine"\ntrainers = ["musubi_tuner"]\n'
                     'architectures = ["wan2.1-t2v-1.3b"]\nhf_repo = "me/vae"\ntarget = "mine"\napprox_gb = 0.1\n')
    assert "my-vae" in load_catalogue()
    extra.write_text(extra.read_text().replace("my-vae", "wan21-comfy-vae"))
    with pytest.raises(CatalogueError, match="already defined"):
        load_catalogue()


# Filling --------------------------------------------------------------------------------------------------------


def test_fill_writes_models_relative_paths_for_the_presets_trainer(settings):
    base = load_preset(PRESETS / "diffusion-pipe-wan21-t2v-1.3b-24gb.toml", FIELDS)
    # The shipped preset already names the catalogue locations; start from a user's own flat models folder.
    base.values["model"].update(dit="${MODELS}/wan2.1_t2v_1.3B_bf16.safetensors",
                                text_encoder="${MODELS}/umt5-xxl-enc-bf16.safetensors")
    filled = fill_preset_paths(base, "wan21-comfy-t2v-1.3b-bf16", settings)
    filled = fill_preset_paths(filled, "kijai-umt5-enc-bf16", settings)
    filled = fill_preset_paths(filled, "wan21-t2v-1.3b-ckpt", settings)
    assert filled.get("model.dit") == ("${MODELS}/Wan_2.1_ComfyUI_repackaged/split_files/diffusion_models/"
                                       "wan2.1_t2v_1.3B_bf16.safetensors")
    assert filled.get("model.text_encoder") == "${MODELS}/WanVideo_comfy/umt5-xxl-enc-bf16.safetensors"
    assert filled.get("backend.diffusion_pipe.ckpt_path") == "${MODELS}/Wan2.1-T2V-1.3B"
    assert set(filled_changes(base, filled)) == {"model.dit", "model.text_encoder"}
    assert base.get("model.dit") == "${MODELS}/wan2.1_t2v_1.3B_bf16.safetensors"  # the original is untouched


def test_fill_sets_the_values_the_files_require_only_for_that_trainer(settings):
    musubi = fill_preset_paths(preset("musubi_tuner", "wan2.2-t2v-a14b"), "wan22-t2v-a14b-comfy-experts", settings)
    assert musubi.get("model.dtype") == "float16"
    assert musubi.get("model.dit_high_noise").endswith("wan2.2_t2v_high_noise_14B_fp16.safetensors")
    dpipe = fill_preset_paths(preset("diffusion_pipe", "wan2.2-t2v-a14b"), "wan22-t2v-a14b-comfy-experts", settings)
    assert dpipe.get("model.dtype") == "bfloat16"  # diffusion-pipe computes in its own dtype
    i2v = fill_preset_paths(preset("diffusion_pipe", "wan2.1-i2v-14b"), "wan21-i2v-14b-480p-ckpt", settings)
    assert i2v.get("model.vae") == ""  # diffusion-pipe reads Wan's VAE from ckpt_path, so it is not filled


@pytest.mark.parametrize("backend, arch, set_id, key", [
    ("musubi_tuner", "wan2.1-t2v-1.3b", "wan21-t2v-1.3b-ckpt", "meta.backend"),
    ("musubi_tuner", "wan2.1-t2v-14b", "wan21-comfy-t2v-1.3b-bf16", "meta.architecture"),
])
def test_fill_refuses_a_set_for_another_trainer_or_model(settings, backend, arch, set_id, key):
    with pytest.raises(PresetError) as info:
        fill_preset_paths(preset(backend, arch), set_id, settings)
    assert info.value.field == key


# Checking -------------------------------------------------------------------------------------------------------


def musubi_wan_files(settings: Settings, **dit_kwargs) -> dict[str, str]:
    root = Path(settings.models_root)
    write_safetensors(root / "dit.safetensors", wan_dit_tensors(**dit_kwargs))
    write_torch_zip(root / "t5.pth", ["BFloat16Storage"])
    write_torch_zip(root / "vae.pth", ["FloatStorage"])
    return {"model.dit": "${MODELS}/dit.safetensors", "model.text_encoder": "${MODELS}/t5.pth",
            "model.vae": "${MODELS}/vae.pth"}


def test_a_good_musubi_wan_setup_has_no_errors_and_reports_dtypes(settings):
    p = preset("musubi_tuner", "wan2.1-t2v-1.3b", **musubi_wan_files(settings))
    findings = check_model_files(p, settings)
    assert not by_field(findings)
    assert "bf16" in by_field(findings, "info")["model.dit"].message


@pytest.mark.parametrize("dit, values, field, expected, fix", [
    ({"dtype": "F16"}, {}, "model.dit", "mixed precision must be fp16", {"model.dtype": "float16"}),
    ({"dtype": "BF16"}, {"model.dtype": "float16"}, "model.dit", "must be bf16", {"model.dtype": "bfloat16"}),
    ({"dtype": "F8_E4M3"}, {}, "model.dit", "only with --fp8_base", {"memory.fp8_base": True}),
    ({"dtype": "F8_E4M3"}, {"memory.fp8_base": True, "backend.musubi_tuner.fp8_scaled": True}, "model.dit",
     "already in fp8", {"backend.musubi_tuner.fp8_scaled": False}),
    ({"dtype": "F8_E4M3", "scaled": True}, {"memory.fp8_base": True}, "model.dit", "fp8_scaled", None),
    ({"dim": 5120}, {}, "model.dit", "14B Wan transformer", None),
])
def test_musubi_wan_dit_rules(settings, dit, values, field, expected, fix):
    p = preset("musubi_tuner", "wan2.1-t2v-1.3b", **musubi_wan_files(settings, **dit))
    for dotted, value in values.items():
        section, _, key = dotted.rpartition(".")
        p.values[section][key] = value
    error = by_field(check_model_files(p, settings))[field]
    assert expected in error.message
    assert (error.action.changes if error.action else None) == fix


def test_fp8_dit_with_fp8_base_is_accepted(settings):
    p = preset("musubi_tuner", "wan2.1-t2v-1.3b", **musubi_wan_files(settings, dtype="F8_E4M3"))
    p.values["memory"]["fp8_base"] = True
    assert "model.dit" not in by_field(check_model_files(p, settings))


@pytest.mark.parametrize("arch, dit, expected", [
    ("wan2.1-i2v-14b", {"dim": 5120, "in_channels": 16}, "text-to-video transformer"),
    ("wan2.1-t2v-14b", {"dim": 5120, "in_channels": 36, "image_attention": True}, "image-to-video transformer"),
    ("wan2.1-i2v-14b", {"dim": 5120, "in_channels": 36}, "is a Wan2.2 I2V transformer"),
    ("wan2.2-i2v-a14b", {"dim": 5120, "in_channels": 36, "image_attention": True}, "is a Wan2.1 I2V transformer"),
])
def test_wan_variant_mismatches(settings, arch, dit, expected):
    p = preset("musubi_tuner", arch, **musubi_wan_files(settings, **dit))
    assert expected in by_field(check_model_files(p, settings))["model.dit"].message
    ok = {"wan2.1-i2v-14b": {"image_attention": True, "in_channels": 36}, "wan2.2-i2v-a14b": {"in_channels": 36},
          "wan2.1-t2v-14b": {"in_channels": 16}}[arch]
    good = preset("musubi_tuner", arch, **musubi_wan_files(settings, dim=5120, **ok))
    assert "model.dit" not in by_field(check_model_files(good, settings))


def test_musubi_t5_must_be_wan_layout_and_clip_must_be_official(settings):
    files = musubi_wan_files(settings, dim=5120, in_channels=36, image_attention=True)
    root = Path(settings.models_root)
    write_safetensors(root / "umt5_xxl_fp16.safetensors",
                      {"encoder.block.0.layer.0.SelfAttention.q.weight": ("F16", (4, 4))})
    write_safetensors(root / "clip_vision_h.safetensors", {"vision_model.embeddings.patch_embedding.weight":
                                                           ("F16", (4, 4))})
    p = preset("musubi_tuner", "wan2.1-i2v-14b", **{**files, "model.text_encoder": "${MODELS}/umt5_xxl_fp16.safetensors",
                                                     "model.clip": "${MODELS}/clip_vision_h.safetensors"})
    errors = by_field(check_model_files(p, settings))
    assert "ComfyUI's umT5 key names" in errors["model.text_encoder"].message
    assert "official models_clip_open-clip" in errors["model.clip"].message
    write_torch_zip(root / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth", ["HalfStorage"])
    p.values["model"]["clip"] = "${MODELS}/models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
    p.values["model"]["text_encoder"] = files["model.text_encoder"]
    assert not {"model.clip", "model.text_encoder"} & set(by_field(check_model_files(p, settings)))


def test_missing_and_cut_short_files(settings):
    files = musubi_wan_files(settings)
    write_safetensors(Path(settings.models_root) / "dit.safetensors", wan_dit_tensors(), truncate_by=100)
    p = preset("musubi_tuner", "wan2.1-t2v-1.3b", **{**files, "model.vae": ""})
    p.values["model"]["text_encoder"] = "${MODELS}/nowhere/t5.pth"
    errors = by_field(check_model_files(p, settings))
    assert "cut short" in errors["model.dit"].message
    assert "does not exist" in errors["model.text_encoder"].message
    assert "wan-t5-vae-official" in errors["model.text_encoder"].fix
    assert errors["model.vae"].message.startswith("not set; musubi-tuner needs it")


def test_missing_path_offers_a_one_click_fix_when_the_set_is_downloaded(settings):
    target = Path(settings.models_root, "Wan_2.1_ComfyUI_repackaged/split_files/vae/wan_2.1_vae.safetensors")
    write_safetensors(target, {"decoder.conv1.weight": ("BF16", (4, 4))})
    p = preset("musubi_tuner", "wan2.1-t2v-1.3b", **musubi_wan_files(settings))
    p.values["model"]["vae"] = ""
    error = by_field(check_model_files(p, settings))["model.vae"]
    assert error.action.changes == {"model.vae": "${MODELS}/Wan_2.1_ComfyUI_repackaged/split_files/vae/wan_2.1_vae.safetensors"}


def make_wan_ckpt(folder: Path, *, model_type: str = "t2v", dim: int = 1536, t5: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type, "dim": dim}))
    write_torch_zip(folder / "Wan2.1_VAE.pth", ["FloatStorage"])
    (folder / "google" / "umt5-xxl").mkdir(parents=True)
    (folder / "google" / "umt5-xxl" / "tokenizer.json").write_text("{}")
    if t5:
        write_torch_zip(folder / "models_t5_umt5-xxl-enc-bf16.pth", ["BFloat16Storage"])


def test_diffusion_pipe_wan_ckpt_folder_rules(settings):
    root = Path(settings.models_root)
    make_wan_ckpt(root / "Wan2.1-T2V-1.3B")
    write_safetensors(root / "dit.safetensors", wan_dit_tensors())
    write_safetensors(root / "umt5.safetensors", {"encoder.block.0.layer.0.SelfAttention.q.weight": ("F16", (4, 4))})
    p = preset("diffusion_pipe", "wan2.1-t2v-1.3b", **{"backend.diffusion_pipe.ckpt_path": "${MODELS}/Wan2.1-T2V-1.3B",
                                                     "model.dit": "${MODELS}/dit.safetensors",
                                                     "model.text_encoder": "${MODELS}/umt5.safetensors"})
    assert not by_field(check_model_files(p, settings))  # the seeds' setup: ComfyUI files + official folder
    p.values["model"]["text_encoder"] = ""
    errors = by_field(check_model_files(p, settings))
    assert "lacks models_t5_umt5-xxl-enc-bf16.pth" in errors["backend.diffusion_pipe.ckpt_path"].message
    p.values["model"]["text_encoder"] = "${MODELS}/umt5.safetensors"
    p.values["model"]["dit"] = ""
    assert "no transformer" in by_field(check_model_files(p, settings))["backend.diffusion_pipe.ckpt_path"].message
    make_wan_ckpt(root / "Wan2.1-T2V-14B", dim=5120)
    p.values["model"]["dit"] = "${MODELS}/dit.safetensors"
    p.values["backend.diffusion_pipe"]["ckpt_path"] = "${MODELS}/Wan2.1-T2V-14B"
    assert "dim 5120" in by_field(check_model_files(p, settings))["backend.diffusion_pipe.ckpt_path"].message
    (root / "empty").mkdir()
    p.values["backend.diffusion_pipe"]["ckpt_path"] = "${MODELS}/empty"
    assert "no config.json" in by_field(check_model_files(p, settings))["backend.diffusion_pipe.ckpt_path"].message


def test_diffusion_pipe_rejects_fp8_scaled_text_encoder_and_transformer(settings):
    root = Path(settings.models_root)
    make_wan_ckpt(root / "ckpt", t5=True)
    write_safetensors(root / "dit_scaled.safetensors", wan_dit_tensors(dtype="F8_E4M3", scaled=True))
    write_safetensors(root / "umt5_scaled.safetensors", {"encoder.block.0.layer.0.SelfAttention.q.weight":
                                                         ("F8_E4M3", (4, 4)), "encoder.x.scale_weight": ("F32", (1,))})
    p = preset("diffusion_pipe", "wan2.1-t2v-1.3b", **{"backend.diffusion_pipe.ckpt_path": "${MODELS}/ckpt",
                                                     "model.dit": "${MODELS}/dit_scaled.safetensors",
                                                     "model.text_encoder": "${MODELS}/umt5_scaled.safetensors"})
    errors = by_field(check_model_files(p, settings))
    assert "fp8_scaled weights are not supported" in errors["model.dit"].message
    assert "fp8_scaled" in errors["model.text_encoder"].message


def test_framepack_shards_and_lora_in_base_slot(settings):
    root = Path(settings.models_root)
    for i in (1, 2):
        write_safetensors(root / f"fp/diffusion_pytorch_model-0000{i}-of-00003.safetensors", {"x": ("BF16", (2,))})
    write_safetensors(root / "lora.safetensors", {"lora_unet_blocks_0.lora_down.weight": ("BF16", (2, 2))})
    p = preset("musubi_tuner", "framepack", **{"model.dit": "${MODELS}/fp/diffusion_pytorch_model-00001-of-00003.safetensors",
                                                "model.vae": "${MODELS}/lora.safetensors"})
    errors = by_field(check_model_files(p, settings))
    assert "1 of 3 shards are missing" in errors["model.dit"].message
    assert "is a LoRA" in errors["model.vae"].message


# CLI ------------------------------------------------------------------------------------------------------------


def test_cli_fill_then_check(settings, tmp_path, capsys):
    from studio.settings import save_settings

    settings_file = tmp_path / "settings.toml"
    save_settings(settings, settings_file)
    code, out = run_cli(["fill-models", str(PRESETS / "musubi-wan21-t2v-1.3b-24gb.toml"), "wan21-comfy-t2v-1.3b-bf16",
                         "--settings", str(settings_file), "--json"], capsys)
    saved = json.loads(out)["saved"]
    assert code == 0 and Path(saved).parent == Path(settings.presets_dir)
    assert load_preset(saved, FIELDS).get("model.dit").endswith("wan2.1_t2v_1.3B_bf16.safetensors")
    code, out = run_cli(["check-models", saved, "--settings", str(settings_file)], capsys)
    assert code == 1 and "ERROR" in out and "wan21-comfy-t2v-1.3b-bf16" in out
    code, out = run_cli(["models", "--trainer", "diffusion_pipe", "--arch", "wan2.1-t2v-1.3b", "--json",
                         "--settings", str(settings_file)], capsys)
    rows = json.loads(out)
    assert code == 0 and {r["id"] for r in rows} >= {"wan21-t2v-1.3b-ckpt", "kijai-umt5-enc-bf16"}
    assert all("diffusion_pipe" in r["trainers"] and r["status"] == "missing" for r in rows)
