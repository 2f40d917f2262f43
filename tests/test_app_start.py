"""The GUI starts without torch, and the generated docs match the code."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_gui_builds_without_importing_torch(studio_home):
    code = (
        "import sys, app\n"
        "from gui.app import build_app\n"
        "from gui.context import GuiContext\n"
        "from studio.settings import default_settings_path\n"
        "demo = build_app(GuiContext(str(default_settings_path())))\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "HEAVY []" in done.stdout


def test_docs_presets_md_is_up_to_date():
    done = subprocess.run([sys.executable, "-m", "studio.docs_gen", "--check"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
