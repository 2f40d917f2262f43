"""Dataset commands: ``scan DIR [--preset P] [--json]`` (table + bucket simulation) and ``sample-data DIR``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from studio.cli_common import add_common_options, emit, load_preset_arg, settings_arg
from studio.media import MediaInfo, default_probe_cache, media_problems, scan_folder, summarize
from studio.presets import resolve_path


def register(subparsers: argparse._SubParsersAction) -> None:
    scan = subparsers.add_parser("scan", help="list a dataset folder's clips and simulate the trainer's buckets")
    add_common_options(scan)
    scan.add_argument("folder", help="dataset folder (a path, or ${DATA}/... under your data root)")
    scan.add_argument("--preset", help="preset name or .toml: adds what the trainer will do with each clip")
    scan.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                      help="override one preset value (repeatable), e.g. --set dataset.frames=[1,29]")
    scan.add_argument("--no-cache", action="store_true", help="probe every file again (ignore the probe cache)")
    scan.set_defaults(func=cmd_scan)

    sample = subparsers.add_parser("sample-data", help="write a small sample dataset of ffmpeg test patterns")
    add_common_options(sample)
    sample.add_argument("folder", help="an empty or new folder")
    sample.set_defaults(func=cmd_sample_data)


def _folder(args: argparse.Namespace) -> Path:
    settings = settings_arg(args)
    return Path(resolve_path(args.folder, settings.roots(), "folder")).expanduser()


def cmd_scan(args: argparse.Namespace) -> int:
    folder = _folder(args)
    preset = load_preset_arg(args) if args.preset else None
    extension = preset.get("dataset.caption_extension") if preset else ".txt"
    cache = None if args.no_cache else default_probe_cache(folder)
    media = scan_folder(folder, probe_cache=cache, caption_extension=extension)
    payload: dict[str, Any] = {"folder": str(folder), "summary": summarize(media),
                               "files": [{**m.to_dict(), "problems": media_problems(m)} for m in media]}
    lines = [format_table(media), "", format_summary(payload["summary"])]
    if preset is not None:
        from studio.buckets import simulate

        report = simulate(preset, media)
        payload["simulation"] = report
        lines += ["", format_simulation(report, preset)]
    emit(args, payload, "\n".join(lines))
    return 0


def cmd_sample_data(args: argparse.Namespace) -> int:
    from studio.sample_data import make_sample_dataset

    folder = _folder(args)
    made = make_sample_dataset(folder)
    emit(args, {"folder": str(folder), "files": [str(p) for p in made]},
         f"wrote {len(made)} sample files with captions into {folder}")
    return 0


# Text output


def format_table(media: list[MediaInfo]) -> str:
    header = f"{'file':<32} {'kind':<5} {'size':>9} {'frames':>6} {'fps':>7} {'secs':>6} {'codec':<6} {'caption':<8} problems"
    rows = [header, "-" * len(header)]
    for m in media:
        size = f"{m.width}x{m.height}" if m.width else "-"
        fps = f"{m.fps:.3f}".rstrip("0").rstrip(".") if m.fps else "-"
        rows.append(f"{m.name[:32]:<32} {m.kind:<5} {size:>9} {m.frames or '-':>6} {fps:>7} {m.duration:>6.2f} "
                    f"{m.codec[:6]:<6} {m.caption_status:<8} {'; '.join(media_problems(m))}")
    return "\n".join(rows)


def format_summary(summary: dict[str, Any]) -> str:
    return (f"{summary['files']} files: {summary['videos']} videos, {summary['images']} images, "
            f"{summary['unreadable']} unreadable; captions missing {summary['missing_captions']}, "
            f"empty {summary['empty_captions']}; fps {summary['fps_values']}")


def format_simulation(report: Any, preset: Any) -> str:
    lines = [f"simulation: {preset.name} ({report.backend}, {report.architecture}, frames "
             f"{list(preset.get('dataset.frames'))})"]
    for clip in report.clips:
        size = "x".join(map(str, clip.resolution_bucket)) if clip.resolution_bucket else "-"
        lines.append(f"  {clip.name[:32]:<32} {clip.status:<7} counted {clip.counted_frames:>4}  bucket "
                     f"{clip.bucket if clip.bucket is not None else '-':>4}  {size:>9}  x{clip.samples}  {clip.reason}")
    lines.append(f"samples per epoch: {report.samples_per_epoch}   steps per epoch: {report.steps_per_epoch}   "
                 f"dropped files: {len(report.dropped)}")
    lines += [f"error: {e}" for e in report.errors]
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"fix: {f.label}  {f.changes}" for f in report.fixes]
    return "\n".join(lines)
