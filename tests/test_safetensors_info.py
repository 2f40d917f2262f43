"""Reading weights files without loading them: dtypes, parameter counts, fp8_scaled, cut-short files, pickles."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from safetensors.numpy import save_file
from weights_fixtures import wan_dit_tensors, write_safetensors, write_torch_zip

from studio.safetensors_info import inspect_weights, read_safetensors_header, torch_zip_storage_dtypes


def test_reads_a_file_written_by_the_reference_library(tmp_path):
    path = tmp_path / "ref.safetensors"
    save_file({"a.weight": np.zeros((4, 8), dtype=np.float16), "b.bias": np.ones(8, dtype=np.float32)}, str(path),
              metadata={"format": "pt"})
    info = inspect_weights(path)
    assert info.kind == "safetensors" and not info.problem
    assert info.parameters == 40
    assert info.dtype_parameters == {"fp16": 32, "fp32": 8}
    assert info.main_dtype == "fp16" and info.precision == "fp16"
    assert info.metadata == {"format": "pt"}
    assert info.tensors["a.weight"].shape == (4, 8)


def test_bf16_parameter_count_and_comfy_prefix(tmp_path):
    path = write_safetensors(tmp_path / "dit.safetensors",
                             wan_dit_tensors(dim=1536, prefix="model.diffusion_model."))
    info = inspect_weights(path)
    assert info.precision == "bf16"
    assert info.parameters == 1536 * 16 * 4 + 2 * 1536 * 1536
    # The ComfyUI prefix is looked through, as musubi's detect_wan_sd_dtype does.
    assert info.dtype_of("blocks.0.cross_attn.k.weight") == "bf16"
    assert info.shape_of("blocks.0.self_attn.q.weight") == (1536, 1536)


def test_plain_fp8_is_not_fp8_scaled(tmp_path):
    info = inspect_weights(write_safetensors(tmp_path / "fp8.safetensors", wan_dit_tensors(dtype="F8_E4M3")))
    assert info.main_dtype == "fp8_e4m3fn" and not info.fp8_scaled and info.precision == "fp8_e4m3fn"


def test_comfyui_fp8_scaled_is_detected(tmp_path):
    info = inspect_weights(write_safetensors(tmp_path / "s.safetensors", wan_dit_tensors(dtype="F8_E4M3", scaled=True)))
    assert info.fp8_scaled and info.precision == "fp8_scaled"


def test_cut_short_file_is_reported_not_raised(tmp_path):
    path = write_safetensors(tmp_path / "cut.safetensors", wan_dit_tensors(), truncate_by=1000)
    info = inspect_weights(path)
    assert "cut short" in info.problem and "Download it again" in info.problem
    with pytest.raises(ValueError, match="cut short"):
        read_safetensors_header(path)


@pytest.mark.parametrize("content, expected", [
    (b"\x05\x00", "too short"),
    ((10**9).to_bytes(8, "little") + b"{}", "does not fit"),
    ((4).to_bytes(8, "little") + b"nope", "not valid JSON"),
])
def test_malformed_headers(tmp_path, content, expected):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    assert expected in inspect_weights(path).problem


def test_byte_range_must_match_dtype_and_shape(tmp_path):
    path = tmp_path / "lie.safetensors"
    header = b'{"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 4]}}'
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    assert "should take 8 bytes" in inspect_weights(path).problem


def test_folder_of_shards_is_summed(tmp_path):
    write_safetensors(tmp_path / "shards" / "a-00001-of-00002.safetensors", {"x": ("BF16", (10, 10))})
    write_safetensors(tmp_path / "shards" / "a-00002-of-00002.safetensors", {"y": ("BF16", (5,))})
    info = inspect_weights(tmp_path / "shards")
    assert info.kind == "safetensors_dir" and info.parameters == 105 and info.precision == "bf16"
    assert "folder has no .safetensors" in inspect_weights(tmp_path).problem


def test_torch_zip_dtype_is_found_without_unpickling(tmp_path):
    path = write_torch_zip(tmp_path / "mp_rank_00_model_states.pt", ["BFloat16Storage"])
    info = inspect_weights(path)
    assert info.kind == "pickle" and info.pickle_dtypes == ("bf16",) and info.main_dtype == "bf16"
    fp8 = write_torch_zip(tmp_path / "fp8.pt", ["Float8_e4m3fnStorage", "FloatStorage"])
    assert torch_zip_storage_dtypes(fp8) == (("fp32", "fp8_e4m3fn"), "")


def test_a_malicious_pickle_is_parsed_never_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = write_torch_zip(tmp_path / "evil.pth", [], extra_pickle=pickle.dumps(Evil(), protocol=2))
    info = inspect_weights(path)
    assert info.kind == "pickle" and not marker.exists()


def test_other_kinds(tmp_path):
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    assert inspect_weights(legacy).kind == "pickle" and not inspect_weights(legacy).problem
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert inspect_weights(tmp_path / "m.gguf").kind == "gguf"
    assert inspect_weights(tmp_path / "absent.safetensors").kind == "missing"
    broken_zip = tmp_path / "broken.pth"
    broken_zip.write_bytes(write_torch_zip(tmp_path / "ok.pth", ["HalfStorage"]).read_bytes()[:-40])
    assert "cut short" in inspect_weights(broken_zip).problem or "damaged" in inspect_weights(broken_zip).problem
