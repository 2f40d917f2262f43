"""The detached process that runs one job: ``python -m studio.supervisor <job dir> [--attach]``.

It runs the plan's steps in order, each in its own process group with stdout+stderr going straight into log.txt
(so the trainer never blocks on, or dies with, anyone reading it), parses the log as it grows into metrics.jsonl,
keeps state.json current, applies the watchdog, carries out stop requests, decides the outcome and finally starts
the next queued job. ``--attach`` takes over a job whose previous supervisor vanished while its trainer ran on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import psutil

from studio import jobs, processes
from studio.jobs import JobState
from studio.logtail import last_lines, read_range
from studio.metrics import LineSplitter, MetricsTracker, Progress, tb_records
from studio.outcome import CONTINUE, Outcome, StepResult, evaluate, spec_from_dict
from studio.stopper import StopController, StopTimeouts
from studio.tbevents import EventFileError, EventFileReader, find_event_files
from studio.watchdog import Watchdog, WatchdogConfig

POLL_S = 0.2
STATE_EVERY_S = 1.0
TB_EVERY_S = 5.0
TREE_EVERY_S = 2.0
READ_CHUNK = 8 << 20


class _Trainer:
    """The running step: our child (exit code known) or, after a re-attach, a process we can only watch."""

    def __init__(self, popen: subprocess.Popen | None = None, pid: int = 0, create_time: float = 0.0) -> None:
        self.popen = popen
        self.pid = popen.pid if popen else pid
        self.create_time = create_time or jobs.process_create_time(self.pid)

    def poll(self) -> tuple[bool, int | None]:
        """(finished, exit code or None when unknown)."""
        if self.popen is not None:
            code = self.popen.poll()
            return code is not None, code
        return not jobs.process_alive(self.pid, self.create_time), None


class Supervisor:
    def __init__(self, job_dir: Path, state: JobState, plan: dict[str, Any]) -> None:
        self.dir = job_dir
        self.state = state
        self.plan = plan
        self.steps = plan["steps"]
        self.spec = spec_from_dict(plan.get("outputs"))
        self.log_path = job_dir / jobs.LOG_FILE
        self.watchdog = Watchdog(WatchdogConfig.from_dict(state.launch))
        self.timeouts = StopTimeouts(**state.launch.get("stop_timeouts", {}))
        self.tracker = MetricsTracker(plan["backend"], expected_epochs=state.expected.get("epochs", 0),
                                      max_steps=state.expected.get("max_steps", 0))
        self._restore_progress()
        self._tb_readers: dict[str, EventFileReader] = {}
        self._last_state_write = 0.0
        self._dirty = False

    # Steps -------------------------------------------------------------------------------------------

    def run(self, *, attach: bool) -> None:
        outcome = Outcome(CONTINUE)
        first = self.state.current_step
        for index in range(first, len(self.steps)):
            self.state.current_step = index
            if attach and index == first and jobs.process_alive(self.state.trainer_pid, self.state.trainer_create_time):
                self._note(f"re-attached to {self.steps[index]['name']} (pid {self.state.trainer_pid})")
                trainer = _Trainer(pid=self.state.trainer_pid, create_time=self.state.trainer_create_time)
            elif attach and index == first and self.state.trainer_pid:
                trainer = None  # it ended while nobody watched: judge it from its log and outputs
            elif index > first and (request := jobs.read_stop_request(self.dir)) is not None:
                self.state.stopped_by = request.user  # asked between two steps: do not start the next one
                outcome = Outcome(jobs.STOPPED, request.reason, "stopped")
                break
            else:
                trainer = self._start(index)
            outcome = self._follow(index, trainer)
            if outcome.status in (CONTINUE, jobs.SUCCEEDED):
                self._record_cache_fingerprint(index)
            if outcome.status != CONTINUE:
                break
        self._finish(outcome)

    def _start(self, index: int) -> _Trainer:
        step = self.steps[index]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        offsets = self.state.step_log_offsets
        offsets[index:] = [offset]
        self._note(f"===== step {index + 1}/{len(self.steps)}: {step['name']} =====")
        self._note("$ " + " ".join(shlex.quote(a) for a in step["argv"]))
        env = {**os.environ, **step.get("env", {}), "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        with open(self.log_path, "ab") as log:
            popen = subprocess.Popen(step["argv"], cwd=step.get("cwd") or str(self.dir), env=env,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     **processes.group_kwargs())
        trainer = _Trainer(popen)
        self.state.trainer_pid, self.state.trainer_create_time = trainer.pid, trainer.create_time
        progress = self.tracker.progress
        progress.phase, progress.phase_index, progress.phase_count = step["name"], index + 1, len(self.steps)
        progress.bar_desc, progress.bar_n, progress.bar_total = "", 0, 0
        self._write_state(force=True)
        return trainer

    def _follow(self, index: int, trainer: _Trainer | None) -> Outcome:
        splitter = LineSplitter()
        stopper: StopController | None = None
        seen: dict[int, psutil.Process] = {}
        next_tb = next_tree = 0.0
        code: int | None = None
        stop_reason = stop_code = ""
        self.log_path.touch(exist_ok=True)
        with open(self.log_path, "rb") as log:
            log.seek(self.state.log_offset)
            while True:
                finished, code = trainer.poll() if trainer else (True, None)
                self._consume(splitter, log.read(READ_CHUNK))
                now = time.monotonic()
                if now >= next_tb:
                    self._read_tensorboard()
                    next_tb = now + TB_EVERY_S
                if trainer and now >= next_tree:
                    seen.update({p.pid: p for p in processes.tree(trainer.pid)})
                    next_tree = now + TREE_EVERY_S
                if trainer and not finished and stopper is None:
                    request = self._stop_wanted()
                    if request is not None:
                        stop_reason, stop_code, force = request
                        stopper = StopController(trainer.pid, self._save_quit_file(index), self._stop_timeouts())
                        stopper.begin(force=force)
                        self._note(f"stopping: {stop_reason}")
                elif stopper is not None and not finished:
                    if (request := jobs.read_stop_request(self.dir)) is not None and request.force:
                        stopper.begin(force=True)
                    stopper.tick(list(seen.values()))
                self._write_state()
                if finished:
                    break
                time.sleep(POLL_S)
            self._consume(splitter, log.read(), final=True)
        self._read_tensorboard()  # the writer flushes its last values when the trainer exits
        self._check_watchdog()
        if trainer:
            leftovers = processes.kill_tree(trainer.pid, term_timeout=5.0, known=seen.values())
            if leftovers:
                self._note(f"processes that would not die: {leftovers}")
        codes = self.state.exit_codes
        codes[index:] = [None] * max(index - len(codes), 0) + [code]
        start = self.state.step_log_offsets[index] if index < len(self.state.step_log_offsets) else 0
        result = StepResult(self.steps[index]["name"], index == len(self.steps) - 1, code,
                            read_range(self.log_path, start), stop_reason, stop_code)
        return evaluate(result, backend=self.plan["backend"], spec=self.spec, started_at=self.state.started_at)

    def _record_cache_fingerprint(self, index: int) -> None:
        """Once the caches are built (the last cache step, or the single trainer step that caches first), record
        the dataset fingerprint measured at Start so the next run knows whether they are stale."""
        cache_steps = [i for i, step in enumerate(self.steps) if step["name"].startswith("cache")]
        if index != (cache_steps[-1] if cache_steps else len(self.steps) - 1):
            return
        from studio.runner import FINGERPRINT_FILE

        path = self.dir / FINGERPRINT_FILE
        if not path.exists():
            return
        from backends import backend_fields
        from studio.fingerprint import record_cache_fingerprint
        from studio.media import MediaInfo
        from studio.presets import parse_preset
        from studio.settings import Settings

        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            roots = record["roots"]
            preset = parse_preset((self.dir / jobs.PRESET_FILE).read_bytes(), backend_fields())
            media = [MediaInfo.from_dict(m) for m in record["media"]]
            where = record_cache_fingerprint(preset, media, Settings(data_root=roots["DATA"],
                                             models_root=roots["MODELS"], output_root=roots["OUTPUT"]))
            self._note(f"cache fingerprint recorded in {where}")
        except (OSError, ValueError, KeyError) as exc:
            self._note(f"cache fingerprint not recorded: {exc}")

    # Log, metrics, watchdog --------------------------------------------------------------------------

    def _consume(self, splitter: LineSplitter, data: bytes, *, final: bool = False) -> None:
        lines = splitter.feed(data)
        if final:
            lines += splitter.flush()
        if data:
            self.state.log_offset += len(data)
            self.watchdog.activity()
            self._dirty = True
        records = self.tracker.feed_lines(lines)
        if final:
            records += self.tracker.flush()
        self._record(records)
        self._check_watchdog()

    def _check_watchdog(self) -> None:
        for banner in self.watchdog.check(self.tracker.progress.step):
            self.state.banners.append(banner.to_dict())
            self._note(f"watchdog: {banner.message}")
            self._write_state(force=True)

    def _record(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        for record in records:
            self.watchdog.observe(record)
        with open(self.dir / jobs.METRICS_FILE, "a", encoding="utf-8") as out:
            out.write("".join(json.dumps(r) + "\n" for r in records))
        self._dirty = True

    def _read_tensorboard(self) -> None:
        if not self.spec or not self.spec.tensorboard_dirs:
            return
        import glob

        folders = [p for pattern in self.spec.tensorboard_dirs
                   for p in glob.glob(os.path.join(glob.escape(self.spec.output_dir), pattern))]
        for path in find_event_files(folders, newer_than=self.state.started_at - 1.0):
            key = str(path)
            reader = self._tb_readers.setdefault(key, EventFileReader(path, self.state.tb_offsets.get(key, 0)))
            try:
                scalars = reader.read_new()
            except EventFileError as exc:
                self._note(f"TensorBoard file skipped: {exc}")
                scalars, reader.offset = [], path.stat().st_size
            self.state.tb_offsets[key] = reader.offset
            self._record(tb_records(scalars))

    # Stopping ----------------------------------------------------------------------------------------

    def _stop_wanted(self) -> tuple[str, str, bool] | None:
        request = jobs.read_stop_request(self.dir)
        if request is not None:
            self.state.stopped_by = request.user
            return request.reason, "stopped", request.force
        banner = self.watchdog.stop_requested
        if banner is not None:
            self.state.stopped_by = "watchdog"
            return f"watchdog: {banner.message}", f"watchdog_{banner.kind}", False
        return None

    def _stop_timeouts(self) -> StopTimeouts:
        return StopTimeouts.for_speed(self.tracker.progress.s_per_it, self.timeouts)

    def _save_quit_file(self, index: int) -> Path | None:
        """diffusion-pipe's save_quit signal file in the run folder this step created (or resumed)."""
        if self.plan["backend"] != "diffusion_pipe" or not self.spec:
            return None
        from backends.diffusion_pipe import run_folders, save_quit_path

        if self.state.resume_from:
            return save_quit_path(Path(self.spec.output_dir) / self.state.resume_from)
        fresh = [p for p in run_folders(self.spec.output_dir) if p.stat().st_mtime >= self.state.started_at - 1]
        if not fresh:
            return None  # still caching: no run folder yet, SIGINT does it
        self.state.trainer_run_dir = str(fresh[-1])
        return save_quit_path(fresh[-1])

    # State -------------------------------------------------------------------------------------------

    def _restore_progress(self) -> None:
        """After a re-attach: continue the numbers where the vanished supervisor left them."""
        saved = self.state.progress
        if saved:
            known = {k: v for k, v in saved.items() if k in Progress.__dataclass_fields__}
            self.tracker.resume(Progress(**known), last_recorded_step(self.dir / jobs.METRICS_FILE))

    def _write_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (not self._dirty or now - self._last_state_write < STATE_EVERY_S):
            return
        self.state.progress = self.tracker.progress.to_dict()
        jobs.write_state(self.dir, self.state)
        self._last_state_write, self._dirty = now, False

    def _note(self, text: str) -> None:
        """A studio line in log.txt, so the log alone tells the story of the run."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.log_path, "ab") as log:
            log.write(f"\n[studio {stamp}] {text}\n".encode())

    def _finish(self, outcome: Outcome) -> None:
        status = jobs.SUCCEEDED if outcome.status == CONTINUE else outcome.status
        self.state.status, self.state.reason, self.state.reason_code = status, outcome.reason, outcome.code
        self.state.finished_at = time.time()
        if status == jobs.FAILED:
            self.state.last_lines = last_lines(self.log_path, 30)
        self._note(f"job {status}" + (f": {outcome.reason}" if outcome.reason else ""))
        self._write_state(force=True)


def last_recorded_step(metrics_path: Path) -> int:
    """The newest step already in metrics.jsonl (state.json may lag it by up to a second)."""
    for line in reversed(read_range(metrics_path, 0, max_bytes=64 * 1024).splitlines()):
        if '"kind": "step"' in line:
            with contextlib.suppress(ValueError, KeyError):
                return int(json.loads(line)["step"])
    return 0


def _take_over(job_dir: Path, *, attach: bool) -> JobState | None:
    """Claim the job under the queue lock; None when it is not (or no longer) ours to run."""
    with jobs.queue_lock(job_dir.parent):
        state = jobs.read_state(job_dir)
        expected = jobs.RUNNING if attach else jobs.STARTING
        if state.status != expected:
            return None
        if attach and jobs.process_alive(state.supervisor_pid, state.supervisor_create_time):
            return None
        state.status = jobs.RUNNING
        state.supervisor_pid = os.getpid()
        state.supervisor_create_time = jobs.process_create_time(os.getpid())
        state.started_at = state.started_at or time.time()
        request = jobs.read_stop_request(job_dir)
        if request is not None and not state.trainer_pid:
            state.status, state.stopped_by, state.finished_at = jobs.STOPPED, request.user, time.time()
            state.reason, state.reason_code = f"{request.reason} before it started", "stopped"
        jobs.write_state(job_dir, state)
        return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.supervisor", description=__doc__)
    parser.add_argument("job_dir")
    parser.add_argument("--attach", action="store_true", help="take over a job whose supervisor vanished")
    args = parser.parse_args(argv)
    job_dir = Path(args.job_dir).resolve()
    lock: IO[bytes] | None = jobs.try_lock_file(job_dir / jobs.SUPERVISOR_LOCK)
    if lock is None:
        print(f"another supervisor runs {job_dir}", file=sys.stderr)
        return 0
    try:
        state = _take_over(job_dir, attach=args.attach)
        if state is not None and state.status == jobs.RUNNING:
            plan = json.loads((job_dir / jobs.PLAN_FILE).read_text(encoding="utf-8"))
            supervisor = Supervisor(job_dir, state, plan)
            try:
                supervisor.run(attach=args.attach)
            except Exception as exc:  # a bug here must not leave the job "running" or its trainer orphaned
                if supervisor.state.trainer_pid:
                    processes.kill_tree(supervisor.state.trainer_pid)
                supervisor._finish(Outcome(jobs.FAILED, f"supervisor error: {exc!r}", "supervisor"))
                raise
    finally:
        lock.close()
        from studio.runner import advance_queue

        with contextlib.suppress(jobs.JobError):
            advance_queue(job_dir.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
