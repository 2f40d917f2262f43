"""Model files from the command line: list the catalogue, download a set, fill a preset, check its files.

    python app.py models [--trainer musubi_tuner] [--arch wan2.1-t2v-1.3b]
    python app.py download SET_ID [--source hf|modelscope] [--endpoint URL] [--plan]
    python app.py fill-models PRESET SET_ID [-o FILE]
    python app.py check-models PRESET
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from studio.cli_common import add_common_options, emit, load_preset_arg, settings_arg
from studio.findings import sort_findings

if TYPE_CHECKING:
    from studio.download_jobs import DownloadJob


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model file sets that can be downloaded, and what is on disk")
    add_common_options(p)
    p.add_argument("--trainer", default="", help="only sets for this trainer (musubi_tuner, diffusion_pipe)")
    p.add_argument("--arch", default="", help="only sets for this architecture, e.g. wan2.1-t2v-1.3b")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("download", help="download a model file set into the MODELS folder (resumable)")
    add_common_options(p)
    p.add_argument("set_id", help="set id from `models`")
    p.add_argument("--source", choices=("hf", "modelscope"), default="hf", help="Hugging Face (default) or ModelScope")
    p.add_argument("--endpoint", default="", help="hub URL, e.g. a mirror (default: settings hf_endpoint or the hub)")
    p.add_argument("--plan", action="store_true", help="only list the files and check disk space")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("fill-models", help="write a downloaded set's paths into a preset (saved to your presets)")
    add_common_options(p, takes_preset=True)
    p.add_argument("set_id", help="set id from `models`")
    p.add_argument("-o", "--output", help="write the preset to this file instead of your presets folder")
    p.set_defaults(func=cmd_fill_models)

    p = sub.add_parser("check-models", help="check the model files a preset points at (exit 1 on errors)")
    add_common_options(p, takes_preset=True)
    p.set_defaults(func=cmd_check_models)


def cmd_models(args: argparse.Namespace) -> int:
    from studio.catalogue import load_catalogue
    from studio.downloads import local_status

    settings = settings_arg(args)
    rows = []
    for model_set in load_catalogue().values():
        if not model_set.applies_to(args.trainer, args.arch):
            continue
        rows.append({"id": model_set.id, "title": model_set.title, "trainers": list(model_set.trainers),
                     "architectures": list(model_set.architectures), "repo": model_set.hf_repo,
                     "modelscope_repo": model_set.modelscope_repo, "approx_gb": model_set.approx_gb,
                     "target": model_set.target, "status": local_status(model_set, settings)})
    lines = [f"{r['id']:<34} {r['approx_gb']:>7.2f} GB  {r['status']:<8} {r['title']}" for r in rows]
    emit(args, rows, "\n".join(lines) or "no set matches")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from huggingface_hub.utils import disable_progress_bars

    from studio.catalogue import get_set
    from studio.download_jobs import active_job_for, new_job, run_job
    from studio.downloads import plan_download

    settings = settings_arg(args)
    model_set = get_set(args.set_id)
    if args.plan:
        plan = plan_download(model_set, settings, source=args.source, endpoint=args.endpoint)
        text = [f"{plan.repo}@{plan.commit} from {plan.endpoint} -> {plan.target_dir}"]
        text += [f"  {f.size:>15,}  {f.path}" for f in plan.files]
        text.append(f"total {plan.total_bytes:,} bytes, {plan.needed_bytes:,} still to fetch, {plan.free_bytes:,} free")
        emit(args, plan.to_dict(), "\n".join(text))
        return 0
    running = active_job_for(model_set)
    if running is not None:
        raise ValueError(f"{running.set_id} is already downloading into the same folder (job {running.job_id})")
    disable_progress_bars()  # one progress line of our own instead of the hub client's bars
    job = new_job(model_set, source=args.source, endpoint=args.endpoint)
    echo = None if args.json else _progress_line
    job = run_job(job, settings, echo=echo)
    if not args.json:
        sys.stderr.write("\n")
    emit(args, job.to_dict(), f"{job.status}: {job.message}")
    return 0 if job.status == "done" else 1


def _progress_line(job: DownloadJob) -> None:
    sys.stderr.write(f"\r{100 * job.fraction:5.1f}%  {job.done_bytes / 1e9:7.2f} / {job.total_bytes / 1e9:.2f} GB  "
                     f"{job.bytes_per_s / 1e6:6.1f} MB/s  {job.current_file[-50:]:<50}")
    sys.stderr.flush()


def cmd_fill_models(args: argparse.Namespace) -> int:
    from studio.atomic import write_text_atomic
    from studio.model_files import fill_preset_paths, filled_changes
    from studio.presets import dump_preset, save_preset

    settings = settings_arg(args)
    preset = load_preset_arg(args, settings)
    filled = fill_preset_paths(preset, args.set_id, settings)
    changes = filled_changes(preset, filled)
    if args.output:
        target = write_text_atomic(Path(args.output), dump_preset(filled))
    else:
        target = save_preset(filled, settings.presets_dir)
    lines = [f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items()] or ["nothing changed"]
    lines.append(f"saved {filled.name} to {target}")
    emit(args, {"saved": str(target), "changes": {k: v[1] for k, v in changes.items()}}, "\n".join(lines))
    return 0


def cmd_check_models(args: argparse.Namespace) -> int:
    from studio.model_files import check_model_files

    settings = settings_arg(args)
    preset = load_preset_arg(args, settings)
    findings = sort_findings(check_model_files(preset, settings))
    lines = [f"{f.level.upper():<7} {f.field}: {f.message}" + (f"\n        fix: {f.fix}" if f.fix else "")
             for f in findings]
    emit(args, [f.to_dict() for f in findings], "\n".join(lines) or "no model paths to check")
    return 1 if any(f.level == "error" for f in findings) else 0
