"""Frame-count and resolution rules: each with a preset that triggers it and one that does not."""

from __future__ import annotations

import pytest
from preflight_support import context, shipped

from studio import checks_frames as rules


def test_no_frame_counts_is_an_error_with_a_default_fix():
    [finding] = rules.frames_present(context(shipped("musubi-wan21-t2v-1.3b-24gb", dataset__frames=[])))
    assert finding.level == "error" and finding.action.changes == {"dataset.frames": [1, 33]}
    assert rules.frames_present(context(shipped("musubi-wan21-t2v-1.3b-24gb"))) == []


@pytest.mark.parametrize(("preset", "frames", "fixed"), [
    ("musubi-wan21-t2v-1.3b-24gb", [1, 24, 48], [1, 21, 45]),  # musubi docs: 24 -> 21, 48 -> 45
    ("diffusion-pipe-wan21-t2v-1.3b-24gb", [1, 72], [1, 69]),
    ("diffusion-pipe-ltx-video-24gb", [1, 50], [1, 49]),  # LTX: 8N+1
])
def test_frame_counts_that_the_trainer_would_round_down(preset, frames, fixed):
    [finding] = rules.frames_valid(context(shipped(preset, dataset__frames=frames)))
    assert finding.level == "warning" and finding.action.changes == {"dataset.frames": fixed}


@pytest.mark.parametrize(("preset", "frames"), [("musubi-wan21-t2v-1.3b-24gb", [1, 33, 81]),
                                                ("diffusion-pipe-ltx-video-24gb", [1, 49, 97])])
def test_valid_frame_counts_pass(preset, frames):
    assert rules.frames_valid(context(shipped(preset, dataset__frames=frames))) == []


def test_framepack_needs_a_whole_latent_window():
    [finding] = rules.framepack_minimum(context(shipped("musubi-framepack-24gb", dataset__frames=[33, 73])))
    assert finding.level == "error" and "37" in finding.message
    assert finding.action.changes == {"dataset.frames": [73]}
    smaller_window = shipped("musubi-framepack-24gb", dataset__frames=[33],
                             backend__musubi_tuner__latent_window_size=8)  # 8*4+1 = 33
    assert rules.framepack_minimum(context(smaller_window)) == []


def test_i2v_with_single_frame_samples():
    [finding] = rules.i2v_single_frame(context(shipped("musubi-wan21-i2v-14b-24gb", dataset__frames=[1, 33])))
    assert finding.action.changes == {"dataset.frames": [33]}
    assert rules.i2v_single_frame(context(shipped("musubi-wan21-i2v-14b-24gb"))) == []
    assert rules.i2v_single_frame(context(shipped("musubi-wan21-t2v-1.3b-24gb"))) == []  # T2V trains images too


@pytest.mark.parametrize(("preset", "size", "fixed"), [
    ("musubi-wan21-t2v-1.3b-24gb", [850, 478], [848, 480]),
    ("diffusion-pipe-ltx-video-24gb", [768, 500], [768, 512]),  # LTX rounds to 32 px
])
def test_resolution_off_the_bucket_grid(preset, size, fixed):
    [finding] = rules.resolution_multiple(context(shipped(preset, dataset__resolution=size)))
    assert finding.action.changes == {"dataset.resolution": fixed}
    assert rules.resolution_multiple(context(shipped(preset, dataset__resolution=fixed))) == []


def test_musubi_chunk_extraction_with_single_frames():
    chunky = shipped("musubi-wan21-t2v-1.3b-24gb", backend__musubi_tuner__frame_extraction="chunk")
    [finding] = rules.musubi_frame_extraction(context(chunky))
    assert finding.level == "warning" and finding.action.changes == {"dataset.frames": [33, 49]}
    head = shipped("musubi-wan21-t2v-1.3b-24gb")
    assert rules.musubi_frame_extraction(context(head)) == []


def test_musubi_uniform_with_one_sample_is_head():
    uniform = shipped("musubi-wan21-t2v-1.3b-24gb", backend__musubi_tuner__frame_extraction="uniform")
    [finding] = rules.musubi_frame_extraction(context(uniform))
    assert finding.level == "info" and finding.action.changes == {"backend.musubi_tuner.frame_extraction": "head"}
    several = shipped("musubi-wan21-t2v-1.3b-24gb", backend__musubi_tuner__frame_extraction="uniform",
                      backend__musubi_tuner__frame_sample=3)
    assert rules.musubi_frame_extraction(context(several)) == []
