"""Watchdog rules, failure reasons from logs, and the success decision (each with a triggering and a clean input)."""

from __future__ import annotations

import math
import os
import time

import pytest

from backends.base import OutputSpec
from studio.log_reasons import exit_code_text, failure_reason
from studio.outcome import CONTINUE, StepResult, evaluate
from studio.watchdog import Watchdog, WatchdogConfig


def step(n: int, loss: float | None, smooth: float | None = None) -> dict:
    return {"kind": "step", "step": n, "loss": loss, "smooth": smooth}


# NaN / divergence / stall -----------------------------------------------------------------------------


def test_nan_loss_raises_one_banner_with_a_hint_and_a_stop_when_asked():
    dog = Watchdog(WatchdogConfig(stop_on_nan=True), now=0)
    dog.observe(step(1, 0.1))
    assert dog.check(1, now=1) == []
    dog.observe(step(2, math.nan))
    dog.observe(step(3, math.nan))
    banners = dog.check(3, now=2)
    assert [(b.kind, b.level, b.step) for b in banners] == [("nan", "error", 2)]
    assert banners[0].message == "the loss became NaN at step 2" and "--split_attn" in banners[0].hint
    assert dog.stop_requested is banners[0]
    assert dog.check(4, now=3) == []  # reported once


def test_nan_without_stop_on_nan_only_reports():
    dog = Watchdog(WatchdogConfig(stop_on_nan=False), now=0)
    dog.observe(step(1, math.inf))
    assert [b.message for b in dog.check(1, now=1)] == ["the loss became infinite at step 1"]
    assert dog.stop_requested is None


def test_nan_patience_ignores_a_single_bad_step():
    dog = Watchdog(WatchdogConfig(nan_patience=2), now=0)
    dog.observe(step(1, math.nan))
    dog.observe(step(2, 0.1))
    dog.observe(step(3, math.nan))
    assert dog.check(3, now=1) == []
    dog.observe(step(4, math.nan))
    assert [b.step for b in dog.check(4, now=1)] == [4]


def test_tensorboard_loss_counts_too():
    dog = Watchdog(WatchdogConfig(), now=0)
    dog.observe({"kind": "tb", "tag": "lr/unet", "step": 5, "value": math.nan})
    assert dog.check(5, now=1) == []
    dog.observe({"kind": "tb", "tag": "loss/current", "step": 5, "value": math.nan})
    assert [b.kind for b in dog.check(5, now=1)] == ["nan"]


def test_divergence_after_warmup_only_and_above_the_factor():
    config = WatchdogConfig(divergence_factor=3.0, divergence_min_steps=10, stop_on_divergence=True)
    dog = Watchdog(config, now=0)
    dog.observe(step(1, 0.5, 0.5))
    dog.observe(step(2, 2.0, 2.0))  # 4x the best, but still in the noisy start
    assert dog.check(2, now=1) == []
    for n in range(3, 11):
        dog.observe(step(n, 0.2, 0.2))
    dog.observe(step(11, 0.55, 0.55))  # 2.75x: below the factor
    assert dog.check(11, now=1) == []
    dog.observe(step(12, 0.7, 0.7))
    banners = dog.check(12, now=1)
    assert [b.kind for b in banners] == ["divergence"] and "3.5x" in banners[0].message
    assert dog.stop_requested is banners[0]


def test_stall_after_minutes_without_output_and_cleared_by_activity():
    dog = Watchdog(WatchdogConfig(stall_minutes=10), now=0)
    assert dog.check(5, now=9 * 60) == []
    assert [b.kind for b in dog.check(5, now=11 * 60)] == ["stall"]
    dog.activity(now=12 * 60)
    assert dog.check(5, now=13 * 60) == []
    assert [b.message for b in dog.check(5, now=23 * 60)] == ["no output and no progress for 11 minutes"]
    assert dog.stop_requested is None  # a stall is never stopped automatically
    assert Watchdog(WatchdogConfig(stall_minutes=0), now=0).check(1, now=10**6) == []


def test_config_from_launch_options_ignores_unknown_keys():
    config = WatchdogConfig.from_dict({"stop_on_nan": True, "stall_minutes": 5, "user": "x", "gpu_ids": [0]})
    assert config.stop_on_nan and config.stall_minutes == 5


# Failure reasons --------------------------------------------------------------------------------------

REASON_CASES = [
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity", "cuda_oom",
     "CUDA out of memory (tried to allocate 2.00 GiB)"),
    ("RuntimeError: DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes", "cpu_oom",
     "out of system RAM"),
    ("[WARNING] Unable to find latest file at /out/20250212_07-06-40/latest, if trying to load latest", "no_latest",
     "/out/20250212_07-06-40/latest"),
    ("RuntimeError: Processed dataset was empty. Probably caused by rounding down", "dataset_empty", "batch_size"),
    ("ValueError: No training items found in the dataset. Please ensure", "no_items", "cache steps"),
    ("voluptuous.error.MultipleInvalid: extra keys not allowed @ data['datasets'][0]['foo']", "extra_keys",
     "['datasets'][0]['foo']"),
    ("WARNING: You have set a lot of resolutions in the dataset config.", "too_many_resolutions", "3 resolutions"),
    ("ValueError: fp8_scaled weights are not supported. Please use bf16", "fp8_scaled", "bf16"),
    ("ModuleNotFoundError: No module named 'triton.ops'", "triton_ops", "bitsandbytes"),
    ("OSError: CUDA_HOME does not exist, unable to compile CUDA op(s)", "cuda_home", "nvcc"),
    ("torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled cuda error", "nccl",
     "NCCL_P2P_DISABLE"),
    ("RuntimeError: The server socket has failed to listen on any local network address. port: 29500, "
     "useIpv6: 0, code: -98, name: EADDRINUSE, message: address already in use", "port_in_use", "port"),
    ("RuntimeError: CUDA error: an illegal memory access was encountered", "cuda_error",
     "CUDA error: an illegal memory access was encountered"),
    ("FileNotFoundError: [Errno 2] No such file or directory: '/models/dit.safetensors'", "missing_file",
     "'/models/dit.safetensors'"),
    ("ValueError: file not found / ファイルが見つかりません: /data/ds.toml", "missing_file", "/data/ds.toml"),
    ("ModuleNotFoundError: No module named 'deepspeed'", "missing_module", "'deepspeed'"),
    ("Killed", "killed", "killed by the system"),
]


@pytest.mark.parametrize(("line", "code", "fragment"), REASON_CASES)
def test_failure_reasons(line, code, fragment):
    found = failure_reason("loading model\nTraceback (most recent call last):\n  File x\n" + line + "\n")
    assert found is not None and found[0] == code and fragment in found[1]
    assert "\n" not in found[1]


def test_unknown_exception_falls_back_to_the_last_exception_line():
    assert failure_reason("Traceback:\nKeyError: 'latents_image'\n") == ("exception", "KeyError: 'latents_image'")


def test_launcher_wrapper_does_not_hide_the_trainers_exception():
    # accelerate launch re-raises the child's exit as CalledProcessError (seen on the H100 smoke run's CPU rehearsal)
    log = ("Traceback (most recent call last):\n  File \"wan_train_network.py\", line 9\n"
           "RuntimeError: mat1 and mat2 must have the same dtype\n"
           "Traceback (most recent call last):\n  File \"accelerate/commands/launch.py\"\n"
           "subprocess.CalledProcessError: Command '['python', '-m', 'musubi_tuner.wan_train_network']' returned "
           "non-zero exit status 1.\n")
    assert failure_reason(log) == ("exception", "RuntimeError: mat1 and mat2 must have the same dtype")
    only_wrapper = "subprocess.CalledProcessError: Command '['x']' returned non-zero exit status 1.\n"
    assert failure_reason(only_wrapper)[1].startswith("CalledProcessError")


@pytest.mark.parametrize("clean", [
    "steps: 1 loss: 0.0614 iter time (s): 531.283 samples/sec: 0.008\nTRAINING COMPLETE!\n",
    "INFO:musubi_tuner:memory use is fine\nsaving checkpoint: /out/x.safetensors\nmodel saved.\n",
    "the file was found\nKilled process 123 is not ours\n",
])
def test_clean_logs_have_no_failure_reason(clean):
    assert failure_reason(clean) is None


def test_exit_code_text():
    assert exit_code_text(None) == "exit status unknown"
    assert exit_code_text(-9) == "killed by SIGKILL"
    assert exit_code_text(137).startswith("exit code 137 (killed")
    assert exit_code_text(2) == "exit code 2"


# Outcome ----------------------------------------------------------------------------------------------


def spec_with_lora(tmp_path, *, make_file: bool, marker: str = "TRAINING COMPLETE!") -> OutputSpec:
    if make_file:
        (tmp_path / "run" / "epoch1").mkdir(parents=True)
        (tmp_path / "run" / "epoch1" / "adapter_model.safetensors").write_bytes(b"x")
    return OutputSpec(str(tmp_path), ("run/epoch*/adapter_model.safetensors",), (), (), marker)


def result(log: str, code: int | None = 0, *, last: bool = True, stop: str = "") -> StepResult:
    return StepResult("train", last, code, log, stop, "stopped" if stop else "")


def test_success_needs_the_marker_and_a_new_lora(tmp_path):
    spec = spec_with_lora(tmp_path, make_file=True)
    since = time.time() - 5
    ok = evaluate(result("TRAINING COMPLETE!\n"), backend="diffusion_pipe", spec=spec, started_at=since)
    assert (ok.status, ok.reason) == ("succeeded", "1 LoRA file(s) written")
    no_marker = evaluate(result("steps: 5\n"), backend="diffusion_pipe", spec=spec, started_at=since)
    assert no_marker.status == "failed" and no_marker.code == "no_marker"
    stale = evaluate(result("TRAINING COMPLETE!\n"), backend="diffusion_pipe", spec=spec, started_at=time.time() + 60)
    assert stale.status == "failed" and stale.code == "no_output"  # an old run's LoRA does not count


def test_exit_code_failure_uses_the_log_reason(tmp_path):
    spec = spec_with_lora(tmp_path, make_file=False)
    outcome = evaluate(result("torch.OutOfMemoryError: CUDA out of memory.\n", code=1), backend="diffusion_pipe",
                       spec=spec, started_at=0)
    assert outcome.status == "failed" and outcome.code == "cuda_oom" and outcome.reason.endswith("(exit code 1)")
    plain = evaluate(result("bye\n", code=3, last=False), backend="diffusion_pipe", spec=spec, started_at=0)
    assert (plain.status, plain.reason) == ("failed", "train failed (exit code 3)")


def test_intermediate_steps_continue_on_exit_zero(tmp_path):
    spec = spec_with_lora(tmp_path, make_file=False)
    assert evaluate(result("cached\n", last=False), backend="diffusion_pipe", spec=spec, started_at=0).status == CONTINUE
    unknown = evaluate(result("Traceback\nKeyError: 'clip'\n", code=None, last=False), backend="diffusion_pipe",
                       spec=spec, started_at=0)
    assert unknown.status == "failed" and unknown.reason == "KeyError: 'clip'"


def test_a_stop_is_a_stop_unless_the_run_had_already_finished(tmp_path):
    spec = spec_with_lora(tmp_path, make_file=True)
    stopped = evaluate(result("Manually quitting\n", stop="stopped by ann"), backend="diffusion_pipe", spec=spec,
                       started_at=time.time() - 5)
    assert (stopped.status, stopped.reason) == ("stopped", "stopped by ann")
    finished = evaluate(result("TRAINING COMPLETE!\n", code=-2, stop="stopped by ann"), backend="diffusion_pipe",
                        spec=spec, started_at=time.time() - 5)
    assert finished.status == "succeeded" and "killed by SIGINT" in finished.reason
    assert os.path.exists(tmp_path / "run" / "epoch1" / "adapter_model.safetensors")
