"""diffusion-pipe backend: the launch step (GPU choice, ports, cache and resume flags, NCCL env), the output layout,
resume points, and a real subprocess run of the planned argv against a fake trainer that replays diffusion-pipe's
file layout and console lines (utils/saver.py, train.py), including the save_quit graceful stop and a resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dp_support import BACKEND, INSTALL, PYTHON, fixed_settings, make_plan, preset_for

from backends.base import PlanError, PlanOptions, Step
from backends.diffusion_pipe import COMPLETION_MARKER, has_checkpoint, run_folders, save_quit_path
from studio.settings import TrainerInstall

LAUNCHER = [PYTHON, "-m", "deepspeed.launcher.runner"]


def argv_of(**options: object) -> list[str]:
    return make_plan(preset_for("wan2.1-t2v-1.3b"), **options).steps[0].argv


def launcher_args(argv: list[str]) -> list[str]:
    return argv[3:argv.index(f"{INSTALL}/train.py")]


def train_args(argv: list[str]) -> list[str]:
    return argv[argv.index(f"{INSTALL}/train.py") + 1:]


# --- the step -------------------------------------------------------------------------------------------------------


def test_single_gpu_step_uses_include_and_both_master_ports() -> None:
    step = make_plan(preset_for("wan2.1-t2v-1.3b"), master_port=29611, gpu_ids=[2]).steps[0]
    assert step.name == "train" and step.cwd == INSTALL
    assert step.argv[:3] == LAUNCHER
    assert launcher_args(step.argv) == ["--include", "localhost:2", "--master_port", "29611"]
    assert train_args(step.argv) == ["--deepspeed", "--config", "/runs/job/config.toml", "--master_port", "29611"]
    assert "--num_gpus" not in step.argv  # it would mean GPUs 0..N-1 whatever was chosen


def test_gpu_choice_order_options_then_preset_then_default() -> None:
    settings = fixed_settings(default_gpu=3)
    plain = preset_for("wan2.1-t2v-1.3b")
    assert "localhost:3" in make_plan(plain, settings=settings).steps[0].argv
    with_preset_gpus = preset_for("wan2.1-t2v-1.3b", training__gpu_ids=[1])
    assert "localhost:1" in make_plan(with_preset_gpus, settings=settings).steps[0].argv
    assert "localhost:0,1" in make_plan(with_preset_gpus, settings=settings, gpu_ids=[0, 1, 0]).steps[0].argv


def test_two_gpus_and_pipeline_stages() -> None:
    two = make_plan(preset_for("wan2.1-t2v-14b", backend__diffusion_pipe__pipeline_stages=2), gpu_ids=[0, 1])
    assert "localhost:0,1" in two.steps[0].argv and "GPUs 0, 1" in two.steps[0].description
    with pytest.raises(PlanError) as err:
        make_plan(preset_for("wan2.1-t2v-14b", backend__diffusion_pipe__pipeline_stages=2), gpu_ids=[0, 1, 2])
    assert err.value.field == "backend.diffusion_pipe.pipeline_stages"


@pytest.mark.parametrize(("option", "flag"), [
    ("regenerate_cache", "--regenerate_cache"), ("cache_only", "--cache_only"),
])
def test_cache_flags_only_when_asked(option: str, flag: str) -> None:
    assert train_args(argv_of(**{option: True}))[-1] == flag
    assert flag not in argv_of()


def test_master_port_outside_range_is_refused() -> None:
    with pytest.raises(PlanError, match="master port 80"):
        argv_of(master_port=80)


def test_rtx_40xx_gets_nccl_p2p_and_ib_off() -> None:
    env = make_plan(preset_for("wan2.1-t2v-1.3b"), gpu_names=["NVIDIA GeForce RTX 4090"]).steps[0].env
    assert env["NCCL_P2P_DISABLE"] == "1" and env["NCCL_IB_DISABLE"] == "1"
    other = make_plan(preset_for("wan2.1-t2v-1.3b"), gpu_names=["NVIDIA A100-SXM4-80GB"]).steps[0].env
    assert "NCCL_P2P_DISABLE" not in other and other["PYTHONUNBUFFERED"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in env  # the launcher ignores it next to --include


def test_unset_install_uses_plain_python_and_says_so() -> None:
    plan = make_plan(preset_for("wan2.1-t2v-1.3b"), settings=fixed_settings(trainers={}))
    step = plan.steps[0]
    assert step.argv[0] == "python" and "train.py" in step.argv and step.cwd == ""
    assert any("not set in Settings" in note for note in plan.notes)
    assert not any("not set in Settings" in note for note in make_plan(preset_for("wan2.1-t2v-1.3b")).notes)


def test_write_files_puts_both_tomls_in_the_run_folder(tmp_path: Path) -> None:
    plan = make_plan(preset_for("wan2.1-t2v-1.3b"), tmp_path / "job")
    written = plan.write_files()
    assert sorted(p.name for p in written) == ["config.toml", "dataset.toml"]
    assert f'dataset = "{tmp_path / "job" / "dataset.toml"}"' in (tmp_path / "job" / "config.toml").read_text()


# --- outputs and resume points ------------------------------------------------------------------------------------


def make_run(output_dir: Path, name: str, *, tag: str | None = "global_step10", tag_dir: bool = True) -> Path:
    run = output_dir / name
    (run / "epoch1").mkdir(parents=True)
    (run / "epoch1" / "adapter_model.safetensors").write_bytes(b"lora")
    (run / "events.out.tfevents.1.host.1.0").write_bytes(b"tb")
    if tag is not None:
        (run / "latest").write_text(tag)
        if tag_dir:
            (run / tag).mkdir()
    return run


def test_find_checkpoints_offers_only_runs_with_a_loadable_latest(tmp_path: Path) -> None:
    settings = fixed_settings(output_root=str(tmp_path))
    preset = preset_for("wan2.1-t2v-1.3b", output__name="style")
    out = tmp_path / "style"
    make_run(out, "20250301_10-00-00")
    make_run(out, "20250212_07-06-40")
    make_run(out, "20250302_00-00-00", tag=None)  # crashed before any checkpoint
    make_run(out, "20250303_00-00-00", tag="global_step99", tag_dir=False)  # latest names a missing folder
    make_run(out, "20250305_00-00-00", tag="..", tag_dir=False)  # not a DeepSpeed tag
    make_run(out, "backup")  # not a trainer run folder
    (out / "20250304_00-00-00").write_text("a stray file, not a folder")
    assert BACKEND.find_checkpoints(preset, settings) == ["20250212_07-06-40", "20250301_10-00-00"]
    assert [p.name for p in run_folders(out)][:2] == ["20250212_07-06-40", "20250301_10-00-00"]
    assert BACKEND.find_checkpoints(preset_for("wan2.1-t2v-1.3b", output__name="other"), settings) == []


def test_resume_passes_the_folder_name_and_refuses_runs_without_checkpoint(tmp_path: Path) -> None:
    settings = fixed_settings(output_root=str(tmp_path))
    preset = preset_for("wan2.1-t2v-1.3b")
    make_run(tmp_path / "my_lora", "20250212_07-06-40")
    make_run(tmp_path / "my_lora", "20250213_00-00-00", tag=None)
    argv = make_plan(preset, settings=settings, resume_from="20250212_07-06-40").steps[0].argv
    assert train_args(argv)[-2:] == ["--resume_from_checkpoint", "20250212_07-06-40"]
    with pytest.raises(PlanError, match="resumable runs: 20250212_07-06-40"):
        make_plan(preset, settings=settings, resume_from="20250213_00-00-00")
    with pytest.raises(PlanError, match="not a diffusion-pipe run folder"):
        make_plan(preset, settings=settings, resume_from="../20250212_07-06-40")
    assert "--resume_from_checkpoint" not in make_plan(preset, settings=settings).steps[0].argv


def test_output_spec_finds_loras_checkpoints_and_tensorboard(tmp_path: Path) -> None:
    settings = fixed_settings(output_root=str(tmp_path))
    run = make_run(tmp_path / "my_lora", "20250212_07-06-40")
    (run / "step200").mkdir()
    (run / "step200" / "adapter_model.safetensors").write_bytes(b"lora")
    make_run(tmp_path / "my_lora", "backup")
    spec = BACKEND.output_spec(preset_for("wan2.1-t2v-1.3b"), settings)
    assert spec.output_dir == str(tmp_path / "my_lora") and spec.completion_marker == "TRAINING COMPLETE!"
    found = BACKEND.find_outputs(spec)
    assert sorted(found.loras) == [str(run / "epoch1" / "adapter_model.safetensors"),
                                   str(run / "step200" / "adapter_model.safetensors")]
    assert found.checkpoints == [str(run / "global_step10")]
    assert found.tensorboard_dirs == [str(run)]


def test_save_quit_path_is_inside_the_run_folder() -> None:
    assert save_quit_path("/out/x/20250212_07-06-40") == Path("/out/x/20250212_07-06-40/save_quit")


# --- a real subprocess through the planned argv --------------------------------------------------------------------

FAKE_RUNNER = '''
"""Replays deepspeed.launcher.runner for one node: --include picks the GPUs, then `python -u script --local_rank=0`."""
import argparse, os, subprocess, sys
p = argparse.ArgumentParser()
p.add_argument("--include", default="")
p.add_argument("--num_gpus", type=int, default=-1)
p.add_argument("--master_port", type=int, default=29500)
p.add_argument("user_script")
p.add_argument("user_args", nargs=argparse.REMAINDER)
a = p.parse_args()
env = dict(os.environ, CUDA_VISIBLE_DEVICES=a.include.split(":", 1)[1], MASTER_PORT=str(a.master_port))
sys.exit(subprocess.call([sys.executable, "-u", a.user_script, "--local_rank=0", *a.user_args], env=env))
'''

FAKE_TRAIN = '''
"""Replays diffusion-pipe's train.py file layout and console lines; one epoch = one step, 0.05 s each."""
import argparse, json, os, sys, time
from datetime import datetime, timezone
import toml
p = argparse.ArgumentParser()
p.add_argument("--config"); p.add_argument("--local_rank", type=int, default=-1)
p.add_argument("--resume_from_checkpoint", nargs="?", const=True, default=None)
p.add_argument("--regenerate_cache", action="store_true"); p.add_argument("--cache_only", action="store_true")
p.add_argument("--master_port", type=int, default=29500); p.add_argument("--deepspeed", action="store_true")
args = p.parse_args()
config = toml.load(args.config)
os.environ["MASTER_PORT"] = str(args.master_port)
step = 0
if args.resume_from_checkpoint:
    run = os.path.join(config["output_dir"], args.resume_from_checkpoint)
    step = int(open(os.path.join(run, "latest")).read().strip()[len("global_step"):])
    print(f"Resuming training from checkpoint. Resuming at epoch: {step + 1}, step: {step + 1}")
else:
    run = os.path.join(config["output_dir"], datetime.now(timezone.utc).strftime("%Y%m%d_%H-%M-%S"))
os.makedirs(run, exist_ok=True)
with open(os.path.join(run, "launch.json"), "w") as f:
    json.dump({"gpus": os.environ["CUDA_VISIBLE_DEVICES"], "port": os.environ["MASTER_PORT"], "cwd": os.getcwd()}, f)
def checkpoint(step):
    os.makedirs(os.path.join(run, f"global_step{step}"), exist_ok=True)
    open(os.path.join(run, "latest"), "w").write(f"global_step{step}")
while step < config["epochs"]:
    step += 1
    time.sleep(0.05)
    print(f"steps: {step} loss: 0.1000 iter time (s): 0.050 samples/sec: 20.000", flush=True)
    if step % config["save_every_n_epochs"] == 0:
        print(f"Saving model to directory epoch{step}")
        os.makedirs(os.path.join(run, f"epoch{step}"), exist_ok=True)
        open(os.path.join(run, f"epoch{step}", "adapter_model.safetensors"), "wb").write(b"lora")
    if os.path.isfile(os.path.join(run, "save_quit")):
        checkpoint(step)
        os.remove(os.path.join(run, "save_quit"))
        print("Manually quitting")
        sys.exit()
checkpoint(step)
print("TRAINING COMPLETE!")
'''


@pytest.fixture
def fake_install(tmp_path: Path) -> Path:
    install = tmp_path / "diffusion-pipe"
    launcher = install / "deepspeed" / "launcher"
    launcher.mkdir(parents=True)
    for package in (install / "deepspeed", launcher):
        (package / "__init__.py").write_text("")
    (launcher / "runner.py").write_text(FAKE_RUNNER)
    (install / "train.py").write_text(FAKE_TRAIN)
    return install


def run_step(step: Step, *, stop_after_run_appears: Path | None = None) -> str:
    """Run like the runner does; optionally touch save_quit once the trainer's run folder exists."""
    proc = subprocess.Popen(step.argv, cwd=step.cwd, env=dict(os.environ, **step.env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if stop_after_run_appears is not None:
        deadline = time.monotonic() + 20
        while not run_folders(stop_after_run_appears) and time.monotonic() < deadline:
            time.sleep(0.02)
        save_quit_path(run_folders(stop_after_run_appears)[-1]).touch()
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    return output


def test_planned_argv_runs_stops_gracefully_and_resumes(tmp_path: Path, fake_install: Path) -> None:
    settings = fixed_settings(output_root=str(tmp_path / "out"),
                              trainers={"diffusion_pipe": TrainerInstall(str(fake_install), sys.executable)})
    preset = preset_for("wan2.1-t2v-1.3b", training__epochs=400, training__save_every_n_epochs=2)
    plan = BACKEND.plan(preset, settings, str(tmp_path / "job1"), PlanOptions(master_port=29655))
    plan.write_files()
    out = Path(plan.outputs.output_dir)
    output = run_step(plan.steps[0], stop_after_run_appears=out)
    assert "Manually quitting" in output and COMPLETION_MARKER not in output
    (run,) = run_folders(out)
    assert has_checkpoint(run) and not save_quit_path(run).exists()
    launch = json.loads((run / "launch.json").read_text())
    assert launch == {"gpus": "0", "port": "29655", "cwd": str(fake_install)}

    resume_points = BACKEND.find_checkpoints(preset, settings)
    assert resume_points == [run.name]
    stopped_at = int((run / "latest").read_text().removeprefix("global_step"))
    short = preset_for("wan2.1-t2v-1.3b", training__epochs=stopped_at + 3, training__save_every_n_epochs=2)
    options = PlanOptions(resume_from=run.name, master_port=29611)
    resumed = BACKEND.plan(short, settings, str(tmp_path / "job2"), options)
    resumed.write_files()
    output = run_step(resumed.steps[0])
    assert output.startswith("Resuming training from checkpoint") and COMPLETION_MARKER in output
    assert BACKEND.find_outputs(resumed.outputs).loras
    assert run_folders(out) == [run]
    assert json.loads((run / "launch.json").read_text())["port"] == "29611"

