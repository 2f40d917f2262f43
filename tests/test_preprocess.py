"""Preprocessing with the real ffmpeg: outputs probed back, captions copied, originals untouched, cancel, refusals."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from studio.media import probe_file, scan_folder
from studio.preprocess import (
    CropBox,
    JobPlan,
    PreprocessError,
    PreprocessOptions,
    Task,
    base_argv,
    check_output_dir,
    crop_box,
    crop_preview,
    decodable_image_formats,
    plan_job,
)
from studio.preprocess_run import PreprocessRun, run_preprocess
from tests.media_fixtures import make_clip, make_corrupt, make_image, write_caption


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("src")
    write_caption(make_clip(folder / "seed57.mp4", frames=57, fps=30), "a dog")
    write_caption(make_clip(folder / "short.mkv", frames=20, fps=24), "short one")
    make_clip(folder / "seed57.webm", frames=9, fps=16, codec="libvpx-vp9")  # same stem as seed57.mp4
    write_caption(make_image(folder / "pic.webp", size=(80, 60)), "a webp")
    make_image(folder / "pic2.avif", size=(64, 48))
    make_image(folder / "pic3.jfif", size=(64, 48))
    make_corrupt(folder / "broken.mp4")
    return folder


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def run(source: Path, out: Path, **options: object):
    return run_preprocess(PreprocessOptions(**options), scan_folder(source), source_dir=source, output_dir=out)


def test_change_fps_to_16_keeps_duration_and_copies_captions(source: Path, tmp_path: Path) -> None:
    before = digest(source)
    report = run(source, tmp_path / "out16", operation="fps", fps=16.0)
    out = tmp_path / "out16"
    seed = probe_file(out / "seed57.mp4")
    assert seed.fps == 16.0 and 29 <= seed.frames <= 31  # 1.9 s at 16 fps
    assert (out / "seed57.txt").read_text() == "a dog"
    assert probe_file(out / "seed57_webm.mp4").frames == 9  # the second "seed57" keeps its suffix in the name
    assert (out / "seed57_webm.txt").read_text() == "a dog"  # both read seed57.txt, as the trainers do
    assert {Path(f).name for f, _why in report.skipped} >= {"pic.webp", "broken.mp4"}
    assert not report.failed and not (out / ".studio-partial").exists()
    assert digest(source) == before  # originals never modified


def test_trim_to_n_frames_and_shorter_clips_are_kept_whole(source: Path, tmp_path: Path) -> None:
    report = run(source, tmp_path / "trim", operation="trim", frames=33)
    assert probe_file(tmp_path / "trim" / "seed57.mp4").frames == 33
    assert probe_file(tmp_path / "trim" / "short.mp4").frames == 20
    assert any("only 20 frames" in r.message for r in report.results)


def test_crop_box_hand_computed() -> None:
    assert crop_box(1920, 1080, 832, 480) == CropBox(24, 0, 1872, 1080)
    assert crop_box(64, 64, 64, 32) == CropBox(0, 16, 64, 32)
    assert crop_box(480, 832, 832, 480) == CropBox(0, 278, 480, 276)
    with pytest.raises(PreprocessError):
        crop_box(0, 10, 10, 10)


def test_crop_resize_videos_and_images_keep_aspect_by_cropping(source: Path, tmp_path: Path) -> None:
    run(source, tmp_path / "crop", operation="crop_resize", width=64, height=32, image_format="png")
    clip = probe_file(tmp_path / "crop" / "seed57.mp4")
    assert (clip.width, clip.height, clip.frames) == (64, 32, 57)
    with Image.open(tmp_path / "crop" / "pic.png") as picture:
        assert picture.size == (64, 32)


def test_crop_preview_draws_the_box(source: Path, tmp_path: Path) -> None:
    png = crop_preview(source / "seed57.mp4", crop_box(64, 64, 64, 32), tmp_path / "preview.png")
    with Image.open(png) as picture:
        assert picture.size == (64, 64)
        red, green, _blue = picture.convert("RGB").getpixel((32, 17))  # on the box's top edge
        assert red > 150 and green < 100


def test_extract_every_nth_frame_with_captions(source: Path, tmp_path: Path) -> None:
    run(source, tmp_path / "frames", operation="extract_frames", every_n=8, image_format="png")
    frames = sorted((tmp_path / "frames").glob("seed57_0*.png"))
    assert len(frames) == 8  # frames 0, 8, ..., 56
    assert (tmp_path / "frames" / "seed57_00001.txt").read_text() == "a dog"


def test_convert_images_to_jpg(source: Path, tmp_path: Path) -> None:
    report = run(source, tmp_path / "jpg", operation="convert_images", image_format="jpg")
    names = sorted(Path(o).name for o in report.outputs)
    assert names == ["pic.jpg", "pic2.jpg", "pic3.jpg"]
    for name in names:
        with Image.open(tmp_path / "jpg" / name) as picture:
            assert picture.format == "JPEG"
    assert (tmp_path / "jpg" / "pic.txt").read_text() == "a webp"


def test_first_frame_of_each_video_for_i2v(source: Path, tmp_path: Path) -> None:
    report = run(source, tmp_path / "first", operation="first_frame", image_format="png")
    assert sorted(Path(o).name for o in report.outputs) == ["seed57.png", "seed57_webm.png", "short.png"]
    assert (tmp_path / "first" / "short.txt").read_text() == "short one"


def test_output_folder_must_be_new_and_outside_the_source(source: Path, tmp_path: Path) -> None:
    with pytest.raises(PreprocessError, match="inside it"):
        check_output_dir(source, source)
    with pytest.raises(PreprocessError, match="inside it"):
        check_output_dir(source, source / "sub")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("x")
    with pytest.raises(PreprocessError, match="not empty"):
        check_output_dir(source, taken)
    (tmp_path / "empty").mkdir()
    assert check_output_dir(source, tmp_path / "empty") == (tmp_path / "empty").resolve()


@pytest.mark.parametrize(("options", "message"), [
    ({"operation": "blur"}, "unknown operation"), ({"operation": "fps", "fps": 0}, "out of range"),
    ({"operation": "crop_resize", "width": 63, "height": 32}, "even"), ({"operation": "trim", "frames": 0}, "range"),
    ({"operation": "convert_images", "image_format": "gif"}, "jpg or png"),
])
def test_bad_options_are_refused_with_a_reason(source: Path, tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(PreprocessError, match=message):
        plan_job(PreprocessOptions(**options), scan_folder(source), source_dir=source, output_dir=tmp_path / "o")


def test_failed_ffmpeg_is_reported_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    work = out / ".studio-partial" / "00000"
    task = Task("missing.mp4", [*base_argv(), "-i", str(tmp_path / "missing.mp4"), str(work / "x.mp4")], str(work), "x")
    report = PreprocessRun(JobPlan([task], output_dir=str(out)), PreprocessOptions("fps")).run()
    assert not report.results[0].ok and "ffmpeg failed" in report.results[0].message
    assert list(out.iterdir()) == []


def test_cancel_kills_running_ffmpeg_and_skips_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tasks = []
    for index in range(3):
        work = out / ".studio-partial" / f"{index:05d}"
        # A real ffmpeg run that takes far longer than the test waits.
        argv = [*base_argv(), "-re", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=16:duration=600",
                str(work / f"slow{index}.mp4")]
        tasks.append(Task(f"slow{index}", argv, str(work), f"slow{index}"))
    job = PreprocessRun(JobPlan(tasks, output_dir=str(out)), PreprocessOptions("fps"), workers=1)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(job.run()))
    thread.start()
    deadline = time.monotonic() + 20
    while not job._running and time.monotonic() < deadline:
        time.sleep(0.05)
    job.cancel()
    thread.join(timeout=30)
    report = result[0]
    assert report.cancelled and [r.ok for r in report.results] == [False, False, False]
    assert report.results[0].message == "cancelled" and "before start" in report.results[1].message
    assert list(out.iterdir()) == []


def test_decodable_image_formats_reports_this_ffmpeg() -> None:
    formats = decodable_image_formats()
    assert formats["webp"] and formats["avif"] and formats["png"] and formats["jpg/jfif"]
    assert set(formats) >= {"heic", "gif", "tiff"}
