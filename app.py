"""Video LoRA Studio. ``python app.py`` starts the GUI on 127.0.0.1:7860; ``python app.py COMMAND`` runs headless.

Run ``python app.py --help`` for the GUI options and ``python app.py plan --help`` (etc.) for the commands.
"""

from __future__ import annotations

import argparse
import os
import sys


def serve(argv: list[str]) -> int:
    from studio.auth import AuthError
    from studio.serve_options import add_serve_arguments, launch_kwargs, serve_options_from_args

    parser = argparse.ArgumentParser(prog="app.py", description="Start the Video LoRA Studio GUI.",
                                     epilog="Headless commands: plan, check, vram, scan, run, jobs, stop, presets, "
                                            "preset, download, check-install, add-user (python app.py COMMAND -h).")
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    try:
        options = serve_options_from_args(args)
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from gui.app import build_app, served_folders
    from gui.context import GuiContext
    from gui.i18n import make_i18n
    from studio.settings import default_settings_path

    ctx = GuiContext(settings_path=options.settings or str(default_settings_path()))
    demo = build_app(ctx)
    kwargs = launch_kwargs(options, allowed_paths=served_folders(ctx))
    demo.queue(default_concurrency_limit=4).launch(i18n=make_i18n(), **kwargs)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and not argv[0].startswith("-"):
        from studio.cli import run_command

        return run_command(argv)
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main())
