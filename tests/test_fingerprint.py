"""Cache staleness: what changes the fingerprint (media, captions, cache settings) and what does not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from studio.fingerprint import cache_status, dataset_fingerprint, fingerprint_path, record_cache_fingerprint
from studio.media import scan_folder
from studio.presets import new_preset
from studio.settings import Settings
from tests.media_fixtures import make_clip, write_caption

FIELDS: dict[str, tuple] = {"diffusion_pipe": (), "musubi_tuner": ()}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Any, Settings, Path]:
    data = tmp_path / "data"
    folder = data / "clips"
    write_caption(make_clip(folder / "a.mp4", frames=9, fps=16), "a dog")
    write_caption(make_clip(folder / "b.mp4", frames=9, fps=16), "a cat")
    preset = new_preset(FIELDS, "diffusion_pipe", "wan2.1-t2v-1.3b", "fp")
    preset.values["dataset"]["path"] = "${DATA}/clips"
    return preset, Settings(data_root=str(data)), folder


def test_record_lives_in_the_dataset_cache_folder(setup: tuple[Any, Settings, Path]) -> None:
    preset, settings, folder = setup
    assert fingerprint_path(preset, settings) == folder / "cache" / "studio_fingerprint_diffusion_pipe_wan2.1-t2v-1.3b.json"


def test_no_record_and_no_cache_is_not_stale(setup: tuple[Any, Settings, Path]) -> None:
    preset, settings, folder = setup
    status = cache_status(preset, scan_folder(folder), settings)
    assert (status.stale, status.exists) == (False, False)


def test_unrecorded_trainer_cache_is_treated_as_stale(setup: tuple[Any, Settings, Path]) -> None:
    preset, settings, folder = setup
    (folder / "cache" / "wan").mkdir(parents=True)
    status = cache_status(preset, scan_folder(folder), settings)
    assert status.stale and not status.exists and "did not record" in status.reason


def test_unchanged_dataset_is_fresh_and_non_cache_settings_do_not_matter(setup: tuple[Any, Settings, Path]) -> None:
    preset, settings, folder = setup
    record_cache_fingerprint(preset, scan_folder(folder), settings)
    preset.values["training"]["epochs"] = 99
    preset.values["optimizer"]["learning_rate"] = 1e-5
    status = cache_status(preset, scan_folder(folder), settings)
    assert (status.stale, status.exists) == (False, True)


@pytest.mark.parametrize(("change", "expected"), [
    ("caption", "caption changed: a.mp4"),
    ("added", "added: c.mp4"),
    ("removed", "removed: b.mp4"),
    ("touched", "changed: a.mp4"),
    ("frames", "dataset.frames: [1, 33] -> [1, 49]"),
    ("resolution", "dataset.resolution"),
    ("vae", "model.vae"),
    ("backend_key", "backend.diffusion_pipe.video_clip_mode"),
])
def test_each_change_makes_the_cache_stale_and_says_why(setup: tuple[Any, Settings, Path], change: str,
                                                       expected: str) -> None:
    preset, settings, folder = setup
    record_cache_fingerprint(preset, scan_folder(folder), settings)
    if change == "caption":
        write_caption(folder / "a.mp4", "a dog, edited")
    elif change == "added":
        make_clip(folder / "c.mp4", frames=5, fps=16)
    elif change == "removed":
        (folder / "b.mp4").unlink()
    elif change == "touched":
        stat = (folder / "a.mp4").stat()
        os.utime(folder / "a.mp4", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**10))
    elif change == "frames":
        preset.values["dataset"]["frames"] = [1, 49]
    elif change == "resolution":
        preset.values["dataset"]["resolution"] = [640, 640]
    elif change == "vae":
        preset.values["model"]["vae"] = "${MODELS}/other_vae.pth"
    else:
        preset.values["backend.diffusion_pipe"]["video_clip_mode"] = "single_middle"
    status = cache_status(preset, scan_folder(folder), settings)
    assert status.stale and status.exists and expected in status.reason


def test_backend_and_architecture_have_separate_records(setup: tuple[Any, Settings, Path]) -> None:
    preset, settings, folder = setup
    record_cache_fingerprint(preset, scan_folder(folder), settings)
    other = new_preset(FIELDS, "musubi_tuner", "wan2.1-t2v-1.3b", "fp")
    other.values["dataset"]["path"] = "${DATA}/clips"
    assert not cache_status(other, scan_folder(folder), settings).exists


def test_fingerprint_is_deterministic_and_sensitive(setup: tuple[Any, Settings, Path]) -> None:
    preset, _settings, folder = setup
    first = dataset_fingerprint(preset, scan_folder(folder))
    assert first == dataset_fingerprint(preset, list(reversed(scan_folder(folder))))
    write_caption(folder / "b.mp4", "a different cat")
    assert dataset_fingerprint(preset, scan_folder(folder)) != first


def test_damaged_record_means_rebuild(setup: tuple[Any, Settings, Path]) -> None:
    preset, settings, folder = setup
    path = record_cache_fingerprint(preset, scan_folder(folder), settings)
    path.write_text("{oops")
    assert cache_status(preset, scan_folder(folder), settings).stale
