"""The model download tab in real Chromium, downloading from the loopback hub through a real worker process."""

from __future__ import annotations

import os
import re

import pytest
from download_support import WAN_REPO, serve
from huggingface_hub import constants as hf_constants
from playwright.sync_api import expect

from backends import backend_fields
from studio.presets import load_preset

pytestmark = pytest.mark.browser
CKPT = "wan21-t2v-1.3b-ckpt"
KIJAI = "kijai-umt5-enc-bf16"


def open_tab(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Model download").click()
    expect(page.locator("#dl-start")).to_be_visible()


def choose(page, elem_id: str, typed: str, option: str | re.Pattern) -> None:
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(typed)
    page.get_by_role("option", name=option).first.click()


def job(page, set_id: str, status: str):
    return page.locator(f"#dl-progress .dl-job[data-set='{set_id}'][data-status='{status}']")


def start(page, set_id: str, endpoint: str) -> None:
    choose(page, "dl-set", set_id, re.compile(f"^{re.escape(set_id)} "))
    page.locator("#dl-endpoint input, #dl-endpoint textarea").first.fill(endpoint)
    page.locator("#dl-start").click()
    expect(page.locator("#dl-message")).to_contain_text(f"Started {set_id}")


def test_download_cancel_resume_fill_and_check(app_server, browser, page, tmp_path):
    with serve(tmp_path, throttle_bytes_per_s=2 * 1024 * 1024) as hub:
        hub.repos[WAN_REPO].files["Wan2.1_VAE.pth"] = os.urandom(hf_constants.DOWNLOAD_CHUNK_SIZE * 2)
        open_tab(page, app_server.url)
        expect(page.locator("#dl-table")).to_contain_text(CKPT)
        start(page, CKPT, hub.url)
        expect(job(page, CKPT, "running")).to_be_visible(timeout=20_000)
        expect(job(page, CKPT, "running").locator(".dl-file")).to_have_count(7)  # one bar per file

        # A second viewer sees the same download, from the job file.
        other = browser.new_context(locale="en-US").new_page()
        open_tab(other, app_server.url)
        expect(job(other, CKPT, "running")).to_be_visible()

        # Cancel once the first 10 MB chunk of the VAE is on disk, so there is a partial file to resume.
        vae_bar = job(page, CKPT, "running").locator(".dl-file", has_text=re.compile(r"Wan2\.1_VAE\.pth \(1\d\.\d\d MB"))
        expect(vae_bar).to_be_visible(timeout=20_000)
        page.locator("#dl-cancel").click()
        expect(job(page, CKPT, "cancelled")).to_be_visible(timeout=20_000)
        expect(job(other, CKPT, "cancelled")).to_be_visible()
        other.context.close()

        hub.throttle_bytes_per_s = 0
        start(page, CKPT, hub.url)
        expect(job(page, CKPT, "done")).to_be_visible(timeout=30_000)
        assert any(r.startswith("bytes=") for r in hub.ranges_for("Wan2.1_VAE.pth"))  # resumed, not restarted
        start(page, KIJAI, hub.url)
        expect(job(page, KIJAI, "done")).to_be_visible(timeout=30_000)

    models = app_server.home / "models"
    assert (models / "Wan2.1-T2V-1.3B" / "config.json").is_file()
    assert not (models / "Wan2.1-T2V-1.3B" / "diffusion_pytorch_model.safetensors").exists()  # pattern honoured
    page.reload()
    page.get_by_role("tab", name="Model download").click()
    expect(job(page, KIJAI, "done")).to_be_visible()  # survives a reload

    choose(page, "dl-set", KIJAI, re.compile(f"^{KIJAI} "))
    # The shipped 1.3B preset already names the catalogue's files; the 14B one leaves llm_path empty, so this fills it.
    preset_name = "diffusion-pipe-wan21-t2v-14b-24gb-min-vram"
    choose(page, "dl-preset", "diffusion-pipe-wan21-t2v-14b", preset_name)
    page.locator("#dl-fill").click()
    expect(page.locator("#dl-fill-result")).to_contain_text("WanVideo_comfy/umt5-xxl-enc-bf16.safetensors")
    expect(page.locator("#dl-check-result")).to_contain_text("ckpt_path")  # the 14B folder is not downloaded yet
    saved = load_preset(app_server.home / "presets" / f"{preset_name}.toml", backend_fields())
    assert saved.get("model.text_encoder") == "${MODELS}/WanVideo_comfy/umt5-xxl-enc-bf16.safetensors"

    page.locator("#dl-check").click()
    expect(page.locator("#dl-check-result")).to_contain_text("problem")


def test_errors_are_shown_not_raised(app_server, page, tmp_path):
    with serve(tmp_path) as hub:
        open_tab(page, app_server.url)
        choose(page, "dl-set", KIJAI, re.compile(f"^{KIJAI} "))
        page.locator("#dl-source").get_by_text("ModelScope").click()
        page.locator("#dl-start").click()
        expect(page.locator("#dl-message")).to_contain_text("not published on ModelScope")
        page.locator("#dl-source").get_by_text("Hugging Face").click()
        del hub.repos["Kijai/WanVideo_comfy"]
        start(page, KIJAI, hub.url)
        expect(job(page, KIJAI, "failed")).to_contain_text("was not found")


@pytest.mark.parametrize("page", ["zh-CN"], indirect=True)
def test_chinese_labels(app_server, page):
    page.goto(app_server.url)
    page.get_by_role("tab", name="模型下载").click()
    expect(page.get_by_role("button", name="下载", exact=True)).to_be_visible()
    expect(page.locator("#dl-progress")).to_contain_text("还没有下载任务")
