"""The headless CLI, run as a user runs it: `python app.py COMMAND` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from studio.presets import SHIPPED_DIR
from studio.tomlcompat import tomllib
from tests.conftest import REPO

SHIPPED = sorted(p.stem for p in SHIPPED_DIR.glob("*.toml"))


def app(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "app.py", *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          input=stdin)
    if check and done.returncode != 0:
        raise AssertionError(f"app.py {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(
        f'data_root = "{tmp_path}/data"\nmodels_root = "{tmp_path}/models"\noutput_root = "{tmp_path}/out"\n'
        '[trainers.musubi_tuner]\ninstall_dir = "/opt/musubi-tuner"\npython = "/opt/musubi-tuner/venv/bin/python"\n'
        '[trainers.diffusion_pipe]\ninstall_dir = "/opt/diffusion-pipe"\npython = "/opt/dp/bin/python"\n'
    )
    return path


def test_presets_lists_every_shipped_preset():
    rows = json.loads(app("presets", "--json").stdout)
    names = {row["name"] for row in rows}
    assert len(rows) == len(SHIPPED) and len(names) == len(SHIPPED)
    assert {row["origin"] for row in rows} == {"shipped"}


@pytest.mark.parametrize("stem", SHIPPED)
def test_plan_every_shipped_preset(stem, tmp_path, settings_file):
    run_dir = tmp_path / "run"
    done = app("plan", str(SHIPPED_DIR / f"{stem}.toml"), "--run-dir", str(run_dir), "--settings",
               str(settings_file), "--json")
    plan = json.loads(done.stdout)
    assert plan["steps"], "a plan has steps"
    for step in plan["steps"]:
        assert step["argv"][0] in ("/opt/musubi-tuner/venv/bin/python", "/opt/dp/bin/python")
        assert step["env"]["PYTHONUNBUFFERED"] == "1"
        assert all(isinstance(a, str) for a in step["argv"])
    for rel, text in plan["files"].items():
        written = run_dir / rel
        assert written.read_text() == text
        if rel.endswith(".toml"):
            tomllib.loads(text)
    assert str(tmp_path / "data") in json.dumps(plan["files"]), "roots are resolved to this machine's folders"


def test_set_overrides_reach_the_generated_files(tmp_path, settings_file):
    preset = SHIPPED_DIR / f"{SHIPPED[0]}.toml"
    done = app("plan", str(preset), "--run-dir", str(tmp_path / "r"), "--settings", str(settings_file), "--json",
               "--set", "training.epochs=7", "--set", "network.rank=8")
    text = json.dumps(json.loads(done.stdout))
    assert "7" in text and "8" in text
    bad = app("plan", str(preset), "--run-dir", str(tmp_path / "r2"), "--settings", str(settings_file),
              "--set", "network.rank=lots", check=False)
    assert bad.returncode == 2
    assert "network.rank" in bad.stderr and "expected a whole number" in bad.stderr
    assert not (tmp_path / "r2").exists(), "nothing is written when the preset is refused"


def test_unknown_preset_name_lists_the_known_ones():
    done = app("plan", "no-such-preset", "--run-dir", "/tmp/x", check=False)
    assert done.returncode == 2
    assert "known presets" in done.stderr


def test_export_then_import_round_trip(tmp_path, settings_file):
    exported = tmp_path / "shared.toml"
    app("preset", "export", str(SHIPPED_DIR / f"{SHIPPED[0]}.toml"), "-o", str(exported), "--settings",
        str(settings_file), "--set", f'model.dit="{tmp_path}/models/x/dit.safetensors"', "--set",
        "output.name=teammate_lora")
    text = exported.read_text()
    assert "${MODELS}/x/dit.safetensors" in text, "absolute paths under a root travel as ${ROOT}/..."
    assert "hf_token" not in text and "/opt/" not in text
    text = text.replace(f'name = "{tomllib.loads(text)["meta"]["name"]}"', 'name = "teammate copy"', 1)
    exported.write_text(text)
    done = json.loads(app("preset", "import", str(exported), "--settings", str(settings_file), "--json").stdout)
    assert Path(done["saved"]).exists()
    assert any("model.dit" in p for p in done["unresolved"])
    again = app("preset", "import", str(exported), "--settings", str(settings_file), check=False)
    assert again.returncode == 2 and "--force" in again.stderr


def test_import_of_a_hostile_file_writes_nothing(tmp_path, settings_file, studio_home):
    hostile = tmp_path / "evil.toml"
    hostile.write_text('[meta]\nschema_version = 2\nbackend = "musubi_tuner"\narchitecture = "wan2.1-t2v-1.3b"\n'
                       'name = "../../../tmp/evil"\n')
    done = app("preset", "import", str(hostile), "--settings", str(settings_file), check=False)
    assert done.returncode == 2 and "meta.name" in done.stderr
    presets_dir = studio_home / "presets"
    assert not presets_dir.exists() or not any(presets_dir.iterdir())
    assert not Path("/tmp/evil.toml").exists()


def test_check_install_runs_the_configured_python_and_explains(tmp_path):
    checkout = tmp_path / "musubi-tuner"
    (checkout / ".git").mkdir(parents=True)
    (checkout / ".git" / "HEAD").write_text("0123456789abcdef0123456789abcdef01234567\n")
    settings = tmp_path / "s.toml"
    settings.write_text(f'[trainers.musubi_tuner]\ninstall_dir = "{checkout}"\npython = "{sys.executable}"\n')
    done = app("check-install", "musubi_tuner", "--settings", str(settings), "--json", check=False)
    assert done.returncode == 1
    report = json.loads(done.stdout)[0]
    assert report["python_version"] == sys.version.split()[0], "the probe ran in the configured interpreter"
    assert report["commit"] == "0123456789ab"
    assert any("import musubi_tuner" in p for p in report["problems"])
    assert report["install_steps"]


def test_settings_set_and_show_mask_the_token(tmp_path):
    settings = tmp_path / "s.toml"
    app("settings", "set", "hf_token", "hf_abc", "--settings", str(settings))
    shown = app("settings", "show", "--settings", str(settings)).stdout
    assert "hf_abc" not in shown and "***" in shown
