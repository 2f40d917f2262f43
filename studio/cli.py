"""Headless command line: the same engine the GUI uses, for scripting users and CI.

``python app.py`` with no command starts the GUI (see app.py); every other command is registered here.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from studio.cli_common import add_common_options, emit, load_preset_arg, settings_arg
from studio.fields import PresetError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="app.py", description="Video LoRA Studio: GUI and headless commands.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register_core(sub)
    for module in _area_modules():
        module.register(sub)
    return parser


def _area_modules() -> list:
    """Each area registers its own commands (dataset, jobs, downloads, checks)."""
    from studio import cli_check, cli_dataset, cli_download, cli_jobs

    return [cli_dataset, cli_jobs, cli_download, cli_check]


def _register_core(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="write a preset's trainer files into a run folder and print the steps")
    add_common_options(p, takes_preset=True)
    p.add_argument("--run-dir", required=True, help="folder to write the generated files into")
    p.add_argument("--gpu", type=int, action="append", dest="gpus", help="GPU index (repeat for several)")
    p.add_argument("--regenerate-cache", action="store_true", help="rebuild latent/text caches")
    p.add_argument("--resume", default="", help="resume point (see the trainer's checkpoints)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("presets", help="list presets (shipped and your own)")
    add_common_options(p)
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("preset", help="export or import a preset file")
    preset_sub = p.add_subparsers(dest="preset_command", required=True)
    e = preset_sub.add_parser("export", help="write a portable copy (paths under your roots become ${ROOT}/...)")
    add_common_options(e, takes_preset=True)
    e.add_argument("-o", "--output", help="file to write (default: print)")
    e.set_defaults(func=cmd_preset_export)
    i = preset_sub.add_parser("import", help="check a preset file and add it to your presets")
    add_common_options(i)
    i.add_argument("file")
    i.add_argument("--force", action="store_true", help="replace your preset of the same name")
    i.set_defaults(func=cmd_preset_import)

    p = sub.add_parser("check-install", help="run each trainer's own python and report what imports")
    add_common_options(p)
    p.add_argument("trainer", nargs="?", help="one trainer (default: every configured one)")
    p.set_defaults(func=cmd_check_install)

    p = sub.add_parser("settings", help="show or change this machine's settings")
    settings_sub = p.add_subparsers(dest="settings_command", required=True)
    show = settings_sub.add_parser("show", help="print the settings (the HF token is masked)")
    add_common_options(show)
    show.set_defaults(func=cmd_settings_show)
    change = settings_sub.add_parser("set", help="set one key, e.g. trainers.musubi_tuner.python /path/to/python")
    add_common_options(change)
    change.add_argument("key")
    change.add_argument("value")
    change.set_defaults(func=cmd_settings_set)

    p = sub.add_parser("add-user", help="add or change a login in an auth file (hashed password)")
    p.add_argument("--auth-file", required=True)
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=cmd_add_user)


def cmd_plan(args: argparse.Namespace) -> int:
    from backends import PlanOptions, get_backend
    from studio.config_service import format_steps

    settings = settings_arg(args)
    preset = load_preset_arg(args, settings)
    backend = get_backend(preset.backend)
    options = PlanOptions(gpu_ids=args.gpus or [], regenerate_cache=args.regenerate_cache, resume_from=args.resume)
    run_dir = str(Path(args.run_dir).resolve())
    plan = backend.plan(preset, settings, run_dir, options)
    written = plan.write_files()
    lines = [f"# {preset.name}: {backend.label} / {preset.architecture}", "# files:"]
    lines += [f"#   {path}" for path in written]
    lines.append(format_steps(plan.steps))
    lines += [f"# note: {n}" for n in plan.notes]
    emit(args, plan.to_dict(), "\n".join(lines))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from backends import backend_fields
    from studio.presets import SHIPPED_DIR, list_presets, load_preset

    settings = settings_arg(args)
    fields = backend_fields()
    rows = []
    for name, path in sorted(list_presets(settings.presets_dir, fields).items()):
        preset = load_preset(path, fields)
        origin = "shipped" if path.parent == SHIPPED_DIR else "yours"
        rows.append({"name": name, "backend": preset.backend, "architecture": preset.architecture,
                     "origin": origin, "path": str(path), "notes": preset.meta.get("notes", "")})
    text = "\n".join(f"{r['name']:<48} {r['backend']:<15} {r['architecture']:<18} {r['origin']}" for r in rows)
    emit(args, rows, text or "no presets found")
    return 0


def cmd_preset_export(args: argparse.Namespace) -> int:
    from backends import backend_fields
    from studio.atomic import write_text_atomic
    from studio.presets import dump_preset, portable

    settings = settings_arg(args)
    preset = portable(load_preset_arg(args, settings), settings.roots(), backend_fields())
    text = dump_preset(preset)
    if args.output:
        write_text_atomic(args.output, text)
        emit(args, {"written": args.output}, f"exported {preset.name} to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_preset_import(args: argparse.Namespace) -> int:
    from backends import backend_fields
    from studio.presets import list_presets, load_preset, preset_filename, save_preset, unresolved_paths

    settings = settings_arg(args)
    fields = backend_fields()
    preset = load_preset(args.file, fields)
    target = Path(settings.presets_dir) / preset_filename(preset.name)
    if target.exists() and not args.force:
        raise FileExistsError(f"you already have a preset named {preset.name!r} ({target}); pass --force to replace it")
    if preset.name in list_presets(None, fields) and not args.force:
        raise FileExistsError(f"{preset.name!r} is a shipped preset name; rename it in [meta] name or pass --force")
    saved = save_preset(preset, settings.presets_dir)
    problems = unresolved_paths(preset, settings.roots(), fields)
    lines = [f"imported {preset.name} -> {saved}"]
    lines += [f"  path check: {p}" for p in problems] or ["  every path resolves on this machine"]
    emit(args, {"saved": str(saved), "unresolved": problems}, "\n".join(lines))
    return 0


def cmd_check_install(args: argparse.Namespace) -> int:
    from backends import backend_names, get_backend
    from studio.install_check import check_install

    settings = settings_arg(args)
    names = [args.trainer] if args.trainer else list(backend_names())
    reports = [check_install(get_backend(n), settings) for n in names]
    lines = []
    for r in reports:
        state = "OK" if r.ok else "NOT READY"
        lines.append(f"{r.trainer}: {state}  python={r.python or '-'} {r.python_version} commit={r.commit or '-'}")
        lines += [f"  - {p}" for p in r.problems]
        if not r.ok and r.install_steps:
            lines.append("  install steps:\n    " + r.install_steps.strip().replace("\n", "\n    "))
    emit(args, reports, "\n".join(lines))
    return 0 if all(r.ok for r in reports) else 1


def cmd_settings_show(args: argparse.Namespace) -> int:
    settings = settings_arg(args)
    data = settings.redacted()
    lines = [f"{k} = {v}" for k, v in data.items() if k != "trainers"]
    lines += [f"trainers.{n}: install_dir={t['install_dir'] or '-'} python={t['python'] or '-'}"
              for n, t in data["trainers"].items()]
    emit(args, data, "\n".join(lines))
    return 0


def cmd_settings_set(args: argparse.Namespace) -> int:
    from studio.settings import save_settings, set_setting

    settings = set_setting(settings_arg(args), args.key, args.value)
    path = save_settings(settings)
    emit(args, {"saved": str(path)}, f"{args.key} set; saved {path}")
    return 0


def cmd_add_user(args: argparse.Namespace) -> int:
    from studio.auth import add_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ; nothing written", file=sys.stderr)
            return 2
    path = add_user(args.auth_file, args.username, password)
    print(f"user {args.username!r} written to {path}")
    return 0


def run_command(argv: list[str]) -> int:
    """Run one sub-command; user errors print one line that says what to change and exit 2 (1 = checks failed)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (PresetError, LookupError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
