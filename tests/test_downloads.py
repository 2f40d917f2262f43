"""Downloads through the real huggingface_hub client against a loopback hub (tests/hub_server.py).

Covered: allow/ignore patterns with a paginated listing, resume after a connection cut and after a cancel, wrong
token, token only from machine settings, disk space checked before anything is written, size and hash checks
after, ModelScope routes, endpoint choice, and the background worker process with its job file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading

import pytest
from download_support import KIJAI_REPO, WAN_REPO, models_settings, run_cli, serve, wait_for
from huggingface_hub import constants as hf_constants

from studio import download_jobs
from studio.catalogue import CatalogueError, load_catalogue
from studio.download_jobs import cancel_job, list_jobs, load_job, new_job, run_job, start_job_process
from studio.downloads import DownloadError, download, local_status, partial_path, plan_download

CATALOGUE = load_catalogue()
CKPT_SET = CATALOGUE["wan21-t2v-1.3b-ckpt"]
CHUNK = hf_constants.DOWNLOAD_CHUNK_SIZE  # http_get writes in chunks of this size


@pytest.fixture
def hub(tmp_path):
    with serve(tmp_path, page_size=3) as server:
        yield server


def test_patterns_honoured_with_paginated_listing(hub, tmp_path):
    settings = models_settings(tmp_path)
    plan = plan_download(CKPT_SET, settings, endpoint=hub.url)
    download(plan, settings)
    folder = tmp_path / "models" / "Wan2.1-T2V-1.3B"
    got = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
                 and ".studio-download" not in p.parts)
    # --exclude "diffusion_pytorch_model*" "models_t5*" (diffusion-pipe docs), plus assets/ and examples/
    assert got == ["LICENSE.txt", "README.md", "Wan2.1_VAE.pth", "config.json", "google/umt5-xxl/special_tokens_map.json",
                   "google/umt5-xxl/spiece.model", "google/umt5-xxl/tokenizer.json"]
    for path in got:
        assert (folder / path).read_bytes() == hub.repos[WAN_REPO].files[path]
    tree_calls = [r for r in hub.requests if "/tree/" in r.path]
    assert len(tree_calls) > 1  # the listing was paginated and every page followed
    # Files come from the commit the revision resolved to, not from a moving branch.
    assert all(hub.repos[WAN_REPO].commit in r.path for r in hub.requests if "/resolve/" in r.path)
    assert local_status(CKPT_SET, settings) == "complete"


def test_the_loopback_hub_answers_the_real_clients_own_calls(hub, tmp_path):
    """HEAD metadata (ETag, X-Repo-Commit, X-Linked-Size behind a redirect) and snapshot_download's own path."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, snapshot_download

    repo = hub.repos[WAN_REPO]
    small = get_hf_file_metadata(hf_hub_url(WAN_REPO, "config.json", endpoint=hub.url), token=False)
    assert (small.commit_hash, small.size) == (repo.commit, len(repo.files["config.json"]))
    lfs = get_hf_file_metadata(hf_hub_url(WAN_REPO, "Wan2.1_VAE.pth", endpoint=hub.url), token=False)
    assert lfs.etag == hashlib.sha256(repo.files["Wan2.1_VAE.pth"]).hexdigest()
    assert lfs.size == len(repo.files["Wan2.1_VAE.pth"])
    folder = snapshot_download(WAN_REPO, endpoint=hub.url, token=False, local_dir=tmp_path / "snap",
                               allow_patterns=["google/*", "config.json"])
    got = sorted(p.relative_to(folder).as_posix() for p in (tmp_path / "snap").rglob("*")
                 if p.is_file() and ".cache" not in p.parts)
    assert got == ["config.json", "google/umt5-xxl/special_tokens_map.json", "google/umt5-xxl/spiece.model",
                   "google/umt5-xxl/tokenizer.json"]


def test_resume_after_the_server_cuts_a_transfer(tmp_path):
    settings = models_settings(tmp_path)
    with serve(tmp_path) as hub:
        big = os.urandom(CHUNK + CHUNK // 2)
        hub.repos[WAN_REPO].files["Wan2.1_VAE.pth"] = big
        hub.cut_once(WAN_REPO, "Wan2.1_VAE.pth", CHUNK + 12345)
        download(plan_download(CKPT_SET, settings, endpoint=hub.url), settings)
        ranges = [r for r in hub.ranges_for("Wan2.1_VAE.pth") if r]
    # The client asked only for what it had not written yet, on the resolve URL and again on its CDN redirect.
    assert set(ranges) == {f"bytes={CHUNK}-"}
    got = (tmp_path / "models" / "Wan2.1-T2V-1.3B" / "Wan2.1_VAE.pth").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()


def test_cancel_keeps_the_partial_file_and_the_next_run_resumes_it(tmp_path):
    settings = models_settings(tmp_path)
    with serve(tmp_path, throttle_bytes_per_s=40 * 1024 * 1024) as hub:
        big = os.urandom(CHUNK + CHUNK // 2)
        hub.repos[WAN_REPO].files["Wan2.1_VAE.pth"] = big
        stop = threading.Event()
        job = new_job(CKPT_SET, source="hf", endpoint=hub.url)
        part = partial_path(tmp_path / "models" / "Wan2.1-T2V-1.3B", "Wan2.1_VAE.pth")
        worker = threading.Thread(target=run_job, args=(job, settings), kwargs={"stop": stop})
        worker.start()
        wait_for(lambda: part.exists() and part.stat().st_size >= CHUNK)
        stop.set()
        worker.join(30)
        assert load_job(job.job_id).status == "cancelled"
        assert part.stat().st_size == CHUNK
        assert not (tmp_path / "models" / "Wan2.1-T2V-1.3B" / "Wan2.1_VAE.pth").exists()
        hub.throttle_bytes_per_s = 0
        again = run_job(new_job(CKPT_SET, source="hf", endpoint=hub.url), settings)
        assert again.status == "done", again.message
        assert hub.ranges_for("Wan2.1_VAE.pth")[-1] == f"bytes={CHUNK}-"
    assert (tmp_path / "models" / "Wan2.1-T2V-1.3B" / "Wan2.1_VAE.pth").read_bytes() == big
    assert not part.exists()


def test_a_wrong_token_gives_a_clear_error(hub, tmp_path):
    hub.tokens = {"hf_good"}
    with pytest.raises(DownloadError, match=r"refused the Hugging Face token.*hf_token in Settings"):
        plan_download(CKPT_SET, models_settings(tmp_path, hf_token="hf_wrong"), endpoint=hub.url)
    assert plan_download(CKPT_SET, models_settings(tmp_path, hf_token="hf_good"), endpoint=hub.url).files


def test_token_comes_only_from_machine_settings(hub, tmp_path, monkeypatch):
    hub.tokens = {"hf_good"}
    hub.repos[WAN_REPO].private = True
    monkeypatch.setenv("HF_TOKEN", "hf_good")  # a token in the environment must not be picked up silently
    with pytest.raises(DownloadError, match=r"not found .*set hf_token in Settings"):
        plan_download(CKPT_SET, models_settings(tmp_path), endpoint=hub.url)
    assert not any(r.authorization for r in hub.requests)
    settings = models_settings(tmp_path, hf_token="hf_good")
    download(plan_download(CKPT_SET, settings, endpoint=hub.url), settings)
    assert {r.authorization for r in hub.requests if r.path.startswith("/api/")} == {"", "Bearer hf_good"}


def test_no_disk_space_fails_before_anything_is_written(hub, tmp_path):
    settings = models_settings(tmp_path)
    seen = []

    def tiny_disk(path):
        seen.append(path)
        return 1024

    with pytest.raises(DownloadError, match=r"not enough disk space.*Nothing was written"):
        plan_download(CKPT_SET, settings, endpoint=hub.url, free_space=tiny_disk)
    assert not (tmp_path / "models").exists()
    assert seen == [tmp_path]  # measured on the nearest existing folder of the target
    assert plan_download(CKPT_SET, settings, endpoint=hub.url, free_space=lambda p: 10**12).files


def test_disk_check_counts_files_already_downloaded(hub, tmp_path):
    settings = models_settings(tmp_path)
    plan = plan_download(CKPT_SET, settings, endpoint=hub.url)
    download(plan, settings)
    again = plan_download(CKPT_SET, settings, endpoint=hub.url, free_space=lambda p: 300 * 1024**2)
    assert again.needed_bytes == 0 and sum(again.on_disk.values()) == plan.total_bytes


def test_size_and_hash_are_checked_after_the_transfer(hub, tmp_path):
    settings = models_settings(tmp_path)
    folder = tmp_path / "models" / "Wan2.1-T2V-1.3B"
    repo = hub.repos[WAN_REPO]
    original = dict(repo.files)
    plan = plan_download(CKPT_SET, settings, endpoint=hub.url)
    repo.files["README.md"] = b"# longer than the listing says"  # the hub now serves another size
    with pytest.raises(DownloadError, match=r"README\.md.*(Consistency|hub lists)"):
        download(plan, settings)
    assert not (folder / "README.md").exists()
    repo.files.update(original)
    plan = plan_download(CKPT_SET, settings, endpoint=hub.url)
    repo.files["Wan2.1_VAE.pth"] = os.urandom(len(original["Wan2.1_VAE.pth"]))  # same size, other content
    with pytest.raises(DownloadError, match="content hash differs"):
        download(plan, settings)
    assert not (folder / "Wan2.1_VAE.pth").exists() and (folder / "README.md").exists()
    assert not partial_path(folder, "Wan2.1_VAE.pth").exists()


def test_modelscope_source(hub, tmp_path):
    settings = models_settings(tmp_path)
    plan = plan_download(CKPT_SET, settings, source="modelscope", endpoint=hub.url)
    assert plan.revision == "master" and {f.path for f in plan.files} >= {"config.json", "Wan2.1_VAE.pth"}
    assert all(f.sha256 for f in plan.files)
    download(plan, settings)
    assert any(r.path == f"/api/v1/models/{WAN_REPO}/repo" for r in hub.requests)
    assert (tmp_path / "models" / "Wan2.1-T2V-1.3B" / "config.json").exists()
    with pytest.raises(CatalogueError, match=r"not published on ModelScope.*hf-mirror"):
        plan_download(CATALOGUE["kijai-umt5-enc-bf16"], settings, source="modelscope", endpoint=hub.url)


def test_endpoint_from_settings_and_bad_endpoints(hub, tmp_path):
    settings = models_settings(tmp_path, hf_endpoint=hub.url)
    assert plan_download(CATALOGUE["kijai-umt5-enc-bf16"], settings).repo == KIJAI_REPO
    with pytest.raises(DownloadError, match="must be an http"):
        plan_download(CKPT_SET, settings, endpoint="ftp://mirror")
    with pytest.raises(DownloadError, match=r"cannot reach .*mirror"):
        plan_download(CKPT_SET, settings, endpoint="http://127.0.0.1:9")


def test_a_listing_that_would_write_outside_the_target_is_refused(hub, tmp_path):
    hub.repos[WAN_REPO].files["google/../../../escape.txt"] = b"x"
    with pytest.raises(DownloadError, match="unsafe file path"):
        plan_download(CKPT_SET, models_settings(tmp_path), endpoint=hub.url)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "models").exists()


def test_missing_repo_and_revision(hub, tmp_path):
    settings = models_settings(tmp_path)
    pinned = dataclasses.replace(CKPT_SET, revision="v9.9")
    with pytest.raises(DownloadError, match=r"revision 'v9\.9' does not exist in Wan-AI/Wan2\.1-T2V-1\.3B"):
        plan_download(pinned, settings, endpoint=hub.url)
    commit = dataclasses.replace(CKPT_SET, revision=hub.repos[WAN_REPO].commit)  # a pinned commit works
    assert plan_download(commit, settings, endpoint=hub.url).commit == hub.repos[WAN_REPO].commit
    del hub.repos[KIJAI_REPO]
    with pytest.raises(DownloadError, match=f"{KIJAI_REPO} was not found"):
        plan_download(CATALOGUE["kijai-umt5-enc-bf16"], settings, endpoint=hub.url)


def test_worker_process_reports_through_the_job_file(hub, tmp_path):
    settings = models_settings(tmp_path)
    job = start_job_process(CKPT_SET, settings, source="hf", endpoint=hub.url)
    done = wait_for(lambda: next((j for j in list_jobs() if j.job_id == job.job_id and j.status == "done"), None))
    assert done.done_bytes == done.total_bytes > 0 and all(f.done == f.size for f in done.files)
    assert done.commit == hub.repos[WAN_REPO].commit
    assert (tmp_path / "models" / "Wan2.1-T2V-1.3B" / "config.json").exists()
    assert download_jobs._CHILDREN[job.job_id].wait(10) == 0
    list_jobs()
    assert job.job_id not in download_jobs._CHILDREN  # reaped: no zombie left behind


def test_cancel_a_worker_process(tmp_path):
    settings = models_settings(tmp_path)
    with serve(tmp_path, throttle_bytes_per_s=2 * 1024 * 1024) as hub:
        hub.repos[WAN_REPO].files["Wan2.1_VAE.pth"] = os.urandom(CHUNK + 1000)
        job = start_job_process(CKPT_SET, settings, source="hf", endpoint=hub.url)
        wait_for(lambda: load_job(job.job_id).status == "running")
        with pytest.raises(DownloadError, match="already downloading"):
            start_job_process(CATALOGUE["wan21-t2v-1.3b-official"], settings, source="hf", endpoint=hub.url)
        assert "cancelling" in cancel_job(job.job_id)
        final = wait_for(lambda: (j := load_job(job.job_id)).status in download_jobs.FINISHED and j)
    assert final.status == "cancelled" and "partial files were kept" in final.message
    assert "not running" in cancel_job(job.job_id)


def test_a_job_whose_process_died_reads_as_interrupted(tmp_path):
    job = new_job(CKPT_SET, source="hf")
    job.status, job.pid, job.pid_started = "running", 999_999, 1.0
    download_jobs.save_job(job)
    shown = next(j for j in list_jobs() if j.job_id == job.job_id)
    assert shown.status == "interrupted" and "start it again to resume" in shown.message
    fresh = new_job(CKPT_SET, source="hf")  # not started yet: still in its start-up grace period
    assert next(j for j in list_jobs() if j.job_id == fresh.job_id).status == "planning"


def test_cli_plan_and_download(hub, tmp_path, capsys):
    settings = models_settings(tmp_path)
    common = ["--settings", settings.path, "--endpoint", hub.url, "--json"]
    code, out = run_cli(["download", "wan21-t2v-1.3b-ckpt", "--plan", *common], capsys)
    plan = json.loads(out)
    assert code == 0 and plan["needed_bytes"] == plan["total_bytes"] > 0
    assert not (tmp_path / "models").exists()  # --plan writes nothing
    code, out = run_cli(["download", "wan21-t2v-1.3b-ckpt", *common], capsys)
    job = json.loads(out)
    assert code == 0 and job["status"] == "done" and job["done_bytes"] == plan["total_bytes"]
    assert any(j.job_id == job["job_id"] for j in list_jobs())  # the GUI lists CLI downloads too
    hub.repos.pop(KIJAI_REPO)
    code, out = run_cli(["download", "kijai-umt5-enc-bf16", *common], capsys)
    assert code == 1 and json.loads(out)["status"] == "failed"


def test_old_finished_jobs_are_forgotten(monkeypatch):
    monkeypatch.setattr(download_jobs, "KEEP_FINISHED_JOBS", 2)
    finished = []
    for _ in range(3):
        job = new_job(CKPT_SET, source="hf")
        job.status = "done"
        download_jobs.save_job(job)
        finished.append(job.job_id)
    running = new_job(CKPT_SET, source="hf")
    ids = {j.job_id for j in list_jobs()}
    assert running.job_id in ids and finished[0] not in ids and set(finished[1:]) <= ids
