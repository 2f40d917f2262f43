"""Run a planned preprocessing job: ffmpeg processes in parallel, progress, cancel, and a report.

Cancel kills the running ffmpeg processes (their temp folders are removed) and starts no new ones; files that
finished before stay in the output folder and are listed in the report.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from studio.atomic import write_text_atomic
from studio.media import MediaInfo
from studio.preprocess import JobPlan, PreprocessOptions, Task, plan_job

Progress = Callable[[int, int, str], None]  # (files done, files total, what just happened)


@dataclass
class FileResult:
    source: str
    outputs: list[str]
    ok: bool
    message: str = ""


@dataclass
class PreprocessReport:
    output_dir: str
    results: list[FileResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def outputs(self) -> list[str]:
        return [o for r in self.results for o in r.outputs]

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        done = sum(1 for r in self.results if r.ok)
        text = (f"{done} file(s) processed into {len(self.outputs)} output(s) in {self.output_dir} "
                f"({self.seconds:.1f} s); {len(self.failed)} failed, {len(self.skipped)} skipped")
        return text + (" - cancelled" if self.cancelled else "")


class PreprocessRun:
    """One job. ``run()`` blocks; ``cancel()`` may be called from any thread (the GUI's Cancel button)."""

    def __init__(self, plan: JobPlan, options: PreprocessOptions, *, workers: int | None = None) -> None:
        self.plan = plan
        self.options = options
        self.workers = workers or max(1, min(8, os.cpu_count() or 1))
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()

    def cancel(self) -> None:
        self._cancel.set()
        with self._lock:
            for process in list(self._running):
                with contextlib.suppress(ProcessLookupError):
                    process.kill()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self, progress: Progress | None = None) -> PreprocessReport:
        started = time.monotonic()
        report = PreprocessReport(self.plan.output_dir, skipped=list(self.plan.skipped))
        Path(self.plan.output_dir).mkdir(parents=True, exist_ok=True)
        total, done = len(self.plan.tasks), 0
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ffmpeg") as pool:
            for result in pool.map(self._run_task, self.plan.tasks):
                report.results.append(result)
                done += 1
                if progress:
                    progress(done, total, f"{Path(result.source).name}: {result.message or 'done'}")
        shutil.rmtree(Path(self.plan.output_dir) / ".studio-partial", ignore_errors=True)
        report.cancelled = self.cancelled
        report.seconds = time.monotonic() - started
        return report

    def _run_task(self, task: Task) -> FileResult:
        if self.cancelled:
            return FileResult(task.source, [], False, "cancelled before start")
        work = Path(task.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock:
                if self.cancelled:
                    return FileResult(task.source, [], False, "cancelled before start")
                process = subprocess.Popen(task.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                self._running.add(process)
            _out, err = process.communicate()
            with self._lock:
                self._running.discard(process)
            if self.cancelled:
                return FileResult(task.source, [], False, "cancelled")
            if process.returncode != 0:
                return FileResult(task.source, [], False, _ffmpeg_error(err))
            outputs = self._publish(task, work)
            if not outputs:
                return FileResult(task.source, [], False, "ffmpeg produced no output")
            return FileResult(task.source, outputs, True, task.note)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _publish(self, task: Task, work: Path) -> list[str]:
        """Move finished files from the temp folder into the output folder, each with its caption copy."""
        outputs = []
        for produced in sorted(work.iterdir()):
            target = Path(self.plan.output_dir) / produced.name
            os.replace(produced, target)
            outputs.append(str(target))
            if self.options.copy_captions and task.caption_text is not None:
                write_text_atomic(target.with_suffix(self.options.caption_extension), task.caption_text)
        return outputs


def _ffmpeg_error(stderr: bytes) -> str:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return ("ffmpeg failed: " + " | ".join(lines[-3:]))[:400] if lines else "ffmpeg failed"


def run_preprocess(options: PreprocessOptions, media: list[MediaInfo], *, source_dir: str | Path,
                   output_dir: str | Path, progress: Progress | None = None,
                   workers: int | None = None) -> PreprocessReport:
    """Plan and run in one call (CLI and tests); the GUI keeps the PreprocessRun to be able to cancel it."""
    plan = plan_job(options, media, source_dir=source_dir, output_dir=output_dir)
    return PreprocessRun(plan, options, workers=workers).run(progress)
