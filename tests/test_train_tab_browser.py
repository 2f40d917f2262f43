"""The Train tab in real Chromium: a fixture trainer run is watched to the end (progress, log, loss plot), a second
viewer sees the same job, and the Stop button stops a running job."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from runner_support import QUICK_STOP, fake_step, musubi_spec, settings, submit, wait_for

from studio import jobs

pytestmark = pytest.mark.browser


def open_train_tab(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#train-job")).to_be_visible()


def test_watch_a_run_to_the_end_and_see_the_plot(app_server, page, browser, tmp_path):
    cfg = settings(app_server.home)
    out = tmp_path / "out"
    state = submit(cfg, [fake_step("train", "--steps", "30", "--epochs", "3", "--step-time", "0.15",
                                   "--output-dir", str(out))], musubi_spec(out), name="browser run")
    open_train_tab(page, app_server.url)
    expect(page.locator("#train-job input")).to_have_value(re.compile("browser run"), timeout=20_000)
    expect(page.locator("#train-status")).to_contain_text("finished", timeout=60_000)
    expect(page.locator("#train-status")).to_contain_text("started by tester")
    expect(page.locator("#train-progress-text")).to_contain_text("step 30/30", timeout=10_000)
    expect(page.locator("#train-progress-text")).to_contain_text("epoch 3/3")
    expect(page.locator("#train-log textarea")).to_have_value(re.compile("model saved"), timeout=10_000)
    plot = page.locator("#train-loss-plot .js-plotly-plot")
    expect(plot).to_be_visible(timeout=20_000)
    expect(page.locator("#train-loss-plot")).to_contain_text("Loss (30 steps)", timeout=20_000)
    assert page.locator("#train-loss-plot .scatterlayer .trace").count() >= 2  # raw + smoothed
    expect(page.locator("#train-log-download")).to_be_visible()

    # A second viewer (another teammate) sees the same finished job without doing anything.
    other = browser.new_context(locale="en-US").new_page()
    try:
        open_train_tab(other, app_server.url)
        expect(other.locator("#train-status")).to_contain_text(state.job_id, timeout=30_000)
        expect(other.locator("#train-status")).to_contain_text("finished")
    finally:
        other.context.close()


def test_stop_button_stops_a_running_job(app_server, page, tmp_path):
    cfg = settings(app_server.home)
    state = submit(cfg, [fake_step("train", "--steps", "100000", "--step-time", "0.05")], musubi_spec(tmp_path),
                   name="long run", stop_timeouts=QUICK_STOP)
    open_train_tab(page, app_server.url)
    expect(page.locator("#train-status")).to_contain_text("running", timeout=30_000)
    page.locator("#train-stop").click()
    expect(page.locator("#train-action")).to_contain_text("Stop requested")
    expect(page.locator("#train-status")).to_contain_text("stopped by", timeout=30_000)
    done = wait_for(cfg, state.job_id)
    assert done.status == jobs.STOPPED and done.stopped_by == "local"
