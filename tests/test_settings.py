"""Machine settings: private file, strict keys, executables only from this machine."""

from __future__ import annotations

import pytest

from studio.settings import SettingsError, discover_pythons, load_settings, save_settings, set_setting


def test_defaults_live_under_the_studio_home(studio_home):
    settings = load_settings()
    assert settings.runs_dir == str(studio_home / "runs")
    assert settings.roots()["MODELS"] == str(studio_home / "models")


def test_round_trip_and_private_mode(tmp_path):
    path = tmp_path / "settings.toml"
    settings = set_setting(load_settings(path), "hf_token", "hf_secret")
    settings = set_setting(settings, "trainers.musubi_tuner.install_dir", "/opt/musubi-tuner")
    save_settings(settings, path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_settings(path)
    assert again.hf_token == "hf_secret"
    assert again.trainer("musubi_tuner").install_dir == "/opt/musubi-tuner"
    assert again.redacted()["hf_token"] == "***"


@pytest.mark.parametrize(("text", "message"), [
    ("surprise = 1\n", "unknown setting"),
    ("default_gpu = -1\n", "GPU index"),
    ("[trainers.unknown]\ninstall_dir = '/x'\n", "unknown trainer"),
    ("[trainers.musubi_tuner]\ncommand = 'rm -rf /'\n", "only install_dir and python"),
    ("data_root = [\n", "not valid TOML"),
])
def test_bad_settings_files_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "settings.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(path)


def test_python_discovery_finds_venvs_inside_the_checkout(tmp_path):
    python = tmp_path / "musubi" / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    (tmp_path / "musubi" / ".venv" / "bin").mkdir(parents=True)  # a folder without an interpreter
    assert str(python) in discover_pythons(str(tmp_path / "musubi"))
    assert discover_pythons(str(tmp_path / "nowhere")) == [] or all("nowhere" not in p for p in
                                                                    discover_pythons(str(tmp_path / "nowhere")))
