"""Dataset rules on real ffmpeg-made clips: each with a folder that triggers it and one that does not."""

from __future__ import annotations

from pathlib import Path

import pytest
from media_fixtures import make_clip, make_corrupt, make_image, write_caption
from preflight_support import context, ready_machine, shipped

from studio import checks_data as rules
from studio.fingerprint import record_cache_fingerprint
from studio.media import scan_folder

MUSUBI = "musubi-wan21-t2v-1.3b-24gb"
DP = "diffusion-pipe-wan21-t2v-1.3b-24gb"


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    return ready_machine(tmp_path_factory.mktemp("data-machine"), clips=1)


def dataset(machine, name: str, *, videos=(), images=(), captions: bool | dict = True) -> tuple[str, list]:
    """A folder ``${DATA}/<name>`` of clips ``(file, frames, fps)`` and images; returns (preset value, media)."""
    folder = machine.data / name
    folder.mkdir(parents=True, exist_ok=True)
    made = [make_clip(folder / f, frames=n, fps=fps) for f, n, fps in videos]
    made += [make_image(folder / f) for f in images]
    for path in made:
        text = captions.get(path.name, "a test pattern") if isinstance(captions, dict) else "a test pattern"
        if captions is not False and text is not None:
            write_caption(path, text)
    return "${DATA}/" + name, scan_folder(folder)


def check(rule, machine, preset_name, folder_value, media, **changes):
    return rule(context(shipped(preset_name, dataset__path=folder_value, **changes), machine, media=media))


def test_missing_or_empty_dataset_folder(machine):
    missing = rules.dataset_present(context(shipped(MUSUBI, dataset__path="${DATA}/nope"), machine, media=None))
    assert missing[0].level == "error" and "does not exist" in missing[0].message
    (machine.data / "empty").mkdir(exist_ok=True)
    empty = rules.dataset_present(context(shipped(MUSUBI, dataset__path="${DATA}/empty"), machine, media=None))
    assert "holds no video" in empty[0].message
    assert rules.dataset_present(context(shipped(MUSUBI), machine, media=None)) == []


def test_unreadable_files_stop_caching(machine):
    value, media = dataset(machine, "broken", videos=[("ok.mp4", 33, 16)])
    make_corrupt(machine.data / "broken" / "bad.mp4", source=machine.data / "broken" / "ok.mp4")
    media = scan_folder(machine.data / "broken")
    [finding] = check(rules.unreadable, machine, MUSUBI, value, media)
    assert finding.level == "error" and "bad.mp4" in finding.message
    value, media = dataset(machine, "fine", videos=[("ok.mp4", 33, 16)])
    assert check(rules.unreadable, machine, MUSUBI, value, media) == []


def test_missing_captions_per_trainer(machine):
    value, media = dataset(machine, "uncaptioned", videos=[("v.mp4", 33, 16)], images=["i.png"], captions=False)
    musubi = check(rules.captions, machine, MUSUBI, value, media)
    assert [f.level for f in musubi] == ["error", "warning"]  # video stops caching, image silently skipped
    assert "FileNotFoundError" in musubi[0].message and "i.png" in musubi[1].message
    [dp] = check(rules.captions, machine, DP, value, media)
    assert dp.level == "warning" and "skips them" in dp.message
    [kept] = check(rules.captions, machine, DP, value, media, backend__diffusion_pipe__skip_empty_caption=False)
    assert "empty caption" in kept.message


def test_empty_captions_and_complete_captions(machine):
    value, media = dataset(machine, "empty-caption", videos=[("v.mp4", 33, 16)], captions={"v.mp4": ""})
    [finding] = check(rules.captions, machine, MUSUBI, value, media)
    assert finding.level == "warning" and "empty" in finding.message
    value, media = dataset(machine, "captioned", videos=[("v.mp4", 33, 16)])
    assert check(rules.captions, machine, MUSUBI, value, media) == []


def test_i2v_datasets_need_videos(machine):
    value, media = dataset(machine, "images-only", images=["a.png", "b.png"])
    [finding] = check(rules.i2v_media, machine, "musubi-wan21-i2v-14b-24gb", value, media)
    assert finding.level == "error" and "trains on videos only" in finding.message
    value, media = dataset(machine, "mixed", videos=[("v.mp4", 33, 16)], images=["a.png"])
    assert check(rules.i2v_media, machine, "musubi-wan21-i2v-14b-24gb", value, media)[0].level == "info"
    dp_i2v = shipped(DP).copy()
    dp_i2v.meta["architecture"] = "wan2.1-i2v-14b"
    [dp] = rules.i2v_media(context(shipped_path(dp_i2v, value), machine, media=media))
    assert dp.level == "error" and "must train on videos" in dp.message
    assert check(rules.i2v_media, machine, MUSUBI, value, media) == []  # T2V trains on both


def shipped_path(preset, value):
    preset.values["dataset"]["path"] = value
    return preset


def test_clips_shorter_than_every_frame_count(machine):
    value, media = dataset(machine, "short", videos=[("short.mp4", 21, 16), ("long.mp4", 49, 16)])
    findings = check(rules.buckets, machine, MUSUBI, value, media, dataset__frames=[33, 49])
    [short] = [f for f in findings if "shorter" in f.message]
    assert "short.mp4: 21" in short.message and short.action.changes == {"dataset.frames": [21, 33, 49]}
    findings = check(rules.buckets, machine, MUSUBI, value, media, dataset__frames=[1, 21])
    assert not [f for f in findings if f.level != "info"]


@pytest.mark.parametrize("preset", [MUSUBI, DP])
def test_frame_counts_no_clip_reaches(machine, preset):
    value, media = dataset(machine, "forty", videos=[("a.mp4", 40, 16), ("b.mp4", 36, 16)])
    findings = check(rules.buckets, machine, preset, value, media, dataset__frames=[1, 33, 81])
    [unused] = [f for f in findings if "no clip reaches" in f.message]
    assert "[81]" in unused.message and "40 frames" in unused.message
    assert unused.action.changes == {"dataset.frames": [1, 33]}
    reached = check(rules.buckets, machine, preset, value, media, dataset__frames=[1, 33])
    assert not [f for f in reached if "no clip reaches" in f.message]


def test_samples_dropped_to_fill_diffusion_pipe_batches(machine):
    value, media = dataset(machine, "three", videos=[(f"v{i}.mp4", 33, 16) for i in range(3)])
    findings = check(rules.buckets, machine, DP, value, media, dataset__batch_size=2)
    [dropped] = [f for f in findings if f.field == "dataset.batch_size"]
    assert "1 sample(s)" in dropped.message
    assert dropped.action.changes == {"dataset.batch_size": 1, "training.gradient_accumulation_steps": 1}
    assert not [f for f in check(rules.buckets, machine, DP, value, media) if f.field == "dataset.batch_size"]


def test_clip_frame_rates_per_trainer(machine):
    value, media = dataset(machine, "thirty", videos=[("v.mp4", 60, 30)])
    [musubi] = [f for f in check(rules.buckets, machine, MUSUBI, value, media) if "fps" in f.message]
    assert musubi.level == "warning" and musubi.action.changes == {"backend.musubi_tuner.source_fps": 30.0}
    set_fps = check(rules.buckets, machine, MUSUBI, value, media, backend__musubi_tuner__source_fps=30.0)
    assert not [f for f in set_fps if "fps" in f.message]
    [dp] = [f for f in check(rules.buckets, machine, DP, value, media) if "resamples" in f.message]
    assert dp.level == "info" and dp.action.changes["preprocess.fps"] == 16.0
    value, media = dataset(machine, "sixteen", videos=[("v.mp4", 33, 16)])
    assert not [f for f in check(rules.buckets, machine, DP, value, media) if "fps" in f.message]


def test_framepack_clips_too_short_for_one_window(machine):
    value, media = dataset(machine, "fp-short", videos=[("tiny.mp4", 30, 30), ("ok.mp4", 80, 30)])
    findings = check(rules.buckets, machine, "musubi-framepack-24gb", value, media)
    [short] = [f for f in findings if "FramePack" in f.message]
    assert short.level == "error" and "tiny.mp4" in short.message and "ok.mp4" not in short.message


def test_stale_cache(machine):
    value, media = dataset(machine, "cached", videos=[("v.mp4", 33, 16)])
    preset = shipped(MUSUBI, dataset__path=value)
    record_cache_fingerprint(preset, media, machine.settings)
    assert rules.stale_cache(context(preset, machine, media=media)) == []
    write_caption(Path(media[0].path), "a different caption")
    [finding] = rules.stale_cache(context(preset, machine, media=scan_folder(machine.data / "cached")))
    assert finding.level == "warning" and "caption changed: v.mp4" in finding.message
