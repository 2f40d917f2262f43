"""The Dataset tab in real Chromium: sample dataset, scan table, bucket simulation, a one-click fix, captions."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from backends import backend_fields
from studio.presets import load_preset

pytestmark = pytest.mark.browser
PRESET = "diffusion-pipe-wan21-t2v-1.3b-24gb"


def open_dataset(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Dataset").click()
    expect(page.locator("#ds-scan")).to_be_visible()


def choose(page, elem_id: str, option: str) -> None:
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(option)
    page.get_by_role("option", name=option, exact=True).click()


def test_sample_dataset_scan_simulation_and_fix(app_server, page):
    open_dataset(page, app_server.url)
    page.locator("#ds-sample").click()
    expect(page.locator("#ds-status")).to_contain_text("Scanned", timeout=60_000)
    table = page.locator("#ds-table")
    expect(table).to_contain_text("testsrc_30fps_57f.mp4")
    expect(table).to_contain_text("mandelbrot_16fps.mp4")
    expect(page.locator("#ds-summary")).to_contain_text("4")
    assert (app_server.data_root / "sample_dataset" / "testsrc_30fps_57f.txt").exists()

    choose(page, "ds-preset", PRESET)
    sim = page.locator("#ds-sim-table")
    # The seeds' case: 57 frames at 30 fps count as 30 at Wan's 16 fps, below the 33 bucket.
    expect(sim).to_contain_text("too short (30 frames at 16 fps")
    expect(page.locator("#ds-sim-summary")).to_contain_text("samples")
    expect(page.locator("#ds-sim-buckets")).to_contain_text("33")

    choose(page, "ds-fix", "Add 29 to the frame counts: 1 short clip(s) train instead of being skipped")
    page.locator("#ds-fix-apply").click()
    expect(page.locator("#ds-fix-status")).to_contain_text("Saved")
    saved = next((app_server.home / "presets").glob("*.toml"))
    assert load_preset(saved, backend_fields()).get("dataset.frames") == [1, 29, 33]
    page.locator("#ds-scan").click()
    expect(sim).to_contain_text("bucket 29")
    expect(sim).not_to_contain_text("too short")


def test_folder_outside_the_data_root_is_refused(app_server, page):
    open_dataset(page, app_server.url)
    page.locator("#ds-folder textarea, #ds-folder input").first.fill("/etc")
    page.locator("#ds-scan").click()
    expect(page.locator("#ds-status")).to_contain_text("outside the data folder")


def test_bulk_caption_preview_apply_undo(app_server, page):
    folder = app_server.data_root / "clips"
    from tests.media_fixtures import make_clip, write_caption

    write_caption(make_clip(folder / "a.mp4", frames=9, fps=16), "a dog")
    make_clip(folder / "b.mp4", frames=9, fps=16)
    open_dataset(page, app_server.url)
    page.locator("#ds-folder textarea, #ds-folder input").first.fill("${DATA}/clips")
    page.locator("#ds-scan").click()
    expect(page.locator("#ds-table")).to_contain_text("missing")
    page.get_by_text("Captions", exact=True).click()
    page.locator("#ds-bulk-a textarea, #ds-bulk-a input").first.fill("a video of sks")
    page.locator("#ds-bulk-preview").click()
    expect(page.locator("#ds-bulk-table")).to_contain_text("a video of sks")
    expect(page.locator("#ds-cap-status")).to_contain_text("1 caption(s) would change")
    page.locator("#ds-bulk-apply").click()
    expect(page.locator("#ds-cap-status")).to_contain_text("Changed 1 caption(s)")
    assert (folder / "b.txt").read_text() == "a video of sks"
    page.locator("#ds-bulk-undo").click()
    expect(page.locator("#ds-cap-status")).to_contain_text("1 caption(s) restored")
    assert not (folder / "b.txt").exists()
