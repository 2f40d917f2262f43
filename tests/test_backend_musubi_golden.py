"""Shipped musubi presets: canonical files, golden plans, the dataset TOML against musubi's schema, and (where a
real musubi-tuner environment is configured) the whole plan checked by musubi's and accelerate's own code.

``UPDATE_GOLDEN=1`` rewrites tests/golden/musubi/. ``VLS_MUSUBI_PYTHON=/path/to/musubi/venv/bin/python`` turns on
the real-trainer check (tests/musubi_real_check.py runs inside that interpreter).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from studio.presets import dump_preset, load_preset
from studio.tomlcompat import tomllib
from tests.media_fixtures import make_clip, make_image, write_caption
from tests.musubi_helpers import FIELDS, PRESETS, REPO, fixed_settings, plan_of, preset

GOLDEN = REPO / "tests" / "golden" / "musubi"
STEMS = [p.stem for p in PRESETS]
MUSUBI_PYTHON = os.environ.get("VLS_MUSUBI_PYTHON", "")

# musubi-tuner v0.3.4 src/musubi_tuner/dataset/config_utils.py, ConfigSanitizer: DATASET_ASCENDABLE_SCHEMA (lines
# 115-122), IMAGE_DATASET_DISTINCT_SCHEMA (123-135) and VIDEO_DATASET_DISTINCT_SCHEMA (136-148). Copied here, not
# imported from the backend, so a wrong key in the backend cannot agree with itself.
ASCENDABLE = {"caption_extension": str, "batch_size": int, "num_repeats": int, "resolution": list,
              "enable_bucket": bool, "bucket_no_upscale": bool}
IMAGE_DISTINCT = {"image_directory": str, "image_jsonl_file": str, "cache_directory": str, "control_directory": str,
                  "multiple_target": bool, "fp_latent_window_size": int, "fp_1f_clean_indices": list,
                  "fp_1f_target_index": int, "fp_1f_no_post": bool, "no_resize_control": bool,
                  "control_resolution": list}
VIDEO_DISTINCT = {"video_directory": str, "video_jsonl_file": str, "control_directory": str, "target_frames": list,
                  "frame_extraction": str, "frame_stride": int, "frame_sample": int, "max_frames": int,
                  "cache_directory": str, "source_fps": float, "fp_latent_window_size": int}


def snapshot(plan, run_dir: Path) -> dict:
    text = json.dumps({"steps": [{"name": s.name, "argv": s.argv, "cwd": s.cwd, "env": s.env} for s in plan.steps],
                       "notes": plan.notes, "outputs": plan.to_dict()["outputs"]}, indent=2, ensure_ascii=False)
    return json.loads(text.replace(str(run_dir), "<RUN>"))


@pytest.mark.parametrize("path", PRESETS, ids=STEMS)
def test_shipped_preset_is_canonical_and_documented(path):
    loaded = load_preset(path, FIELDS)
    assert path.read_text(encoding="utf-8") == dump_preset(loaded)
    assert loaded.meta["name"] == path.stem and loaded.backend == "musubi_tuner"
    assert "v0.3.4" in loaded.meta["trainer_version"] and 40 < len(loaded.meta["notes"]) < 400
    assert all(v == "" or v.startswith(("${MODELS}/", "${DATA}/", "${OUTPUT}")) for v in loaded.values["model"].values()
               if isinstance(v, str) and v not in ("bfloat16", "float16"))


def test_every_required_preset_ships():
    assert set(STEMS) == {"musubi-wan21-t2v-1.3b-24gb", "musubi-wan21-t2v-14b-24gb", "musubi-wan21-t2v-14b-80gb",
                          "musubi-wan21-i2v-14b-24gb", "musubi-wan22-t2v-a14b-80gb", "musubi-hunyuan-video-24gb",
                          "musubi-framepack-24gb"}
    clip = preset("musubi-wan21-i2v-14b-24gb").get("model.clip")
    assert clip == "${MODELS}/Wan2.1-I2V-14B-480P/models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"


@pytest.mark.parametrize("stem", STEMS)
def test_golden_plan(stem, tmp_path):
    run_dir = tmp_path / "run"
    plan = plan_of(preset(stem), run_dir)
    actual = {name: text.replace(str(run_dir), "<RUN>") for name, text in plan.files.items()}
    actual["plan.json"] = json.dumps(snapshot(plan, run_dir), indent=2, ensure_ascii=False) + "\n"
    folder = GOLDEN / stem
    if os.environ.get("UPDATE_GOLDEN"):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for name, text in actual.items():
            (folder / name).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())}
    assert actual == expected


@pytest.mark.parametrize("stem", STEMS)
def test_dataset_toml_has_only_musubi_keys_with_exact_types(stem, tmp_path):
    data = tomllib.loads(plan_of(preset(stem), tmp_path / "run").files["dataset.toml"])
    assert set(data) == {"general", "datasets"}
    check_table(data["general"], ASCENDABLE)
    for entry in data["datasets"]:
        video = "video_directory" in entry  # config_utils.py validate_flex_dataset picks the schema this way
        check_table(entry, {**ASCENDABLE, **(VIDEO_DISTINCT if video else IMAGE_DISTINCT)})
        assert Path(entry["cache_directory"]).is_absolute()
        assert entry["cache_directory"] != entry.get("video_directory", entry.get("image_directory"))
        for frames in entry.get("target_frames", []):
            assert isinstance(frames, int) and (frames - 1) % 4 == 0
    width, height = data["general"]["resolution"]
    assert isinstance(width, int) and isinstance(height, int)


def check_table(table: dict, schema: dict) -> None:
    for key, value in table.items():
        assert key in schema, f"{key} is not in musubi's schema"
        # voluptuous checks isinstance; bool is an int in Python but never meant as one here.
        assert isinstance(value, schema[key]) and not (schema[key] is int and isinstance(value, bool)), key


@pytest.mark.parametrize(("mode", "present", "absent"), [
    ("head", {"target_frames"}, {"frame_stride", "frame_sample", "max_frames"}),
    ("slide", {"target_frames", "frame_stride"}, {"frame_sample", "max_frames"}),
    ("uniform", {"target_frames", "frame_sample"}, {"frame_stride", "max_frames"}),
    ("full", {"max_frames"}, {"target_frames", "frame_stride", "frame_sample"}),
])
def test_frame_extraction_writes_the_keys_it_uses(tmp_path, mode, present, absent):
    changes = {"backend__musubi_tuner__frame_extraction": mode, "backend__musubi_tuner__frame_stride": 4,
               "backend__musubi_tuner__frame_sample": 3, "backend__musubi_tuner__source_fps": 30}
    entry = tomllib.loads(plan_of(preset(STEMS[0], **changes), tmp_path).files["dataset.toml"])["datasets"][0]
    assert present <= set(entry) and not absent & set(entry)
    assert entry["frame_extraction"] == mode and entry["source_fps"] == 30.0 and isinstance(entry["source_fps"], float)


def test_frames_are_rounded_like_musubi_with_a_note(tmp_path):
    plan = plan_of(preset("musubi-wan21-t2v-1.3b-24gb", dataset__frames=[48, 1, 24, 21]), tmp_path / "a")
    assert tomllib.loads(plan.files["dataset.toml"])["datasets"][0]["target_frames"] == [1, 21, 45]
    assert any("[1, 21, 45]" in note for note in plan.notes)
    plan = plan_of(preset("musubi-wan21-t2v-1.3b-24gb", dataset__frames=[1, 33]), tmp_path / "b")
    assert not any("4N+1" in note for note in plan.notes)
    assert "source_fps" not in tomllib.loads(plan.files["dataset.toml"])["datasets"][0]


# The real trainer ------------------------------------------------------------------------------------------------

ARCH_CODES = {"wan": "wan", "hunyuan": "hv", "framepack": "fp"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    # A folder name with spaces and Chinese, as users name them: musubi reads the TOML with the `toml` package.
    write_caption(make_clip(root / "训练 素材" / "clip.mp4", frames=9, fps=30), "一段视频")
    write_caption(make_image(root / "训练 素材" / "still.png"), "一张图片")
    return root


@pytest.mark.skipif(not MUSUBI_PYTHON, reason="set VLS_MUSUBI_PYTHON to a python with musubi-tuner installed")
@pytest.mark.parametrize("stem", STEMS)
def test_real_musubi_and_accelerate_accept_the_plan(stem, tmp_path, data_root):
    loaded = preset(stem, dataset__path="${DATA}/训练 素材")
    settings = fixed_settings(data=str(data_root), output=str(tmp_path / "out"))
    plan = plan_of(loaded, tmp_path / "run", settings, gpu_ids=[1, 2] if "80gb" in stem else [1])
    plan.write_files()
    from studio.architectures import get_architecture

    code = ARCH_CODES[get_architecture(loaded.architecture).family]
    request = tmp_path / "plan.json"
    request.write_text(json.dumps({"arch_code": code, "steps": [{"name": s.name, "argv": s.argv} for s in plan.steps]}))
    # A hostile global accelerate config (DeepSpeed on other GPUs) must not change how the plan launches.
    hf_home = tmp_path / "hf"
    (hf_home / "accelerate").mkdir(parents=True)
    (hf_home / "accelerate" / "default_config.yaml").write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\nmixed_precision: fp16\n"
        "num_processes: 4\ngpu_ids: 5,6,7,8\n")
    result = subprocess.run([MUSUBI_PYTHON, str(REPO / "tests" / "musubi_real_check.py"), str(request)],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HOME": str(hf_home)})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.split("@@REPORT@@", 1)[1])
    launch = report["steps"]["train"]["launch"]
    gpus = "1,2" if "80gb" in stem else "1"
    assert (launch["use_deepspeed"], launch["multi_gpu"], launch["cuda_visible_devices"]) == (
        False, "80gb" in stem, gpus)
    assert launch["mixed_precision"] == report["steps"]["train"]["args"]["mixed_precision"]
    assert report["steps"]["train"]["optimizer_kwargs"]["betas"] == "(0.9, 0.99)"
    kinds = [d["kind"] for d in report["datasets"]]
    assert kinds == (["video"] if code == "fp" or "i2v" in stem else ["video", "image"])
    assert report["datasets"][0]["items"] == 1
    assert report["datasets"][0]["cache_directory"].startswith(str(data_root / "训练 素材" / "cache" / "musubi_"))
