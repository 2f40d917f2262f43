"""Run the studio's own musubi-tuner train step for real, through the studio's runner, on a GPU without model files.

What it does (issue 4, optional point): plans a shipped preset with ``backends.get_backend("musubi_tuner").plan``,
drops the two cache steps (their VAE / umT5 weights and tokenizer are not available offline) and submits the rest,
unchanged, through ``studio.runner.submit``: the detached supervisor runs ``accelerate launch -m
musubi_tuner.wan_train_network ...`` exactly as ``python app.py run PRESET --wait`` would, writing log.txt,
metrics.jsonl and state.json. Two inputs are synthesised first, in a child process (so this process never holds a
CUDA context and the NVML memory reading is the trainer's alone):

* the DiT file the preset names (``wan2.1_t2v_1.3B_bf16.safetensors``): random tensors with the names and shapes of
  musubi's own ``WanModel`` for the task (N(0, 0.02), norms 1, biases 0), bf16, with the ``model.diffusion_model.``
  prefix of the Comfy-Org 1.3B file that ``detect_wan_sd_dtype`` looks for;
* the latent and text-encoder caches, written by musubi's own ``save_latent_cache_wan`` /
  ``save_text_encoder_output_cache_wan`` with the file names its ``VideoDataset`` derives, for clips of the given
  sizes, bucketed by musubi's ``BucketSelector``, from the ``dataset.toml`` the studio's plan wrote (read through
  musubi's ``ConfigSanitizer``, so the TOML is validated by the trainer before training starts). Latents are
  N(0, 1) of shape (16, (F-1)//4+1, h/8, w/8); text embeddings N(0, 1) of shape (tokens, 4096), both bf16, as the
  cache scripts store them.

The trainer is imported from ``--trainer-src`` (musubi-tuner's ``src`` folder); no trainer code is in this repo. It
runs with this interpreter (``sys.executable``), with ``--trainer-src`` (and ``--shim-dir`` if given) prepended to
PYTHONPATH in place of ``pip install -e .``. While the job runs, NVML (``studio.gpu.NvmlReader``) samples the GPU's
used memory every 0.25 s; the summary compares its peak with ``studio.vram.estimate`` for the same preset.

    python benchmarks/device_train_smoke.py --trainer-src .trainers/musubi-tuner/src --work /tmp/smoke --out out/ \\
        [--shim-dir DIR] [--set training.epochs=3] [--preset presets/....toml] [--timeout-s 420]

Needs, besides the studio's own packages (tomlkit, psutil, nvidia-ml-py), musubi-tuner's training imports: torch,
accelerate, transformers, diffusers, safetensors, einops, opencv, pillow, toml, voluptuous, easydict, ftfy,
bitsandbytes (AdamW8bit), tensorboard, and PyAV at import time only (see docs/device-run.md for the run on the lent
H100, its exact command and what was carried). Without a GPU musubi stops at the first DiT forward (CPU autocast
cannot run its fp32 time-embedding region over bf16 weights), so a CPU run checks everything up to the training loop.

Writes into ``--out``: summary.json (what happened), and the job's log.txt, metrics.jsonl, state.json, plan.json,
dataset.toml, supervisor.log. Exit code 0 when the job succeeded with a LoRA file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

DEFAULT_PRESET = REPO_ROOT / "presets" / "musubi-wan21-t2v-1.3b-24gb.toml"
DIT_PREFIX = "model.diffusion_model."  # the Comfy-Org 1.3B file's key prefix (wan/modules/model.py load_wan_model)
TEXT_DIM = 4096  # umT5-XXL hidden size: the width of musubi's varlen_t5 cache tensors
LATENT_CHANNELS = 16  # Wan2.1 VAE z_dim
GIB = 1024**3


@dataclass(frozen=True)
class Clip:
    """A clip the caches pretend to come from: musubi names cache files after its name and original size."""

    name: str
    width: int
    height: int
    frames: int
    caption: str
    text_tokens: int


CLIPS = (
    Clip("clip01", 832, 480, 61, "a red kite drifts over a windy beach at sunset, slow pan", 31),
    Clip("clip02", 1280, 720, 49, "a cat walks along a fence in the rain, close-up, handheld camera", 38),
)


# Stage 1 (child process): synthesise the DiT file and the caches with musubi's own code ---------------------------


def prepare(dataset_toml: str, dit_path: str, task: str, seed: int) -> dict[str, Any]:
    import torch
    from musubi_tuner.dataset import config_utils
    from musubi_tuner.dataset.image_video_dataset import (
        ARCHITECTURE_WAN,
        BucketSelector,
        ItemInfo,
        VideoDataset,
        save_latent_cache_wan,
        save_text_encoder_output_cache_wan,
    )

    torch.manual_seed(seed)
    started = time.perf_counter()
    dit = write_random_dit(dit_path, task, torch)
    dit_s = time.perf_counter() - started
    blueprint = config_utils.BlueprintGenerator(config_utils.ConfigSanitizer()).generate(
        config_utils.load_user_config(dataset_toml), argparse.Namespace(), architecture=ARCHITECTURE_WAN)
    group = config_utils.generate_dataset_group_by_blueprint(blueprint.dataset_group)
    written = []
    for dataset in group.datasets:
        if not isinstance(dataset, VideoDataset):
            raise SystemExit(f"expected only video datasets in {dataset_toml}, got {type(dataset).__name__}")
        selector = BucketSelector(dataset.resolution, dataset.enable_bucket, dataset.bucket_no_upscale,
                                  dataset.architecture)
        for clip in CLIPS:
            Path(dataset.video_directory, clip.name + dataset.caption_extension).write_text(clip.caption + "\n")
            te_item = ItemInfo(clip.name + ".mp4", clip.caption, (0, 0), (0, 0))
            te_item.text_encoder_output_cache_path = dataset.get_text_encoder_output_cache_path(te_item)
            save_text_encoder_output_cache_wan(te_item, torch.randn(clip.text_tokens, TEXT_DIM).to(torch.bfloat16))
            written.append(te_item.text_encoder_output_cache_path)
            width, height = selector.get_bucket_resolution((clip.width, clip.height))
            for frames in dataset.target_frames:  # frame_extraction "head": one sample per target that fits
                if frames > clip.frames:
                    continue
                item = ItemInfo(f"{clip.name}_{0:05d}-{frames:03d}.mp4", clip.caption, (clip.width, clip.height),
                                (width, height, frames), frame_count=frames)
                item.latent_cache_path = dataset.get_latent_cache_path(item)
                latent = torch.randn(LATENT_CHANNELS, (frames - 1) // 4 + 1, height // 8, width // 8)
                save_latent_cache_wan(item, latent.to(torch.bfloat16), None, None, None)
                written.append(item.latent_cache_path)
    return {"dit": dit, "dit_write_s": round(dit_s, 1), "cache_files": [os.path.basename(p) for p in written]}


def write_random_dit(path: str, task: str, torch: Any) -> dict[str, Any]:
    """Random bf16 weights under musubi's WanModel names and shapes (built on the meta device, nothing allocated)."""
    from accelerate import init_empty_weights
    from musubi_tuner.wan.configs import WAN_CONFIGS
    from musubi_tuner.wan.modules.model import WanModel
    from safetensors.torch import save_file

    config = WAN_CONFIGS[task]
    with init_empty_weights():
        model = WanModel(model_type="i2v" if config.i2v else "t2v", model_version="2.2" if config.v2_2 else "2.1",
                         dim=config.dim, eps=config.eps, ffn_dim=config.ffn_dim, freq_dim=config.freq_dim,
                         in_dim=config.in_dim, num_heads=config.num_heads, num_layers=config.num_layers,
                         out_dim=config.out_dim, text_len=config.text_len, attn_mode="torch", split_attn=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    state = {}
    for name, meta in model.state_dict().items():
        if name.endswith(".bias"):
            tensor = torch.zeros(meta.shape, dtype=torch.bfloat16)
        elif "norm" in name and name.endswith(".weight"):
            tensor = torch.ones(meta.shape, dtype=torch.bfloat16)
        else:
            tensor = (torch.randn(meta.shape, device=device) * 0.02).to(torch.bfloat16).cpu()
        state[DIT_PREFIX + name] = tensor
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, path)
    params = sum(t.numel() for t in state.values())
    return {"path": path, "tensors": len(state), "params": params, "gib": round(os.path.getsize(path) / GIB, 2)}


# Stage 2: plan, submit through the runner, watch ---------------------------------------------------------------------


def make_settings(work: Path, trainer_src: Path) -> Any:
    from studio.settings import Settings, TrainerInstall

    settings = Settings(data_root=str(work / "data"), models_root=str(work / "models"),
                        output_root=str(work / "output"), runs_dir=str(work / "runs"),
                        presets_dir=str(work / "presets"), path=str(work / "home" / "settings.toml"))
    # The trainer runs under this interpreter; install_dir is the checkout (the plan's cwd), as Settings names it.
    settings.trainers["musubi_tuner"] = TrainerInstall(install_dir=str(trainer_src.parent), python=sys.executable)
    return settings


def load_preset_with(path: Path, overrides: list[str]) -> Any:
    from backends import backend_fields
    from studio.presets import apply_overrides, load_preset

    fields = backend_fields()
    return apply_overrides(load_preset(path, fields), overrides, fields)


def train_only(plan: Any) -> Any:
    """The plan minus its cache steps (their outputs already exist); every other step and file is kept as is."""
    return replace(plan, steps=[s for s in plan.steps if not s.name.startswith("cache")])


def run_prepare_child(args: argparse.Namespace, dataset_toml: Path, dit_path: str, task: str) -> dict[str, Any]:
    out = Path(args.work) / "prepare.json"
    argv = [sys.executable, str(Path(__file__).resolve()), "--stage", "prepare", "--trainer-src", args.trainer_src,
            "--work", args.work, "--out", args.out, "--dataset-toml", str(dataset_toml), "--dit-path", dit_path,
            "--task", task, "--result", str(out)]
    subprocess.run(argv, check=True)
    return json.loads(out.read_text())


def wait_for_job(settings: Any, job_id: str, timeout_s: float) -> tuple[Any, dict[str, Any]]:
    """Poll the job like ``app.py run --wait`` does, sampling NVML; stop it (forced) at the timeout."""
    from studio import jobs, runner
    from studio.gpu import NvmlReader

    reader = NvmlReader()
    have_nvml = reader.open()
    baseline = peak = None
    samples = 0
    started = time.monotonic()
    stop_sent = False
    while True:
        state = runner.job_state(settings, job_id)
        if have_nvml:
            used = reader.read()[0].memory_used_mib
            baseline = used if baseline is None else baseline
            peak = used if peak is None else max(peak, used)
            samples += 1
        if state.status in jobs.FINISHED:
            break
        if time.monotonic() - started > timeout_s and not stop_sent:
            runner.stop_job(settings, job_id, user="device_train_smoke", force=True)
            stop_sent = True
        time.sleep(0.25)
    reader.close()
    memory = {"nvml": have_nvml, "samples": samples, "baseline_mib": baseline, "peak_used_mib": peak,
              "peak_used_gib": round(peak / 1024, 2) if peak is not None else None,
              "wall_s": round(time.monotonic() - started, 1)}
    return state, memory


def read_metrics(path: Path) -> dict[str, Any]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    steps = [r for r in records if r.get("kind") == "step"]
    tb_tags = sorted({r["tag"] for r in records if r.get("kind") == "tb"})
    # Wall time between consecutive step records (as the supervisor read them, +-0.2 s): the later steps' s/it
    # without the first step's warm-up, which tqdm's smoothing=0 average includes.
    gaps = sorted(b["t"] - a["t"] for a, b in itertools.pairwise(steps) if "t" in a and "t" in b)
    return {
        "step_gap_median_s": round(gaps[len(gaps) // 2], 2) if gaps else None,
        "records": len(records), "step_records": len(steps),
        "epoch_records": [r["epoch"] for r in records if r.get("kind") == "epoch"],
        "losses": [r["loss"] for r in steps], "s_per_it_last": steps[-1].get("s_per_it") if steps else None,
        "total_reported": steps[-1].get("total") if steps else None, "tb_tags": tb_tags,
    }


def inspect_lora(path: str) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        keys = list(f.keys())
        metadata = f.metadata() or {}
        down = next((k for k in keys if k.endswith("lora_down.weight")), "")
        shape = list(f.get_slice(down).get_shape()) if down else []
    return {"file": os.path.basename(path), "mib": round(os.path.getsize(path) / 2**20, 1), "tensors": len(keys),
            "example": down, "example_shape": shape,
            "metadata": {k: metadata.get(k) for k in ("ss_network_module", "ss_network_dim", "ss_network_alpha",
                                                       "ss_architecture", "ss_steps", "ss_epoch") if k in metadata}}


def vram_estimate(preset: Any) -> dict[str, Any]:
    from studio.vram import estimate

    result = estimate(preset)
    return {"total_gib": round(result.total_gib, 2), "tokens": result.tokens,
            "breakdown": {k: round(v, 2) for k, v in result.breakdown.items()}}


def collect(job_dir: Path, out: Path, names: tuple[str, ...]) -> list[str]:
    copied = []
    for name in names:
        if (job_dir / name).is_file():
            shutil.copyfile(job_dir / name, out / name)
            copied.append(name)
    return copied


def run(args: argparse.Namespace) -> int:
    from backends import backend_fields, get_backend
    from backends.base import PlanOptions
    from backends.musubi_args import ARCH_SPECS
    from studio import jobs, runner
    from studio.presets import resolved

    work, out = Path(args.work).resolve(), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["VIDEO_LORA_STUDIO_HOME"] = str(work / "home")  # nothing touches the real studio home
    extra = [str(Path(p).resolve()) for p in (args.trainer_src, args.shim_dir) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([*extra, *filter(None, [os.environ.get("PYTHONPATH", "")])])
    settings = make_settings(work, Path(args.trainer_src).resolve())
    preset = load_preset_with(Path(args.preset), args.overrides)
    backend = get_backend("musubi_tuner")
    paths = resolved(preset, settings.roots(), backend_fields())
    for folder in (paths.get("dataset.path"), settings.output_root):
        Path(folder).mkdir(parents=True, exist_ok=True)

    # The dataset.toml is the same for every run folder (it names only the dataset and its cache folder), so a
    # preview plan's copy can drive the cache synthesis before the job exists.
    preview = backend.plan(preset, settings, str(work / "preview"), PlanOptions(gpu_ids=[0]))
    preview.write_files()
    task = ARCH_SPECS[preset.architecture].task  # the --task the plan passes
    prepared = run_prepare_child(args, work / "preview" / "dataset.toml", paths.get("model.dit"), task)

    def build(job_dir: str, options: PlanOptions) -> Any:
        return train_only(backend.plan(preset, settings, job_dir, options))

    launch = runner.LaunchOptions(gpu_ids=[0], user="device_train_smoke", regenerate_cache=False)
    state = runner.submit(build, preset=preset, settings=settings, launch=launch)
    job_dir = Path(settings.runs_dir) / state.job_id
    final, memory = wait_for_job(settings, state.job_id, args.timeout_s)
    outputs = backend.find_outputs(backend.output_spec(preset, settings, run_dir=str(job_dir)))
    summary = {
        "job_id": state.job_id, "status": final.status, "reason": final.reason, "exit_codes": final.exit_codes,
        "steps_run": final.step_names, "progress": final.progress, "banners": final.banners,
        "memory": memory, "vram_estimate": vram_estimate(preset), "prepare": prepared,
        "metrics": read_metrics(job_dir / jobs.METRICS_FILE),
        "loras": [inspect_lora(p) for p in outputs.loras], "checkpoints": [os.path.basename(p) for p in
                                                                           outputs.checkpoints],
        "dataset_toml_unchanged": (job_dir / "dataset.toml").read_text() == (work / "preview" / "dataset.toml")
        .read_text(),
        "host": host_facts(),
    }
    summary["copied"] = collect(job_dir, out, ("log.txt", "metrics.jsonl", "state.json", "plan.json", "dataset.toml",
                                               "supervisor.log"))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print_summary(summary)
    return 0 if final.status == jobs.SUCCEEDED and outputs.loras else 1


def host_facts() -> dict[str, Any]:
    from studio.gpu import detect_gpus

    return {"python": sys.version.split()[0], "gpus": [f"{g.name} ({g.total_mib} MiB)" for g in detect_gpus()]}


def print_summary(summary: dict[str, Any]) -> None:
    metrics, memory = summary["metrics"], summary["memory"]
    losses = ", ".join(f"{v:.4f}" for v in metrics["losses"] if v is not None)
    rows = [
        ("job", f"{summary['job_id']}: {summary['status']} ({summary['reason']})"),
        ("steps run", ", ".join(summary["steps_run"])),
        ("metrics.jsonl", f"{metrics['step_records']} step records of {metrics['total_reported']}, epochs "
                          f"{metrics['epoch_records']}, last s/it {metrics['s_per_it_last']}, median gap "
                          f"{metrics['step_gap_median_s']} s"),
        ("losses", losses or "-"),
        ("TensorBoard tags", ", ".join(metrics["tb_tags"]) or "-"),
        ("peak GPU used (NVML)", f"{memory['peak_used_gib']} GiB (baseline {memory['baseline_mib']} MiB)"),
        ("studio.vram estimate", f"{summary['vram_estimate']['total_gib']} GiB"),
        ("LoRA files", ", ".join(f"{x['file']} ({x['mib']} MiB, {x['tensors']} tensors)" for x in summary["loras"])
         or "none"),
        ("state folders", ", ".join(summary["checkpoints"]) or "none"),
    ]
    for name, value in rows:
        print(f"{name:22} {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainer-src", required=True, help="musubi-tuner's src folder (contains musubi_tuner/)")
    parser.add_argument("--shim-dir", default="", help="folder prepended to PYTHONPATH for modules the machine lacks")
    parser.add_argument("--work", required=True, help="scratch folder: data, models, output, runs")
    parser.add_argument("--out", required=True, help="where summary.json and the job's files are copied")
    parser.add_argument("--preset", default=str(DEFAULT_PRESET))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--timeout-s", type=float, default=420.0, help="force-stop the job after this long")
    parser.add_argument("--stage", choices=("run", "prepare"), default="run", help=argparse.SUPPRESS)
    parser.add_argument("--dataset-toml", help=argparse.SUPPRESS)
    parser.add_argument("--dit-path", help=argparse.SUPPRESS)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage == "prepare":
        sys.path.insert(0, str(Path(args.trainer_src).resolve()))
        result = prepare(args.dataset_toml, args.dit_path, args.task, seed=42)
        Path(args.result).write_text(json.dumps(result))
        return 0
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
