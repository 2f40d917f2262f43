"""Model-file rules as pre-flight reports them (the per-file rules are studio.model_files', tested in
tests/test_model_files.py) and the Wan2.2 expert / timestep rule."""

from __future__ import annotations

import pytest
from preflight_support import context, ready_machine, shipped
from weights_fixtures import wan_dit_tensors, write_safetensors

from studio import checks_model as rules

WAN22 = "musubi-wan22-t2v-a14b-80gb"


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    return ready_machine(tmp_path_factory.mktemp("model-machine"), clips=1)


def test_model_files_are_checked_through_the_shared_rules(machine):
    findings = rules.model_files(context(shipped("musubi-wan21-t2v-1.3b-24gb", model__dit=""), machine))
    [missing] = [f for f in findings if f.level == "error"]
    assert missing.field == "model.dit"
    fine = rules.model_files(context(shipped("musubi-wan21-t2v-1.3b-24gb"), machine))
    assert [f.level for f in fine] == ["info"] * len(fine) and any(f.field == "model.dit" for f in fine)


def test_fp16_weights_with_bf16_mixed_precision_are_refused_by_musubi(machine):
    write_safetensors(machine.models / "wan_fp16.safetensors", wan_dit_tensors(dim=1536, dtype="F16"))
    preset = shipped("musubi-wan21-t2v-1.3b-24gb", model__dit="${MODELS}/wan_fp16.safetensors")
    [mismatch] = [f for f in rules.model_files(context(preset, machine)) if f.level == "error"]
    assert "mixed precision must be fp16" in mismatch.message and mismatch.action.changes == {"model.dtype": "float16"}


@pytest.mark.parametrize(("dit", "span"), [
    ("${MODELS}/wan2.2_t2v_low_noise_14B_fp16.safetensors", (0, 875)),
    ("${MODELS}/wan2.2_t2v_high_noise_14B_fp16.safetensors", (875, 1000)),
])
def test_one_wan22_expert_trained_over_all_timesteps(machine, dit, span):
    preset = shipped(WAN22, model__dit=dit, model__dit_high_noise="")
    [finding] = rules.wan22_experts(context(preset, machine))
    assert finding.level == "warning"
    assert finding.action.changes == {"backend.musubi_tuner.min_timestep": span[0],
                                      "backend.musubi_tuner.max_timestep": span[1],
                                      "backend.musubi_tuner.preserve_distribution_shape": True}


def test_wan22_expert_rule_is_quiet_when_the_range_is_set_or_both_experts_train(machine):
    both = shipped(WAN22)
    assert rules.wan22_experts(context(both, machine)) == []
    ranged = shipped(WAN22, model__dit_high_noise="", backend__musubi_tuner__max_timestep=875)
    assert rules.wan22_experts(context(ranged, machine)) == []
    assert rules.wan22_experts(context(shipped("musubi-wan21-t2v-14b-24gb"), machine)) == []
