"""musubi-tuner backend rules: every PlanError with an input that triggers it and one that does not, GPU choice,
caching flags, resume, outputs. Golden files and schema checks are in test_backend_musubi_golden.py."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from backends.base import PlanError
from backends.musubi_tuner import MusubiTuner
from studio.settings import Settings, TrainerInstall
from studio.tomlcompat import tomllib
from tests.media_fixtures import make_clip, make_image, write_caption
from tests.musubi_helpers import fixed_settings, plan_of, preset, script_part, step, value_after

WAN13 = "musubi-wan21-t2v-1.3b-24gb"
WAN14 = "musubi-wan21-t2v-14b-24gb"
I2V = "musubi-wan21-i2v-14b-24gb"
WAN22 = "musubi-wan22-t2v-a14b-80gb"
HV = "musubi-hunyuan-video-24gb"
FP = "musubi-framepack-24gb"


def plan_error(stem: str, tmp_path: Path, **changes) -> PlanError:
    with pytest.raises(PlanError) as caught:
        plan_of(preset(stem, **changes), tmp_path / "run")
    return caught.value


def train_args(stem: str, tmp_path: Path, **changes) -> list[str]:
    return script_part(step(plan_of(preset(stem, **changes), tmp_path / "run"), "train"))


# Optimizers and schedules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["adamw8bitkahan", "adamw_optimi"])
def test_diffusion_pipe_only_optimizers_are_refused_with_the_supported_list(tmp_path, optimizer):
    error = plan_error(WAN13, tmp_path, optimizer__type=optimizer)
    assert error.field == "optimizer.type"
    assert "adamw, adamw8bit, adafactor, prodigy" in error.message


def test_adamw8bit_gets_betas_eps_and_weight_decay_as_literals(tmp_path):
    args = train_args(WAN13, tmp_path, optimizer__betas=[0.9, 0.999], optimizer__weight_decay=0.05)
    assert value_after(args, "--optimizer_type") == "AdamW8bit"
    start = args.index("--optimizer_args") + 1
    assert args[start:start + 3] == ["betas=(0.9,0.999)", "eps=1e-08", "weight_decay=0.05"]


def test_betas_need_two_values(tmp_path):
    assert plan_error(WAN13, tmp_path, optimizer__betas=[0.9]).field == "optimizer.betas"


def test_prodigy_uses_the_dotted_class_and_says_how_to_install_it(tmp_path):
    plan = plan_of(preset(WAN13, optimizer__type="prodigy", optimizer__learning_rate=1.0), tmp_path / "run")
    assert value_after(step(plan, "train"), "--optimizer_type") == "prodigyopt.Prodigy"
    assert any("pip install prodigyopt" in note for note in plan.notes)


def test_adafactor_turns_off_relative_step_so_the_learning_rate_counts(tmp_path):
    args = train_args(WAN13, tmp_path, optimizer__type="adafactor")
    assert value_after(args, "--optimizer_type") == "AdaFactor"
    assert "relative_step=False" in args and not any(a.startswith("betas=") for a in args)


def test_constant_schedule_with_warmup_is_refused_and_constant_with_warmup_passes_it(tmp_path):
    error = plan_error(WAN13, tmp_path, optimizer__warmup_steps=100)
    assert error.field == "optimizer.warmup_steps" and "constant_with_warmup" in error.message
    args = train_args(WAN13, tmp_path, optimizer__warmup_steps=100, optimizer__lr_scheduler="constant_with_warmup")
    assert value_after(args, "--lr_scheduler") == "constant_with_warmup"
    assert value_after(args, "--lr_warmup_steps") == "100"


# Model and memory rules ----------------------------------------------------------------------------------------


def test_caption_extension_without_dot_is_refused(tmp_path):
    assert plan_error(WAN13, tmp_path, dataset__caption_extension="txt").field == "dataset.caption_extension"
    assert plan_of(preset(WAN13, dataset__caption_extension=".caption"), tmp_path / "ok")


def test_fp8_scaled_needs_fp8_base(tmp_path):
    error = plan_error(WAN13, tmp_path, backend__musubi_tuner__fp8_scaled=True)
    assert error.field == "backend.musubi_tuner.fp8_scaled" and "fp8_base" in error.message
    args = train_args(WAN13, tmp_path, backend__musubi_tuner__fp8_scaled=True, memory__fp8_base=True)
    assert "--fp8_base" in args and "--fp8_scaled" in args


def test_fp8_scaled_is_refused_for_hunyuan_video(tmp_path):
    error = plan_error(HV, tmp_path, backend__musubi_tuner__fp8_scaled=True)
    assert "HunyuanVideo" in error.message
    assert "--fp8_scaled" not in train_args(HV, tmp_path)


@pytest.mark.parametrize(("stem", "limit"), [(WAN13, 29), (WAN14, 39), (HV, 38)])
def test_blocks_to_swap_is_limited_by_the_model(tmp_path, stem, limit):
    assert value_after(train_args(stem, tmp_path, memory__blocks_to_swap=limit), "--blocks_to_swap") == str(limit)
    error = plan_error(stem, tmp_path, memory__blocks_to_swap=limit + 1)
    assert error.field == "memory.blocks_to_swap" and f"at most {limit}" in error.message


def test_flash3_is_refused_for_hunyuan_video_only(tmp_path):
    assert plan_error(HV, tmp_path, backend__musubi_tuner__attention="flash3").field == "backend.musubi_tuner.attention"
    args = train_args(WAN13, tmp_path, backend__musubi_tuner__attention="flash3")
    assert "--flash3" in args and "--sdpa" not in args


def test_framepack_batch_above_one_needs_split_attention(tmp_path):
    assert plan_error(FP, tmp_path, dataset__batch_size=2).field == "backend.musubi_tuner.split_attn"
    args = train_args(FP, tmp_path, dataset__batch_size=2, backend__musubi_tuner__split_attn=True)
    assert args[args.index("--sdpa") + 1] == "--split_attn"


def test_framepack_trains_in_bfloat16_only(tmp_path):
    assert plan_error(FP, tmp_path, model__dtype="float16").field == "model.dtype"


def test_framepack_samples_shorter_than_the_latent_window_are_refused(tmp_path):
    error = plan_error(FP, tmp_path, backend__musubi_tuner__frame_extraction="head", dataset__frames=[1, 33])
    assert error.field == "dataset.frames" and "37" in error.message
    error = plan_error(FP, tmp_path, backend__musubi_tuner__max_frames=36)
    assert error.field == "backend.musubi_tuner.max_frames"
    plan = plan_of(preset(FP, backend__musubi_tuner__frame_extraction="head", dataset__frames=[37, 73]), tmp_path)
    assert tomllib.loads(plan.files["dataset.toml"])["datasets"][0]["target_frames"] == [37, 73]


def test_framepack_window_reaches_dataset_and_training(tmp_path):
    plan = plan_of(preset(FP, backend__musubi_tuner__latent_window_size=5, backend__musubi_tuner__max_frames=41),
                   tmp_path / "run")
    assert tomllib.loads(plan.files["dataset.toml"])["datasets"][0]["fp_latent_window_size"] == 5
    assert value_after(step(plan, "train"), "--latent_window_size") == "5"


def test_wan22_both_experts_offload_conflicts_with_block_swap(tmp_path):
    error = plan_error(WAN22, tmp_path, backend__musubi_tuner__offload_inactive_dit=True, memory__blocks_to_swap=10)
    assert error.field == "backend.musubi_tuner.offload_inactive_dit"
    args = train_args(WAN22, tmp_path, backend__musubi_tuner__offload_inactive_dit=True)
    assert "--offload_inactive_dit" in args and value_after(args, "--dit_high_noise").endswith("high_noise_14B_fp16.safetensors")
    assert value_after(args, "--mixed_precision") == "fp16"


def test_wan22_boundary_is_an_int_and_one_expert_gets_advice(tmp_path):
    args = train_args(WAN22, tmp_path, backend__musubi_tuner__timestep_boundary=900)
    assert value_after(args, "--timestep_boundary") == "900"
    plan = plan_of(preset(WAN22, model__dit_high_noise=""), tmp_path / "one")
    assert "--dit_high_noise" not in step(plan, "train")
    assert any("only the expert in model.dit" in note for note in plan.notes)


def test_min_timestep_must_stay_below_max(tmp_path):
    error = plan_error(WAN13, tmp_path, backend__musubi_tuner__min_timestep=900, backend__musubi_tuner__max_timestep=900)
    assert error.field == "backend.musubi_tuner.min_timestep"
    args = train_args(WAN13, tmp_path, backend__musubi_tuner__min_timestep=875, backend__musubi_tuner__max_timestep=1000,
                      backend__musubi_tuner__preserve_distribution_shape=True)
    assert value_after(args, "--min_timestep") == "875" and "--preserve_distribution_shape" in args


@pytest.mark.parametrize("text", ["conv_dim=4", "loraplus_lr_ratio", "loraplus_lr_ratio=x", "rank_dropout=2",
                                  "loraplus_lr_ratio=2 loraplus_lr_ratio=4", "exclude_patterns=['(']",
                                  "exclude_patterns=__import__('os')", "include_patterns=['a=b']"])
def test_network_args_outside_the_allowlist_are_refused(tmp_path, text):
    assert plan_error(WAN13, tmp_path, backend__musubi_tuner__network_args=text).field == (
        "backend.musubi_tuner.network_args")


def test_network_args_and_alpha_are_passed(tmp_path):
    args = train_args(WAN13, tmp_path, network__alpha=16.0, network__dropout=0.1,
                      backend__musubi_tuner__network_args="loraplus_lr_ratio=4 exclude_patterns=['.*ffn.*']")
    assert value_after(args, "--network_alpha") == "16" and value_after(args, "--network_dropout") == "0.1"
    start = args.index("--network_args") + 1
    assert args[start:start + 2] == ["loraplus_lr_ratio=4", "exclude_patterns=['.*ffn.*']"]
    assert "--network_args" not in train_args(WAN13, tmp_path / "b")


def test_required_model_files_and_relative_paths_are_refused(tmp_path):
    assert plan_error(I2V, tmp_path, model__clip="").field == "model.clip"
    assert plan_error(HV, tmp_path, model__text_encoder_2="").field == "model.text_encoder_2"
    assert plan_error(FP, tmp_path, model__image_encoder="").field == "model.image_encoder"
    assert plan_error(WAN13, tmp_path, model__dit="models/dit.safetensors").field == "model.dit"


def test_max_steps_replaces_epochs(tmp_path):
    args = train_args(WAN13, tmp_path, training__max_steps=500)
    assert value_after(args, "--max_train_steps") == "500" and "--max_train_epochs" not in args
    assert value_after(train_args(WAN13, tmp_path / "b"), "--max_train_epochs") == "16"


def test_no_persistent_workers_without_workers(tmp_path):
    args = train_args(WAN13, tmp_path, backend__musubi_tuner__max_data_loader_n_workers=0)
    assert "--persistent_data_loader_workers" not in args


# GPUs, caching, install -------------------------------------------------------------------------------------------


def test_one_gpu_by_index(tmp_path):
    plan = plan_of(preset(WAN13), tmp_path / "run", gpu_ids=[3])
    train = step(plan, "train")
    assert "--multi_gpu" not in train
    assert value_after(train, "--num_processes") == "1" and value_after(train, "--gpu_ids") == "3"
    assert all(s.env["CUDA_VISIBLE_DEVICES"] == "3" and s.env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" for s in plan.steps)
    assert json.loads(plan.files["accelerate_config.json"])["distributed_type"] == "NO"


def test_two_gpus_use_accelerate_multi_gpu_and_cache_on_the_first(tmp_path):
    plan = plan_of(preset(WAN13), tmp_path / "run", gpu_ids=[1, 2], master_port=29612)
    train = step(plan, "train")
    assert "--multi_gpu" in train and value_after(train, "--main_process_port") == "29612"
    assert value_after(train, "--num_processes") == "2" and value_after(train, "--gpu_ids") == "1,2"
    config = json.loads(plan.files["accelerate_config.json"])
    assert (config["distributed_type"], config["num_processes"], config["gpu_ids"]) == ("MULTI_GPU", 2, "1,2")
    env = {s.name: s.env["CUDA_VISIBLE_DEVICES"] for s in plan.steps}
    assert env == {"cache_latents": "1", "cache_text_encoder": "1", "train": "1,2"}


def test_gpu_choice_order_options_then_preset_then_default(tmp_path):
    settings = fixed_settings()
    settings.default_gpu = 5
    from_default = plan_of(preset(WAN13), tmp_path / "a", settings)
    assert value_after(step(from_default, "train"), "--gpu_ids") == "5"
    from_preset = plan_of(preset(WAN13, training__gpu_ids=[2]), tmp_path / "b", settings)
    assert value_after(step(from_preset, "train"), "--gpu_ids") == "2"
    from_options = plan_of(preset(WAN13, training__gpu_ids=[2]), tmp_path / "c", settings, gpu_ids=[0])
    assert value_after(step(from_options, "train"), "--gpu_ids") == "0"
    assert plan_error(WAN13, tmp_path, training__gpu_ids=[1, 1]).field == "training.gpu_ids"


def test_rtx_4090_gets_nccl_p2p_and_ib_off(tmp_path):
    plan = plan_of(preset(WAN13), tmp_path / "a", gpu_ids=[0, 1], gpu_names=["NVIDIA GeForce RTX 4090"] * 2)
    assert all(s.env["NCCL_P2P_DISABLE"] == "1" and s.env["NCCL_IB_DISABLE"] == "1" for s in plan.steps)
    plan = plan_of(preset(WAN13), tmp_path / "b", gpu_ids=[0, 1], gpu_names=["NVIDIA H100 80GB HBM3"] * 2)
    assert all("NCCL_P2P_DISABLE" not in s.env for s in plan.steps)


def test_regenerate_cache_drops_skip_existing(tmp_path):
    reuse = plan_of(preset(HV), tmp_path / "a")
    assert all("--skip_existing" in step(reuse, name) for name in ("cache_latents", "cache_text_encoder"))
    fresh = plan_of(preset(HV), tmp_path / "b", regenerate_cache=True)
    assert all("--skip_existing" not in step(fresh, name) for name in ("cache_latents", "cache_text_encoder"))


def test_cache_only_plans_no_training(tmp_path):
    plan = plan_of(preset(WAN13), tmp_path / "run", cache_only=True)
    assert [s.name for s in plan.steps] == ["cache_latents", "cache_text_encoder"]
    assert set(plan.files) == {"dataset.toml"}


def test_fp8_text_encoder_flag_per_family(tmp_path):
    assert "--fp8_t5" in step(plan_of(preset(WAN13, memory__fp8_text_encoder=True), tmp_path / "a"),
                              "cache_text_encoder")
    assert "--fp8_llm" in step(plan_of(preset(HV), tmp_path / "b"), "cache_text_encoder")
    assert "--fp8_t5" not in step(plan_of(preset(WAN13), tmp_path / "c"), "cache_text_encoder")


def test_missing_install_falls_back_to_python_with_a_note(tmp_path):
    settings = Settings(data_root="/data", models_root="/models", output_root="/out")
    settings.trainers["musubi_tuner"] = TrainerInstall()
    plan = plan_of(preset(WAN13), tmp_path / "run", settings)
    assert all(s.argv[0] == "python" and s.cwd == "" for s in plan.steps)
    assert any("Check install" in note for note in plan.notes)


# Dataset folder contents (real media) ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    for name, frames in (("walk.mp4", 20), ("run.mkv", 12)):
        write_caption(make_clip(root / "mixed" / name, frames=frames, fps=24), "a person moving")
        write_caption(make_clip(root / "videos" / name, frames=frames, fps=24), "a person moving")
    for name in ("pose.png", "face.jpg"):
        write_caption(make_image(root / "mixed" / name), "a person standing")
        write_caption(make_image(root / "images" / name), "a person standing")
    return root


def datasets_for(stem: str, folder: Path, tmp_path: Path, **changes):
    settings = fixed_settings(data=str(folder.parent))
    plan = plan_of(preset(stem, dataset__path=f"${{DATA}}/{folder.name}", **changes), tmp_path / "run", settings)
    return tomllib.loads(plan.files["dataset.toml"])["datasets"], plan.notes


def test_mixed_folder_becomes_a_video_and_an_image_dataset(media, tmp_path):
    datasets, notes = datasets_for(WAN13, media / "mixed", tmp_path)
    video, image = datasets
    assert video["video_directory"] == image["image_directory"] == str(media / "mixed")
    assert video["cache_directory"] == str(media / "mixed" / "cache" / "musubi_wan")
    assert image["cache_directory"] == str(media / "mixed" / "cache" / "musubi_wan_images")
    assert any("2 video(s) and 2 image(s)" in note for note in notes)


def test_mixed_folder_for_i2v_or_with_images_off_uses_videos_only(media, tmp_path):
    datasets, notes = datasets_for(I2V, media / "mixed", tmp_path)
    assert [("video_directory" in d) for d in datasets] == [True]
    assert datasets[0]["cache_directory"].endswith("musubi_wan_i2v")
    assert any("image-to-video" in note for note in notes)
    datasets, notes = datasets_for(WAN13, media / "mixed", tmp_path / "b", backend__musubi_tuner__include_images=False)
    assert len(datasets) == 1 and any("include_images is off" in note for note in notes)


def test_videos_only_and_images_only_folders(media, tmp_path):
    datasets, notes = datasets_for(WAN13, media / "videos", tmp_path)
    assert len(datasets) == 1 and "video_directory" in datasets[0]
    assert not any("image" in note for note in notes)
    datasets, _ = datasets_for(WAN13, media / "images", tmp_path / "b")
    assert datasets == [{"image_directory": str(media / "images"),
                         "cache_directory": str(media / "images" / "cache" / "musubi_wan")}]
    with pytest.raises(PlanError, match="only images"):
        datasets_for(I2V, media / "images", tmp_path / "c")


# Resume and outputs -----------------------------------------------------------------------------------------------


def make_output_dir(root: Path) -> Path:
    out = root / "out"
    names = ["wan21_t2v_1.3b_lora-000002-state", "wan21_t2v_1.3b_lora-000004-state", "wan21_t2v_1.3b_lora-state",
             "wan21_t2v_1.3b_lora-resume1-000001-state", "wan21_t2v_1.3b_lora-v2-000001-state", "other-000001-state"]
    for offset, name in enumerate(names):
        (out / name).mkdir(parents=True)
        stamp = time.time() - 100 + offset
        os.utime(out / name, (stamp, stamp))
    for name in ("wan21_t2v_1.3b_lora.safetensors", "wan21_t2v_1.3b_lora-000002.safetensors",
                 "wan21_t2v_1.3b_lora-resume1.safetensors", "wan21_t2v_1.3b_lora-v2.safetensors"):
        (out / name).write_bytes(b"x")
    (out / "wan21_t2v_1.3b_lora-000009-state.txt").write_text("not a folder")
    return out


def test_find_checkpoints_lists_this_presets_state_folders_oldest_first(tmp_path):
    out = make_output_dir(tmp_path)
    found = MusubiTuner().find_checkpoints(preset(WAN13), fixed_settings(output=str(out)))
    assert [Path(p).name for p in found] == [
        "wan21_t2v_1.3b_lora-000002-state", "wan21_t2v_1.3b_lora-000004-state", "wan21_t2v_1.3b_lora-state",
        "wan21_t2v_1.3b_lora-resume1-000001-state"]
    assert MusubiTuner().find_checkpoints(preset(WAN13), fixed_settings(output=str(tmp_path / "none"))) == []


def test_resume_passes_the_state_and_writes_under_a_new_name(tmp_path):
    out = make_output_dir(tmp_path)
    settings = fixed_settings(output=str(out))
    state = str(out / "wan21_t2v_1.3b_lora-000004-state")
    plan = plan_of(preset(WAN13), tmp_path / "run", settings, resume_from=state)
    args = step(plan, "train")
    assert value_after(args, "--resume") == state
    assert value_after(args, "--output_name") == "wan21_t2v_1.3b_lora-resume2"
    assert any("counts epochs from 1 again" in note for note in plan.notes)
    for bad in (str(out / "other-000001-state"), "wan21_t2v_1.3b_lora-000004-state", str(out / "x")):
        with pytest.raises(PlanError) as caught:
            plan_of(preset(WAN13), tmp_path / "bad", settings, resume_from=bad)
        assert caught.value.field == "resume_from"


def test_output_spec_finds_loras_checkpoints_and_tensorboard(tmp_path):
    out = make_output_dir(tmp_path)
    settings = fixed_settings(output=str(out))
    plan = plan_of(preset(WAN13), tmp_path / "run", settings)
    (tmp_path / "run" / "tensorboard" / "20260101120000" / "network_train").mkdir(parents=True)
    found = MusubiTuner().find_outputs(plan.outputs)
    assert sorted(Path(p).name for p in found.loras) == [
        "wan21_t2v_1.3b_lora-000002.safetensors", "wan21_t2v_1.3b_lora-resume1.safetensors",
        "wan21_t2v_1.3b_lora.safetensors"]
    assert len(found.checkpoints) == 4 and not any("-v2-" in p or "other" in p for p in found.checkpoints)
    assert [Path(p).name for p in found.tensorboard_dirs] == ["20260101120000"]
    assert plan.outputs.completion_marker == "model saved."
    assert MusubiTuner().output_spec(preset(WAN13), settings).tensorboard_dirs == ()


def test_wan22_i2v_caches_image_latents_without_clip_in_its_own_folder(tmp_path):
    loaded = preset(WAN22)
    loaded.meta["architecture"] = "wan2.2-i2v-a14b"
    plan = plan_of(loaded, tmp_path / "run")
    cache = step(plan, "cache_latents")
    assert "--i2v" in cache and "--clip" not in cache
    assert value_after(script_part(step(plan, "train")), "--task") == "i2v-A14B"
    entry = tomllib.loads(plan.files["dataset.toml"])["datasets"][0]
    assert entry["cache_directory"].endswith("cache/musubi_wan22_i2v")


def test_architectures_outside_musubi_are_refused(tmp_path):
    loaded = preset(WAN13)
    loaded.meta["architecture"] = "ltx-video"
    with pytest.raises(PlanError) as caught:
        plan_of(loaded, tmp_path / "run")
    assert caught.value.field == "meta.architecture"
