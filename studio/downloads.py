"""Download a catalogue set from the Hugging Face hub (or a mirror) or ModelScope, resumably and verified.

The steps, all through the real ``huggingface_hub`` client:

1. ``HfApi.repo_info`` pins the revision to one commit and ``HfApi.list_repo_tree`` lists that commit (what
   ``snapshot_download`` does), then ``huggingface_hub.utils.filter_repo_objects`` applies the set's allow/ignore
   patterns (the same filter ``snapshot_download`` and ``huggingface-cli download --include/--exclude`` use).
2. The sizes from the listing are compared with the free space *before anything is written* (not even a folder).
3. Each file is fetched with ``huggingface_hub.file_download.http_get`` into ``<target>/.studio-download/<path>.part``
   with ``resume_size`` = the bytes already there, so the client sends ``Range: bytes=N-`` and also retries a
   connection cut midway from where it stopped. We keep our own ``.part`` file on purpose: since huggingface_hub 2.x
   ``hf_hub_download`` deletes its partial file when a transfer fails (file_download.py ``_download_to_tmp_and_move``,
   "do not keep a partial file around"), so a cancelled 28 GB download would restart from zero.
4. After the transfer the size must equal the listing and the SHA-256 (LFS files; ModelScope's ``Sha256``) or the git
   blob hash (small files) must match; only then is the file renamed into place, atomically.

ModelScope uses the same transfer (``http_get`` is a plain resumable HTTP GET) with the URLs and listing of
:mod:`studio.modelscope_hub`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from studio import modelscope_hub
from studio.atomic import write_text_atomic
from studio.catalogue import ModelSet
from studio.hub_listing import (
    LIBRARY_NAME,
    DownloadError,
    RemoteFile,
    explain_hub_error,
    list_hf,
    list_modelscope,
)
from studio.settings import Settings

HF_DEFAULT_ENDPOINT = "https://huggingface.co"
PARTIAL_DIR = ".studio-download"
DISK_RESERVE_BYTES = 256 * 1024**2  # keep this much free so the system and the trainer's caches can still write


class DownloadCancelled(Exception):
    """Raised from inside a transfer when the user cancels; partial files are kept for resuming."""


@dataclass(frozen=True)
class Progress:
    path: str  # the file being transferred ("" when the whole plan finished)
    file_done: int
    file_size: int
    done: int  # bytes on disk for the whole plan
    total: int


@dataclass
class DownloadPlan:
    set_id: str
    source: str
    endpoint: str
    repo: str
    revision: str
    commit: str
    target_dir: Path
    files: list[RemoteFile]
    on_disk: dict[str, int] = field(default_factory=dict)  # path -> bytes already present (complete or partial)
    free_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def needed_bytes(self) -> int:
        return self.total_bytes - sum(self.on_disk.values())

    def to_dict(self) -> dict[str, Any]:
        return {"set_id": self.set_id, "source": self.source, "endpoint": self.endpoint, "repo": self.repo,
                "revision": self.revision, "commit": self.commit, "target_dir": str(self.target_dir),
                "total_bytes": self.total_bytes, "needed_bytes": self.needed_bytes, "free_bytes": self.free_bytes,
                "files": [{"path": f.path, "size": f.size, "on_disk": self.on_disk.get(f.path, 0)}
                          for f in self.files]}


FreeSpace = Callable[[Path], int]


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def resolve_endpoint(source: str, settings: Settings, endpoint: str = "") -> str:
    """``endpoint`` (CLI/GUI) > machine settings (HF only) > the public service."""
    chosen = (endpoint or (settings.hf_endpoint if source == "hf" else "")).strip().rstrip("/")
    if not chosen:
        return HF_DEFAULT_ENDPOINT if source == "hf" else modelscope_hub.DEFAULT_ENDPOINT
    if not chosen.startswith(("http://", "https://")) or any(c.isspace() for c in chosen):
        raise DownloadError(f"endpoint {chosen!r} must be an http(s) URL such as https://hf-mirror.com")
    return chosen


def target_dir(model_set: ModelSet, settings: Settings) -> Path:
    if not settings.models_root:
        raise DownloadError("the MODELS folder is not set; set models_root in Settings")
    return Path(settings.models_root, model_set.target)


def partial_path(target: Path, repo_path: str) -> Path:
    return target / PARTIAL_DIR / f"{repo_path}.part"


def bytes_on_disk(target: Path, remote: RemoteFile) -> int:
    """Complete file size, or the usable part of an interrupted download of the same content, or 0."""
    final = target / remote.path
    if final.is_file() and final.stat().st_size == remote.size:
        return remote.size
    part = partial_path(target, remote.path)
    if part.is_file() and _read_identity(part) == _identity(remote):
        return min(part.stat().st_size, remote.size)
    return 0


def plan_download(model_set: ModelSet, settings: Settings, *, source: str = "hf", endpoint: str = "",
                  free_space: FreeSpace = disk_free) -> DownloadPlan:
    """List the files to fetch and check the free space. Reads the hub, writes nothing."""
    repo, revision = model_set.repo_for(source)
    endpoint = resolve_endpoint(source, settings, endpoint)
    target = target_dir(model_set, settings)
    if source == "hf":
        commit, listing = list_hf(repo, revision, endpoint, settings.hf_token)
    else:
        commit, listing = revision, list_modelscope(repo, revision, endpoint, _modelscope_token(settings))
    files = [f for f in listing if model_set.wants(f.path)]
    for remote in files:
        _check_repo_path(remote.path, repo, endpoint)
    if not files:
        raise DownloadError(f"{repo}@{revision} has no file matching the set's patterns "
                            f"(allow {list(model_set.allow)}, ignore {list(model_set.ignore)})")
    plan = DownloadPlan(model_set.id, source, endpoint, repo, revision, commit, target, files)
    plan.on_disk = {f.path: n for f in files if (n := bytes_on_disk(target, f))}
    check_disk_space(plan, free_space)
    return plan


def _check_repo_path(path: str, repo: str, endpoint: str) -> None:
    """A listed path becomes a file under the target folder: refuse anything that could land outside it."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or ":" in parts[0] or any(p in ("", ".", "..") for p in parts):
        raise DownloadError(f"{endpoint} listed an unsafe file path {path!r} in {repo}; refusing to download it "
                            "(check the endpoint: it does not behave like the hub)")


def check_disk_space(plan: DownloadPlan, free_space: FreeSpace = disk_free) -> None:
    existing = _nearest_existing(plan.target_dir)
    plan.free_bytes = free_space(existing)
    if plan.needed_bytes + DISK_RESERVE_BYTES > plan.free_bytes:
        raise DownloadError(
            f"not enough disk space on {existing}: {plan.set_id} needs {_gb(plan.needed_bytes)} more "
            f"(plus {_gb(DISK_RESERVE_BYTES)} kept free) but only {_gb(plan.free_bytes)} is free. Free some space or "
            "point models_root in Settings at a larger disk. Nothing was written."
        )


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def download(plan: DownloadPlan, settings: Settings, *, on_progress: Callable[[Progress], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> list[Path]:
    """Fetch every file of ``plan``; returns the final paths. Raises DownloadError or DownloadCancelled."""
    from huggingface_hub.utils import build_hf_headers

    report = on_progress or (lambda _p: None)
    if plan.source == "hf":
        headers = build_hf_headers(token=settings.hf_token or False, library_name=LIBRARY_NAME)
    else:
        headers = modelscope_hub.auth_headers(_modelscope_token(settings))
    headers["Accept-Encoding"] = "identity"  # compressed bodies break byte ranges and size checks
    done = {f.path: bytes_on_disk(plan.target_dir, f) for f in plan.files}
    finals = []
    for remote in plan.files:
        final = plan.target_dir / remote.path
        if done[remote.path] != remote.size or not final.is_file():

            def progress(file_done: int, remote: RemoteFile = remote) -> None:
                done[remote.path] = file_done
                report(Progress(remote.path, file_done, remote.size, sum(done.values()), plan.total_bytes))

            _fetch(plan, remote, headers, progress, should_stop)
        done[remote.path] = remote.size
        report(Progress(remote.path, remote.size, remote.size, sum(done.values()), plan.total_bytes))
        finals.append(final)
    verify_sizes(plan)
    write_text_atomic(manifest_path(plan.target_dir, plan.set_id), json.dumps(
        {**plan.to_dict(), "files": [_identity(f) for f in plan.files]}, indent=1))
    report(Progress("", plan.total_bytes, plan.total_bytes, plan.total_bytes, plan.total_bytes))
    return finals


def manifest_path(target: Path, set_id: str) -> Path:
    """Written after a complete, verified download of a set: what was fetched, from where, at which commit."""
    return target / PARTIAL_DIR / f"{set_id}.done.json"


def local_status(model_set: ModelSet, settings: Settings) -> str:
    """"complete" (a verified download whose files are all still there), "partial" or "missing"."""
    if not settings.models_root:
        return "missing"
    target = target_dir(model_set, settings)
    files = _manifest_files(target, model_set.id)
    if files and all((target / f.path).is_file() and bytes_on_disk(target, f) == f.size for f in files):
        return "complete"
    staging = target / PARTIAL_DIR
    # Something of it is on disk: a manifest whose files were since removed, a .part in the folder it shares,
    # or one of the files it fills in.
    started = bool(files) or (staging.is_dir() and any(staging.rglob("*.part")))
    if started or any((target / rel).exists() for rel in model_set.fills.values() if rel != "."):
        return "partial"
    return "missing"


def _manifest_files(target: Path, set_id: str) -> list[RemoteFile]:
    try:
        manifest = json.loads(manifest_path(target, set_id).read_text(encoding="utf-8"))
        return [RemoteFile(f["path"], int(f["size"]), f.get("sha256", ""), f.get("git_oid", ""))
                for f in manifest["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def verify_sizes(plan: DownloadPlan) -> None:
    """Every file of the plan is in place with the listed size (the size check after a download)."""
    wrong = []
    for remote in plan.files:
        final = plan.target_dir / remote.path
        size = final.stat().st_size if final.is_file() else -1
        if size != remote.size:
            wrong.append(f"{remote.path}: {'missing' if size < 0 else f'{size:,} bytes'}, expected {remote.size:,}")
    if wrong:
        raise DownloadError("after downloading, these files do not match the hub listing: " + "; ".join(wrong))


def file_url(plan: DownloadPlan, remote: RemoteFile) -> str:
    if plan.source == "hf":
        from huggingface_hub import hf_hub_url

        return hf_hub_url(plan.repo, remote.path, revision=plan.commit, endpoint=plan.endpoint)
    return modelscope_hub.file_url(plan.endpoint, plan.repo, remote.path, plan.revision)


def _fetch(plan: DownloadPlan, remote: RemoteFile, headers: dict[str, str], progress: Callable[[int], None],
           should_stop: Callable[[], bool] | None) -> None:
    from huggingface_hub.file_download import http_get

    part = partial_path(plan.target_dir, remote.path)
    part.parent.mkdir(parents=True, exist_ok=True)
    if part.exists() and (_read_identity(part) != _identity(remote) or part.stat().st_size > remote.size):
        part.unlink()  # a partial file of other content (new revision) cannot be continued
    write_text_atomic(_identity_path(part), json.dumps(_identity(remote)))
    with open(part, "ab") as handle:
        writer = _HashingWriter(handle, remote, progress, should_stop)
        try:
            http_get(file_url(plan, remote), writer, resume_size=writer.resumed, headers=headers,
                     expected_size=remote.size, displayed_filename=remote.path)
        except DownloadCancelled:
            raise
        except Exception as exc:
            handle.flush()
            if part.stat().st_size > remote.size:  # more than the listing: not the listed content, start over
                part.unlink()
            raise DownloadError(explain_hub_error(exc, plan, remote.path)) from exc
    size = part.stat().st_size
    if size != remote.size:
        part.unlink()
        raise DownloadError(f"{remote.path}: got {size:,} bytes, the hub lists {remote.size:,}; the partial file was "
                            "deleted, run the download again")
    if not writer.matches(part):
        part.unlink()
        raise DownloadError(f"{remote.path}: content hash differs from the hub listing (corrupted transfer or a "
                            "mirror serving other content); the file was deleted, run the download again")
    final = plan.target_dir / remote.path
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)
    _identity_path(part).unlink(missing_ok=True)


class _HashingWriter:
    """The file object handed to ``http_get``: counts bytes for progress, hashes on the fly, honours cancel."""

    def __init__(self, handle: BinaryIO, remote: RemoteFile, progress: Callable[[int], None],
                 should_stop: Callable[[], bool] | None) -> None:
        self._handle = handle
        self._remote = remote
        self._progress = progress
        self._should_stop = should_stop
        self.resumed = handle.tell()
        self._hasher = _new_hasher(remote)
        self._dirty = False  # http_get rewound the file (server ignored Range): hash from disk at the end
        if self._hasher is not None and self.resumed:
            with open(handle.name, "rb") as prefix:
                for block in iter(lambda: prefix.read(8 * 1024 * 1024), b""):
                    self._hasher.update(block)
        progress(self.resumed)

    def write(self, data: bytes) -> int:
        if self._should_stop is not None and self._should_stop():
            raise DownloadCancelled(self._remote.path)
        written = self._handle.write(data)
        if self._hasher is not None:
            self._hasher.update(data)
        self._progress(self._handle.tell())
        return written

    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, *args: int) -> int:
        self._dirty = True
        return self._handle.seek(*args)

    def truncate(self, *args: int) -> int:
        self._dirty = True
        return self._handle.truncate(*args)

    def flush(self) -> None:
        self._handle.flush()

    def matches(self, path: Path) -> bool:
        if self._hasher is None:
            return True
        hasher = self._hasher
        if self._dirty:
            hasher = _new_hasher(self._remote)
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(8 * 1024 * 1024), b""):
                    hasher.update(block)
        expected = self._remote.sha256 or self._remote.git_oid
        return hasher.hexdigest() == expected.lower()


def _new_hasher(remote: RemoteFile) -> Any:
    if remote.sha256:
        return hashlib.sha256()
    if remote.git_oid:
        hasher = hashlib.sha1(usedforsecurity=False)
        hasher.update(f"blob {remote.size}\0".encode())  # git's blob header: the oid of a small file
        return hasher
    return None


def _identity(remote: RemoteFile) -> dict[str, Any]:
    return {"path": remote.path, "size": remote.size, "sha256": remote.sha256, "git_oid": remote.git_oid}


def _identity_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_identity(part: Path) -> dict[str, Any] | None:
    try:
        return json.loads(_identity_path(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _modelscope_token(settings: Settings) -> str:
    # The settings file has no ModelScope token yet; public repos (all catalogue entries) need none.
    return str(getattr(settings, "modelscope_token", "") or "")
