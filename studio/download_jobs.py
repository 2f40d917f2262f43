"""Download jobs: a download runs in its own process and reports through a JSON file under the studio home.

The GUI starts ``python -m studio.download_jobs <job.json> --settings <file>`` and only ever reads the job file,
so a page reload, a second browser or a restarted GUI all see the same progress, and a slow browser cannot slow
the transfer. The CLI runs the same :func:`run_job` in the foreground and writes the same file, so CLI downloads
show up in the GUI too. Cancel = SIGTERM to the recorded process (checked by its start time, so a reused pid is
never signalled); the worker turns it into DownloadCancelled, keeps the partial files and records "cancelled".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from studio.atomic import write_text_atomic
from studio.catalogue import ModelSet, get_set, load_catalogue
from studio.downloads import DownloadCancelled, DownloadError, Progress, download, plan_download
from studio.settings import Settings, load_settings, studio_home

ACTIVE = ("planning", "running")
FINISHED = ("done", "failed", "cancelled", "interrupted")
WRITE_INTERVAL_S = 0.5
STARTUP_GRACE_S = 60.0
KEEP_FINISHED_JOBS = 50
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class FileState:
    path: str
    size: int
    done: int = 0


@dataclass
class DownloadJob:
    job_id: str
    set_id: str
    source: str
    endpoint: str = ""
    status: str = "planning"
    message: str = ""
    repo: str = ""
    revision: str = ""
    commit: str = ""
    target_dir: str = ""
    total_bytes: int = 0
    done_bytes: int = 0
    current_file: str = ""
    files: list[FileState] = field(default_factory=list)
    bytes_per_s: float = 0.0
    pid: int = 0
    pid_started: float = 0.0  # psutil create_time of pid: guards against signalling a reused pid
    created: float = 0.0
    updated: float = 0.0

    @property
    def fraction(self) -> float:
        return self.done_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def eta_s(self) -> float:
        return (self.total_bytes - self.done_bytes) / self.bytes_per_s if self.bytes_per_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DownloadJob:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        known["files"] = [FileState(**f) for f in raw.get("files", [])]
        return cls(**known)


def jobs_dir() -> Path:
    return studio_home() / "downloads"


def job_path(job_id: str) -> Path:
    return jobs_dir() / f"{job_id}.json"


def save_job(job: DownloadJob) -> None:
    job.updated = time.time()
    write_text_atomic(job_path(job.job_id), json.dumps(job.to_dict(), indent=1))


def load_job(job_id: str) -> DownloadJob:
    return DownloadJob.from_dict(json.loads(job_path(job_id).read_text(encoding="utf-8")))


def process_alive(pid: int, started: float) -> bool:
    try:
        process = psutil.Process(pid)
        return process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False


def list_jobs(limit: int = 20) -> list[DownloadJob]:
    """Newest first. A job whose process died without reporting (killed, machine reboot) reads as interrupted."""
    exited = {job_id for job_id, child in _CHILDREN.items() if child.poll() is not None}
    for job_id in exited:
        del _CHILDREN[job_id]  # poll() reaped it: no zombie is left behind
    jobs = []
    for path in sorted(jobs_dir().glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[:limit]:
        try:
            job = DownloadJob.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue
        if job.status in ACTIVE and (job.job_id in exited or not _still_running(job)):
            job.status = "interrupted"
            job.message = "the download process ended without finishing; start it again to resume"
        jobs.append(job)
    return jobs


def _still_running(job: DownloadJob) -> bool:
    if job.pid:
        return process_alive(job.pid, job.pid_started)
    # The worker records its own pid a moment after it starts; until then trust a child we started, or a job
    # created moments ago (by a CLI run or another GUI process).
    return job.job_id in _CHILDREN or time.time() - job.created < STARTUP_GRACE_S


def active_job_for(model_set: ModelSet) -> DownloadJob | None:
    """A running job for this set or for any set writing into the same folder (their .part files would clash)."""
    catalogue = load_catalogue()
    for job in list_jobs(limit=200):
        other = catalogue.get(job.set_id)
        if job.status in ACTIVE and other is not None and (other.id == model_set.id or other.target == model_set.target):
            return job
    return None


def new_job(model_set: ModelSet, *, source: str, endpoint: str = "") -> DownloadJob:
    job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{model_set.id}-{uuid.uuid4().hex[:6]}"
    job = DownloadJob(job_id, model_set.id, source, endpoint, created=time.time())
    save_job(job)
    _prune_finished(KEEP_FINISHED_JOBS)
    return job


def _prune_finished(keep: int) -> None:
    """Forget all but the newest ``keep`` finished jobs (their files on disk are untouched)."""
    finished = [j for j in list_jobs(limit=10_000) if j.status in FINISHED and j.status != "interrupted"]
    for job in finished[keep:]:
        for suffix in (".json", ".log"):
            (jobs_dir() / f"{job.job_id}{suffix}").unlink(missing_ok=True)


# Running a job (worker process or CLI foreground) ------------------------------------------------------------


class _Reporter:
    """Turns per-chunk progress into at most two job-file writes per second, with a smoothed speed."""

    def __init__(self, job: DownloadJob, echo: Callable[[DownloadJob], None] | None = None) -> None:
        self.job = job
        self._echo = echo
        self._last_write = 0.0
        self._speed_mark = (time.monotonic(), job.done_bytes)
        self._lock = threading.Lock()

    def __call__(self, progress: Progress) -> None:
        with self._lock:
            job = self.job
            job.done_bytes, job.current_file = progress.done, progress.path
            for state in job.files:
                if state.path == progress.path:
                    state.done = progress.file_done
            now = time.monotonic()
            if now - self._last_write >= WRITE_INTERVAL_S or progress.path == "":
                mark_time, mark_bytes = self._speed_mark
                if now > mark_time:
                    rate = (job.done_bytes - mark_bytes) / (now - mark_time)
                    job.bytes_per_s = rate if job.bytes_per_s == 0 else 0.7 * job.bytes_per_s + 0.3 * rate
                self._speed_mark = (now, job.done_bytes)
                self._last_write = now
                save_job(job)
                if self._echo is not None:
                    self._echo(job)


def run_job(job: DownloadJob, settings: Settings, *, catalogue: dict[str, ModelSet] | None = None,
            free_space: Any = None, echo: Callable[[DownloadJob], None] | None = None,
            stop: threading.Event | None = None) -> DownloadJob:
    """Plan (disk check included) and download, recording everything in the job file. Never raises for the
    expected failures: the job's status and message say what happened."""
    job.pid = os.getpid()
    job.pid_started = psutil.Process(job.pid).create_time()
    job.status, job.message = "planning", "listing the repository"
    save_job(job)
    stop = stop or threading.Event()  # set by SIGTERM (worker, CLI) or by the caller (threads in tests)
    restore = _install_cancel_handler(stop)
    try:
        model_set = get_set(job.set_id, catalogue)
        kwargs = {"free_space": free_space} if free_space else {}
        plan = plan_download(model_set, settings, source=job.source, endpoint=job.endpoint, **kwargs)
        job.repo, job.revision, job.commit, job.target_dir = plan.repo, plan.revision, plan.commit, str(plan.target_dir)
        job.endpoint, job.total_bytes = plan.endpoint, plan.total_bytes
        job.files = [FileState(f.path, f.size, plan.on_disk.get(f.path, 0)) for f in plan.files]
        job.done_bytes = sum(plan.on_disk.values())
        job.status, job.message = "running", f"{len(plan.files)} files into {plan.target_dir}"
        save_job(job)
        download(plan, settings, on_progress=_Reporter(job, echo), should_stop=stop.is_set)
        job.status, job.message, job.current_file = "done", f"downloaded to {plan.target_dir}", ""
    except (DownloadCancelled, KeyboardInterrupt):
        job.status, job.message = "cancelled", "cancelled; partial files were kept, start again to resume"
    except (DownloadError, LookupError, ValueError, OSError) as exc:
        job.status, job.message = "failed", str(exc)
    finally:
        restore()
        job.bytes_per_s = 0.0
        save_job(job)
    return job


def _install_cancel_handler(stop: threading.Event) -> Any:
    """SIGTERM -> DownloadCancelled raised in the main thread (aborts even a stalled read). No-op off the main
    thread (tests run jobs in threads and cancel through ``stop``)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return lambda: None

    def on_term(signum: int, frame: Any) -> None:
        stop.set()
        raise DownloadCancelled("cancelled")

    previous = signal.signal(signal.SIGTERM, on_term)
    return lambda: signal.signal(signal.SIGTERM, previous)


# Starting and cancelling from the GUI --------------------------------------------------------------------------

_CHILDREN: dict[str, subprocess.Popen] = {}  # job id -> worker started by this process


def start_job_process(model_set: ModelSet, settings: Settings, *, source: str, endpoint: str = "") -> DownloadJob:
    """Start a detached worker for ``model_set`` and return its job (already saved)."""
    running = active_job_for(model_set)
    if running is not None:
        raise DownloadError(f"{running.set_id} is already downloading into the same folder (job {running.job_id}); "
                            "wait for it or cancel it first")
    job = new_job(model_set, source=source, endpoint=endpoint)
    argv = [sys.executable, "-m", "studio.download_jobs", str(job_path(job.job_id))]
    if settings.path:
        argv += ["--settings", settings.path]
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p))
    with open(jobs_dir() / f"{job.job_id}.log", "ab") as log:
        # A new session: the download survives a GUI restart and never receives the GUI's Ctrl-C.
        _CHILDREN[job.job_id] = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                                 stderr=subprocess.STDOUT, start_new_session=True)
    return job


def cancel_job(job_id: str) -> str:
    """Ask a running job to stop. Returns what happened, in words."""
    job = load_job(job_id)
    if job.status not in ACTIVE:
        return f"{job.set_id} is not running ({job.status})"
    if not job.pid or not process_alive(job.pid, job.pid_started):
        job.status, job.message = "interrupted", "the download process is gone; start again to resume"
        save_job(job)
        return f"{job.set_id}: the download process had already ended"
    os.kill(job.pid, signal.SIGTERM)
    return f"{job.set_id}: cancelling; partial files are kept"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download worker started by the GUI (one job file).")
    parser.add_argument("job_file")
    parser.add_argument("--settings", default=None)
    args = parser.parse_args(argv)
    job = DownloadJob.from_dict(json.loads(Path(args.job_file).read_text(encoding="utf-8")))
    job = run_job(job, load_settings(args.settings))
    return 0 if job.status == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
