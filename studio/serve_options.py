"""How the GUI server listens, and who may log in. Refuses to expose the app without credentials."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any

from studio.auth import AuthError, hash_password, load_auth_file, make_checker

LOCALHOST = "127.0.0.1"


@dataclass
class ServeOptions:
    host: str = LOCALHOST
    port: int = 7860
    share: bool = False
    share_server: str = ""  # self-hosted FRP server "host:port" for share links
    users: dict[str, str] = field(default_factory=dict)  # username -> password hash
    settings: str | None = None
    open_browser: bool = False

    @property
    def exposed(self) -> bool:
        return self.share or self.host not in (LOCALHOST, "localhost", "::1")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", action="store_true", help="listen on all interfaces (0.0.0.0) for LAN access")
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a public share link (needs credentials)")
    parser.add_argument("--share-server", default="", help="self-hosted share server host:port")
    parser.add_argument("--auth-file", help="TOML file with hashed logins (python app.py add-user)")
    parser.add_argument("--username", help="single login name (use with --password or VLS_PASSWORD)")
    parser.add_argument("--password", help="password for --username (prefer the VLS_PASSWORD variable)")
    parser.add_argument("--settings", help="machine settings file")
    parser.add_argument("--inbrowser", action="store_true", help="open a browser tab")


def serve_options_from_args(args: argparse.Namespace) -> ServeOptions:
    """Validate the combination; every refusal says what to add."""
    users: dict[str, str] = {}
    if args.auth_file:
        users.update(load_auth_file(args.auth_file))
    password = args.password or os.environ.get("VLS_PASSWORD", "")
    if args.username:
        if not password:
            raise AuthError("--username needs --password (or the VLS_PASSWORD environment variable)")
        users[args.username] = hash_password(password)
    elif args.password:
        raise AuthError("--password needs --username")
    host = args.host or ("0.0.0.0" if args.listen else LOCALHOST)
    options = ServeOptions(host=host, port=args.port, share=args.share, share_server=args.share_server,
                           users=users, settings=args.settings, open_browser=args.inbrowser)
    if options.exposed and not users:
        what = "--share" if options.share else f"listening on {host}"
        raise AuthError(
            f"{what} would let anyone who reaches this machine start processes on it; add credentials with "
            "--auth-file FILE (python app.py add-user --auth-file FILE NAME) or --username NAME --password ..."
        )
    if not 1 <= options.port <= 65535:
        raise AuthError(f"--port {options.port} is not a TCP port (1-65535)")
    return options


def launch_kwargs(options: ServeOptions, *, allowed_paths: list[str]) -> dict[str, Any]:
    """Arguments for ``gr.Blocks.launch``; hardening that applies whatever the mode."""
    kwargs: dict[str, Any] = {
        "server_name": options.host,
        "server_port": options.port,
        "share": options.share,
        "inbrowser": options.open_browser,
        "allowed_paths": allowed_paths,
        "enable_monitoring": False,  # /monitoring would expose queue internals
        "max_file_size": "20mb",  # presets and captions only; datasets are never uploaded through the browser
        "show_error": True,
    }
    if options.users:
        kwargs["auth"] = make_checker(options.users)
        kwargs["auth_message"] = "Video LoRA Studio: log in with the account your team admin created."
    if options.share_server:
        kwargs["share_server_address"] = options.share_server
    return kwargs
