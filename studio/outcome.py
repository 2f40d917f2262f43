"""Did a plan step succeed? Decided from the trainer's own completion signal and its outputs, not the exit code alone.

diffusion-pipe calls ``quit()`` (exit code 0) on dataset validation problems and exits 0 after ``save_quit``; musubi
can exit 0 without having saved anything when interrupted inside accelerate. So the last step succeeds only when
its completion marker (``OutputSpec.completion_marker``) is in its output *and* a LoRA file was written by this run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from backends.base import OutputSpec
from studio.jobs import FAILED, STOPPED, SUCCEEDED
from studio.log_reasons import exit_code_text, failure_reason

CONTINUE = "continue"  # a step before the last one finished well


@dataclass(frozen=True)
class Outcome:
    status: str  # continue | succeeded | failed | stopped
    reason: str = ""
    code: str = ""


def spec_from_dict(data: dict[str, Any] | None) -> OutputSpec | None:
    if not data:
        return None
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return OutputSpec(**{k: v for k, v in values.items() if k in OutputSpec.__dataclass_fields__})


def new_loras(backend: str, spec: OutputSpec, since: float) -> list[str]:
    """LoRA files matching the spec written at or after ``since`` (older files belong to earlier runs)."""
    from backends import get_backend

    outputs = get_backend(backend).find_outputs(spec)
    return [p for p in outputs.loras if _mtime(p) >= since - 1.0]


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


@dataclass(frozen=True)
class StepResult:
    """What is known when a plan step's process has ended."""

    name: str
    is_last: bool
    exit_code: int | None  # None: the process was not ours to wait for (re-attached) - unknown
    log_text: str  # the step's output (its end), carriage returns collapsed
    stop_reason: str = ""  # set when the studio stopped it (user or watchdog)
    stop_code: str = ""


def evaluate(result: StepResult, *, backend: str, spec: OutputSpec | None, started_at: float) -> Outcome:
    complete = _complete(result, backend=backend, spec=spec, started_at=started_at) if result.is_last else None
    if complete is not None and complete.status == SUCCEEDED:
        # Finished and saved: a stop that came too late or a noisy teardown exit code does not undo that.
        if result.exit_code not in (0, None):
            return Outcome(SUCCEEDED, f"{complete.reason}; the trainer then exited with "
                                      f"{exit_code_text(result.exit_code)}", complete.code)
        return complete
    if result.stop_reason:
        return Outcome(STOPPED, result.stop_reason, result.stop_code or "stopped")
    if result.exit_code not in (0, None):
        found = failure_reason(result.log_text)
        reason = found[1] if found else f"{result.name} failed"
        return Outcome(FAILED, f"{reason} ({exit_code_text(result.exit_code)})", found[0] if found else "exit_code")
    if complete is None:
        if result.exit_code is None and (found := failure_reason(result.log_text)):
            return Outcome(FAILED, found[1], found[0])
        return Outcome(CONTINUE)
    return complete


def _complete(result: StepResult, *, backend: str, spec: OutputSpec | None, started_at: float) -> Outcome:
    marker = spec.completion_marker if spec else ""
    marker_seen = bool(marker) and marker in result.log_text
    loras = new_loras(backend, spec, started_at) if spec and spec.lora_globs else []
    if (not marker or marker_seen) and (not spec or not spec.lora_globs or loras):
        return Outcome(SUCCEEDED, f"{len(loras)} LoRA file(s) written" if loras else "finished")
    found = failure_reason(result.log_text)
    if found:
        return Outcome(FAILED, found[1], found[0])
    if marker and not marker_seen:
        how = "exited" if result.exit_code is None else f"exited with {exit_code_text(result.exit_code)}"
        return Outcome(FAILED, f"the trainer {how} without its completion message {marker!r}", "no_marker")
    where = spec.output_dir if spec else "the output folder"
    return Outcome(FAILED, f"the trainer reported completion but wrote no LoRA file to {where}", "no_output")
