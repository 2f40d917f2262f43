"""The runner with real subprocesses: a detached supervisor runs tests/fixtures/fake_trainer.py steps.

Covers start, parsing into metrics.jsonl, success by completion marker + outputs, failure reasons, graceful and
forced stop (process tree gone), a killed supervisor re-attached, vanished jobs, the GPU queue, resume.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runner_support import (
    QUICK_STOP,
    REPO,
    dp_preset,
    dp_spec,
    fake_python,
    fake_step,
    musubi_preset,
    musubi_spec,
    pids_alive,
    read_pids,
    settings,
    submit,
    wait_for,
)

from studio import jobs, runner
from studio.jobs import JobError


def metrics(cfg, job_id: str) -> list[dict]:
    path = Path(cfg.runs_dir) / job_id / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_musubi_job_caches_trains_and_succeeds(studio_home, tmp_path):
    cfg = settings(studio_home)
    out = tmp_path / "out"
    steps = [fake_step("cache_latents", "--cache", "--steps", "4"),
             fake_step("train", "--steps", "12", "--epochs", "3", "--output-dir", str(out))]
    state = submit(cfg, steps, musubi_spec(out))
    assert state.status in (jobs.STARTING, jobs.RUNNING)
    assert state.started_by == "tester"
    done = wait_for(cfg, state.job_id)
    assert done.status == jobs.SUCCEEDED, done.reason
    assert done.reason == "3 LoRA file(s) written"
    assert done.exit_codes == [0, 0]
    assert done.progress["step"] == 12 and done.progress["total"] == 12 and done.progress["epoch"] == 3
    records = metrics(cfg, state.job_id)
    steps_seen = [r["step"] for r in records if r["kind"] == "step"]
    assert steps_seen == sorted(set(steps_seen)) and steps_seen[-1] == 12
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2, 3]
    log = (Path(cfg.runs_dir) / state.job_id / "log.txt").read_text()
    assert "avr_loss=" in log and "step 2/2: train" in log
    deadline = time.monotonic() + 10  # after its last state write the supervisor only advances the queue, then exits
    while jobs.process_alive(done.supervisor_pid, done.supervisor_create_time) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not jobs.process_alive(done.supervisor_pid, done.supervisor_create_time)


def test_diffusion_pipe_exit_zero_without_completion_is_a_failure(studio_home, tmp_path):
    cfg = settings(studio_home)
    out = tmp_path / "out"
    steps = [fake_step("train", "--style", "diffusion-pipe", "--steps", "4", "--output-dir", str(out),
                       "--no-complete")]
    done = wait_for(cfg, submit(cfg, steps, dp_spec(out), backend="diffusion_pipe").job_id)
    assert done.status == jobs.FAILED
    assert done.exit_codes == [0]
    assert "TRAINING COMPLETE!" in done.reason and done.reason_code == "no_marker"


def test_completion_without_lora_file_is_a_failure(studio_home, tmp_path):
    cfg = settings(studio_home)
    out = tmp_path / "out"
    steps = [fake_step("train", "--steps", "4", "--output-dir", str(out), "--no-output")]
    done = wait_for(cfg, submit(cfg, steps, musubi_spec(out)).job_id)
    assert done.status == jobs.FAILED and done.reason_code == "no_output"


def test_oom_becomes_a_one_line_reason(studio_home, tmp_path):
    cfg = settings(studio_home)
    out = tmp_path / "out"
    steps = [fake_step("train", "--steps", "20", "--oom-at", "3", "--output-dir", str(out))]
    done = wait_for(cfg, submit(cfg, steps, musubi_spec(out)).job_id)
    assert done.status == jobs.FAILED
    assert done.reason.startswith("CUDA out of memory (tried to allocate 2.00 GiB)")
    assert done.reason.endswith("(exit code 1)")
    assert any("OutOfMemoryError" in line for line in done.last_lines)


def test_nan_watchdog_stops_diffusion_pipe_through_save_quit(studio_home, tmp_path):
    cfg = settings(studio_home)
    out = tmp_path / "out"
    steps = [fake_step("train", "--style", "diffusion-pipe", "--steps", "200", "--step-time", "0.05",
                       "--nan-at", "5", "--output-dir", str(out))]
    state = submit(cfg, steps, dp_spec(out), backend="diffusion_pipe", stop_timeouts=QUICK_STOP)
    done = wait_for(cfg, state.job_id)
    assert done.status == jobs.STOPPED and done.stopped_by == "watchdog"
    assert done.reason == "watchdog: the loss became NaN at step 5" and done.reason_code == "watchdog_nan"
    assert [b["kind"] for b in done.banners] == ["nan"] and "learning rate" in done.banners[0]["hint"]
    log = (Path(cfg.runs_dir) / state.job_id / "log.txt").read_text()
    assert "Manually quitting" in log  # the trainer saved and quit itself: no signal was needed
    run_folder = next(out.iterdir())
    assert (run_folder / "latest").exists() and not (run_folder / "save_quit").exists()


def test_nan_is_only_reported_when_the_launch_does_not_ask_to_stop(studio_home, tmp_path):
    cfg = settings(studio_home)
    out = tmp_path / "out"
    steps = [fake_step("train", "--steps", "8", "--nan-at", "3", "--output-dir", str(out))]
    done = wait_for(cfg, submit(cfg, steps, musubi_spec(out), stop_on_nan=False).job_id)
    assert done.status == jobs.SUCCEEDED
    assert [b["kind"] for b in done.banners] == ["nan"]


def test_stop_escalates_and_leaves_no_process_behind(studio_home, tmp_path):
    cfg = settings(studio_home)
    pid_file = tmp_path / "pids"
    steps = [fake_step("train", "--steps", "10000", "--step-time", "0.05", "--ignore-sigint", "--child",
                       "--child-new-session", "--pid-file", str(pid_file))]
    state = submit(cfg, steps, musubi_spec(tmp_path / "out"), stop_timeouts=QUICK_STOP)
    wait_for(cfg, state.job_id, (jobs.RUNNING,), condition=lambda s: s.progress.get("step", 0) >= 2)
    pids = read_pids(pid_file)
    assert len(pids) == 2 and len(pids_alive(pids)) == 2  # trainer + a worker that left the process group
    runner.stop_job(cfg, state.job_id, user="alice")
    done = wait_for(cfg, state.job_id)
    assert done.status == jobs.STOPPED and done.stopped_by == "alice" and done.reason == "stopped by alice"
    assert pids_alive(pids) == []
    log = (Path(cfg.runs_dir) / state.job_id / "log.txt").read_text()
    assert "stopping: stopped by alice" in log


def test_sigint_is_enough_for_a_trainer_that_honours_it(studio_home, tmp_path):
    cfg = settings(studio_home)
    steps = [fake_step("train", "--steps", "10000", "--step-time", "0.05")]
    state = submit(cfg, steps, musubi_spec(tmp_path / "out"), stop_timeouts={"interrupt_s": 30.0})
    wait_for(cfg, state.job_id, (jobs.RUNNING,), condition=lambda s: s.progress.get("step", 0) >= 1)
    started = time.monotonic()
    runner.stop_job(cfg, state.job_id, user="bob")
    done = wait_for(cfg, state.job_id)
    assert done.status == jobs.STOPPED and time.monotonic() - started < 10
    assert "KeyboardInterrupt" in (Path(cfg.runs_dir) / state.job_id / "log.txt").read_text()


def test_killed_supervisor_is_reattached_and_the_run_completes(studio_home, tmp_path):
    cfg = settings(studio_home)
    out = tmp_path / "out"
    steps = [fake_step("train", "--style", "diffusion-pipe", "--steps", "40", "--epochs", "2", "--step-time",
                       "0.1", "--output-dir", str(out))]
    state = submit(cfg, steps, dp_spec(out), backend="diffusion_pipe")
    running = wait_for(cfg, state.job_id, (jobs.RUNNING,), condition=lambda s: s.progress.get("step", 0) >= 5)
    os.kill(running.supervisor_pid, signal.SIGKILL)
    time.sleep(0.3)
    assert jobs.process_alive(running.trainer_pid, running.trainer_create_time)  # the trainer did not notice
    again = runner.job_state(cfg, state.job_id)  # what any viewer does on its next look
    assert again.attach_count == 1 and again.status == jobs.RUNNING
    done = wait_for(cfg, state.job_id)
    assert done.status == jobs.SUCCEEDED, done.reason
    assert done.supervisor_pid != running.supervisor_pid
    steps_seen = [r["step"] for r in metrics(cfg, state.job_id) if r["kind"] == "step"]
    assert steps_seen == list(range(1, 41))  # nothing lost, nothing twice
    assert "re-attached to train" in (Path(cfg.runs_dir) / state.job_id / "log.txt").read_text()


def test_job_whose_processes_vanished_is_failed_with_the_last_log_lines(studio_home, tmp_path):
    cfg = settings(studio_home)
    steps = [fake_step("train", "--steps", "10000", "--step-time", "0.05")]
    state = submit(cfg, steps, musubi_spec(tmp_path / "out"))
    running = wait_for(cfg, state.job_id, (jobs.RUNNING,), condition=lambda s: s.progress.get("step", 0) >= 2)
    os.kill(running.supervisor_pid, signal.SIGKILL)
    os.killpg(running.trainer_pid, signal.SIGKILL)
    time.sleep(0.3)
    runner.reconcile(cfg.runs_dir)
    done = wait_for(cfg, state.job_id)
    assert done.status == jobs.FAILED
    assert "without its completion message" in done.reason
    assert any("avr_loss=" in line for line in done.last_lines)


def test_a_reused_pid_is_not_mistaken_for_the_supervisor(studio_home, tmp_path):
    me = os.getpid()
    assert jobs.process_alive(me, jobs.process_create_time(me))
    assert not jobs.process_alive(me, jobs.process_create_time(me) - 100.0)
    cfg = settings(studio_home)
    root = runner.runs_dir(cfg)
    job_id = jobs.new_job_id("ghost")
    (root / job_id).mkdir()
    # A "running" job whose recorded supervisor pid now belongs to another process (this test) and whose
    # attach attempts are used up: it must become failed, not stay running because the pid exists.
    ghost = jobs.JobState(job_id=job_id, status=jobs.RUNNING, supervisor_pid=me,
                          supervisor_create_time=jobs.process_create_time(me) - 100.0, attach_count=runner.MAX_ATTACH)
    jobs.write_state(root / job_id, ghost)
    (root / job_id / "log.txt").write_text("loading model\nSegmentation fault\n")
    assert runner.job_state(cfg, job_id).status == jobs.FAILED
    assert jobs.read_state(root / job_id).last_lines == ["loading model", "Segmentation fault"]


def test_jobs_on_one_gpu_queue_and_the_supervisor_starts_the_next(studio_home, tmp_path):
    cfg = settings(studio_home)
    first = submit(cfg, [fake_step("train", "--steps", "10", "--step-time", "0.1", "--output-dir",
                                   str(tmp_path / "a"))], musubi_spec(tmp_path / "a"), gpu_ids=[0], name="first")
    second = submit(cfg, [fake_step("train", "--steps", "4", "--output-dir", str(tmp_path / "b"))],
                    musubi_spec(tmp_path / "b"), gpu_ids=[0], name="second")
    other_gpu = submit(cfg, [fake_step("train", "--steps", "4", "--output-dir", str(tmp_path / "c"))],
                       musubi_spec(tmp_path / "c"), gpu_ids=[1], name="other")
    assert second.status == jobs.QUEUED
    assert jobs.queue_position(jobs.list_states(cfg.runs_dir), second.job_id) == 1
    assert other_gpu.status in (jobs.STARTING, jobs.RUNNING)  # a free GPU does not wait
    assert first.master_port != other_gpu.master_port
    # Nobody calls the runner from here on: the first job's supervisor starts the second.
    done_first = wait_for(cfg, first.job_id)
    done_second = wait_for(cfg, second.job_id)
    assert done_first.status == done_second.status == jobs.SUCCEEDED
    assert done_second.started_at >= done_first.finished_at


def test_stopping_a_queued_job_removes_it_from_the_queue(studio_home, tmp_path):
    cfg = settings(studio_home)
    first = submit(cfg, [fake_step("train", "--steps", "10000", "--step-time", "0.05")], musubi_spec(tmp_path),
                   gpu_ids=[0], stop_timeouts=QUICK_STOP)
    queued = submit(cfg, [fake_step("train", "--steps", "4")], musubi_spec(tmp_path), gpu_ids=[0])
    stopped = runner.stop_job(cfg, queued.job_id, user="carol")
    assert stopped.status == jobs.STOPPED and stopped.reason == "removed from the queue by carol"
    with pytest.raises(JobError, match="already stopped"):
        runner.stop_job(cfg, queued.job_id)
    runner.stop_job(cfg, first.job_id, force=True)
    assert wait_for(cfg, first.job_id).status == jobs.STOPPED
    assert jobs.read_state(Path(cfg.runs_dir) / queued.job_id).status == jobs.STOPPED  # it never started


def test_tensorboard_scalars_of_the_run_become_metrics(studio_home, tmp_path):
    cfg = settings(studio_home)
    out = tmp_path / "out"
    events = REPO / "tests/fixtures/tb/diffusion_pipe/20250212_07-06-40"
    source = next(events.iterdir())
    steps = [fake_step("train", "--style", "diffusion-pipe", "--steps", "24", "--step-time", "0.12",
                       "--output-dir", str(out), "--tb-events", str(source))]
    done = wait_for(cfg, submit(cfg, steps, dp_spec(out, tensorboard=True), backend="diffusion_pipe",
                                stop_on_nan=False).job_id)
    assert done.status == jobs.SUCCEEDED, done.reason
    tb = [r for r in metrics(cfg, done.job_id) if r["kind"] == "tb"]
    assert [r["step"] for r in tb if r["tag"] == "train/loss"] == list(range(1, 22))
    assert any(r["tag"] == "train/epoch_loss" for r in tb)
    assert [b["kind"] for b in done.banners] == ["nan"]  # the inf written in tensor form counts as non-finite


def test_resume_through_the_real_backend(studio_home, tmp_path, monkeypatch):
    from studio.presets import save_preset
    from studio.settings import save_settings
    cfg = settings(studio_home)
    cfg.trainers["diffusion_pipe"].python = str(fake_python(tmp_path))
    cfg.trainers["diffusion_pipe"].install_dir = str(tmp_path)
    save_settings(cfg)
    preset = dp_preset(tmp_path)
    save_preset(preset, cfg.presets_dir)
    monkeypatch.setenv("FAKE_TRAINER_OPTS", "--steps 400 --step-time 0.05")
    first = runner.start_preset(preset, cfg, runner.LaunchOptions(user="dana", stop_timeouts=QUICK_STOP))
    plan = runner.load_plan(cfg, first.job_id)
    assert plan["steps"][0]["argv"][1:3] == ["-m", "deepspeed.launcher.runner"]
    assert f"--master_port {first.master_port}" in " ".join(plan["steps"][0]["argv"])
    with pytest.raises(JobError, match="stop it before resuming"):
        runner.resume_job(cfg, first.job_id)
    wait_for(cfg, first.job_id, (jobs.RUNNING,), condition=lambda s: s.progress.get("step", 0) >= 3)
    runner.stop_job(cfg, first.job_id, user="dana")
    stopped = wait_for(cfg, first.job_id)
    assert stopped.status == jobs.STOPPED
    points = runner.resume_points(cfg, first.job_id)
    assert len(points) == 1
    monkeypatch.setenv("FAKE_TRAINER_OPTS", "--steps 10 --step-time 0.01")
    resumed = runner.resume_job(cfg, first.job_id, user="erin")
    assert resumed.resumed_from_job == first.job_id and resumed.resume_from == points[0]
    argv = runner.load_plan(cfg, resumed.job_id)["steps"][0]["argv"]
    assert argv[argv.index("--resume_from_checkpoint") + 1] == points[0]
    done = wait_for(cfg, resumed.job_id)
    assert done.status == jobs.SUCCEEDED, done.reason
    assert "Resuming training from checkpoint" in (Path(cfg.runs_dir) / resumed.job_id / "log.txt").read_text()


def test_resume_is_refused_when_no_checkpoint_exists(studio_home, tmp_path, monkeypatch):
    cfg = settings(studio_home)
    cfg.trainers["diffusion_pipe"].python = str(fake_python(tmp_path))
    cfg.trainers["diffusion_pipe"].install_dir = str(tmp_path)
    monkeypatch.setenv("FAKE_TRAINER_OPTS", "--steps 3 --no-output --exit-code 1")
    first = runner.start_preset(dp_preset(tmp_path), cfg, runner.LaunchOptions())
    assert wait_for(cfg, first.job_id).status == jobs.FAILED
    with pytest.raises(JobError, match="left no checkpoint to resume from"):
        runner.resume_job(cfg, first.job_id)


def test_a_new_process_finds_running_jobs(studio_home, tmp_path):
    """The GUI may restart at any time: a fresh process sees the job from runs/ alone."""
    cfg = settings(studio_home)
    state = submit(cfg, [fake_step("train", "--steps", "10000", "--step-time", "0.05")], musubi_spec(tmp_path),
                   stop_timeouts=QUICK_STOP)
    wait_for(cfg, state.job_id, (jobs.RUNNING,))
    listing = subprocess.run([sys.executable, str(REPO / "app.py"), "jobs", "--json"], capture_output=True,
                             text=True, cwd=REPO, env=dict(os.environ), timeout=60)
    assert listing.returncode == 0, listing.stderr
    found = {j["job_id"]: j for j in json.loads(listing.stdout)}
    assert found[state.job_id]["status"] == jobs.RUNNING
    runner.stop_job(cfg, state.job_id, force=True)
    assert wait_for(cfg, state.job_id).status == jobs.STOPPED


def test_stop_controller_tries_save_quit_then_signals(tmp_path):
    from studio.stopper import StopController, StopTimeouts

    code = ("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('ready', flush=True)\n"
            "while True: time.sleep(0.05)")
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE)
    try:
        assert process.stdout.readline() == b"ready\n"
        flag = tmp_path / "save_quit"
        controller = StopController(process.pid, flag, StopTimeouts(save_quit_s=10, interrupt_s=5, terminate_s=5))
        controller.begin(now=0.0)
        assert controller.actions == ["save_quit"] and flag.exists()
        controller.tick([], now=9.0)
        assert controller.actions == ["save_quit"]  # a diffusion-pipe step may take that long
        controller.tick([], now=10.0)
        controller.tick([], now=15.0)
        assert controller.actions == ["save_quit", "interrupt", "terminate"]
        assert process.wait(timeout=10) == -signal.SIGTERM
    finally:
        process.kill()
        process.wait()


def test_stop_timeouts_grow_with_slow_steps():
    from studio.stopper import StopTimeouts

    assert StopTimeouts.for_speed(531.283).save_quit_s == pytest.approx(3 * 531.283 + 120)
    assert StopTimeouts.for_speed(2.0).save_quit_s == 600.0 and StopTimeouts.for_speed(None).save_quit_s == 600.0


def test_gpu_sampler_shares_one_thread_between_viewers():
    import threading

    from studio.gpu import GpuSample, GpuSampler

    class Reader:
        def __init__(self) -> None:
            self.reads = 0
            self.closed = threading.Event()

        def open(self) -> bool:
            return True

        def read(self) -> list[GpuSample]:
            self.reads += 1
            return [GpuSample(0, "NVIDIA RTX 4090", 97, 20_000, 24_564, 71, 420.0, 450.0, time.time())]

        def close(self) -> None:
            self.closed.set()

    reader = Reader()
    sampler = GpuSampler(reader, interval=0.05, history=5, idle_stop=0.5)
    deadline = time.monotonic() + 5
    while not sampler.latest() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sampler.latest()[0].utilization_pct == 97
    threads = [t for t in threading.enumerate() if t.name == "gpu-sampler"]
    for _ in range(20):  # many viewers reading at once start nothing new
        sampler.latest()
    assert len([t for t in threading.enumerate() if t.name == "gpu-sampler"]) == len(threads)
    time.sleep(0.3)
    assert len(sampler.history()) == 5  # a ring buffer, not a growing list
    assert reader.closed.wait(timeout=5)  # nobody reads for idle_stop: the thread ends and releases NVML


def test_gpu_sampler_without_a_driver_is_empty():
    from studio.gpu import GpuSampler

    class NoDriver:
        opened = 0

        def open(self) -> bool:
            NoDriver.opened += 1
            return False

    sampler = GpuSampler(NoDriver(), interval=0.01)
    for _ in range(5):
        assert sampler.latest() == []
        time.sleep(0.02)
    assert NoDriver.opened == 1  # not retried on every viewer tick


def test_cache_fingerprint_is_recorded_and_a_changed_dataset_rebuilds_the_cache(studio_home, tmp_path, monkeypatch):
    cfg = settings(studio_home)
    cfg.trainers["musubi_tuner"].python = str(fake_python(tmp_path))
    cfg.trainers["musubi_tuner"].install_dir = str(tmp_path)
    monkeypatch.setenv("FAKE_TRAINER_OPTS", "--steps 4 --step-time 0.01")
    preset = musubi_preset(tmp_path)

    def run_once() -> tuple[list[str], str]:
        state = runner.start_preset(preset, cfg, runner.LaunchOptions())
        done = wait_for(cfg, state.job_id)
        assert done.status == jobs.SUCCEEDED, done.reason
        steps = runner.load_plan(cfg, state.job_id)["steps"]
        return steps[0]["argv"], (Path(cfg.runs_dir) / state.job_id / "log.txt").read_text()

    argv, log = run_once()
    assert "--skip_existing" in argv and "cache fingerprint recorded" in log
    assert list((tmp_path / "clips" / "cache").glob("studio_fingerprint_musubi_tuner_*.json"))
    (tmp_path / "clips" / "cache" / "musubi_wan").mkdir(parents=True, exist_ok=True)  # the trainer's cache
    argv, log = run_once()
    assert "--skip_existing" in argv and "cache check:" not in log  # unchanged: the cache is reused
    (tmp_path / "clips" / "red.txt").write_text("a crimson square")
    argv, log = run_once()
    assert "--skip_existing" not in argv and "cache check:" in log  # a caption changed: rebuilt


def test_workers_left_behind_by_a_finished_trainer_are_ended(studio_home, tmp_path):
    cfg = settings(studio_home)
    out, pid_file = tmp_path / "out", tmp_path / "pids"
    steps = [fake_step("train", "--steps", "4", "--output-dir", str(out), "--child", "--pid-file", str(pid_file))]
    done = wait_for(cfg, submit(cfg, steps, musubi_spec(out)).job_id)
    assert done.status == jobs.SUCCEEDED
    pids = read_pids(pid_file)
    assert len(pids) == 2 and pids_alive(pids) == []  # the worker would otherwise hold the GPU forever
