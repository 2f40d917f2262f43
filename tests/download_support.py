"""Shared pieces for the download tests: a tiny but realistic Wan repo, settings pointing at a temp models root."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pytest
from hub_server import HubServer
from weights_fixtures import write_safetensors, write_torch_zip

from studio import cli_download
from studio.settings import Settings, save_settings

WAN_REPO = "Wan-AI/Wan2.1-T2V-1.3B"
KIJAI_REPO = "Kijai/WanVideo_comfy"


def file_bytes(tmp: Path, name: str, writer, *args) -> bytes:
    path = writer(tmp / name, *args)
    return path.read_bytes()


def wan_repo_files(tmp: Path, *, vae_size: int = 300_000) -> dict[str, bytes]:
    """The official Wan2.1-T2V-1.3B layout with tiny stand-ins (the VAE size is chosen per test)."""
    scratch = tmp / "repo-src"
    return {
        "config.json": json.dumps({"_class_name": "WanModel", "model_type": "t2v", "dim": 1536, "in_dim": 16}).encode(),
        "Wan2.1_VAE.pth": os.urandom(vae_size),
        "diffusion_pytorch_model.safetensors": file_bytes(scratch, "dit.safetensors", write_safetensors,
                                                          {"blocks.0.cross_attn.k.weight": ("BF16", (8, 8))}),
        "models_t5_umt5-xxl-enc-bf16.pth": file_bytes(scratch, "t5.pth", write_torch_zip, ["BFloat16Storage"]),
        "google/umt5-xxl/tokenizer.json": b'{"version": "1.0"}',
        "google/umt5-xxl/spiece.model": os.urandom(2048),
        "google/umt5-xxl/special_tokens_map.json": b"{}",
        "LICENSE.txt": b"Apache-2.0",
        "README.md": b"# Wan2.1",
        "assets/logo.png": os.urandom(4096),
        "examples/i2v_input.JPG": os.urandom(4096),
    }


def kijai_repo_files(tmp: Path) -> dict[str, bytes]:
    t5 = file_bytes(tmp / "kijai-src", "t5.safetensors", write_safetensors, {"blocks.0.attn.k.weight": ("BF16", (8, 8))})
    return {"umt5-xxl-enc-bf16.safetensors": t5, "Wan2_1_VAE_bf16.safetensors": os.urandom(1024), "README.md": b"x"}


def models_settings(tmp: Path, **overrides: str) -> Settings:
    settings = Settings(models_root=str(tmp / "models"), presets_dir=str(tmp / "presets"), **overrides)
    settings.path = str(tmp / "settings.toml")
    save_settings(settings, settings.path)
    return settings


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s")


def serve(tmp: Path, **kwargs) -> HubServer:
    hub = HubServer(**kwargs)
    hub.add_repo(WAN_REPO, wan_repo_files(tmp))
    hub.add_repo(KIJAI_REPO, kijai_repo_files(tmp))
    return hub


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Run one of studio.cli_download's commands in-process, as `python app.py ...` would."""
    parser = argparse.ArgumentParser()
    cli_download.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out
