"""Presets: round trip, versions, roots, and every way a hostile or broken preset file is refused."""

from __future__ import annotations

import os

import pytest

from backends import backend_fields
from studio.fields import PresetError
from studio.presets import (
    SHIPPED_DIR,
    apply_overrides,
    dump_preset,
    list_presets,
    load_preset,
    new_preset,
    parse_preset,
    portable,
    resolve_path,
    resolved,
    save_preset,
    switch_backend,
    unresolved_paths,
)
from studio.schema import SCHEMA_VERSION
from studio.tomlcompat import tomllib

FIELDS = backend_fields()
ROOTS = {"DATA": "/srv/data", "MODELS": "/srv/models", "OUTPUT": "/srv/out"}


def base_text() -> str:
    return dump_preset(new_preset(FIELDS, "musubi_tuner", "wan2.1-t2v-1.3b", "base"))


def refused(text: str | bytes) -> PresetError:
    with pytest.raises(PresetError) as info:
        parse_preset(text, FIELDS)
    return info.value


def test_round_trip_keeps_every_value_and_type():
    preset = new_preset(FIELDS, "diffusion_pipe", "wan2.1-t2v-14b", "round trip")
    preset = apply_overrides(preset, ["dataset.frames=[1, 33, 49]", "optimizer.learning_rate=5e-5",
                                      "memory.fp8_base=true", "output.name=my_lora_v2"], FIELDS)
    text = dump_preset(preset)
    again = parse_preset(text, FIELDS)
    assert again.values == preset.values
    assert again.meta == preset.meta
    raw = tomllib.loads(text)
    assert raw["dataset"]["frames"] == [1, 33, 49]
    assert isinstance(raw["optimizer"]["learning_rate"], float)
    assert raw["meta"]["schema_version"] == SCHEMA_VERSION


def test_every_shipped_preset_loads_and_is_canonical():
    shipped = sorted(SHIPPED_DIR.glob("*.toml"))
    assert len(shipped) >= 7, "the seeds' scenarios ship as presets"
    for path in shipped:
        preset = load_preset(path, FIELDS)
        assert path.name.startswith(preset.backend.replace("_", "-").replace("musubi-tuner", "musubi"))
        assert dump_preset(preset) == path.read_text(encoding="utf-8"), f"{path.name} is not in canonical form"
        assert preset.meta["notes"], f"{path.name} needs notes saying what it is for"


def test_invalid_toml_is_refused_with_the_parser_message():
    error = refused(base_text() + "\n[dataset\nbroken")
    assert "not valid TOML" in str(error)


def test_unknown_key_names_the_key_and_suggests():
    error = refused(base_text().replace("[network]\n", "[network]\nrnak = 8\n"))
    assert error.field == "network.rnak"
    assert "did you mean 'rank'" in error.message


def test_unknown_section_is_refused():
    error = refused(base_text() + "\n[deepspeed]\nzero = 3\n")
    assert error.field == "deepspeed"


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("rank = 32", 'rank = "32"', "network.rank"),
        ("rank = 32", "rank = 0", "network.rank"),
        ("frames = [1, 33]", "frames = [1, 33.5]", "dataset.frames"),
        ("resolution = [832, 480]", "resolution = [832]", "dataset.resolution"),
        ("fp8_base = false", "fp8_base = 1", "memory.fp8_base"),
        ('type = "adamw8bit"', 'type = "adam-ultra"', "optimizer.type"),
        ("learning_rate = 0.0002", "learning_rate = nan", "optimizer.learning_rate"),
    ],
)
def test_wrong_types_and_limits_name_the_key(old, new, field):
    text = base_text()
    assert old in text
    error = refused(text.replace(old, new, 1))
    assert error.field == field
    assert "expected" in error.message


def test_oversized_file_is_refused_before_parsing(tmp_path):
    big = base_text() + "\n# " + "x" * (10 * 1024 * 1024)
    error = refused(big)
    assert "at most" in str(error)
    path = tmp_path / "huge.toml"
    path.write_text(big)
    with pytest.raises(PresetError, match="at most"):
        load_preset(path, FIELDS)


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b", ".hidden", "x; rm -rf /", "$(reboot)", "a|b", ""])
def test_hostile_names_are_refused(name):
    text = base_text().replace('name = "base"', f"name = {name!r}".replace("'", '"'), 1)
    error = refused(text)
    assert error.field == "meta.name"


@pytest.mark.parametrize("value", ["run;reboot", "../x", "a b", "$(id)", "name`id`"])
def test_output_name_must_be_file_name_safe(value):
    text = base_text().replace('name = "my_lora"', f'name = "{value}"', 1)
    assert refused(text).field == "output.name"


def test_path_roots_cannot_be_escaped():
    with pytest.raises(PresetError, match="may not climb"):
        resolve_path("${DATA}/../../etc", ROOTS, "dataset.path")
    with pytest.raises(PresetError, match="unknown root"):
        resolve_path("${HOME}/x", ROOTS, "dataset.path")
    with pytest.raises(PresetError, match="only stand at the start"):
        resolve_path("/x/${DATA}", ROOTS, "dataset.path")
    assert resolve_path("${MODELS}/wan/vae.pth", ROOTS) == "/srv/models/wan/vae.pth"


def test_newer_schema_is_refused_with_update_advice():
    error = refused(base_text().replace(f"schema_version = {SCHEMA_VERSION}", "schema_version = 99"))
    assert "newer Video LoRA Studio" in error.message


def test_schema_1_preset_is_migrated():
    old = base_text().replace(f"schema_version = {SCHEMA_VERSION}", "schema_version = 1")
    old = old.replace("rank = 32", "dim = 16").replace("learning_rate = 0.0002\n", "")
    old = old.replace("[training]\n", "[training]\nlearning_rate = 0.0001\n")
    preset = parse_preset(old, FIELDS)
    assert preset.meta["schema_version"] == SCHEMA_VERSION
    assert preset.values["network"]["rank"] == 16
    assert preset.values["optimizer"]["learning_rate"] == 1e-4


def test_switching_backend_keeps_the_common_part_and_the_other_table():
    preset = apply_overrides(new_preset(FIELDS, "musubi_tuner", "wan2.1-t2v-1.3b", "switch"),
                             ["dataset.frames=[1, 49]", "network.rank=64"], FIELDS)
    musubi_table = dict(preset.values["backend.musubi_tuner"])
    other = switch_backend(preset, "diffusion_pipe", FIELDS)
    assert other.backend == "diffusion_pipe"
    assert other.values["dataset"]["frames"] == [1, 49]
    assert "backend.musubi_tuner" not in other.values
    back = switch_backend(parse_preset(dump_preset(other), FIELDS), "musubi_tuner", FIELDS)
    assert back.values["backend.musubi_tuner"] == musubi_table
    assert back.values["network"]["rank"] == 64


def test_import_report_lists_paths_missing_on_this_machine(tmp_path):
    (tmp_path / "data" / "clips").mkdir(parents=True)
    roots = {"DATA": str(tmp_path / "data"), "MODELS": str(tmp_path / "models"), "OUTPUT": str(tmp_path / "out")}
    preset = apply_overrides(new_preset(FIELDS, "musubi_tuner", "wan2.1-t2v-1.3b", "report"),
                             ['dataset.path="${DATA}/clips"', 'model.dit="${MODELS}/missing.safetensors"'], FIELDS)
    problems = unresolved_paths(preset, roots, FIELDS)
    assert any("model.dit" in p and "does not exist" in p for p in problems)
    assert not any(p.startswith("dataset.path") for p in problems)


def test_export_rewrites_absolute_paths_under_roots():
    preset = new_preset(FIELDS, "musubi_tuner", "wan2.1-t2v-1.3b", "export me")
    local = resolved(apply_overrides(preset, ['model.dit="${MODELS}/wan/dit.safetensors"'], FIELDS), ROOTS, FIELDS)
    assert local.values["model"]["dit"] == "/srv/models/wan/dit.safetensors"
    shared = portable(local, ROOTS, FIELDS)
    assert shared.values["model"]["dit"] == "${MODELS}/wan/dit.safetensors"
    assert shared.values["output"]["dir"] == "${OUTPUT}"


def test_save_is_atomic_and_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    preset = new_preset(FIELDS, "musubi_tuner", "wan2.1-t2v-1.3b", "atomic")
    folder = tmp_path / "presets"
    path = save_preset(preset, folder)
    before = path.read_text()
    changed = apply_overrides(preset, ["network.rank=8"], FIELDS)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_preset(changed, folder)
    assert path.read_text() == before
    assert [p.name for p in folder.iterdir()] == [path.name], "no temp file left behind"


def test_user_presets_shadow_shipped_ones_and_broken_files_are_skipped(tmp_path):
    shipped = list_presets(None, FIELDS)
    name = sorted(shipped)[0]
    mine = load_preset(shipped[name], FIELDS)
    save_preset(apply_overrides(mine, ["network.rank=4"], FIELDS), tmp_path)
    (tmp_path / "broken.toml").write_text("[meta\n")
    library = list_presets(tmp_path, FIELDS)
    assert library[name].parent == tmp_path
    assert "broken" not in library


def test_preset_never_contains_machine_settings():
    text = base_text()
    for secret in ("hf_token", "python", "install_dir"):
        assert secret not in text
