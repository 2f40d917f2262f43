"""Trainer quirks: each rule with a preset that triggers it and one that does not."""

from __future__ import annotations

import pytest
from preflight_support import context, shipped

from studio import checks_trainer as rules

MUSUBI = "musubi-wan21-t2v-1.3b-24gb"
DP = "diffusion-pipe-wan21-t2v-1.3b-24gb"


def one(findings):
    assert len(findings) == 1, findings
    return findings[0]


def test_diffusion_pipe_ignores_alpha():
    finding = one(rules.dp_alpha(context(shipped(DP, network__alpha=16.0))))
    assert finding.level == "warning" and "2x" in finding.message
    assert finding.action.changes == {"network.alpha": 32.0}
    assert rules.dp_alpha(context(shipped(DP))) == []
    assert rules.dp_alpha(context(shipped(MUSUBI, network__alpha=16.0))) == []  # musubi honours alpha


def test_musubi_alpha_above_rank_and_tiny_alpha():
    high = one(rules.musubi_alpha(context(shipped(MUSUBI, network__alpha=64.0))))
    assert high.level == "warning" and high.action.changes == {"network.alpha": 32.0}
    tiny = one(rules.musubi_alpha(context(shipped(MUSUBI, network__alpha=1.0))))
    assert tiny.level == "info" and "0.0312" in tiny.message
    assert rules.musubi_alpha(context(shipped(MUSUBI, network__alpha=16.0))) == []


def test_runs_that_cannot_be_resumed():
    dp = one(rules.resume_possible(context(shipped(DP, training__checkpoint_every_n_minutes=0))))
    assert "Unable to find latest file" in dp.message
    assert dp.action.changes == {"training.checkpoint_every_n_minutes": 30}
    musubi = one(rules.resume_possible(context(shipped(MUSUBI, training__save_state=False))))
    assert musubi.action.changes == {"training.save_state": True}
    assert rules.resume_possible(context(shipped(DP))) == rules.resume_possible(context(shipped(MUSUBI))) == []


@pytest.mark.parametrize("kind", ["adamw8bitkahan", "adamw_optimi"])
def test_diffusion_pipe_optimizers_on_musubi(kind):
    finding = one(rules.optimizer_available(context(shipped(MUSUBI, optimizer__type=kind))))
    assert finding.level == "error" and finding.action.changes == {"optimizer.type": "adamw8bit"}
    assert rules.optimizer_available(context(shipped(DP, optimizer__type=kind))) == []


def test_learning_rate_far_above_the_lora_range():
    finding = one(rules.learning_rate_risk(context(shipped(MUSUBI, optimizer__learning_rate=1.6e-3))))
    assert "nan" in finding.message and finding.action.changes == {"optimizer.learning_rate": 2e-4}
    assert rules.learning_rate_risk(context(shipped(MUSUBI))) == []
    prodigy = shipped(MUSUBI, optimizer__type="prodigy", optimizer__learning_rate=1.0)
    assert rules.learning_rate_risk(context(prodigy)) == []  # Prodigy is run at lr 1.0 by design


def test_float16_on_diffusion_pipe_risks_nan():
    finding = one(rules.fp16_risk(context(shipped(DP, model__dtype="float16"))))
    assert finding.action.changes == {"model.dtype": "bfloat16"}
    assert rules.fp16_risk(context(shipped(DP))) == []
    assert rules.fp16_risk(context(shipped(MUSUBI, model__dtype="float16"))) == []  # musubi scales fp16 losses


@pytest.mark.parametrize(("preset", "swap", "limit"), [
    (MUSUBI, 30, 29), ("musubi-wan21-t2v-14b-24gb", 40, 39), (DP, 29, 28),
    ("diffusion-pipe-wan21-t2v-14b-24gb-min-vram", 39, 38), ("musubi-hunyuan-video-24gb", 39, 38),
])
def test_block_swap_above_the_trainers_limit(preset, swap, limit):
    finding = one(rules.swap_limits(context(shipped(preset, memory__blocks_to_swap=swap))))
    assert finding.level == "error" and finding.action.changes == {"memory.blocks_to_swap": limit}
    assert rules.swap_limits(context(shipped(preset, memory__blocks_to_swap=limit))) == []


def test_block_swap_where_the_trainer_has_none_or_cannot_combine_it():
    ltx = one(rules.swap_limits(context(shipped("diffusion-pipe-ltx-video-24gb", memory__blocks_to_swap=4))))
    assert ltx.action.changes == {"memory.blocks_to_swap": 0}
    stages = one(rules.swap_limits(context(shipped(DP, memory__blocks_to_swap=4,
                                                   backend__diffusion_pipe__pipeline_stages=2))))
    assert stages.action.changes == {"backend.diffusion_pipe.pipeline_stages": 1}
    both = shipped("musubi-wan22-t2v-a14b-80gb", memory__blocks_to_swap=10,
                   backend__musubi_tuner__offload_inactive_dit=True)
    offload = one(rules.swap_limits(context(both)))
    assert offload.field == "backend.musubi_tuner.offload_inactive_dit"
    assert rules.swap_limits(context(shipped("musubi-wan22-t2v-a14b-80gb", memory__blocks_to_swap=10))) == []


def test_fp8_scaled_needs_fp8_base_and_is_not_for_hunyuan():
    alone = one(rules.fp8_flags(context(shipped(MUSUBI, backend__musubi_tuner__fp8_scaled=True))))
    assert alone.action.changes == {"memory.fp8_base": True}
    hunyuan = one(rules.fp8_flags(context(shipped("musubi-hunyuan-video-24gb", backend__musubi_tuner__fp8_scaled=True))))
    assert hunyuan.action.changes == {"backend.musubi_tuner.fp8_scaled": False, "memory.fp8_base": True}
    ok = shipped(MUSUBI, backend__musubi_tuner__fp8_scaled=True, memory__fp8_base=True)
    assert rules.fp8_flags(context(ok)) == []


def test_musubi_constant_schedule_with_warmup():
    finding = one(rules.musubi_schedule(context(shipped(MUSUBI, optimizer__warmup_steps=100))))
    assert finding.action.changes == {"optimizer.lr_scheduler": "constant_with_warmup"}
    assert rules.musubi_schedule(context(shipped(DP, optimizer__warmup_steps=100))) == []  # a separate key there


def test_framepack_batches_need_split_attention():
    finding = one(rules.framepack_batch(context(shipped("musubi-framepack-24gb", dataset__batch_size=2))))
    assert finding.action.changes == {"backend.musubi_tuner.split_attn": True}
    split = shipped("musubi-framepack-24gb", dataset__batch_size=2, backend__musubi_tuner__split_attn=True)
    assert rules.framepack_batch(context(split)) == []


def test_save_interval_longer_than_the_run():
    finding = one(rules.save_interval(context(shipped(MUSUBI, training__epochs=10, training__save_every_n_epochs=20))))
    assert finding.action.changes == {"training.save_every_n_epochs": 2}
    assert rules.save_interval(context(shipped(MUSUBI))) == []


def test_attention_kernels_that_must_be_installed():
    finding = one(rules.attention_install(context(shipped(MUSUBI, backend__musubi_tuner__attention="flash_attn"))))
    assert finding.level == "info" and "--flash_attn" in finding.message
    assert rules.attention_install(context(shipped(MUSUBI))) == []


def test_a_gpu_listed_twice():
    finding = one(rules.gpu_ids_unique(context(shipped(MUSUBI, training__gpu_ids=[0, 1, 0]))))
    assert finding.action.changes == {"training.gpu_ids": [0, 1]}
    assert rules.gpu_ids_unique(context(shipped(MUSUBI, training__gpu_ids=[0, 1]))) == []
