"""Machine rules: install, python, disk, RAM, GPUs and the VRAM verdict, each triggered and not."""

from __future__ import annotations

import dataclasses

import pytest
from preflight_support import GIB, context, ready_machine, shipped

from studio import checks_env as rules
from studio.media import scan_folder
from studio.settings import TrainerInstall

MUSUBI = "musubi-wan21-t2v-1.3b-24gb"
DP = "diffusion-pipe-wan21-t2v-1.3b-24gb"


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    return ready_machine(tmp_path_factory.mktemp("env-machine"), clips=2)


def with_install(machine, name: str, install: TrainerInstall):
    settings = dataclasses.replace(machine.settings, trainers={**machine.settings.trainers, name: install})
    return dataclasses.replace(machine, settings=settings)


def test_trainer_install_problems(machine, tmp_path):
    assert rules.install(context(shipped(MUSUBI), machine)) == []
    unset = with_install(machine, "musubi_tuner", TrainerInstall())
    assert "not installed" in rules.install(context(shipped(MUSUBI), unset))[0].message
    gone = with_install(machine, "musubi_tuner", TrainerInstall(str(tmp_path / "nowhere"), "python3"))
    assert "does not exist" in rules.install(context(shipped(MUSUBI), gone))[0].message
    (tmp_path / "half").mkdir()
    half = with_install(machine, "diffusion_pipe", TrainerInstall(str(tmp_path / "half"), str(tmp_path / "py")))
    messages = [f.message for f in rules.install(context(shipped(DP), half))]
    assert "train.py" in messages[0] and "submodules/ComfyUI/comfy" in messages[0]
    assert "python" in messages[1] and "does not exist" in messages[1]


def test_disk_space_for_caches_and_outputs(machine):
    preset = shipped(MUSUBI)
    media = scan_folder(machine.data / "my_clips")
    need_cache = rules.cache_bytes(context(preset, machine, media=media))
    assert need_cache > 2 * 512 * 4096 * 2  # two captions' text caches at least
    full = rules.disk_space(context(preset, machine, media=media, disk_free=need_cache // 2))
    assert {f.level for f in full} == {"error"} and {f.field for f in full} == {"dataset.path", "output.dir"}
    tight = rules.disk_space(context(preset, machine, media=media, disk_free=int(need_cache * 1.5)))
    assert any(f.level == "warning" and f.field == "dataset.path" for f in tight)
    assert rules.disk_space(context(preset, machine, media=media, disk_free=100 * GIB)) == []


def test_disk_space_per_folder(machine):
    """Caches and outputs may be on different disks: each folder is judged on its own free space."""
    preset = shipped(MUSUBI)
    media = scan_folder(machine.data / "my_clips")
    ctx = context(preset, machine, media=media)
    free = {ctx.get("dataset.path"): 100 * GIB, ctx.get("output.dir"): 1024}
    [finding] = rules.disk_space(context(preset, machine, media=media, disk_free=free))
    assert finding.field == "output.dir" and finding.level == "error"


def test_ram_for_block_swap(machine):
    swapping = shipped("musubi-wan21-t2v-14b-24gb", memory__blocks_to_swap=30)
    [short] = rules.host_ram(context(swapping, machine, ram_total=16 * GIB))
    assert short.level == "error" and short.field == "memory.blocks_to_swap" and "30 blocks" in short.message
    [tight] = rules.host_ram(context(swapping, machine, ram_total=34 * GIB))
    assert tight.level == "warning"
    assert rules.host_ram(context(swapping, machine, ram_total=64 * GIB)) == []
    assert rules.host_ram(context(shipped(MUSUBI), machine, ram_total=16 * GIB)) == []  # loads straight to the GPU


def test_wan22_idle_expert_offload_needs_42_gb_of_shared_memory(machine):
    preset = shipped("musubi-wan22-t2v-a14b-80gb", backend__musubi_tuner__offload_inactive_dit=True)
    [finding] = rules.host_ram(context(preset, machine, ram_total=32 * GIB))
    assert finding.level == "error"
    assert rules.host_ram(context(preset, machine, ram_total=128 * GIB)) == []


def test_gpus_that_are_not_there(machine):
    [missing] = rules.gpus(context(shipped(MUSUBI, training__gpu_ids=[3]), machine))
    assert missing.level == "error" and "[3]" in missing.message
    [none] = rules.gpus(context(shipped(MUSUBI), machine, gpu_gib=None))
    assert none.level == "warning"
    assert rules.gpus(context(shipped(MUSUBI), machine)) == []


@pytest.mark.parametrize(("gpu_gib", "level", "words"), [
    (24, "info", "fits"), (9, "warning", "may run out"), (6, "error", "will run out"), (None, "info", "no GPU")])
def test_vram_verdict_becomes_a_finding(machine, gpu_gib, level, words):
    [finding] = rules.vram(context(shipped(MUSUBI), machine, gpu_gib=gpu_gib))  # about 8.5 GiB
    assert finding.level == level and words in finding.message
    if level == "error":
        assert finding.action is not None and finding.action.changes
        assert "cheapest change" in finding.fix or "train at most" in finding.fix
