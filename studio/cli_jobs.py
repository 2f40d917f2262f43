"""Job commands: ``run PRESET``, ``jobs``, ``stop JOB``, ``resume JOB``, ``log JOB``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from studio.cli_common import add_common_options, emit, load_preset_arg, settings_arg
from studio.jobs import FINISHED, JobState


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="start (or queue) a training job from a preset; it runs detached")
    add_common_options(p, takes_preset=True)
    p.add_argument("--gpu", type=int, action="append", dest="gpus", metavar="K",
                   help="GPU index (repeat for several; default: the preset's, else the machine default)")
    p.add_argument("--no-stop-on-nan", action="store_true", help="keep training when the loss becomes NaN/inf")
    p.add_argument("--stop-on-divergence", action="store_true", help="stop when the loss climbs far above its best")
    p.add_argument("--stall-minutes", type=float, default=30.0, help="warn after this long without output (0=off)")
    p.add_argument("--regenerate-cache", action="store_true", help="rebuild the latent/text caches")
    p.add_argument("--ignore-preflight", action="store_true", help="start even when pre-flight reports errors")
    p.add_argument("--wait", action="store_true", help="print the log until the job ends; exit 0 only on success")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("jobs", help="list jobs (newest first) with status, progress and queue position")
    add_common_options(p)
    p.add_argument("--all", action="store_true", help="also list old finished jobs (default: the last 30)")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("stop", help="stop a job gracefully (saves where the trainer can), or drop it from the queue")
    add_common_options(p)
    p.add_argument("job")
    p.add_argument("--force", action="store_true", help="skip the graceful stage (SIGTERM, then SIGKILL)")
    p.add_argument("--wait", action="store_true", help="wait until the job has ended")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("resume", help="start a new job that continues JOB from its newest checkpoint")
    add_common_options(p)
    p.add_argument("job")
    p.add_argument("--from", dest="resume_from", default="", help="a checkpoint other than the newest")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("log", help="print the end of a job's log")
    add_common_options(p)
    p.add_argument("job")
    p.add_argument("-n", "--lines", type=int, default=100)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    p.set_defaults(func=cmd_log)


def _summary(state: JobState, position: int = 0) -> dict:
    p = state.progress or {}
    return {
        "job_id": state.job_id, "status": state.status, "preset": state.preset_name, "backend": state.backend,
        "gpus": state.gpu_ids, "queue_position": position, "step": p.get("step", 0), "total": p.get("total", 0),
        "epoch": p.get("epoch", 0), "epochs": p.get("epochs", 0), "loss": p.get("loss"), "eta_s": p.get("eta_s"),
        "phase": p.get("phase", ""), "started_by": state.started_by, "stopped_by": state.stopped_by,
        "reason": state.reason, "banners": [b["message"] for b in state.banners],
    }


def _line(row: dict) -> str:
    progress = f"{row['step']}/{row['total'] or '?'}" if row["step"] else (row["phase"] or "-")
    status = f"queued #{row['queue_position']}" if row["queue_position"] else row["status"]
    extra = row["reason"] or "; ".join(row["banners"])
    return f"{row['job_id']:<48} {status:<10} {progress:<11} gpu {','.join(map(str, row['gpus'])):<5} {extra}"


def cmd_run(args: argparse.Namespace) -> int:
    from studio import runner

    settings = settings_arg(args)
    preset = load_preset_arg(args, settings)
    if not args.ignore_preflight:
        errors = runner.preflight_errors(preset, settings)
        if errors:
            lines = [f"error: {f.field or 'setup'}: {f.message}" + (f" -> {f.fix}" if f.fix else "") for f in errors]
            print("\n".join(lines) + "\npre-flight found errors; fix them or pass --ignore-preflight",
                  file=sys.stderr)
            return 2
    launch = runner.LaunchOptions(gpu_ids=args.gpus or [], user=runner.current_user(),
                                  stop_on_nan=not args.no_stop_on_nan, stop_on_divergence=args.stop_on_divergence,
                                  stall_minutes=args.stall_minutes,
                                  regenerate_cache=True if args.regenerate_cache else None)
    state = runner.start_preset(preset, settings, launch)
    plan = runner.load_plan(settings, state.job_id)
    position = _position(settings, state)
    text = (f"job {state.job_id} {'queued #' + str(position) if position else state.status} on GPU "
            f"{','.join(map(str, state.gpu_ids))}\nfolder: {Path(settings.runs_dir) / state.job_id}\n"
            f"{runner.command_preview(plan)}")
    emit(args, {**_summary(state, position), "folder": str(Path(settings.runs_dir) / state.job_id)}, text)
    if args.wait:
        final = _follow(settings, state.job_id, lines=0)
        return 0 if final.status == "succeeded" else 1
    return 0


def _position(settings, state: JobState) -> int:
    from studio import jobs

    return jobs.queue_position(jobs.list_states(settings.runs_dir), state.job_id)


def cmd_jobs(args: argparse.Namespace) -> int:
    from studio import jobs, runner

    settings = settings_arg(args)
    states = runner.list_jobs(settings)
    everything = jobs.list_states(settings.runs_dir)
    shown = states if args.all else states[:30]
    rows = [_summary(s, jobs.queue_position(everything, s.job_id)) for s in shown]
    emit(args, rows, "\n".join(_line(r) for r in rows) or "no jobs yet")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from studio import runner

    settings = settings_arg(args)
    state = runner.stop_job(settings, args.job, user=runner.current_user(), force=args.force)
    if args.wait:
        state = _wait(settings, state.job_id)
    text = f"job {state.job_id}: {state.status}" + (f" ({state.reason})" if state.reason else
                                                     " - stop requested, the trainer is saving")
    emit(args, _summary(state), text)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from studio import runner

    settings = settings_arg(args)
    state = runner.resume_job(settings, args.job, user=runner.current_user(), resume_from=args.resume_from)
    emit(args, _summary(state, _position(settings, state)),
         f"job {state.job_id} resumes {args.job} from {state.resume_from}: {state.status}")
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from studio import jobs
    from studio.logtail import last_lines

    settings = settings_arg(args)
    path = jobs.job_path(settings.runs_dir, args.job) / jobs.LOG_FILE
    if args.follow:
        final = _follow(settings, args.job, lines=args.lines)
        return 0 if final.status == "succeeded" else 1
    lines = last_lines(path, args.lines, max_bytes=max(64 * 1024, args.lines * 400))
    emit(args, {"job_id": args.job, "lines": lines}, "\n".join(lines))
    return 0


def _wait(settings, job_id: str) -> JobState:
    from studio import runner

    while (state := runner.job_state(settings, job_id)).status not in FINISHED:
        time.sleep(1.0)
    return state


def _follow(settings, job_id: str, *, lines: int) -> JobState:
    """Print the log as it grows (carriage-return redraws collapsed) until the job ends."""
    from studio import jobs, runner
    from studio.logtail import collapse_cr, last_lines

    path = jobs.job_path(settings.runs_dir, job_id) / jobs.LOG_FILE
    offset = path.stat().st_size if path.exists() else 0
    if lines:
        print("\n".join(last_lines(path, lines)))
    partial = b""
    while True:
        state = runner.job_state(settings, job_id)
        if path.exists() and path.stat().st_size > offset:
            with open(path, "rb") as log:
                log.seek(offset)
                data = log.read()
            offset += len(data)
            chunks = (partial + data).split(b"\n")
            partial = chunks.pop()
            for raw in chunks:
                print(collapse_cr(raw.decode("utf-8", "replace")).rstrip())
            sys.stdout.flush()
        if state.status in FINISHED:
            print(f"job {job_id}: {state.status}" + (f" ({state.reason})" if state.reason else ""))
            return state
        time.sleep(1.0)
