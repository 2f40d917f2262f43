"""ModelScope's HTTP API, the part a download needs: list a repo's files, build a file's URL, authenticate.

Written from the official client's source (modelscope/modelscope at 1804ac6b, the last commit before the hub code
moved into the separate ``modelscope_hub`` package):

- ``modelscope/hub/api.py`` ``HubApi.get_model_files``:
  ``GET {endpoint}/api/v1/models/{model_id}/repo/files?Revision={rev}&Recursive=True`` answers
  ``{"Code": 200, "Success": true, "Data": {"Files": [{"Name", "Path", "Type": "blob"|"tree", "Size", "Sha256"}]}}``;
  the client skips ``.gitignore`` / ``.gitattributes``.
- ``modelscope/hub/file_download.py`` ``get_file_download_url``:
  ``{endpoint}/api/v1/models/{model_id}/repo?Revision={rev}&FilePath={path}``, fetched with ``Range: bytes=N-``
  to resume (``http_get_model_file``), and checked against ``Sha256`` (``constants.FILE_HASH``).
- Authentication: the ``m_session_id`` cookie set from the SDK token (``HubApi.get_cookies``) and, for the newer
  OpenAPI routes, ``Authorization: Bearer <token>`` (``HubApi._build_bearer_headers``). Public repos need neither.
- Default endpoint ``https://www.modelscope.cn`` (``constants.DEFAULT_MODELSCOPE_DOMAIN``), default revision
  ``master`` (``utils/constant.py``).

The real service cannot be reached from the machines this was written on; the tests run this module against a
loopback server that answers these routes as described above.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_ENDPOINT = "https://www.modelscope.cn"
_SKIPPED = (".gitignore", ".gitattributes")


class ModelScopeError(RuntimeError):
    """A ModelScope request failed; the message says what to do."""


def auth_headers(token: str) -> dict[str, str]:
    if not token:
        return {}
    return {"Authorization": f"Bearer {token}", "Cookie": f"m_session_id={token}"}


def file_url(endpoint: str, repo: str, path: str, revision: str) -> str:
    query = urllib.parse.urlencode({"Revision": revision, "FilePath": path})  # FilePath last, as the client does
    return f"{endpoint.rstrip('/')}/api/v1/models/{repo}/repo?{query}"


def list_files(endpoint: str, repo: str, revision: str, *, token: str = "", timeout: float = 30) -> list[dict[str, Any]]:
    """Every file (not folder) in the repo at ``revision``: dicts with Path, Size and, when known, Sha256."""
    query = urllib.parse.urlencode({"Revision": revision, "Recursive": "True"})
    url = f"{endpoint.rstrip('/')}/api/v1/models/{repo}/repo/files?{query}"
    request = urllib.request.Request(url, headers={"Accept": "application/json", **auth_headers(token)})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise ModelScopeError(_http_message(exc.code, repo, revision, endpoint, bool(token))) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise ModelScopeError(
            f"cannot reach ModelScope at {endpoint} ({getattr(exc, 'reason', exc)}); check the network or the endpoint"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelScopeError(f"{endpoint} did not answer with ModelScope's JSON; is the endpoint right?") from None
    if not isinstance(body, dict) or body.get("Code") != 200 or not isinstance(body.get("Data"), dict):
        message = body.get("Message") if isinstance(body, dict) else body
        raise ModelScopeError(f"ModelScope refused the file list of {repo}@{revision}: {message}")
    files = body["Data"].get("Files") or []
    return [f for f in files if f.get("Type") != "tree" and f.get("Name") not in _SKIPPED]


def _http_message(status: int, repo: str, revision: str, endpoint: str, has_token: bool) -> str:
    if status == 404:
        return f"{repo} (revision {revision}) was not found on ModelScope ({endpoint}); check the repo id and revision"
    if status in (401, 403):
        if has_token:
            return f"ModelScope refused the token for {repo} ({status}); check the ModelScope token"
        return f"{repo} on ModelScope needs a login ({status}); it may be private"
    return f"ModelScope answered HTTP {status} for {repo}; try again later"
