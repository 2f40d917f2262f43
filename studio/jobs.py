"""Job folders, their state file and the GPU queue.

``<runs_dir>/<job id>/`` holds everything about one run: ``preset.toml`` (snapshot), the plan's generated files,
``plan.json``, ``state.json``, ``log.txt``, ``metrics.jsonl`` and, while someone asks for it, ``stop.json``.

Who writes state.json: the job's supervisor while it lives; otherwise (queued jobs, a vanished supervisor) whoever
holds the queue lock. Viewers only read. A stop is *requested* through stop.json so a GUI never races the supervisor.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from studio.atomic import write_text_atomic

QUEUED, STARTING, RUNNING = "queued", "starting", "running"
SUCCEEDED, FAILED, STOPPED = "succeeded", "failed", "stopped"
ACTIVE = (QUEUED, STARTING, RUNNING)
FINISHED = (SUCCEEDED, FAILED, STOPPED)
STARTING_TIMEOUT_S = 60.0  # a supervisor that has not taken its job by then never started

STATE_FILE, PLAN_FILE, PRESET_FILE = "state.json", "plan.json", "preset.toml"
LOG_FILE, METRICS_FILE, STOP_FILE = "log.txt", "metrics.jsonl", "stop.json"
SUPERVISOR_LOCK, QUEUE_LOCK = "supervisor.lock", ".queue.lock"

_JOB_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[\w.+-]{1,60}-[0-9a-f]{4}$")


class JobError(ValueError):
    """A job that does not exist, or an action its status does not allow; the message says what to do."""


@dataclass
class JobState:
    job_id: str
    status: str = QUEUED
    preset_name: str = ""
    backend: str = ""
    architecture: str = ""
    gpu_ids: list[int] = field(default_factory=list)
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    started_by: str = ""
    stopped_by: str = ""
    reason: str = ""  # one line: why it failed or stopped
    reason_code: str = ""
    last_lines: list[str] = field(default_factory=list)  # end of the log when it failed
    supervisor_pid: int = 0
    supervisor_create_time: float = 0.0
    trainer_pid: int = 0
    trainer_create_time: float = 0.0
    spawned_at: float = 0.0
    attach_count: int = 0
    step_names: list[str] = field(default_factory=list)
    current_step: int = 0  # index into the plan's steps
    step_log_offsets: list[int] = field(default_factory=list)  # log.txt offset where each step began
    exit_codes: list[int | None] = field(default_factory=list)
    log_offset: int = 0  # log.txt bytes already parsed into metrics
    tb_offsets: dict[str, int] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    banners: list[dict[str, Any]] = field(default_factory=list)
    launch: dict[str, Any] = field(default_factory=dict)  # LaunchOptions as a dict
    expected: dict[str, int] = field(default_factory=dict)  # epochs / max_steps from the preset
    trainer_run_dir: str = ""  # diffusion-pipe's timestamped run folder (save_quit goes there)
    resume_from: str = ""
    resumed_from_job: str = ""
    master_port: int = 0
    updated_at: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def new_job_id(preset_name: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    slug = re.sub(r"[^\w.+-]+", "_", preset_name).strip("_.")[:40] or "job"
    return f"{stamp}-{slug}-{secrets.token_hex(2)}"


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise JobError(f"{job_id!r} is not a job id; list jobs with `python app.py jobs`")
    return job_id


def job_path(runs_dir: str | os.PathLike[str], job_id: str) -> Path:
    return Path(runs_dir) / check_job_id(job_id)


def read_state(job_dir: str | os.PathLike[str]) -> JobState:
    path = Path(job_dir) / STATE_FILE
    try:
        return JobState.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise JobError(f"no job in {job_dir} (state.json is missing)") from None
    except (ValueError, TypeError) as exc:
        raise JobError(f"{path} is damaged ({exc}); the job cannot be shown") from None


def write_state(job_dir: str | os.PathLike[str], state: JobState) -> None:
    state.updated_at = time.time()
    write_text_atomic(Path(job_dir) / STATE_FILE, json.dumps(state.to_dict(), indent=1, allow_nan=True))


def list_states(runs_dir: str | os.PathLike[str]) -> list[JobState]:
    """Every readable job under ``runs_dir``, oldest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    states = []
    for entry in root.iterdir():
        if entry.is_dir() and _JOB_ID.match(entry.name) and (entry / STATE_FILE).exists():
            with contextlib.suppress(JobError):
                states.append(read_state(entry))
    return sorted(states, key=lambda s: (s.created_at, s.job_id))


# Processes ---------------------------------------------------------------------------------------------


def process_create_time(pid: int) -> float:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0


def process_alive(pid: int, create_time: float) -> bool:
    """True when ``pid`` is the very process recorded (same start time: a reused pid is another process)."""
    import psutil

    if pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        if create_time and abs(process.create_time() - create_time) > 0.5:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


# Locks -------------------------------------------------------------------------------------------------


def _try_lock(handle: IO[bytes]) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def try_lock_file(path: str | os.PathLike[str]) -> IO[bytes] | None:
    """An exclusive lock held until the returned handle is closed (or the process dies), or None if taken."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+b")  # noqa: SIM115 - the handle *is* the lock and outlives this function
    if _try_lock(handle):
        return handle
    handle.close()
    return None


@contextlib.contextmanager
def queue_lock(runs_dir: str | os.PathLike[str], timeout_s: float = 30.0) -> Iterator[None]:
    """Serialises queue decisions (start, reconcile, stop of a queued job) across GUIs, CLIs and supervisors."""
    deadline = time.monotonic() + timeout_s
    path = Path(runs_dir) / QUEUE_LOCK
    while True:
        handle = try_lock_file(path)
        if handle is not None:
            break
        if time.monotonic() > deadline:
            raise JobError(f"the job queue in {runs_dir} stayed locked for {timeout_s:.0f} s; is a supervisor hung?")
        time.sleep(0.05)
    try:
        yield
    finally:
        handle.close()


# Stop requests -----------------------------------------------------------------------------------------


@dataclass
class StopRequest:
    user: str = "local"
    reason: str = "stopped by user"
    force: bool = False  # skip the graceful stage (SIGTERM at once)
    time: float = field(default_factory=time.time)


def request_stop(job_dir: str | os.PathLike[str], request: StopRequest) -> None:
    write_text_atomic(Path(job_dir) / STOP_FILE, json.dumps(asdict(request)))


def read_stop_request(job_dir: str | os.PathLike[str]) -> StopRequest | None:
    try:
        data = json.loads((Path(job_dir) / STOP_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    known = {f.name for f in fields(StopRequest)}
    return StopRequest(**{k: v for k, v in data.items() if k in known})


# Queue -------------------------------------------------------------------------------------------------


def gpus_overlap(a: list[int], b: list[int]) -> bool:
    return bool(set(a) & set(b))


def queue_position(states: list[JobState], job_id: str) -> int:
    """1 = next to start on its GPUs; 0 = not queued."""
    target = next((s for s in states if s.job_id == job_id), None)
    if target is None or target.status != QUEUED:
        return 0
    ahead = [s for s in states if s.status == QUEUED and s.created_at <= target.created_at
             and s.job_id != job_id and gpus_overlap(s.gpu_ids, target.gpu_ids)]
    return len(ahead) + 1


def startable(states: list[JobState]) -> list[JobState]:
    """Queued jobs whose GPUs are free, first come first served (a job waits for earlier jobs on its GPUs)."""
    busy: set[int] = set()
    for s in states:
        if s.status in (STARTING, RUNNING):
            busy.update(s.gpu_ids)
    chosen = []
    for s in states:
        if s.status != QUEUED:
            continue
        if not busy & set(s.gpu_ids):
            chosen.append(s)
        busy.update(s.gpu_ids)  # later jobs on these GPUs wait behind this one either way
    return chosen
