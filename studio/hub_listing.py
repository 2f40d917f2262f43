"""Listing a hub repository and explaining hub errors, for studio.downloads.

Hugging Face listings go through ``HfApi.repo_info`` (pins the revision to a commit) and ``HfApi.list_repo_tree``
(what ``snapshot_download`` lists); ModelScope through studio.modelscope_hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from studio import modelscope_hub

if TYPE_CHECKING:
    from studio.downloads import DownloadPlan

LIBRARY_NAME = "video-lora-studio"


class DownloadError(RuntimeError):
    """A download cannot start or finish; the message says what to change."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str = ""  # LFS / ModelScope content hash
    git_oid: str = ""  # git blob id of a small (non-LFS) file


def list_hf(repo: str, revision: str, endpoint: str, token: str) -> tuple[str, list[RemoteFile]]:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    # token=False: never fall back to a token cached by huggingface-cli or HF_TOKEN; only machine settings count.
    api = HfApi(endpoint=endpoint, token=token or False, library_name=LIBRARY_NAME)
    try:
        commit = api.repo_info(repo, revision=revision).sha or revision
        entries = api.list_repo_tree(repo, recursive=True, revision=commit)
        files = [RemoteFile(e.path, int(e.size), _lfs_sha256(e.lfs), "" if e.lfs else (e.blob_id or ""))
                 for e in entries if isinstance(e, RepoFile)]
    except Exception as exc:
        raise DownloadError(explain_hub_error(exc, None, "", repo=repo, endpoint=endpoint, revision=revision,
                                              has_token=bool(token))) from exc
    return commit, files


def _lfs_sha256(lfs: Any) -> str:
    if not lfs:
        return ""
    return str(getattr(lfs, "sha256", None) or (lfs.get("sha256") if isinstance(lfs, dict) else "") or "")


def list_modelscope(repo: str, revision: str, endpoint: str, token: str) -> list[RemoteFile]:
    try:
        entries = modelscope_hub.list_files(endpoint, repo, revision, token=token)
    except modelscope_hub.ModelScopeError as exc:
        raise DownloadError(str(exc)) from None
    return [RemoteFile(str(e["Path"]), int(e.get("Size") or 0), str(e.get("Sha256") or "")) for e in entries]


def explain_hub_error(exc: BaseException, plan: DownloadPlan | None, path: str, **where: Any) -> str:
    """One sentence that says what went wrong and what to change, for the errors users actually hit."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    repo = where.get("repo") or (plan.repo if plan else "")
    endpoint = where.get("endpoint") or (plan.endpoint if plan else "")
    revision = where.get("revision") or (plan.revision if plan else "")
    has_token = where.get("has_token", True)
    subject = f"{repo}/{path}" if path else repo
    status = getattr(getattr(exc, "response", None), "status_code", None)
    server_message = str(getattr(exc, "server_message", "") or "")
    if status == 401 and ("Invalid credentials" in server_message or "Invalid credentials" in str(exc)):
        return (f"{endpoint} refused the Hugging Face token from Settings (401 invalid credentials) for {subject}; "
                "fix or clear hf_token in Settings")
    if isinstance(exc, GatedRepoError):
        return (f"{repo} is gated: accept its licence on {endpoint}/{repo} with your account, then put a token of "
                "that account in Settings (hf_token)")
    if isinstance(exc, RevisionNotFoundError):
        return f"revision {revision!r} does not exist in {repo} on {endpoint}"
    if isinstance(exc, RepositoryNotFoundError):
        hint = "check the token in Settings" if has_token else "if it is private, set hf_token in Settings"
        return f"{repo} was not found on {endpoint} ({hint})"
    if isinstance(exc, HfHubHTTPError) and status is not None:
        return f"{endpoint} answered HTTP {status} for {subject}: {server_message or exc}"
    if _is_connection_error(exc):
        return (f"cannot reach {endpoint} ({type(exc).__name__}: {exc}). Check the network, set a mirror "
                "(Settings hf_endpoint or --endpoint, e.g. https://hf-mirror.com) or use --source modelscope; "
                "partial files are kept and the next run resumes them")
    return f"{subject}: {type(exc).__name__}: {exc}"


def _is_connection_error(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectError", "ConnectionError", "TimeoutException", "Timeout", "RemoteProtocolError",
                         "ReadError", "NetworkError", "ProxyError"}) or isinstance(exc, (ConnectionError, TimeoutError))
