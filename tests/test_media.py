"""scan_folder on real ffmpeg-made clips: exact frame counts, fps, captions, corrupt files, the probe cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from studio.media import MediaInfo, media_problems, probe_file, scan_folder, summarize
from tests.media_fixtures import make_clip, make_corrupt, make_image, write_caption


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scan")
    seed = make_clip(folder / "seed57.mp4", frames=57, fps=30)
    write_caption(seed, "a dog runs\nsecond line")
    write_caption(make_clip(folder / "b16.mkv", frames=49, fps=16), "   \n")
    make_clip(folder / "c24.webm", frames=20, fps=24, codec="libvpx-vp9")
    write_caption(make_clip(folder / "ntsc.mov", frames=101, fps=24000 / 1001), "ntsc clip")
    write_caption(make_image(folder / "still.png", size=(96, 48)), "a still")
    make_image(folder / "photo.webp", size=(80, 64))
    make_image(folder / "photo2.avif", size=(64, 48))
    make_corrupt(folder / "broken.mp4", source=seed)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.md").write_text("not media")
    make_clip(folder / "sub" / "nested.mp4", frames=9, fps=16)
    return folder


def by_name(media: list[MediaInfo]) -> dict[str, MediaInfo]:
    return {m.name: m for m in media}


def test_scan_lists_top_level_media_only_sorted(dataset: Path) -> None:
    names = [m.name for m in scan_folder(dataset)]
    assert names == sorted(names)
    assert "notes.md" not in names and "nested.mp4" not in names  # trainers do not recurse
    assert set(names) == {"seed57.mp4", "b16.mkv", "c24.webm", "ntsc.mov", "still.png", "photo.webp",
                          "photo2.avif", "broken.mp4", "empty.mp4"}


def test_frame_counts_are_exact_from_container_or_packets(dataset: Path) -> None:
    media = by_name(scan_folder(dataset))
    seed = media["seed57.mp4"]
    assert (seed.frames, seed.fps, seed.width, seed.height, seed.codec) == (57, 30.0, 64, 64, "h264")
    assert seed.frame_source == "container" and seed.duration == pytest.approx(1.9, abs=0.01)
    # Matroska/WebM keep no frame count: counted from packets.
    assert (media["b16.mkv"].frames, media["b16.mkv"].fps, media["b16.mkv"].frame_source) == (49, 16.0, "packets")
    assert (media["c24.webm"].frames, media["c24.webm"].codec) == (20, "vp9")
    assert media["ntsc.mov"].frames == 101 and media["ntsc.mov"].fps == pytest.approx(23.976, abs=1e-3)


def test_images_have_size_and_one_frame(dataset: Path) -> None:
    media = by_name(scan_folder(dataset))
    assert (media["still.png"].kind, media["still.png"].width, media["still.png"].height) == ("image", 96, 48)
    assert (media["photo.webp"].frames, media["photo.webp"].codec) == (1, "webp")
    assert (media["photo2.avif"].width, media["photo2.avif"].height) == (64, 48)


def test_caption_status_missing_empty_present(dataset: Path) -> None:
    media = by_name(scan_folder(dataset))
    assert (media["seed57.mp4"].caption_status, media["seed57.mp4"].caption_first_line) == ("present", "a dog runs")
    assert media["b16.mkv"].caption_status == "empty"
    assert media["c24.webm"].caption_status == "missing"
    assert "no caption file" in media_problems(media["c24.webm"])
    assert "no caption file" not in media_problems(media["seed57.mp4"])


def test_corrupt_and_empty_files_are_listed_with_error_not_raised(dataset: Path) -> None:
    media = by_name(scan_folder(dataset))
    assert "Invalid data" in media["broken.mp4"].error
    assert media["empty.mp4"].error == "empty file (0 bytes)"
    assert media["seed57.mp4"].error == ""
    assert media_problems(media["broken.mp4"])[0].startswith("cannot read")


def test_probe_file_never_raises_for_missing_file(tmp_path: Path) -> None:
    info = probe_file(tmp_path / "gone.mp4")
    assert info.error.startswith("cannot read")


def test_missing_folder_raises_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_folder(tmp_path / "nope")


def test_serial_and_parallel_scans_agree(dataset: Path) -> None:
    assert scan_folder(dataset, workers=1) == scan_folder(dataset, workers=8)


def test_probe_cache_is_used_until_the_file_changes(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    clip = make_clip(folder / "a.mp4", frames=17, fps=16)
    make_clip(folder / "b.mp4", frames=9, fps=16)
    cache = tmp_path / "probe.json"
    assert by_name(scan_folder(folder, probe_cache=cache))["a.mp4"].frames == 17
    # Prove the second scan reads the cache, not the file: tamper with the cached count.
    raw = json.loads(cache.read_text())
    raw["entries"][str(clip)]["info"]["frames"] = 999
    cache.write_text(json.dumps(raw))
    assert by_name(scan_folder(folder, probe_cache=cache))["a.mp4"].frames == 999
    # A changed mtime (same size) invalidates the entry.
    stat = clip.stat()
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert by_name(scan_folder(folder, probe_cache=cache))["a.mp4"].frames == 17
    # Removed files leave the cache.
    (folder / "b.mp4").unlink()
    scan_folder(folder, probe_cache=cache)
    assert list(json.loads(cache.read_text())["entries"]) == [str(clip)]


def test_damaged_probe_cache_costs_only_a_cold_scan(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    make_clip(folder / "a.mp4", frames=5, fps=16)
    cache = tmp_path / "probe.json"
    cache.write_text("{not json")
    assert scan_folder(folder, probe_cache=cache)[0].frames == 5
    assert json.loads(cache.read_text())["version"] == 1


def test_captions_are_reread_even_when_probe_is_cached(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    clip = make_clip(folder / "a.mp4", frames=5, fps=16)
    cache = tmp_path / "probe.json"
    assert scan_folder(folder, probe_cache=cache)[0].caption_status == "missing"
    write_caption(clip, "new caption")
    assert scan_folder(folder, probe_cache=cache)[0].caption_first_line == "new caption"


def test_summary_counts(dataset: Path) -> None:
    summary = summarize(scan_folder(dataset))
    assert summary["videos"] == 4 and summary["images"] == 3 and summary["unreadable"] == 2
    assert summary["missing_captions"] == 5  # c24.webm, photo.webp, photo2.avif, broken.mp4, empty.mp4
    assert 30.0 in summary["fps_values"] and 16.0 in summary["fps_values"]


def test_media_info_round_trips_through_dict() -> None:
    info = MediaInfo("/x/a.mp4", "video", 64, 64, 57, 30.0, 1.9, "h264", 10, 1.0, "present", "hi")
    assert MediaInfo.from_dict({**info.to_dict(), "unknown_future_key": 1}) == info


def test_dataset_folder_stays_inside_the_data_root(tmp_path: Path) -> None:
    from studio.media import dataset_folder, sub_folders

    root = tmp_path / "data"
    (root / "clips" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (tmp_path / "outside").mkdir()
    (root / "escape").symlink_to(tmp_path / "outside")
    assert dataset_folder("${DATA}/clips", root) == (root / "clips").resolve()
    assert dataset_folder("clips/deeper", root) == (root / "clips" / "deeper").resolve()
    assert dataset_folder(str(root / "clips"), root) == (root / "clips").resolve()
    for bad in ("../outside", str(tmp_path / "outside"), "escape", "/etc"):
        with pytest.raises(ValueError, match="outside the data folder"):
            dataset_folder(bad, root)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dataset_folder("nope", root)
    with pytest.raises(ValueError, match="no folder"):
        dataset_folder("  ", root)
    assert sub_folders(root) == ["${DATA}/clips", "${DATA}/clips/deeper"]  # links and hidden folders not offered
