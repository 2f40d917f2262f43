"""diffusion-pipe backend: golden plans of the shipped presets, the generated TOML against the trainer's schema,
and every preset -> config mapping rule (each with an input that triggers it and one that does not).

Schema sources (tdrussell/diffusion-pipe 8f83dbf): train.py (set_config_defaults, __main__, get_optimizer),
utils/dataset.py (DirectoryDataset), utils/saver.py, models/wan/wan.py, models/hunyuan_video.py,
models/ltx_video.py, optimizers/adamw_8bit.py; optimizer signatures from torch, bitsandbytes, optimi and
pytorch_optimizer (AdaFactor, Prodigy).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import toml  # the parser diffusion-pipe itself uses (train.py: toml.load)
from dp_support import FIELDS, PRESETS, REPO, make_plan, preset_for, shipped

from backends.base import PlanError
from studio.presets import dump_preset, parse_preset
from studio.tomlcompat import tomllib

GOLDEN = REPO / "tests" / "golden" / "diffusion_pipe"

# --- the trainer's schema, as the code reads it -------------------------------------------------------------------

DTYPES = {"float32", "float16", "bfloat16", "float8", "float8_e4m3fn", "float8_e5m2"}  # utils/common.py DTYPE_MAP
CONFIG_KEYS: dict[str, type | tuple[type, ...]] = {
    "output_dir": str, "dataset": str, "epochs": int, "max_steps": int, "micro_batch_size_per_gpu": int,
    "pipeline_stages": int, "gradient_accumulation_steps": int, "gradient_clipping": float, "warmup_steps": int,
    "lr_scheduler": str, "save_every_n_epochs": int, "checkpoint_every_n_minutes": int,
    "activation_checkpointing": (bool, str), "blocks_to_swap": int, "save_dtype": str, "caching_batch_size": int,
    "steps_per_print": int, "video_clip_mode": str, "eval_datasets": list, "eval_every_n_epochs": int,
    "eval_before_first_step": bool, "model": dict, "adapter": dict, "optimizer": dict,
}
CONFIG_REQUIRED = {"output_dir", "dataset", "epochs", "save_every_n_epochs", "model", "adapter", "optimizer"}
MODEL_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "wan": {"type": str, "ckpt_path": str, "transformer_path": str, "llm_path": str, "dtype": str,
            "transformer_dtype": str, "text_encoder_fp8": bool, "timestep_sample_method": str, "shift": float,
            "min_t": float, "max_t": float},
    "hunyuan-video": {"type": str, "ckpt_path": str, "transformer_path": str, "vae_path": str, "llm_path": str,
                      "clip_path": str, "dtype": str, "transformer_dtype": str, "timestep_sample_method": str,
                      "shift": float},
    "ltx-video": {"type": str, "diffusers_path": str, "single_file_path": str, "dtype": str,
                  "transformer_dtype": str, "timestep_sample_method": str, "first_frame_conditioning_p": float},
}
ADAPTER_KEYS = {"type": str, "rank": int, "dtype": str, "dropout": float}  # "alpha" raises NotImplementedError
COMMON_OPT = {"type": str, "lr": float, "betas": list, "weight_decay": float}
OPTIMIZER_KEYS = {
    "adamw": {**COMMON_OPT, "eps": float},  # torch.optim.AdamW
    "adamw8bit": {**COMMON_OPT, "eps": float},  # bitsandbytes AdamW8bit
    "adamw_optimi": {**COMMON_OPT, "eps": float},  # optimi.AdamW
    "AdamW8bitKahan": {**COMMON_OPT, "eps": float, "stabilize": bool},  # optimizers/adamw_8bit.py
    "AdaFactor": {**COMMON_OPT, "relative_step": bool, "scale_parameter": bool},  # eps1/eps2, no eps
    "Prodigy": {**COMMON_OPT, "eps": float},
}
DATASET_KEYS = {"resolutions": list, "enable_ar_bucket": bool, "min_ar": float, "max_ar": float,
                "num_ar_buckets": int, "ar_buckets": list, "frame_buckets": list, "skip_empty_caption": bool,
                "directory": list}


def check_types(table: dict[str, Any], schema: dict[str, Any], where: str) -> None:
    unknown = set(table) - set(schema)
    assert not unknown, f"{where}: keys the trainer does not read: {unknown}"
    for key, value in table.items():
        assert isinstance(value, schema[key]), f"{where}.{key} = {value!r} is not {schema[key]}"
        if schema[key] is float:
            assert not isinstance(value, bool)
        if schema[key] is int:
            assert not isinstance(value, bool), f"{where}.{key} is a bool"


def check_config(config: dict[str, Any]) -> None:
    check_types(config, CONFIG_KEYS, "config")
    assert set(config) >= CONFIG_REQUIRED
    assert config["lr_scheduler"] in {"constant", "linear", "cosine"}
    assert config["activation_checkpointing"] in (True, False, "unsloth")
    assert config["video_clip_mode"] in {"single_beginning", "single_middle"}
    assert config["save_dtype"] in DTYPES
    model = config["model"]
    check_types(model, MODEL_KEYS[model["type"]], "model")
    assert model["dtype"] in DTYPES and model.get("transformer_dtype", "float8") in DTYPES
    assert model["timestep_sample_method"] in {"logit_normal", "uniform"}
    check_types(config["adapter"], ADAPTER_KEYS, "adapter")
    check_types(config["optimizer"], OPTIMIZER_KEYS[config["optimizer"]["type"]], "optimizer")
    assert len(config["optimizer"]["betas"]) == 2
    for path_key in ("output_dir", "dataset"):
        assert os.path.isabs(config[path_key])
    assert all(os.path.isabs(v) for k, v in model.items() if k.endswith("_path"))


def check_dataset(dataset: dict[str, Any]) -> None:
    check_types(dataset, DATASET_KEYS, "dataset")
    assert "resolutions" in dataset  # read eagerly even when a directory overrides it
    assert all(isinstance(f, int) and not isinstance(f, bool) for f in dataset["frame_buckets"])
    if dataset["enable_ar_bucket"]:
        assert "ar_buckets" in dataset or {"min_ar", "max_ar", "num_ar_buckets"} <= set(dataset)
    for directory in dataset["directory"]:
        check_types(directory, {"path": str, "num_repeats": int}, "directory")
        assert os.path.isabs(directory["path"]) and directory["num_repeats"] > 0


def parsed(plan: Any, name: str) -> dict[str, Any]:
    """Parse with both tomllib and the trainer's own ``toml`` package; they must agree."""
    text = plan.files[name]
    strict = tomllib.loads(text)
    assert json.loads(json.dumps(toml.loads(text))) == json.loads(json.dumps(strict))
    return strict


# --- golden plans of the shipped presets ------------------------------------------------------------------------


def golden_texts(plan: Any, run_dir: Path) -> dict[str, str]:
    def anonymous(text: str) -> str:
        return text.replace(str(run_dir), "<RUN>")

    texts = {name: anonymous(text) for name, text in plan.files.items()}
    dump = {"steps": [vars(step) for step in plan.steps], "notes": plan.notes, "outputs": vars(plan.outputs)}
    texts["plan.json"] = anonymous(json.dumps(dump, indent=2, ensure_ascii=False)) + "\n"
    return texts


def test_all_four_presets_ship() -> None:
    assert [p.stem for p in PRESETS] == [
        "diffusion-pipe-hunyuan-video-24gb",
        "diffusion-pipe-ltx-video-24gb",
        "diffusion-pipe-wan21-t2v-1.3b-24gb",
        "diffusion-pipe-wan21-t2v-14b-24gb-min-vram",
    ]


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_golden_plan(path: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    plan = make_plan(shipped(path.stem), run_dir)
    texts = golden_texts(plan, run_dir)
    folder = GOLDEN / path.stem
    if os.environ.get("UPDATE_GOLDEN") == "1":
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():
            stale.unlink()
        for name, text in texts.items():
            (folder / name).write_text(text, encoding="utf-8")
    assert sorted(p.name for p in folder.iterdir()) == sorted(texts), "golden files differ; UPDATE_GOLDEN=1 rewrites"
    for name, text in texts.items():
        assert (folder / name).read_text(encoding="utf-8") == text, f"{path.stem}/{name} changed"


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_shipped_preset_is_canonical_and_portable(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    preset = parse_preset(text, FIELDS)
    assert dump_preset(preset) == text
    assert preset.backend == "diffusion_pipe" and preset.name == path.stem
    assert preset.meta["trainer_version"].startswith("diffusion-pipe 8f83dbf")
    assert preset.meta["notes"]
    for dotted in ("dataset.path", "model.dit", "output.dir", "backend.diffusion_pipe.ckpt_path"):
        assert preset.get(dotted) == "" or preset.get(dotted).startswith("${"), dotted


VARIANTS = {
    "shipped": {},
    "no buckets + eval": {"dataset__enable_bucket": False, "backend__diffusion_pipe__eval_path": "${DATA}/held_out"},
    "adafactor, cosine, max steps": {"optimizer__type": "adafactor", "optimizer__lr_scheduler": "cosine",
                                     "training__max_steps": 500},
    "prodigy, unsloth": {"optimizer__type": "prodigy", "optimizer__learning_rate": 1.0,
                         "backend__diffusion_pipe__activation_checkpointing_mode": "unsloth"},
    "adamw8bit, no checkpointing": {"optimizer__type": "adamw8bit", "memory__gradient_checkpointing": False},
    "adamw fp16": {"optimizer__type": "adamw", "model__dtype": "float16", "output__save_dtype": "float16"},
}
ARCHS = ("wan2.1-t2v-1.3b", "wan2.1-i2v-14b", "wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "hunyuan-video", "ltx-video")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("architecture", ARCHS)
def test_generated_toml_matches_trainer_schema(architecture: str, variant: str) -> None:
    plan = make_plan(preset_for(architecture, **VARIANTS[variant]))
    check_config(parsed(plan, "config.toml"))
    check_dataset(parsed(plan, "dataset.toml"))
    if "eval_dataset.toml" in plan.files:
        check_dataset(parsed(plan, "eval_dataset.toml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_shipped_plans_match_trainer_schema(path: Path) -> None:
    plan = make_plan(shipped(path.stem))
    check_config(parsed(plan, "config.toml"))
    check_dataset(parsed(plan, "dataset.toml"))


def test_paths_with_quotes_backslashes_and_chinese_survive_both_parsers() -> None:
    folder = '${DATA}/训练 素材/"quoted"\\back'
    plan = make_plan(preset_for("wan2.1-t2v-1.3b", dataset__path=folder))
    assert parsed(plan, "dataset.toml")["directory"][0]["path"] == '/data/训练 素材/"quoted"\\back'


def test_every_option_has_chinese_help_a_label_and_a_valid_default() -> None:
    from backends.diffusion_pipe import DiffusionPipe

    labels = set()
    for field in DiffusionPipe.options:
        assert field.section == "backend.diffusion_pipe" and field.help and field.label
        assert any("\u4e00" <= ch <= "\u9fff" for ch in field.help_zh + field.label_zh), field.key
        assert field.coerce(field.default) == field.default
        labels.add(field.label)
    assert len(labels) == len(DiffusionPipe.options)


# --- mapping rules ---------------------------------------------------------------------------------------------------


def config_of(architecture: str = "wan2.1-t2v-1.3b", **values: Any) -> dict[str, Any]:
    return tomllib.loads(make_plan(preset_for(architecture, **values)).files["config.toml"])


def dataset_of(**values: Any) -> dict[str, Any]:
    return tomllib.loads(make_plan(preset_for("wan2.1-t2v-1.3b", **values)).files["dataset.toml"])


def test_frames_become_sorted_frame_buckets_and_resolution_an_area() -> None:
    dataset = dataset_of(dataset__frames=[33, 1, 17, 33], dataset__resolution=[832, 480], dataset__num_repeats=3)
    assert dataset["frame_buckets"] == [1, 17, 33]
    assert dataset["resolutions"] == [[832, 480]]
    assert dataset["directory"] == [{"path": "/data/clips", "num_repeats": 3}]


def test_aspect_buckets_on_use_the_range_and_off_use_the_one_preset_shape() -> None:
    on = dataset_of(backend__diffusion_pipe__min_ar=0.6, backend__diffusion_pipe__num_ar_buckets=5)
    assert (on["enable_ar_bucket"], on["min_ar"], on["max_ar"], on["num_ar_buckets"]) == (True, 0.6, 2.0, 5)
    assert "ar_buckets" not in on
    off = dataset_of(dataset__enable_bucket=False, dataset__resolution=[832, 480])
    # enable_ar_bucket = false would crop everything square (utils/dataset.py: ars = [1.0])
    assert off["enable_ar_bucket"] is True and off["ar_buckets"] == [[832, 480]]
    assert "min_ar" not in off


def test_min_ar_above_max_ar_is_refused_only_when_buckets_are_on() -> None:
    with pytest.raises(PlanError) as err:
        dataset_of(backend__diffusion_pipe__min_ar=2.5)
    assert err.value.field == "backend.diffusion_pipe.min_ar"
    assert "ar_buckets" in dataset_of(backend__diffusion_pipe__min_ar=2.5, dataset__enable_bucket=False)


def test_caption_extension_other_than_txt_is_refused() -> None:
    with pytest.raises(PlanError) as err:
        make_plan(preset_for("wan2.1-t2v-1.3b", dataset__caption_extension=".caption"))
    assert err.value.field == "dataset.caption_extension" and ".txt" in err.value.message
    make_plan(preset_for("wan2.1-t2v-1.3b", dataset__caption_extension=".txt"))


def test_empty_frames_and_empty_dataset_path_are_refused() -> None:
    with pytest.raises(PlanError) as err:
        make_plan(preset_for("wan2.1-t2v-1.3b", dataset__frames=[]))
    assert err.value.field == "dataset.frames"
    with pytest.raises(PlanError) as err:
        make_plan(preset_for("wan2.1-t2v-1.3b", dataset__path=""))
    assert err.value.field == "dataset.path"


def test_skip_empty_caption_is_written_both_ways() -> None:
    assert dataset_of()["skip_empty_caption"] is True
    assert dataset_of(backend__diffusion_pipe__skip_empty_caption=False)["skip_empty_caption"] is False


def test_common_training_keys_map_to_diffusion_pipe_names() -> None:
    config = config_of(dataset__batch_size=2, training__gradient_accumulation_steps=4, optimizer__max_grad_norm=0.0,
                       optimizer__warmup_steps=50, optimizer__lr_scheduler="constant_with_warmup",
                       training__epochs=12, training__save_every_n_epochs=3, output__save_dtype="float32")
    assert config["micro_batch_size_per_gpu"] == 2 and config["gradient_accumulation_steps"] == 4
    assert config["gradient_clipping"] == 0.0 and config["warmup_steps"] == 50
    assert config["lr_scheduler"] == "constant"  # train.py has no constant_with_warmup; warm-up is separate
    assert (config["epochs"], config["save_every_n_epochs"], config["save_dtype"]) == (12, 3, "float32")
    assert config["output_dir"] == "/out/my_lora"
    assert config["dataset"] == "/runs/job/dataset.toml"


def test_max_steps_only_when_set() -> None:
    assert "max_steps" not in config_of()
    assert config_of(training__max_steps=800)["max_steps"] == 800


def test_checkpoint_minutes_zero_is_omitted_with_a_note() -> None:
    assert config_of(training__checkpoint_every_n_minutes=45)["checkpoint_every_n_minutes"] == 45
    plan = make_plan(preset_for("wan2.1-t2v-1.3b", training__checkpoint_every_n_minutes=0))
    assert "checkpoint_every_n_minutes" not in tomllib.loads(plan.files["config.toml"])
    assert any("checkpoint_every_n_minutes is 0" in note for note in plan.notes)


def test_activation_checkpointing_modes() -> None:
    assert config_of()["activation_checkpointing"] is True
    unsloth = config_of(backend__diffusion_pipe__activation_checkpointing_mode="unsloth")
    assert unsloth["activation_checkpointing"] == "unsloth"
    assert config_of(memory__gradient_checkpointing=False)["activation_checkpointing"] is False


def test_fp8_base_sets_transformer_dtype_float8() -> None:
    assert config_of(memory__fp8_base=True)["model"]["transformer_dtype"] == "float8"
    assert "transformer_dtype" not in config_of()["model"]


def test_fp8_text_encoder_is_wan_only() -> None:
    assert config_of(memory__fp8_text_encoder=True)["model"]["text_encoder_fp8"] is True
    assert "text_encoder_fp8" not in config_of()["model"]
    plan = make_plan(preset_for("hunyuan-video", memory__fp8_text_encoder=True))
    assert "text_encoder_fp8" not in tomllib.loads(plan.files["config.toml"])["model"]
    assert any(note.startswith("memory.fp8_text_encoder is set but not used") for note in plan.notes)


def test_flow_shift_goes_to_shift_where_the_model_reads_it() -> None:
    assert config_of(training__flow_shift=5.0)["model"]["shift"] == 5.0
    assert config_of("hunyuan-video", training__flow_shift=7.0)["model"]["shift"] == 7.0
    plan = make_plan(preset_for("ltx-video", training__flow_shift=5.0))
    assert "shift" not in tomllib.loads(plan.files["config.toml"])["model"]
    assert any(note.startswith("training.flow_shift is set but not used") for note in plan.notes)


def test_rank_maps_and_alpha_is_never_written() -> None:
    plan = make_plan(preset_for("wan2.1-t2v-1.3b", network__rank=16, network__alpha=8.0, network__dropout=0.1))
    adapter = tomllib.loads(plan.files["config.toml"])["adapter"]
    assert adapter == {"type": "lora", "rank": 16, "dtype": "bfloat16", "dropout": 0.1}
    assert any("network.alpha = 8 is not used" in note for note in plan.notes)
    same = make_plan(preset_for("wan2.1-t2v-1.3b", network__rank=16, network__alpha=16.0))
    assert not any("network.alpha" in note for note in same.notes)


@pytest.mark.parametrize(("studio", "trainer"), [
    ("adamw", "adamw"), ("adamw8bit", "adamw8bit"), ("adamw_optimi", "adamw_optimi"),
    ("adamw8bitkahan", "AdamW8bitKahan"), ("adafactor", "AdaFactor"), ("prodigy", "Prodigy"),
])
def test_optimizer_type_names(studio: str, trainer: str) -> None:
    optimizer = config_of(optimizer__type=studio, optimizer__learning_rate=1e-4, optimizer__betas=[0.9, 0.95],
                          optimizer__weight_decay=0.05, optimizer__eps=1e-6)["optimizer"]
    assert optimizer["type"] == trainer
    assert (optimizer["lr"], optimizer["betas"], optimizer["weight_decay"]) == (1e-4, [0.9, 0.95], 0.05)
    assert ("stabilize" in optimizer) == (studio == "adamw8bitkahan")
    assert ("eps" in optimizer) == (studio != "adafactor")


def test_adafactor_uses_the_given_learning_rate() -> None:
    optimizer = config_of(optimizer__type="adafactor")["optimizer"]
    assert optimizer["relative_step"] is False and optimizer["scale_parameter"] is False


def test_kahan_stabilize_option() -> None:
    assert config_of(optimizer__type="adamw8bitkahan")["optimizer"]["stabilize"] is False
    stable = config_of(optimizer__type="adamw8bitkahan", backend__diffusion_pipe__kahan_stabilize=True)
    assert stable["optimizer"]["stabilize"] is True


def test_betas_must_be_two_numbers() -> None:
    with pytest.raises(PlanError) as err:
        config_of(optimizer__betas=[0.9, 0.99, 0.999])
    assert err.value.field == "optimizer.betas"


def test_eval_is_off_by_default_and_on_with_a_folder() -> None:
    plan = make_plan(preset_for("wan2.1-t2v-1.3b"))
    assert "eval_dataset.toml" not in plan.files
    assert not {"eval_datasets", "eval_every_n_epochs"} & set(tomllib.loads(plan.files["config.toml"]))
    plan = make_plan(preset_for("wan2.1-t2v-1.3b", backend__diffusion_pipe__eval_path="${DATA}/held_out",
                                backend__diffusion_pipe__eval_every_n_epochs=2))
    config = tomllib.loads(plan.files["config.toml"])
    assert config["eval_datasets"] == [{"name": "eval", "config": "/runs/job/eval_dataset.toml"}]
    assert config["eval_every_n_epochs"] == 2 and config["eval_before_first_step"] is True
    eval_dataset = tomllib.loads(plan.files["eval_dataset.toml"])
    assert eval_dataset["directory"] == [{"path": "/data/held_out", "num_repeats": 1}]
