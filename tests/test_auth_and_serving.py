"""Remote use: listening beyond localhost or sharing requires credentials; passwords are stored hashed."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from studio.auth import AuthError, add_user, hash_password, load_auth_file, make_checker, verify_password
from studio.serve_options import add_serve_arguments, launch_kwargs, serve_options_from_args
from tests.conftest import REPO, start_app, stop_app


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


def test_hash_and_verify():
    encoded = hash_password("correct horse")
    assert encoded.startswith("pbkdf2_sha256$")
    assert "correct horse" not in encoded
    assert verify_password("correct horse", encoded)
    assert not verify_password("wrong horse!", encoded)
    assert not verify_password("x", "garbage")
    with pytest.raises(AuthError, match="too short"):
        hash_password("short")


@pytest.mark.parametrize("argv", [["--listen"], ["--share"], ["--host", "192.0.2.10"]])
def test_exposing_without_credentials_is_refused(argv, monkeypatch):
    monkeypatch.delenv("VLS_PASSWORD", raising=False)
    with pytest.raises(AuthError, match="add credentials"):
        serve_options_from_args(parse(*argv))


def test_localhost_needs_no_credentials():
    options = serve_options_from_args(parse())
    assert options.host == "127.0.0.1" and not options.exposed
    assert "auth" not in launch_kwargs(options, allowed_paths=[])


def test_listen_with_user_password_builds_an_auth_checker(monkeypatch):
    monkeypatch.setenv("VLS_PASSWORD", "teammate-secret")
    options = serve_options_from_args(parse("--listen", "--username", "ann"))
    kwargs = launch_kwargs(options, allowed_paths=["/runs"])
    assert kwargs["server_name"] == "0.0.0.0"
    assert kwargs["enable_monitoring"] is False
    check = kwargs["auth"]
    assert check("ann", "teammate-secret")
    assert not check("ann", "guess")
    assert not check("bob", "teammate-secret")


def test_share_passes_the_self_hosted_server(tmp_path):
    auth = tmp_path / "users.toml"
    add_user(auth, "ann", "teammate-secret")
    options = serve_options_from_args(parse("--share", "--auth-file", str(auth), "--share-server", "frp.example:7000"))
    kwargs = launch_kwargs(options, allowed_paths=[])
    assert kwargs["share"] is True and kwargs["share_server_address"] == "frp.example:7000"


def test_auth_file_is_private_and_refuses_plain_passwords(tmp_path):
    auth = tmp_path / "users.toml"
    add_user(auth, "ann", "teammate-secret")
    assert auth.stat().st_mode & 0o777 == 0o600
    assert make_checker(load_auth_file(auth))("ann", "teammate-secret")
    auth.write_text('[users]\nann = "plaintext"\n')
    with pytest.raises(AuthError, match="plain passwords are not accepted"):
        load_auth_file(auth)


def test_app_refuses_to_listen_without_credentials(studio_home):
    done = subprocess.run([sys.executable, "app.py", "--listen"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={"VIDEO_LORA_STUDIO_HOME": str(studio_home), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "add credentials" in done.stderr


def test_running_app_demands_a_login(studio_home, tmp_path):
    auth = tmp_path / "users.toml"
    add_user(auth, "ann", "teammate-secret")
    server = start_app(studio_home, "--auth-file", str(auth))
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(server.url + "/gradio_api/info", timeout=10)
        assert info.value.code == 401
        form = urllib.parse.urlencode({"username": "ann", "password": "wrong-password"}).encode()
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(server.url + "/login", data=form, timeout=10)
        assert bad.value.code in (400, 401)
        form = urllib.parse.urlencode({"username": "ann", "password": "teammate-secret"}).encode()
        with urllib.request.urlopen(server.url + "/login", data=form, timeout=10) as response:
            assert json.loads(response.read()) == {"success": True}
    finally:
        stop_app(server)


def test_share_link_failure_keeps_the_app_serving_locally(studio_home, tmp_path):
    """No tunnel can be made here (no frpc binary, outbound traffic sent to a dead proxy): the app must still start,
    keep its login, and say why there is no link, instead of crashing."""
    auth = tmp_path / "users.toml"
    add_user(auth, "ann", "teammate-secret")
    dead = "http://127.0.0.1:9"
    server = start_app(studio_home, "--share", "--auth-file", str(auth),
                       env={"HF_HOME": str(tmp_path / "hf"), "HTTPS_PROXY": dead, "HTTP_PROXY": dead,
                            "NO_PROXY": "127.0.0.1,localhost"})
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(server.url + "/gradio_api/info", timeout=10)
        assert info.value.code == 401
        deadline = time.monotonic() + 60
        while "Could not create share link" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "Could not create share link" in server.log()
    finally:
        stop_app(server)
