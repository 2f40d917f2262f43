"""``scan`` and ``sample-data`` through their argparse handlers, as ``python app.py scan`` runs them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from studio import cli_dataset
from studio.sample_data import SAMPLES, make_sample_dataset


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    cli_dataset.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


def test_sample_data_then_scan_json_with_simulation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "sample"
    code, out = run(["sample-data", str(folder)], capsys)
    assert code == 0 and f"wrote {len(SAMPLES)} sample files" in out
    preset = Path(__file__).resolve().parent.parent / "presets" / "diffusion-pipe-wan21-t2v-1.3b-24gb.toml"
    code, out = run(["scan", str(folder), "--preset", str(preset), "--json"], capsys)
    payload = json.loads(out)
    assert code == 0 and payload["summary"]["videos"] == 4 and payload["summary"]["images"] == 1
    clips = {Path(c["path"]).name: c for c in payload["simulation"]["clips"]}
    assert clips["testsrc_30fps_57f.mp4"]["counted_frames"] == 30
    assert clips["testsrc_30fps_57f.mp4"]["code"] == "too_short"
    assert any(f["changes"].get("dataset.frames") == [1, 29, 33] for f in payload["simulation"]["fixes"])


def test_scan_text_table_and_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "sample"
    make_sample_dataset(folder)
    preset = Path(__file__).resolve().parent.parent / "presets" / "diffusion-pipe-wan21-t2v-1.3b-24gb.toml"
    code, out = run(["scan", str(folder), "--preset", str(preset), "--set", "dataset.frames=[1, 29]"], capsys)
    assert code == 0
    assert "testsrc_30fps_57f.mp4" in out and "bucket   29" in out and "samples per epoch: 5" in out


def test_sample_data_refuses_a_folder_with_media(tmp_path: Path) -> None:
    make_sample_dataset(tmp_path / "s")
    with pytest.raises(FileExistsError, match="already holds media"):
        make_sample_dataset(tmp_path / "s")


def test_scan_of_missing_folder_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(["scan", str(tmp_path / "nope")], capsys)
