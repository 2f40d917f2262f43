"""Credentials for remote use. Passwords are stored only as salted PBKDF2 hashes and compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from studio.atomic import write_text_atomic
from studio.tomlcompat import tomllib

ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 310_000  # OWASP 2023 guidance for PBKDF2-HMAC-SHA256
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8


class AuthError(ValueError):
    pass


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"password is too short; use at least {MIN_PASSWORD} characters")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return "$".join([ALGORITHM, str(iterations), _b64(salt), _b64(digest)])


def verify_password(password: str, encoded: str) -> bool:
    try:
        algorithm, iterations, salt, digest = encoded.split("$")
        if algorithm != ALGORITHM:
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def load_auth_file(path: str | Path) -> dict[str, str]:
    """``[users]`` table of username -> hash. Plain-text passwords are refused, so none sit on disk."""
    target = Path(path)
    try:
        raw = tomllib.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuthError(f"auth file {target} does not exist; create it with `python app.py add-user`") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AuthError(f"auth file {target} is not valid TOML: {exc}") from None
    users = raw.get("users")
    if not isinstance(users, dict) or not users:
        raise AuthError(f"auth file {target} has no [users] entries; add one with `python app.py add-user`")
    for name, encoded in users.items():
        if not isinstance(encoded, str) or not encoded.startswith(ALGORITHM + "$"):
            raise AuthError(
                f"auth file {target}: user {name!r} has no {ALGORITHM} hash; plain passwords are not accepted, "
                "use `python app.py add-user` to write one"
            )
    return dict(users)


def add_user(path: str | Path, username: str, password: str) -> Path:
    if not _USERNAME.match(username):
        raise AuthError("username may use letters, digits and _ . @ - (at most 64)")
    target = Path(path)
    users = load_auth_file(target) if target.exists() else {}
    users[username] = hash_password(password)
    lines = ["# Video LoRA Studio users: hashed passwords only (python app.py add-user).", "[users]"]
    lines += [f'"{name}" = "{encoded}"' for name, encoded in sorted(users.items())]
    return write_text_atomic(target, "\n".join(lines) + "\n", mode=0o600)


def make_checker(users: dict[str, str]) -> Callable[[str, str], bool]:
    """The callable Gradio's ``auth=`` takes. Unknown users still pay one hash so timing does not reveal names."""
    dummy = hash_password(secrets.token_urlsafe(12), iterations=ITERATIONS)

    def check(username: str, password: str) -> bool:
        encoded = users.get(username)
        ok = verify_password(password, encoded or dummy)
        return ok and encoded is not None

    return check
