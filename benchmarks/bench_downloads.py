"""Model download speed: the real huggingface_hub transfer (with on-the-fly SHA-256) over loopback, resuming a
half-downloaded file (the prefix is hashed again), reading a 14B-shaped safetensors header, checking a preset's
model files, and listing a big repo. Run: python benchmarks/bench_downloads.py
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from hub_server import HubServer  # noqa: E402
from huggingface_hub.utils import disable_progress_bars  # noqa: E402
from weights_fixtures import write_safetensors, write_torch_zip  # noqa: E402

from studio.catalogue import parse_catalogue  # noqa: E402
from studio.downloads import download, partial_path, plan_download  # noqa: E402
from studio.safetensors_info import inspect_weights  # noqa: E402
from studio.settings import Settings  # noqa: E402

SIZE = 512 * 1024 * 1024
CATALOGUE = parse_catalogue("""
[[sets]]
id = "bench"
title = "bench"
trainers = ["musubi_tuner"]
architectures = ["wan2.1-t2v-14b"]
hf_repo = "bench/big"
target = "big"
approx_gb = 0.5
""")[0]


def median_s(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def wan14b_header(path: Path) -> Path:
    """40 blocks x 25 tensors + embeddings, real 14B shapes (about 1,100 tensors), written sparse."""
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {"patch_embedding.weight": ("BF16", (5120, 16, 1, 2, 2))}
    for block in range(40):
        for name in ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
                     "cross_attn.v", "cross_attn.o"):
            tensors[f"blocks.{block}.{name}.weight"] = ("BF16", (5120, 5120))
            tensors[f"blocks.{block}.{name}.bias"] = ("BF16", (5120,))
        for name, shape in (("ffn.0.weight", (13824, 5120)), ("ffn.2.weight", (5120, 13824)),
                            ("ffn.0.bias", (13824,)), ("ffn.2.bias", (5120,)), ("norm3.weight", (5120,)),
                            ("norm3.bias", (5120,)), ("modulation", (1, 6, 5120)),
                            ("self_attn.norm_q.weight", (5120,)), ("cross_attn.norm_k.weight", (5120,))):
            tensors[f"blocks.{block}.{name}"] = ("BF16", shape)
    return write_safetensors(path, tensors)


def main() -> None:
    disable_progress_bars()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name, HubServer(page_size=1000) as hub:
        tmp = Path(tmp_name)
        settings = Settings(models_root=str(tmp / "models"))
        blob = bytes(range(256)) * (SIZE // 256)
        hub.add_repo("bench/big", {"model.safetensors": blob, **{f"cfg/{i}.json": b"{}" for i in range(1500)}})

        start = time.perf_counter()
        plan = plan_download(CATALOGUE, settings, endpoint=hub.url)
        rows.append(("list + plan, 1,501 files (2 pages)", f"{(time.perf_counter() - start) * 1000:.0f} ms"))
        big_plan = plan.__class__(**{**plan.__dict__, "files": [f for f in plan.files if f.path == "model.safetensors"]})
        target = tmp / "models" / "big" / "model.safetensors"

        def fresh() -> None:
            target.unlink(missing_ok=True)
            download(big_plan, settings)

        seconds = median_s(fresh, 3)
        rows.append(("download 512 MiB, loopback, sha256 on the fly", f"{SIZE / seconds / 1e6:.0f} MB/s"))

        resumes = []
        for _ in range(3):
            part = partial_path(target.parent, "model.safetensors")
            target.unlink(missing_ok=True)
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(blob[: SIZE // 2])
            identity = {"path": "model.safetensors", "size": SIZE, "sha256": big_plan.files[0].sha256, "git_oid": ""}
            (part.parent / (part.name + ".json")).write_text(json.dumps(identity))
            resumes.append(median_s(lambda: download(big_plan, settings), 1))
        rows.append(("resume at 50%: re-hash 256 MiB prefix + fetch 256 MiB", f"{statistics.median(resumes):.2f} s"))

        header = wan14b_header(tmp / "wan14b.safetensors")
        tensors = len(inspect_weights(header).tensors)
        rows.append((f"read 14B header ({tensors} tensors, {header.stat().st_size / 1e9:.1f} GB sparse)",
                     f"{median_s(lambda: inspect_weights(header), 20) * 1000:.1f} ms"))
        pth = write_torch_zip(tmp / "t5.pth", ["BFloat16Storage"] * 500)
        rows.append(("scan torch zip storages (500 globals)", f"{median_s(lambda: inspect_weights(pth), 20) * 1000:.2f} ms"))
        rows.append(("check_model_files, musubi Wan 14B preset", _check_time(tmp, header)))

    width = max(len(name) for name, _ in rows)
    print(f"{'measurement':<{width}}  result")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _check_time(tmp: Path, dit: Path) -> str:
    from backends import backend_fields
    from studio.model_files import check_model_files
    from studio.presets import new_preset

    settings = Settings(models_root=str(tmp))
    write_torch_zip(tmp / "vae.pth", ["FloatStorage"])
    preset = new_preset(backend_fields(), "musubi_tuner", "wan2.1-t2v-14b", "bench")
    preset.values["model"].update(dit="${MODELS}/" + dit.name, vae="${MODELS}/vae.pth", text_encoder="${MODELS}/t5.pth")
    return f"{median_s(lambda: check_model_files(preset, settings), 10) * 1000:.1f} ms"


if __name__ == "__main__":
    main()
