"""The Config tab in real Chromium: load a shipped preset, edit a field, see the preview change, save."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from backends import backend_fields
from studio.presets import list_presets, load_preset

pytestmark = pytest.mark.browser


def open_config(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Config").click()
    expect(page.locator("#cfg-commands .cm-content")).to_contain_text("step 1")  # the page-load preview arrived


def choose(page, elem_id: str, option: str) -> None:
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(option)
    page.get_by_role("option", name=option, exact=True).click()


def code_text(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} .cm-content").inner_text()


def test_load_edit_preview_save(app_server, page):
    library = list_presets(None, backend_fields())
    name = next(n for n in sorted(library) if n.startswith("diffusion-pipe"))
    open_config(page, app_server.url)
    choose(page, "cfg-preset", name)
    page.locator("#cfg-load").click()
    expect(page.locator("#cfg-status")).to_contain_text(f"Loaded {name}")
    expect(page.locator("#cfg-commands .cm-content")).to_contain_text("deepspeed")
    expect(page.locator("#cfg-files .cm-content")).to_contain_text("rank = ")

    page.get_by_role("button", name="LoRA network").click()
    rank = page.locator("#f-network-rank input")
    rank.fill("48")
    rank.press("Tab")
    expect(page.locator("#cfg-files .cm-content")).to_contain_text("rank = 48")

    page.locator("#cfg-name input, #cfg-name textarea").first.fill("my edited preset")
    page.locator("#cfg-save").click()
    expect(page.locator("#cfg-status")).to_contain_text("Saved my edited preset")
    saved = app_server.home / "presets" / "my_edited_preset.toml"
    assert saved.exists()
    preset = load_preset(saved, backend_fields())
    assert preset.values["network"]["rank"] == 48
    assert preset.backend == load_preset(library[name], backend_fields()).backend


def test_bad_value_is_explained_and_not_saved(app_server, page):
    open_config(page, app_server.url)
    frames = page.locator("#f-dataset-frames input, #f-dataset-frames textarea").first
    frames.fill("")
    frames.press_sequentially("1, thirty")  # Gradio's input event follows key presses, not a programmatic fill
    expect(page.locator("#cfg-findings")).to_contain_text(re.compile(r"dataset\.frames.*is not a list"))
    # ... and beside the field, inside the Dataset section
    expect(page.locator("#cfg-findings-dataset")).to_contain_text("dataset.frames")
    expect(page.locator("#cfg-findings-model")).not_to_contain_text("dataset.frames")
    page.locator("#cfg-save").click()
    expect(page.locator("#cfg-status")).to_contain_text("dataset.frames")
    assert not (app_server.home / "presets").exists() or not any((app_server.home / "presets").iterdir())


@pytest.mark.parametrize("page", ["zh-CN"], indirect=True)
def test_chinese_browser_gets_chinese_labels(app_server, page):
    page.goto(app_server.url)
    expect(page.get_by_role("tab", name="配置")).to_be_visible()
