"""Shared fixtures: an isolated studio home for every test, and the real app in a real browser for UI tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("VLS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") or ""
sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True)
def studio_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ~/.video-lora-studio so nothing touches the real one."""
    home = tmp_path / "studio-home"
    home.mkdir()
    monkeypatch.setenv("VIDEO_LORA_STUDIO_HOME", str(home))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    return home


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AppServer:
    url: str
    home: Path
    settings_path: Path
    data_root: Path
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_app(home: Path, *extra_args: str, env: dict[str, str] | None = None, timeout: float = 90) -> AppServer:
    """Start ``python app.py`` as users do, on a free port, and wait until Gradio answers its info route."""
    port = free_port()
    data_root = home / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    settings_path = home / "settings.toml"
    log_path = home / f"app-{port}.log"
    run_env = dict(os.environ, VIDEO_LORA_STUDIO_HOME=str(home), GRADIO_ANALYTICS_ENABLED="False",
                   GRADIO_TEMP_DIR=str(home / "gradio-tmp"), PYTHONUNBUFFERED="1", **(env or {}))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "app.py"), "--port", str(port), *extra_args],
            cwd=REPO, env=run_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    server = AppServer(f"http://127.0.0.1:{port}", home, settings_path, data_root, process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app exited with {process.returncode}:\n{server.log()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/gradio_api/info", timeout=2):
                return server
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):  # auth on: the server is up
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    stop_app(server)
    raise RuntimeError(f"app did not answer within {timeout}s:\n{server.log()[-3000:]}")


def stop_app(server: AppServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def app_server(studio_home: Path) -> Iterator[AppServer]:
    server = start_app(studio_home)
    try:
        yield server
    finally:
        stop_app(server)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM:
        pytest.fail("Debian chromium is required for browser tests: apt-get install chromium (see .ci/run)")
    from playwright.sync_api import expect, sync_playwright

    # Gradio answers over a queue; on a loaded 2-core CI machine 5 s (Playwright's default) is too tight.
    expect.set_options(timeout=30_000)

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # The machine has no network: without these Chromium keeps trying to reach Google's services.
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser, request):
    locale = getattr(request, "param", "en-US")
    context = browser.new_context(locale=locale, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()
