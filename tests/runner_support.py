"""Helpers for runner tests: plans whose steps run tests/fixtures/fake_trainer.py, and waiting on job states."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

from backends import backend_fields
from backends.base import OutputSpec, Plan, Step
from studio import jobs, runner
from studio.jobs import JobState
from studio.presets import Preset, new_preset
from studio.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
FAKE = str(REPO / "tests" / "fixtures" / "fake_trainer.py")
QUICK_STOP = {"save_quit_s": 5.0, "interrupt_s": 1.0, "terminate_s": 1.0}


def settings(home: Path) -> Settings:
    return load_settings(home / "settings.toml")


def preset(backend: str = "musubi_tuner", name: str = "fake run", **values: object) -> Preset:
    result = new_preset(backend_fields(), backend, "wan2.1-t2v-1.3b", name)
    for dotted, value in values.items():
        section, key = dotted.split("__")
        result.values[section][key] = value
    return result


def fake_step(name: str, *args: str) -> Step:
    return Step(name, [sys.executable, FAKE, *args], "", {})


def musubi_spec(out: Path) -> OutputSpec:
    return OutputSpec(str(out), ("my_lora.safetensors", "my_lora-[0-9]*.safetensors"), ("my_lora*-state",), (),
                      "model saved.")


def dp_spec(out: Path, tensorboard: bool = False) -> OutputSpec:
    run = "[0-9]" * 8 + "_" + "-".join(["[0-9]" * 2] * 3)
    return OutputSpec(str(out), (f"{run}/epoch*/adapter_model.safetensors",), (f"{run}/global_step*",),
                      (run,) if tensorboard else (), "TRAINING COMPLETE!")


def submit(cfg: Settings, steps: list[Step], spec: OutputSpec, *, backend: str = "musubi_tuner",
           gpu_ids: list[int] | None = None, name: str = "fake run", **launch: object) -> JobState:
    def build(job_dir: str, options: object) -> Plan:
        return Plan(backend, "wan2.1-t2v-1.3b", job_dir, {}, steps, spec)

    options = runner.LaunchOptions(gpu_ids=gpu_ids or [], user="tester", **launch)  # type: ignore[arg-type]
    return runner.submit(build, preset=preset(backend, name), settings=cfg, launch=options)


def wait_for(cfg: Settings, job_id: str, statuses: tuple[str, ...] = jobs.FINISHED, timeout: float = 40.0,
             condition=None) -> JobState:
    deadline = time.monotonic() + timeout
    job_dir = Path(cfg.runs_dir) / job_id
    while time.monotonic() < deadline:
        state = jobs.read_state(job_dir)
        if state.status in statuses and (condition is None or condition(state)):
            return state
        time.sleep(0.1)
    log = (job_dir / "log.txt").read_text(errors="replace")[-3000:] if (job_dir / "log.txt").exists() else ""
    sup = (job_dir / "supervisor.log").read_text(errors="replace")[-3000:] if (job_dir / "supervisor.log").exists() else ""
    raise AssertionError(f"job {job_id} is {jobs.read_state(job_dir).status}, wanted {statuses}\n{log}\n{sup}")


def fake_python(folder: Path) -> Path:
    """A machine-settings "python" that runs the fake trainer on whatever argv a real backend builds."""
    path = folder / "fake-python"
    path.write_text(f"#!{sys.executable}\nimport runpy, sys\nsys.argv = [{FAKE!r}] + sys.argv[1:]\n"
                    f"runpy.run_path({FAKE!r}, run_name='__main__')\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def pids_alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if jobs.process_alive(pid, 0)]


def read_pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def env_opts(monkeypatch, text: str) -> None:
    monkeypatch.setenv("FAKE_TRAINER_OPTS", text)
    os.environ["FAKE_TRAINER_OPTS"] = text


def dp_preset(folder: Path) -> Preset:
    """A diffusion-pipe preset the real backend can plan (its paths need not hold real models)."""
    result = preset("diffusion_pipe", "dp resume")
    clips = folder / "clips"
    clips.mkdir(exist_ok=True)
    result.values["dataset"]["path"] = str(clips)
    result.values["model"]["dit"] = str(folder / "dit.safetensors")
    result.values["backend.diffusion_pipe"]["ckpt_path"] = str(folder / "official")
    result.values["output"]["dir"] = str(folder / "out")
    result.values["training"]["epochs"] = 2
    return result


def musubi_preset(folder: Path) -> Preset:
    """A musubi-tuner preset over one real 64x64 image with a caption (the backend scans the folder)."""
    from PIL import Image

    clips = folder / "clips"
    clips.mkdir(exist_ok=True)
    Image.new("RGB", (64, 64), (200, 10, 10)).save(clips / "red.png")
    (clips / "red.txt").write_text("a red square")
    result = preset("musubi_tuner", "musubi cache test")
    result.values["dataset"]["path"] = str(clips)
    for key in ("dit", "vae", "text_encoder"):
        result.values["model"][key] = str(folder / f"{key}.safetensors")
    result.values["output"]["dir"] = str(folder / "out")
    result.values["training"]["epochs"] = 2
    return result
