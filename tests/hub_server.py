"""A loopback server that answers enough of the Hugging Face hub API (and ModelScope's) for the real clients.

Test-only. It serves repos built in the test, on 127.0.0.1, with the headers the real hub sends so that
``huggingface_hub`` runs its normal code paths:

- ``GET /api/models/{repo}/revision/{rev}``: model info with ``sha`` (what ``HfApi.repo_info`` reads);
- ``GET /api/models/{repo}/tree/{rev}?recursive=...``: the tree listing, paginated with a ``Link: rel="next"``
  header like the hub (``HfApi.list_repo_tree``), LFS files with ``lfs.oid`` = SHA-256;
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: small files directly with ``ETag`` (git blob id), ``X-Repo-Commit``
  and ``Content-Length``; LFS files as a 302 to a "CDN" route with ``X-Linked-Etag`` / ``X-Linked-Size``;
- ``Range: bytes=N-`` answered with 206 + ``Content-Range`` (resume), 416 when out of range;
- 401 with ``X-Error-Message: Invalid credentials in Authorization header`` for a token it does not know, 401
  ``X-Error-Code: RepoNotFound`` for unknown or private repos without a token, 404 ``RevisionNotFound``;
- ``cut_once(repo, path, n)``: the next GET of that file sends ``n`` bytes and drops the connection;
- ModelScope: ``/api/v1/models/{repo}/repo/files`` and ``/api/v1/models/{repo}/repo?Revision=&FilePath=`` as
  described in ``studio/modelscope_hub.py``.

Every request is recorded in ``requests`` so tests can assert what the client actually sent.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LFS_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


@dataclass
class Repo:
    repo_id: str
    files: dict[str, bytes]
    commit: str
    private: bool = False
    lfs_suffixes: tuple[str, ...] = LFS_SUFFIXES

    def is_lfs(self, path: str) -> bool:
        return path.endswith(self.lfs_suffixes)

    def sha256(self, path: str) -> str:
        return _cached(hashlib.sha256, self.files[path])

    def git_oid(self, path: str) -> str:
        return git_blob_oid(self.files[path])


@dataclass
class Recorded:
    method: str
    path: str
    range: str
    authorization: str


@dataclass
class HubServer:
    tokens: set[str] = field(default_factory=set)
    page_size: int = 1000
    throttle_bytes_per_s: int = 0  # 0 = full speed; else stream slowly so tests can cancel midway
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    cuts: dict[tuple[str, str], int] = field(default_factory=dict)
    url: str = ""

    def add_repo(self, repo_id: str, files: dict[str, bytes], *, private: bool = False) -> str:
        commit = hashlib.sha1(repr(sorted((k, _cached(hashlib.sha256, v)) for k, v in files.items()))
                              .encode()).hexdigest()
        self.repos[repo_id] = Repo(repo_id, dict(files), commit, private)
        return commit

    def cut_once(self, repo_id: str, path: str, after_bytes: int) -> None:
        self.cuts[(repo_id, path)] = after_bytes

    def ranges_for(self, suffix: str) -> list[str]:
        return [r.range for r in self.requests if r.method == "GET" and r.path.endswith(suffix)]

    def __enter__(self) -> HubServer:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# (algorithm, id(data)) -> (data, hex digest). Keeping a reference to ``data`` pins its id, so a later bytes object
# can never inherit a stale digest; hashing a 512 MB file once instead of per request keeps the server fast.
_HASHES: dict[tuple[str, int], tuple[bytes, str]] = {}


def _cached(algorithm, data: bytes, prefix: bytes = b"") -> str:
    key = (algorithm().name, id(data))
    if key not in _HASHES:
        hasher = algorithm(prefix)
        hasher.update(data)
        _HASHES[key] = (data, hasher.hexdigest())
    return _HASHES[key][1]


def git_blob_oid(data: bytes) -> str:
    return _cached(hashlib.sha1, data, f"blob {len(data)}\0".encode())


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_GET(self) -> None:
        self._route("GET")

    # routing -----------------------------------------------------------------------------------------------

    def _route(self, method: str) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parsed.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        self.hub.requests.append(Recorded(method, path, self.headers.get("Range", ""),
                                          self.headers.get("Authorization", "")))
        routes = (
            (r"^/api/models/([^/]+/[^/]+)/revision/([^/]+)$", self._model_info),
            (r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$", self._tree),
            (r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", self._resolve),
            (r"^/lfs-cdn/([^/]+/[^/]+)/([0-9a-f]{64})/(.+)$", self._cdn),
            (r"^/api/v1/models/([^/]+/[^/]+)/repo/files$", self._ms_files),
            (r"^/api/v1/models/([^/]+/[^/]+)/repo$", self._ms_file),
        )
        for pattern, handler in routes:
            match = re.match(pattern, path)
            if match:
                handler(method, query, *match.groups())
                return
        self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"})

    # Hugging Face ------------------------------------------------------------------------------------------

    def _authorised_repo(self, repo_id: str) -> Repo | None:
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if auth and token not in self.hub.tokens:
            self._send(401, b'{"error": "Invalid credentials"}', {"X-Error-Message": INVALID_CREDENTIALS})
            return None
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and not token):
            self._send(401, b'{"error": "Repository not found"}',
                       {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
            return None
        return repo

    def _revision_ok(self, repo: Repo, revision: str) -> bool:
        if revision in ("main", repo.commit):
            return True
        self._send(404, b'{"error": "Revision not found"}', {"X-Error-Code": "RevisionNotFound"})
        return False

    def _model_info(self, method: str, query: dict, repo_id: str, revision: str) -> None:
        repo = self._authorised_repo(repo_id)
        if repo is None or not self._revision_ok(repo, revision):
            return
        body = {"_id": repo.commit[:24], "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0],
                "sha": repo.commit, "private": repo.private, "gated": False, "disabled": False, "downloads": 0,
                "likes": 0, "tags": [], "siblings": [{"rfilename": p} for p in sorted(repo.files)],
                "lastModified": "2026-01-01T00:00:00.000Z"}
        self._send_json(body)

    def _tree(self, method: str, query: dict, repo_id: str, revision: str, sub: str | None) -> None:
        repo = self._authorised_repo(repo_id)
        if repo is None or not self._revision_ok(repo, revision):
            return
        recursive = query.get("recursive", "false").lower() == "true"
        entries = _tree_entries(repo, sub or "", recursive)
        start = int(query.get("cursor", "0"))
        page = entries[start:start + self.hub.page_size]
        headers = {}
        if start + self.hub.page_size < len(entries):
            next_query = urllib.parse.urlencode({**query, "cursor": start + self.hub.page_size})
            headers["Link"] = f'<{self.hub.url}{urllib.parse.urlsplit(self.path).path}?{next_query}>; rel="next"'
        self._send_json(page, headers)

    def _resolve(self, method: str, query: dict, repo_id: str, revision: str, path: str) -> None:
        repo = self._authorised_repo(repo_id)
        if repo is None or not self._revision_ok(repo, revision):
            return
        if path not in repo.files:
            self._send(404, b"entry not found", {"X-Error-Code": "EntryNotFound"})
            return
        data = repo.files[path]
        common = {"X-Repo-Commit": repo.commit}
        if repo.is_lfs(path):
            sha = repo.sha256(path)
            location = f"/lfs-cdn/{repo_id}/{sha}/{urllib.parse.quote(path)}"
            self._send(302, b"", {**common, "Location": location, "X-Linked-Etag": f'"{sha}"',
                                  "X-Linked-Size": str(len(data)), "ETag": f'"{git_blob_oid(data)}"'})
            return
        self._send_bytes(method, repo_id, path, data, {**common, "ETag": f'"{git_blob_oid(data)}"'})

    def _cdn(self, method: str, query: dict, repo_id: str, sha: str, path: str) -> None:
        repo = self.hub.repos.get(repo_id)
        data = repo.files.get(path) if repo else None
        if data is None or repo.sha256(path) != sha:
            self._send(404, b"no such object")
            return
        self._send_bytes(method, repo_id, path, data, {"ETag": f'"{sha}"'})

    # ModelScope --------------------------------------------------------------------------------------------

    def _ms_files(self, method: str, query: dict, repo_id: str) -> None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._send_json({"Code": 10010205001, "Success": False, "Message": "model not found"}, status=404)
            return
        files = [{"Name": p.rsplit("/", 1)[-1], "Path": p, "Type": "blob", "Size": len(d),
                  "Sha256": repo.sha256(p), "Revision": repo.commit} for p, d in repo.files.items()]
        folders = sorted({p.rsplit("/", 1)[0] for p in repo.files if "/" in p})
        files += [{"Name": f.rsplit("/", 1)[-1], "Path": f, "Type": "tree", "Size": 0} for f in folders]
        self._send_json({"Code": 200, "Success": True, "Message": "success", "Data": {"Files": files}})

    def _ms_file(self, method: str, query: dict, repo_id: str) -> None:
        repo = self.hub.repos.get(repo_id)
        path = query.get("FilePath", "")
        if repo is None or path not in repo.files:
            self._send(404, b"not found")
            return
        self._send_bytes(method, repo_id, path, repo.files[path], {})

    # responses ---------------------------------------------------------------------------------------------

    def _send_bytes(self, method: str, repo_id: str, path: str, data: bytes, headers: dict[str, str]) -> None:
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        start, status, full = 0, 200, len(data)
        wanted = self.headers.get("Range", "")
        if wanted:
            match = re.match(r"^bytes=(\d+)-(\d*)$", wanted)
            if not match or int(match.group(1)) >= len(data):
                self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
            start = int(match.group(1))
            end = int(match.group(2)) + 1 if match.group(2) else len(data)
            data = data[start:end]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{full}"
        if method == "HEAD":
            self._send(status, b"", {**headers, "Content-Length": str(len(data))}, head=True)
            return
        cut = self.hub.cuts.pop((repo_id, path), None)
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        body = data[:cut] if cut is not None else data
        self._stream(body)
        if cut is not None:
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def _stream(self, body: bytes) -> None:
        rate = self.hub.throttle_bytes_per_s
        chunk = 16 * 1024 if rate else len(body) or 1
        try:
            for offset in range(0, len(body), chunk):
                self.wfile.write(body[offset:offset + chunk])
                if rate:
                    self.wfile.flush()
                    time.sleep(chunk / rate)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_json(self, body: object, headers: dict[str, str] | None = None, status: int = 200) -> None:
        self._send(status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head and self.command != "HEAD" and body:
            self.wfile.write(body)


def _tree_entries(repo: Repo, sub: str, recursive: bool) -> list[dict]:
    prefix = f"{sub.rstrip('/')}/" if sub else ""
    files = sorted(p for p in repo.files if p.startswith(prefix))
    entries: list[dict] = []
    folders: set[str] = set()
    for path in files:
        rest = path[len(prefix):]
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            folder = prefix + "/".join(parts[:depth])
            if (recursive or depth == 1) and folder not in folders:
                folders.add(folder)
                entries.append({"type": "directory", "oid": git_blob_oid(folder.encode()), "path": folder})
        if not recursive and len(parts) > 1:
            continue
        data = repo.files[path]
        entry = {"type": "file", "oid": repo.git_oid(path), "size": len(data), "path": path}
        if repo.is_lfs(path):
            entry["lfs"] = {"oid": repo.sha256(path), "size": len(data), "pointerSize": 134}
        entries.append(entry)
    return entries
