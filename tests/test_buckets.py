"""Bucket simulation against cases computed by hand from the trainers' sources.

diffusion-pipe @ 8f83dbf: utils/dataset.py (_metadata_map_fn, _find_closest_ar_bucket, ARBucketDataset,
ConcatenatedBatchedDataset._make_divisible_by), models/base.py (PreprocessMediaFile.align_frames).
musubi-tuner @ 30c658c: dataset/image_video_dataset.py (VideoDataset), dataset/bucket.py (BucketSelector,
BucketBatchManager), dataset/media_utils.py (load_video), fpack_cache_latents.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from studio.bucket_fixes import is_preprocess_fix
from studio.buckets import dp_counted_frames, dp_frame_bucket, simulate
from studio.buckets_musubi import (
    MusubiBucketSelector,
    musubi_frames_after_fps,
    musubi_target_frames,
    musubi_windows,
)
from studio.media import MediaInfo, scan_folder
from studio.presets import new_preset
from tests.media_fixtures import make_clip, make_image, write_caption

FIELDS: dict[str, tuple] = {"diffusion_pipe": (), "musubi_tuner": ()}


def preset(backend: str, arch: str = "wan2.1-t2v-1.3b", backend_values: dict[str, Any] | None = None,
           **values: Any) -> Any:
    p = new_preset(FIELDS, backend, arch, "test")
    for dotted, value in values.items():
        section, key = dotted.split("__")
        p.values[section][key] = value
    p.values[f"backend.{backend}"].update(backend_values or {})
    return p


def video(name: str, frames: int, fps: float, size: tuple[int, int] = (64, 64), caption: str = "present") -> MediaInfo:
    return MediaInfo(f"/d/{name}", "video", size[0], size[1], frames, fps, frames / fps, "h264", 1, 1.0, caption, "x")


def image(name: str, size: tuple[int, int] = (64, 48), caption: str = "present") -> MediaInfo:
    return MediaInfo(f"/d/{name}", "image", size[0], size[1], 1, 0.0, 0.0, "png", 1, 1.0, caption, "x")


def clip_named(report: Any, name: str) -> Any:
    return next(c for c in report.clips if c.name == name)


# The seeds' case on a real clip


@pytest.fixture(scope="module")
def seed_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("seed")
    write_caption(make_clip(folder / "seed57.mp4", frames=57, fps=30), "a dog")
    write_caption(make_clip(folder / "ntsc101.mp4", frames=101, fps=24000 / 1001), "ntsc")
    write_caption(make_clip(folder / "wan49.mkv", frames=49, fps=16), "exact")
    write_caption(make_image(folder / "still.png"), "a still")
    return folder


def test_seed_case_57_frames_at_30fps_count_as_30_under_wan(seed_folder: Path) -> None:
    report = simulate(preset("diffusion_pipe"), scan_folder(seed_folder))
    seed = clip_named(report, "seed57.mp4")
    assert seed.counted_frames == 30  # int(57 * 16 / 30)
    assert seed.status == "dropped" and seed.code == "too_short" and "smallest video bucket is 33" in seed.reason
    # diffusion-pipe issue #391: 101 frames at 23.98 fps became 67.
    assert clip_named(report, "ntsc101.mp4").counted_frames == 67
    assert clip_named(report, "wan49.mkv").bucket == 33
    assert clip_named(report, "still.png").bucket == 1
    fix = next(f for f in report.fixes if "dataset.frames" in f.changes)
    assert fix.changes["dataset.frames"] == [1, 29, 33]
    fixed = simulate(preset("diffusion_pipe", dataset__frames=fix.changes["dataset.frames"]), scan_folder(seed_folder))
    assert clip_named(fixed, "seed57.mp4").bucket == 29 and not fixed.dropped


def test_seed_case_under_musubi_keeps_all_57_frames_without_source_fps(seed_folder: Path) -> None:
    report = simulate(preset("musubi_tuner", dataset__frames=[49]), scan_folder(seed_folder))
    seed = clip_named(report, "seed57.mp4")
    assert seed.counted_frames == 57 and seed.windows == ((0, 49),)
    assert clip_named(report, "still.png").status == "ok"  # T2V: the backend adds an image dataset
    assert any("source_fps not set" in n for n in report.notes)
    with_fps = simulate(preset("musubi_tuner", dataset__frames=[49], backend_values={"source_fps": 30.0}),
                        scan_folder(seed_folder))
    assert clip_named(with_fps, "seed57.mp4").code == "too_short"  # 57 at 30 fps -> 30 frames at 16 fps


# diffusion-pipe rules


@pytest.mark.parametrize(("frames", "fps", "model_fps", "expected"), [
    (57, 30.0, 16.0, 30), (57, 30.0, 24.0, 45), (57, 30.0, 25.0, 47), (49, 16.0, 16.0, 49),
    (101, 24000 / 1001, 16.0, 67), (60, 24.0, 16.0, 40),
])
def test_dp_counted_frames(frames: int, fps: float, model_fps: float, expected: int) -> None:
    assert dp_counted_frames(video("v.mp4", frames, fps), model_fps) == expected


@pytest.mark.parametrize(("frames", "buckets", "expected"), [
    (30, [1, 33], None), (33, [1, 33], 33), (40, [1, 33, 49], 33), (1, [1, 33], 1), (2, [1, 33], None),
    (81, [1, 21, 41, 61, 81], 81),
])
def test_dp_frame_bucket_largest_not_above_and_never_1_for_video(frames: int, buckets: list[int],
                                                                 expected: int | None) -> None:
    assert dp_frame_bucket(frames, buckets) == expected


def test_dp_tiny_clip_resampled_to_one_frame_is_treated_as_an_image() -> None:
    report = simulate(preset("diffusion_pipe"), [video("tiny.mp4", 3, 30.0), video("four.mp4", 4, 30.0)])
    assert clip_named(report, "tiny.mp4").bucket == 1  # int(3*16/30) = 1 -> is_video False
    assert clip_named(report, "four.mp4").code == "too_short"  # int(4*16/30) = 2


def test_dp_invalid_bucket_is_trained_rounded_down_and_fix_offered() -> None:
    report = simulate(preset("diffusion_pipe", dataset__frames=[1, 30]), [video("a.mp4", 57, 30.0)])
    clip = clip_named(report, "a.mp4")
    assert clip.bucket == 30 and clip.windows == ((0, 29),)
    assert any("not 4N+1" in n for n in report.notes)
    assert any(f.changes.get("dataset.frames") == [1, 29] for f in report.fixes)


def test_dp_ltx_rounds_to_8n_plus_1_and_32_px() -> None:
    report = simulate(preset("diffusion_pipe", "ltx-video", dataset__frames=[1, 44]), [video("a.mp4", 57, 30.0)])
    clip = clip_named(report, "a.mp4")
    assert clip.counted_frames == 47 and clip.bucket == 44 and clip.windows == ((0, 41),)
    assert all(side % 32 == 0 for side in clip.resolution_bucket)


def test_dp_aspect_buckets_hand_computed() -> None:
    media = [video("square.mp4", 33, 16.0, (64, 64)), video("wide.mp4", 33, 16.0, (96, 48))]
    report = simulate(preset("diffusion_pipe"), media)
    # area 832*480; ar 1.0 -> sqrt(399360)=631.9 -> 624; ar 2.0 -> w=893.7 -> 896, h=446.9 -> 448
    assert clip_named(report, "square.mp4").resolution_bucket == (624, 624)
    assert clip_named(report, "wide.mp4").resolution_bucket == (896, 448)
    # Off: the backend writes ar_buckets = [[832, 480]], so every clip gets that shape (ar 1.733).
    fixed = simulate(preset("diffusion_pipe", dataset__enable_bucket=False), media)
    assert clip_named(fixed, "wide.mp4").resolution_bucket == (832, 480)
    assert clip_named(fixed, "square.mp4").resolution_bucket == (832, 480)
    assert any("832x480 shape" in n for n in fixed.notes)


def test_dp_size_buckets_are_cut_to_whole_global_batches() -> None:
    media = [video(f"v{i}.mp4", 33, 16.0) for i in range(3)]
    report = simulate(preset("diffusion_pipe", dataset__batch_size=2), media)
    assert (report.samples_per_epoch, report.steps_per_epoch, report.global_batch) == (2, 1, 2)
    assert any("1 of 3 samples dropped" in n for n in report.notes)
    assert any(f.changes == {"dataset.batch_size": 1, "training.gradient_accumulation_steps": 1}
               for f in report.fixes)
    # micro 2 x accumulation 1 x 2 GPUs = 4 > 3: the whole bucket goes, and the trainer stops.
    empty = simulate(preset("diffusion_pipe", dataset__batch_size=2, training__gpu_ids=[0, 1]), media)
    assert empty.samples_per_epoch == 0 and "completely" in " ".join(empty.notes)
    assert any("Processed dataset was empty" in e for e in empty.errors)
    one = simulate(preset("diffusion_pipe"), media)
    assert (one.samples_per_epoch, one.steps_per_epoch) == (3, 3) and not any("dropped" in n for n in one.notes)


def test_dp_repeats_multiply_samples() -> None:
    report = simulate(preset("diffusion_pipe", dataset__num_repeats=5), [video("a.mp4", 33, 16.0)])
    assert report.samples_per_epoch == 5 and clip_named(report, "a.mp4").samples == 5


def test_dp_captions_missing_skipped_empty_trained() -> None:
    media = [video("none.mp4", 33, 16.0, caption="missing"), video("blank.mp4", 33, 16.0, caption="empty")]
    report = simulate(preset("diffusion_pipe"), media)
    assert clip_named(report, "none.mp4").code == "no_caption"
    assert clip_named(report, "blank.mp4").status == "ok"
    kept = simulate(preset("diffusion_pipe", backend_values={"skip_empty_caption": False}), media)
    assert clip_named(kept, "none.mp4").status == "ok"


def test_dp_i2v_refuses_images() -> None:
    report = simulate(preset("diffusion_pipe", "wan2.1-i2v-14b"), [video("a.mp4", 33, 16.0), image("b.png")])
    assert clip_named(report, "b.png").code == "i2v_image"
    assert any("must train on videos" in e for e in report.errors)
    only_images = simulate(preset("diffusion_pipe", "wan2.1-i2v-14b"), [image("b.png")])
    assert any("needs videos" in e for e in only_images.errors)
    t2v = simulate(preset("diffusion_pipe"), [video("a.mp4", 33, 16.0), image("b.png")])
    assert not t2v.errors


def test_unreadable_files_are_dropped_with_the_error() -> None:
    bad = MediaInfo("/d/bad.mp4", "video", error="cannot read: Invalid data")
    for backend in ("diffusion_pipe", "musubi_tuner"):
        report = simulate(preset(backend), [bad])
        assert clip_named(report, "bad.mp4").code == "unreadable" and "Invalid data" in report.dropped[0].reason


# musubi-tuner rules


def test_musubi_target_frames_round_down_to_4n_plus_1() -> None:
    assert musubi_target_frames([1, 24, 48, 45]) == [1, 21, 45]


@pytest.mark.parametrize(("mode", "options", "expected"), [
    ("head", {}, [(0, 1), (0, 25), (0, 45)]),
    ("chunk", {}, [(0, 1)] + [(i, 1) for i in range(1, 57)] + [(0, 25), (25, 25), (0, 45)]),
    ("slide", {"stride": 10}, [(i, 1) for i in range(0, 57, 10)] + [(0, 25), (10, 25), (20, 25), (30, 25),
                                                                      (0, 45), (10, 45)]),
    ("uniform", {"samples": 3}, [(0, 1), (28, 1), (56, 1), (0, 25), (16, 25), (32, 25), (0, 45), (6, 45),
                                 (12, 45)]),
    ("uniform", {"samples": 1}, [(0, 1), (0, 25), (0, 45)]),  # frame_sample 1 -> head
    ("full", {"max_frames": 129}, [(0, 57)]),
    ("full", {"max_frames": 50}, [(0, 49)]),
])
def test_musubi_extraction_modes(mode: str, options: dict[str, int], expected: list[tuple[int, int]]) -> None:
    assert musubi_windows(57, [1, 25, 45], mode, **options) == sorted(expected)


def test_musubi_unknown_extraction_mode_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="head, chunk, slide, uniform, full"):
        musubi_windows(57, [25], "middle")


@pytest.mark.parametrize(("frames", "source", "target", "expected"), [
    (57, 30.0, 16.0, 30), (48, 24.0, 16.0, 32), (49, 16.0, 16.0, 49), (30, 30.0, 30.0, 30), (57, None, 16.0, 57),
])
def test_musubi_source_fps_drops_frames(frames: int, source: float | None, target: float, expected: int) -> None:
    assert musubi_frames_after_fps(frames, source, target) == expected


def test_musubi_resolution_buckets_hand_computed() -> None:
    selector = MusubiBucketSelector((832, 480), enable_bucket=True, no_upscale=False)
    assert selector.bucket((64, 64)) == (624, 640)  # nearest AR among 16 px buckets of area 399360
    assert selector.bucket((1920, 1080)) == (832, 480)
    assert all(w % 16 == 0 and h % 16 == 0 for w, h in selector.resolutions)
    assert MusubiBucketSelector((832, 480), enable_bucket=False, no_upscale=False).bucket((64, 64)) == (832, 480)
    assert MusubiBucketSelector((832, 480), enable_bucket=True, no_upscale=True).bucket((100, 70)) == (96, 64)


def test_musubi_samples_and_steps() -> None:
    media = [video(f"v{i}.mp4", 57, 16.0) for i in range(3)]
    report = simulate(preset("musubi_tuner", dataset__frames=[1, 25], dataset__batch_size=2), media)
    assert report.samples_per_epoch == 6  # 3 clips x (1-frame + 25-frame window)
    assert report.steps_per_epoch == 4  # ceil(3/2) batches in each of 2 buckets, nothing dropped
    two_gpus = simulate(preset("musubi_tuner", dataset__frames=[1, 25], dataset__batch_size=2,
                               training__gpu_ids=[0, 1], training__gradient_accumulation_steps=1), media)
    assert two_gpus.steps_per_epoch == 2


def test_musubi_missing_caption_stops_caching_and_unread_formats_are_ignored() -> None:
    media = [video("a.mp4", 33, 16.0, caption="missing"), video("c.ts", 33, 16.0)]
    report = simulate(preset("musubi_tuner"), media)
    assert clip_named(report, "a.mp4").code == "no_caption"
    assert clip_named(report, "c.ts").status == "ignored" and ".ts" in clip_named(report, "c.ts").reason
    assert any("caching will stop" in e for e in report.errors)


def test_musubi_images_form_their_own_dataset_for_t2v_only() -> None:
    media = [video("a.mp4", 33, 16.0), image("b.png"), image("c.png"), image("d.gif"),
             image("e.png", caption="missing")]
    report = simulate(preset("musubi_tuner", dataset__frames=[33], dataset__batch_size=2), media)
    assert clip_named(report, "b.png").status == "ok" and clip_named(report, "b.png").bucket == 1
    assert clip_named(report, "d.gif").status == "ignored"
    assert clip_named(report, "e.png").code == "no_caption"  # glob_images keeps only captioned images
    image_buckets = [b for b in report.size_buckets if b.dataset == "image"]
    assert [(b.items, b.batches) for b in image_buckets] == [(2, 1)]
    assert report.steps_per_epoch == 2  # 1 video batch + 1 image batch
    off = simulate(preset("musubi_tuner", backend_values={"include_images": False}), media)
    assert clip_named(off, "b.png").status == "ignored"
    i2v = simulate(preset("musubi_tuner", "wan2.1-i2v-14b"), media)
    assert "image-to-video" in clip_named(i2v, "b.png").reason


def test_framepack_sections_and_minimum_frames() -> None:
    media = [video("long.mp4", 73, 30.0), video("short.mp4", 36, 30.0)]  # FramePack models 30 fps
    report = simulate(preset("musubi_tuner", "framepack", dataset__frames=[73]), media)
    long = clip_named(report, "long.mp4")
    assert long.samples == 2  # latent_f 19 -> floor(18 / 9) sections
    assert clip_named(report, "short.mp4").code == "too_short"
    too_small = simulate(preset("musubi_tuner", "framepack", dataset__frames=[1, 33]), media)
    assert clip_named(too_small, "long.mp4").code == "framepack_short"
    assert any("Not enough frames for FramePack" in c.reason for c in too_small.dropped)
    fix = next(f for f in too_small.fixes if "dataset.frames" in f.changes)
    assert all(f >= 37 for f in fix.changes["dataset.frames"])


def test_musubi_source_fps_fix_only_when_every_clip_agrees() -> None:
    same = simulate(preset("musubi_tuner"), [video("a.mp4", 57, 30.0), video("b.mp4", 60, 30.0)])
    assert any(f.changes == {"backend.musubi_tuner.source_fps": 30.0} for f in same.fixes)
    mixed = simulate(preset("musubi_tuner"), [video("a.mp4", 57, 30.0), video("b.mp4", 60, 16.0)])
    assert not any("backend.musubi_tuner.source_fps" in f.changes for f in mixed.fixes)
    at_model_fps = simulate(preset("musubi_tuner"), [video("a.mp4", 57, 16.0)])
    assert not at_model_fps.fixes


def test_preprocess_fix_offered_for_clips_off_the_model_fps() -> None:
    report = simulate(preset("diffusion_pipe"), [video("a.mp4", 90, 30.0)])
    fix = next(f for f in report.fixes if is_preprocess_fix(f))
    assert fix.changes == {"preprocess.operation": "fps", "preprocess.fps": 16.0}
    assert not any(is_preprocess_fix(f) for f in simulate(preset("diffusion_pipe"), [video("a.mp4", 33, 16.0)]).fixes)


def test_musubi_refuses_architectures_it_cannot_train() -> None:
    report = simulate(preset("musubi_tuner", "ltx-video"), [video("a.mp4", 33, 25.0)])
    assert report.errors and report.samples_per_epoch == 0


def test_unknown_backend_is_a_clear_error() -> None:
    p = preset("diffusion_pipe")
    p.meta["backend"] = "sd_scripts"
    with pytest.raises(ValueError, match="no bucket rules"):
        simulate(p, [])
