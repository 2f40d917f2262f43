"""Starting, queueing, stopping, resuming and re-finding jobs. No Gradio here: the GUI and the CLI call this.

The trainer never depends on the caller: each job is run by a detached supervisor process
(``python -m studio.supervisor <job dir>``) that survives the GUI and advances the queue itself when it finishes.
Callers only read job folders, write stop requests, and (under the queue lock) start supervisors.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backends.base import Plan, PlanOptions
from studio import jobs
from studio.jobs import JobError, JobState
from studio.logtail import last_lines
from studio.presets import Preset, dump_preset, parse_preset
from studio.processes import detached_kwargs
from studio.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_ATTACH = 3  # re-attach attempts for a job whose supervisor vanished, before it is marked failed
PORT_RANGE = range(29500, 29900)

PlanBuilder = Callable[[str, PlanOptions], Plan]  # (job dir, options) -> Plan


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


@dataclass
class LaunchOptions:
    """Choices made when pressing Start (not part of the preset)."""

    gpu_ids: list[int] = field(default_factory=list)  # empty: the preset's training.gpu_ids, else the default GPU
    user: str = ""
    stop_on_nan: bool = True  # a NaN run only burns GPU hours (musubi #26)
    stop_on_divergence: bool = False
    stall_minutes: float = 30.0
    resume_from: str = ""
    regenerate_cache: bool | None = None  # None: decided by studio.fingerprint when it is available
    stop_timeouts: dict[str, float] = field(default_factory=dict)  # StopTimeouts overrides (tests, slow disks)

    def watchdog(self) -> dict[str, Any]:
        return {"stop_on_nan": self.stop_on_nan, "stop_on_divergence": self.stop_on_divergence,
                "stall_minutes": self.stall_minutes}


def runs_dir(settings: Settings) -> Path:
    path = Path(settings.runs_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_gpu_ids(preset: Preset | None, settings: Settings, requested: list[int] | None) -> list[int]:
    """The GPUs a job occupies, as the backends resolve them (launch choice, preset, machine default)."""
    ids = list(requested or (preset.get("training.gpu_ids") if preset is not None else []) or [settings.default_gpu])
    return sorted(set(ids), key=ids.index)


def pick_master_port(states: list[JobState]) -> int:
    """A port no active job uses and nothing listens on (diffusion-pipe's default 29500 collides, #144)."""
    taken = {s.master_port for s in states if s.active}
    for port in PORT_RANGE:
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise JobError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1} for the trainer's rendezvous")


# Creating jobs -----------------------------------------------------------------------------------------


def preflight_errors(preset: Preset, settings: Settings) -> list[Any]:
    """Pre-flight errors (dataset scan, model files, VRAM, install) that block Start."""
    from studio.gpu import detect_gpus
    from studio.preflight import blocking, check

    return blocking(check(preset, settings, media=None, gpus=detect_gpus()))


def start_preset(preset: Preset, settings: Settings, launch: LaunchOptions, *, resumed_from_job: str = "") -> JobState:
    """Plan ``preset`` with its trainer and queue it (it starts at once when its GPUs are free)."""
    from backends import get_backend
    from studio.gpu import detect_gpus

    backend = get_backend(preset.backend)
    gpus = {g.index: g.name for g in detect_gpus()}
    cache = CacheCheck(stale=bool(launch.regenerate_cache))
    if launch.regenerate_cache is None:
        cache = check_cache(preset, settings)

    def build(job_dir: str, options: PlanOptions) -> Plan:
        options.gpu_names = [gpus.get(i, "") for i in options.gpu_ids]
        options.regenerate_cache = cache.stale
        options.resume_from = launch.resume_from
        plan = backend.plan(preset, settings, job_dir, options)
        if cache.media is not None:
            record = {"roots": settings.roots(), "media": [m.to_dict() for m in cache.media]}
            Path(job_dir, FINGERPRINT_FILE).write_text(json.dumps(record), encoding="utf-8")
        if cache.reason:
            _append_log(Path(job_dir), f"cache check: {cache.reason}")
        return plan

    return submit(build, preset=preset, settings=settings, launch=launch, resumed_from_job=resumed_from_job)


FINGERPRINT_FILE = "fingerprint_media.json"  # what to record as "cached" once the cache steps succeed


@dataclass
class CacheCheck:
    stale: bool = False
    reason: str = ""
    media: list[Any] | None = None


def check_cache(preset: Preset, settings: Settings) -> CacheCheck:
    """Ask studio.fingerprint whether the trainer caches are stale for this dataset and preset."""
    from studio import fingerprint, media
    from studio.fields import PresetError
    from studio.presets import resolve_path

    try:
        folder = resolve_path(preset.get("dataset.path"), settings.roots(), "dataset.path")
        infos = media.scan_folder(folder, probe_cache=media.default_probe_cache(folder),
                                  caption_extension=preset.get("dataset.caption_extension"))
    except (FileNotFoundError, NotADirectoryError, PresetError):
        return CacheCheck()  # pre-flight reports the folder; the trainer's own error follows otherwise
    status = fingerprint.cache_status(preset, infos, settings)
    return CacheCheck(status.stale, status.reason if status.stale else "", infos)


def submit(build: PlanBuilder, *, preset: Preset, settings: Settings, launch: LaunchOptions,
           resumed_from_job: str = "") -> JobState:
    """Create the job folder, write the plan into it and queue it. ``build`` makes the Plan for the folder."""
    root = runs_dir(settings)
    job_id = jobs.new_job_id(preset.name)
    job_dir = root / job_id
    job_dir.mkdir(parents=True)
    gpu_ids = resolve_gpu_ids(preset, settings, launch.gpu_ids)
    with jobs.queue_lock(root):
        port = pick_master_port(jobs.list_states(root))
        state = JobState(job_id=job_id, status=jobs.QUEUED, preset_name=preset.name, backend=preset.backend,
                         architecture=preset.architecture, gpu_ids=gpu_ids, created_at=time.time(),
                         started_by=launch.user or current_user(), master_port=port,
                         launch=asdict(launch), resume_from=launch.resume_from, resumed_from_job=resumed_from_job,
                         expected={"epochs": int(preset.get("training.epochs")),
                                   "max_steps": int(preset.get("training.max_steps"))})
        try:
            plan = build(str(job_dir), PlanOptions(gpu_ids=list(gpu_ids), master_port=port))
            plan.write_files()
        except Exception:
            _remove_job_dir(job_dir)
            raise
        state.step_names = [step.name for step in plan.steps]
        (job_dir / jobs.PRESET_FILE).write_text(dump_preset(preset), encoding="utf-8")
        (job_dir / jobs.PLAN_FILE).write_text(json.dumps(plan.to_dict(), indent=1), encoding="utf-8")
        jobs.write_state(job_dir, state)
        _advance_locked(root)
    return jobs.read_state(job_dir)


def _remove_job_dir(job_dir: Path) -> None:
    import shutil

    shutil.rmtree(job_dir, ignore_errors=True)


def _append_log(job_dir: Path, text: str) -> None:
    with open(job_dir / jobs.LOG_FILE, "a", encoding="utf-8") as log:
        log.write(f"[studio] {text}\n")


# The queue ---------------------------------------------------------------------------------------------

_spawned: list[subprocess.Popen] = []


def spawn_supervisor(job_dir: Path, *, attach: bool = False) -> int:
    """Start ``python -m studio.supervisor <job dir>`` detached (own session), output to supervisor.log."""
    _reap()
    argv = [sys.executable, "-m", "studio.supervisor", str(job_dir)] + (["--attach"] if attach else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    with open(job_dir / "supervisor.log", "ab") as out:
        process = subprocess.Popen(argv, cwd=str(REPO_ROOT), env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, **detached_kwargs())
    _spawned.append(process)
    return process.pid


def _reap() -> None:
    """Collect exited supervisors this process started (no zombies in a long-lived GUI)."""
    _spawned[:] = [p for p in _spawned if p.poll() is None]


def advance_queue(root: str | os.PathLike[str]) -> list[str]:
    """Start every queued job whose GPUs are free. Safe to call from anywhere, any time."""
    with jobs.queue_lock(root):
        return _advance_locked(Path(root))


def _advance_locked(root: Path) -> list[str]:
    started = []
    for state in jobs.startable(jobs.list_states(root)):
        job_dir = root / state.job_id
        state.status, state.spawned_at = jobs.STARTING, time.time()
        jobs.write_state(job_dir, state)
        spawn_supervisor(job_dir)
        started.append(state.job_id)
    return started


def reconcile(root: str | os.PathLike[str]) -> list[JobState]:
    """Re-find jobs after a restart: re-attach to trainers whose supervisor vanished, fail what cannot be saved,
    start what the queue allows. Returns every job, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    with jobs.queue_lock(root):
        _reap()
        now = time.time()
        for state in jobs.list_states(root):
            if state.status in (jobs.STARTING, jobs.RUNNING) and not _owner_alive(state):
                _recover(root / state.job_id, state, now)
        _advance_locked(root)
        return jobs.list_states(root)


def _owner_alive(state: JobState) -> bool:
    return jobs.process_alive(state.supervisor_pid, state.supervisor_create_time)


def _recover(job_dir: Path, state: JobState, now: float) -> None:
    took_over = state.supervisor_pid and state.supervisor_create_time >= state.spawned_at - 1.0
    if not took_over and now - state.spawned_at < jobs.STARTING_TIMEOUT_S:
        return  # a supervisor was started moments ago and has not taken over yet
    if state.status == jobs.STARTING and not state.supervisor_pid:
        tail = last_lines(job_dir / "supervisor.log", 20)
        _fail(job_dir, state, "the job's supervisor process did not start (see supervisor.log)", tail, now)
    elif state.attach_count >= MAX_ATTACH:
        _fail(job_dir, state, f"the supervisor process vanished {state.attach_count + 1} times",
              last_lines(job_dir / jobs.LOG_FILE, 20), now)
    else:
        state.attach_count += 1
        state.spawned_at = now
        jobs.write_state(job_dir, state)
        spawn_supervisor(job_dir, attach=True)


def _fail(job_dir: Path, state: JobState, reason: str, tail: list[str], now: float) -> None:
    state.status, state.reason, state.reason_code = jobs.FAILED, reason, "vanished"
    state.last_lines, state.finished_at = tail, now
    jobs.write_state(job_dir, state)


def job_state(settings: Settings, job_id: str) -> JobState:
    """One job's state; a job whose supervisor vanished is recovered first (never left "running")."""
    job_dir = jobs.job_path(settings.runs_dir, job_id)
    state = jobs.read_state(job_dir)
    if state.status in (jobs.STARTING, jobs.RUNNING) and not _owner_alive(state):
        reconcile(settings.runs_dir)
        state = jobs.read_state(job_dir)
    return state


# Stop and resume ---------------------------------------------------------------------------------------


def stop_job(settings: Settings, job_id: str, *, user: str = "", force: bool = False) -> JobState:
    """Ask a job to stop (graceful unless ``force``); a queued job simply leaves the queue."""
    root = runs_dir(settings)
    job_dir = jobs.job_path(root, job_id)
    user = user or current_user()
    with jobs.queue_lock(root):
        state = jobs.read_state(job_dir)
        if state.status == jobs.QUEUED:
            state.status, state.stopped_by, state.finished_at = jobs.STOPPED, user, time.time()
            state.reason, state.reason_code = f"removed from the queue by {user}", "stopped"
            jobs.write_state(job_dir, state)
            return state
        if not state.active:
            raise JobError(f"job {job_id} already {state.status}; nothing to stop")
        jobs.request_stop(job_dir, jobs.StopRequest(user=user, reason=f"stopped by {user}", force=force))
    if not _owner_alive(state):
        reconcile(root)
    return jobs.read_state(job_dir)


def load_job_preset(settings: Settings, job_id: str) -> Preset:
    from backends import backend_fields

    path = jobs.job_path(settings.runs_dir, job_id) / jobs.PRESET_FILE
    return parse_preset(path.read_bytes(), backend_fields(), str(path))


def load_plan(settings: Settings, job_id: str) -> dict[str, Any]:
    path = jobs.job_path(settings.runs_dir, job_id) / jobs.PLAN_FILE
    return json.loads(path.read_text(encoding="utf-8"))


def resume_points(settings: Settings, job_id: str) -> list[str]:
    from backends import get_backend

    preset = load_job_preset(settings, job_id)
    return get_backend(preset.backend).find_checkpoints(preset, settings)


def resume_job(settings: Settings, job_id: str, *, user: str = "", resume_from: str = "") -> JobState:
    """A new job continuing ``job_id`` from its newest checkpoint (or ``resume_from``)."""
    state = jobs.read_state(jobs.job_path(settings.runs_dir, job_id))
    if state.active:
        raise JobError(f"job {job_id} is {state.status}; stop it before resuming")
    points = resume_points(settings, job_id)
    if not points:
        raise JobError(
            f"job {job_id} left no checkpoint to resume from; its trainer saves resumable state only with "
            "training.save_state (musubi) or training.checkpoint_every_n_minutes (diffusion-pipe) set"
        )
    chosen = resume_from or points[-1]
    if chosen not in points:
        raise JobError(f"{chosen!r} is not a checkpoint of job {job_id}; choose one of: {', '.join(points)}")
    old = LaunchOptions(**{k: v for k, v in state.launch.items() if k in LaunchOptions.__dataclass_fields__})
    launch = LaunchOptions(**{**asdict(old), "user": user or current_user(), "resume_from": chosen,
                              "gpu_ids": state.gpu_ids, "regenerate_cache": False})
    return start_preset(load_job_preset(settings, job_id), settings, launch, resumed_from_job=job_id)


def list_jobs(settings: Settings) -> list[JobState]:
    """Every job, newest first, after recovering vanished ones."""
    return list(reversed(reconcile(settings.runs_dir)))


def command_preview(plan: Plan | dict[str, Any]) -> str:
    """The exact commands as copy-pasteable shell text (display only; the runner runs argv lists)."""
    from backends.base import Step
    from studio.config_service import format_steps

    steps = plan.steps if isinstance(plan, Plan) else [Step(**s) for s in plan["steps"]]
    return format_steps(steps)
