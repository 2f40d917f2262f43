"""Pre-flight as a whole: a complete setup is clean, the seeds' failed runs are caught with the right fixes, the
trainer's own refusals surface, and the CLI's ``check`` / ``vram`` commands report and exit as documented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from media_fixtures import make_clip, write_caption
from preflight_support import OFFICIAL_CLIP, about, errors, ready_machine, run, shipped, with_values

from studio.findings import has_errors
from studio.media import scan_folder
from studio.preflight import blocking, check
from studio.presets import resolve_path
from studio.settings import save_settings

ROOT = Path(__file__).resolve().parent.parent
DP_13B = "diffusion-pipe-wan21-t2v-1.3b-24gb"
MUSUBI_13B = "musubi-wan21-t2v-1.3b-24gb"
MUSUBI_I2V = "musubi-wan21-i2v-14b-24gb"


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    return ready_machine(tmp_path_factory.mktemp("machine"))


@pytest.mark.parametrize("name", [MUSUBI_13B, DP_13B, MUSUBI_I2V])
def test_a_complete_setup_has_no_errors_or_warnings(machine, name):
    findings = run(shipped(name), machine)
    assert [f for f in findings if f.level != "info"] == []
    assert about(findings, "memory.gradient_checkpointing", "info", containing="fits")


# The seeds' runs: diffusion-pipe, Wan2.1 T2V 1.3B at 832x480 on a 24 GB card (RTX 4090), activation checkpointing
# left at diffusion-pipe's default (off), AdamW8bitKahan: 81, 72 and 65 frames ran out of memory, 57 was counted as
# 30, and 9 frames trained.


def seeds(frames: int, **changes):
    return shipped(DP_13B, **{"dataset__frames": [1, frames], "memory__gradient_checkpointing": False, **changes})


@pytest.mark.parametrize("frames", [81, 72, 65])
def test_seed_frame_counts_do_not_fit_and_auto_fit_turns_on_checkpointing(machine, frames):
    findings = run(seeds(frames), machine)
    vram = about(findings, "memory.gradient_checkpointing", "error", containing="run out of GPU memory")
    assert len(vram) == 1 and vram[0].action.changes == {"memory.gradient_checkpointing": True}
    fixed = run(with_values(seeds(frames), vram[0].action.changes), machine)
    assert not about(fixed, "memory.gradient_checkpointing", "error")


def test_seed_72_frames_are_invalid_and_would_train_as_69(machine):
    findings = run(seeds(72), machine)
    frames = about(findings, "dataset.frames", "warning", containing="4N+1")
    assert len(frames) == 1 and "72 -> 69" in frames[0].message
    assert frames[0].action.changes == {"dataset.frames": [1, 69]}
    for valid in (81, 65, 57, 9):
        assert not about(run(seeds(valid), machine), "dataset.frames", "warning", containing="4N+1")


def test_seed_57_frame_30fps_clip_is_counted_as_30_and_skipped(machine):
    folder = Path(machine.settings.data_root) / "seed57"
    write_caption(make_clip(folder / "dance.mp4", frames=57, fps=30), "a dance")
    preset = seeds(57, dataset__path="${DATA}/seed57", memory__gradient_checkpointing=True)
    findings = run(preset, machine)
    short = about(findings, "dataset.frames", "warning", containing="shorter than every frame count")
    assert short and "dance.mp4: 30 frames" in short[0].message
    assert about(findings, "dataset.frames", "error", containing="Processed dataset was empty")
    fixed = run(with_values(preset, short[0].action.changes), machine)
    assert short[0].action.changes["dataset.frames"] == [1, 29, 57]
    assert not about(fixed, "dataset.frames", "warning", containing="shorter")
    assert not errors(fixed)


def test_seed_fallback_of_9_frames_fits_without_checkpointing(machine):
    findings = run(seeds(9), machine)
    assert not about(findings, "memory.gradient_checkpointing", "error")
    assert not about(findings, "memory.gradient_checkpointing", "warning")


@pytest.mark.parametrize("folder", ["Wan2.1-I2V-14B-480P", "my downloads/clip"])
def test_i2v_without_clip_is_an_error_with_the_official_file_as_fix(tmp_path, folder):
    """The seeds: 'If you train I2V models, add --clip ...'. The fix finds the official file wherever it lies under
    the models folder (the catalogue's folder, or one of the user's own)."""
    machine = ready_machine(tmp_path, clips=1)
    official = machine.models / "Wan2.1-I2V-14B-480P" / OFFICIAL_CLIP
    moved = machine.models / folder / OFFICIAL_CLIP
    moved.parent.mkdir(parents=True, exist_ok=True)
    official.rename(moved)
    preset = shipped(MUSUBI_I2V, model__clip="")
    clip = about(run(preset, machine), "model.clip", "error")
    assert clip and "KeyError 'clip'" in clip[0].message
    value = clip[0].action.changes["model.clip"]
    assert value.startswith("${MODELS}/") and Path(resolve_path(value, machine.settings.roots())) == moved
    assert not about(run(with_values(preset, clip[0].action.changes), machine), "model.clip", "error")


# The engine ------------------------------------------------------------------------------------------------------


def test_check_is_pure_given_media(machine):
    """Injected media win over the folder on disk: an empty list means an empty dataset."""
    findings = run(shipped(MUSUBI_13B), machine, media=[])
    assert about(findings, "dataset.path", "error", containing="holds no video")


def test_a_refusal_only_the_backend_knows_still_blocks(machine):
    """musubi's plan refuses a caption extension without its dot; no dedicated check exists for it."""
    findings = run(shipped(MUSUBI_13B, dataset__caption_extension="txt"), machine,
                   media=scan_folder(Path(machine.settings.data_root) / "my_clips"))
    planned = about(findings, "dataset.caption_extension", "error", containing="cannot be built")
    assert planned and "must start with a dot" in planned[0].message
    assert not about(run(shipped(MUSUBI_13B), machine), "dataset.caption_extension", "error")


def test_findings_are_sorted_errors_first_and_blocking_keeps_only_errors(machine):
    findings = check(seeds(81), machine.settings, None, [], disk_free=10**13, ram_total=2**40)
    levels = [f.level for f in findings]
    assert levels == sorted(levels, key=["error", "warning", "info"].index)
    assert blocking(findings) == [f for f in findings if f.level == "error"]
    assert has_errors(findings) is bool(blocking(findings))


# CLI -------------------------------------------------------------------------------------------------------------


def _cli(machine, *args: str) -> subprocess.CompletedProcess:
    settings_file = machine.root / "settings.toml"
    save_settings(machine.settings, settings_file)
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args, "--settings", str(settings_file)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_cli_check_exits_0_when_ready_and_1_with_an_error(machine):
    preset = str(ROOT / "presets" / f"{MUSUBI_13B}.toml")
    ready = _cli(machine, "check", preset, "--gpu-gib", "24", "--json")
    assert ready.returncode == 0, ready.stderr
    payload = json.loads(ready.stdout)
    assert payload["ok"] is True and all(f["level"] == "info" for f in payload["findings"])
    broken = _cli(machine, "check", preset, "--gpu-gib", "24", "--set", "dataset.frames=[1, 81]",
                  "--set", "memory.gradient_checkpointing=false", "--set", "optimizer.type='adamw8bitkahan'")
    assert broken.returncode == 1
    assert "ERROR   optimizer.type" in broken.stdout and "one click: Use adamw8bit" in broken.stdout


def test_cli_vram_prints_estimate_breakdown_verdict_and_autofit(machine):
    preset = str(ROOT / "presets" / f"{DP_13B}.toml")
    done = _cli(machine, "vram", preset, "--gpu-gib", "24", "--set", "dataset.frames=[1, 81]",
                "--set", "memory.gradient_checkpointing=false", "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["verdict"] == "wont_fit" and payload["gpu_gib"] == 24
    assert payload["total_gib"] > 24 and payload["breakdown"]["activations"] > 20
    assert payload["autofit"][0]["changes"] == {"memory.gradient_checkpointing": True}
    text = _cli(machine, "vram", preset, "--gpu-gib", "24")
    assert "verdict on a 24.0 GiB card: fits" in text.stdout and "base weights" in text.stdout
    assert _cli(machine, "vram", preset, "--gpu-gib", "0").returncode == 2
