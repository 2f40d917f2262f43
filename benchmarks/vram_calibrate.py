"""Measure the peak GPU memory of musubi-tuner's real LoRA training step, to calibrate ``studio.vram``.

This script imports the trainer from a checkout given on the command line (it contains no trainer code). For each
setting it reproduces what ``wan_train_network.py`` does between loading the DiT and ``optimizer.step()``
(``training/trainer_base.py``: ``_load_dit_and_swap``, ``_build_network``, ``_build_optimizer_and_dataloader``,
the training loop; ``wan_train_network.py``: ``load_transformer``, ``_call_dit``), with two substitutions that do
not change memory: the DiT's state dict is random tensors of the real shapes instead of a file read by
``load_wan_model`` (same meta-model, dtype cast, fp8 optimisation and ``load_state_dict(assign=True)``), and the
latent / text-encoder caches are random tensors of the shapes the cache scripts write. HunyuanVideo
(``hv_train_network.py``) and FramePack (``fpack_train_network.py``) are driven the same way by
``vram_calibrate_hunyuan.py`` (suites ``hunyuan`` and ``hunyuan-validate``).

    python benchmarks/vram_calibrate.py --trainer-src .trainers/musubi-tuner/src --suite wan13 --out calib.json
    python benchmarks/vram_calibrate.py --trainer-src .trainers/musubi-tuner/src --smoke   # CPU, tiny model

Results (one JSON record per setting, written after each one so a timeout keeps what was measured) feed the
table in docs/vram.md. Needs torch, accelerate, safetensors, easydict, ftfy and (for adamw8bit) bitsandbytes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

GIB = 1024**3
TEXT_TOKENS = 120  # a typical caption; musubi's cache keeps the real length and the model pads to text_len=512


@dataclass(frozen=True)
class Setting:
    """One measured configuration (musubi-tuner argument names in comments)."""

    name: str
    task: str = "t2v-1.3B"  # --task
    frames: int = 81  # target_frames
    width: int = 832
    height: int = 480
    batch: int = 1  # batch_size
    rank: int = 32  # --network_dim
    optimizer: str = "adamw8bit"  # --optimizer_type
    fp8_base: bool = False  # --fp8_base
    fp8_scaled: bool = False  # --fp8_scaled
    grad_ckpt: bool = True  # --gradient_checkpointing
    grad_ckpt_offload: bool = False  # --gradient_checkpointing_cpu_offload
    blocks_to_swap: int = 0  # --blocks_to_swap
    steps: int = 2
    checkpoint_dtype: str = "bfloat16"  # the DiT file's dtype (the official Wan / HV / FramePack weights are bf16)
    window: int = 9  # FramePack --latent_window_size (task "framepack")
    split_attn: bool = False  # --split_attn (HV: no (L x L) sdpa mask; FramePack: per-sample attention)


def _s(name: str, **kw: Any) -> Setting:
    return Setting(name=name, **kw)


SUITES: dict[str, list[Setting]] = {
    "wan13": [
        *[_s(f"1.3b-{f}f-480p", frames=f) for f in (17, 33, 49, 65, 81)],
        _s("1.3b-81f-512sq", frames=81, width=512, height=512),
        _s("1.3b-33f-720p", frames=33, width=1280, height=720),
        _s("1.3b-1f-1024sq-img", frames=1, width=1024, height=1024),
        *[_s(f"1.3b-{f}f-480p-nogc", frames=f, grad_ckpt=False) for f in (9, 17)],
        _s("1.3b-33f-256sq-nogc", frames=33, width=256, height=256, grad_ckpt=False),
        _s("1.3b-81f-480p-fp8", frames=81, fp8_base=True),
        _s("1.3b-81f-480p-fp8s", frames=81, fp8_base=True, fp8_scaled=True),
        _s("1.3b-81f-480p-swap20", frames=81, blocks_to_swap=20),
        _s("1.3b-81f-480p-adamw", frames=81, optimizer="adamw"),
        _s("1.3b-81f-480p-r128", frames=81, rank=128),
        _s("1.3b-33f-480p-b2", frames=33, batch=2),
        _s("1.3b-81f-480p-gcoff", frames=81, grad_ckpt_offload=True),
    ],
    "wan14": [
        _s("14b-49f-480p", task="t2v-14B", frames=49),
        _s("14b-81f-480p", task="t2v-14B", frames=81),
        _s("14b-81f-512sq-fp8", task="t2v-14B", frames=81, width=512, height=512, fp8_base=True),
        _s("14b-81f-480p-fp8s", task="t2v-14B", frames=81, fp8_base=True, fp8_scaled=True),
        _s("14b-81f-512sq-fp8-swap32", task="t2v-14B", frames=81, width=512, height=512, fp8_base=True,
           blocks_to_swap=32),
        _s("14b-1f-480p-nogc", task="t2v-14B", frames=1, grad_ckpt=False),
        _s("a14b-49f-480p", task="t2v-A14B", frames=49),
        _s("i2v14b-49f-480p", task="i2v-14B", frames=49),
        _s("a14b-81f-480p-fp8-swap20", task="t2v-A14B", frames=81, fp8_base=True, blocks_to_swap=20),
    ],
    # Held out from the fit (run with --alloc-conf expandable_segments:True, as the studio launches trainers),
    # plus two repeats of fitted settings to see what expandable segments change.
    "validate": [
        _s("v-1.3b-81f-480p", frames=81),
        _s("v-1.3b-41f-624sq", frames=41, width=624, height=624),
        _s("v-1.3b-57f-480p-fp8-swap10", frames=57, fp8_base=True, blocks_to_swap=10),
        _s("v-1.3b-13f-480p-nogc", frames=13, grad_ckpt=False),
        _s("v-1.3b-29f-480p-nogc-adamw", frames=29, grad_ckpt=False, optimizer="adamw"),
        _s("v-1.3b-49f-720p-r64", frames=49, width=1280, height=720, rank=64),
        _s("v-1.3b-21f-480p-b3", frames=21, batch=3),
        _s("v-14b-65f-512sq-fp8-swap30", task="t2v-14B", frames=65, width=512, height=512, fp8_base=True,
           blocks_to_swap=30),
        _s("v-14b-33f-480p-fp8s", task="t2v-14B", frames=33, fp8_base=True, fp8_scaled=True),
        _s("v-a14b-33f-480p-fp8-swap30", task="t2v-A14B", frames=33, fp8_base=True, blocks_to_swap=30),
        _s("v-i2v14b-81f-480p-fp8-swap20", task="i2v-14B", frames=81, fp8_base=True, blocks_to_swap=20),
        _s("v-14b-81f-480p", task="t2v-14B", frames=81),
    ],
}
HUNYUAN_TASKS = ("hv", "framepack")  # suites "hunyuan" and "hunyuan-validate": vram_calibrate_hunyuan.SUITES


def tokens_of(setting: Setting) -> int:
    """Latent tokens per sample: VAE 4x temporal (causal first frame), 8x8 spatial, then 1x2x2 patches."""
    if setting.task in HUNYUAN_TASKS:
        return _hunyuan_driver().tokens_of(setting)
    return ((setting.frames - 1) // 4 + 1) * (setting.height // 16) * (setting.width // 16)


def _hunyuan_driver() -> Any:
    """benchmarks/vram_calibrate_hunyuan.py, which imports this module by name (also when run as a script)."""
    sys.modules.setdefault("vram_calibrate", sys.modules[__name__])
    import vram_calibrate_hunyuan

    return vram_calibrate_hunyuan


def import_trainer(trainer_src: str) -> dict[str, Any]:
    """Import the musubi-tuner modules this script drives, from the given checkout's ``src`` folder."""
    src = Path(trainer_src).resolve()
    if not (src / "musubi_tuner" / "wan" / "modules" / "model.py").is_file():
        raise SystemExit(f"{src} is not musubi-tuner's src folder (no musubi_tuner/wan/modules/model.py)")
    sys.path.insert(0, str(src))
    from musubi_tuner.modules import fp8_optimization_utils as fp8
    from musubi_tuner.modules.custom_offloading_utils import BlockSwapConfig
    from musubi_tuner.networks import lora_wan
    from musubi_tuner.wan.configs import WAN_CONFIGS
    from musubi_tuner.wan.modules import model as wan_model

    return {"fp8": fp8, "BlockSwapConfig": BlockSwapConfig, "lora_wan": lora_wan, "WAN_CONFIGS": WAN_CONFIGS,
            "wan_model": wan_model}


def random_state_dict(model: Any, device: Any, dtype: Any, torch: Any) -> dict[str, Any]:
    """Random tensors with the checkpoint's names and shapes (norm weights 1, biases 0, the rest N(0, 0.02)).

    Generated on the GPU when there is one (fast) and moved to ``device``, like a file read onto it."""
    gen_device = "cuda" if torch.cuda.is_available() else "cpu"
    state = {}
    for name, meta in model.state_dict().items():  # made in fp32, then cast (fp8 has no fill/randn kernels)
        if name.endswith(".bias"):
            tensor = torch.zeros(meta.shape, device=gen_device, dtype=torch.float32)
        elif "norm" in name and name.endswith(".weight"):
            tensor = torch.ones(meta.shape, device=gen_device, dtype=torch.float32)
        else:
            tensor = torch.randn(meta.shape, device=gen_device, dtype=torch.float32) * 0.02
        state[name] = tensor.to(dtype).to(device)
    return state


def load_dit(mods: dict[str, Any], config: Any, setting: Setting, device: Any, torch: Any) -> Any:
    """``load_wan_model`` (wan/modules/model.py) with a random state dict instead of the safetensors file."""
    from accelerate import init_empty_weights

    wan_model = mods["wan_model"]
    # trainer_base._prepare_accelerator_and_dtypes: fp8_base -> e4m3fn weights, fp8_scaled -> None (scaled)
    file_dtype = getattr(torch, setting.checkpoint_dtype)
    dit_weight_dtype = (None if setting.fp8_scaled else torch.float8_e4m3fn) if setting.fp8_base else file_dtype
    loading_device = torch.device("cpu") if setting.blocks_to_swap > 0 else device
    with init_empty_weights():
        model = wan_model.WanModel(
            model_type="i2v" if config.i2v else "t2v", model_version="2.2" if config.v2_2 else "2.1",
            dim=config.dim, eps=config.eps, ffn_dim=config.ffn_dim, freq_dim=config.freq_dim, in_dim=config.in_dim,
            num_heads=config.num_heads, num_layers=config.num_layers, out_dim=config.out_dim,
            text_len=config.text_len, attn_mode="torch", split_attn=False,  # --sdpa
        )
        if dit_weight_dtype is not None:
            model.to(dit_weight_dtype)
    state = random_state_dict(model, device if setting.fp8_scaled else loading_device, file_dtype, torch)
    if setting.fp8_scaled:
        fp8 = mods["fp8"]
        state = fp8.optimize_state_dict_with_fp8(
            state, device, wan_model.FP8_OPTIMIZATION_TARGET_KEYS, wan_model.FP8_OPTIMIZATION_EXCLUDE_KEYS,
            move_to_device=loading_device == device,
        )
        fp8.apply_fp8_monkey_patch(model, state, use_scaled_mm=False)
        state = {k: v.to(loading_device) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    del state
    if dit_weight_dtype is not None:
        model = model.to(dit_weight_dtype)
    return model


def build(mods: dict[str, Any], setting: Setting, device: Any, torch: Any) -> tuple[Any, Any, Any, Any]:
    """DiT + LoRA + optimizer, in the order trainer_base.train() sets them up."""
    config = mods["WAN_CONFIGS"][setting.task]
    model = load_dit(mods, config, setting, device, torch)
    return (config, *prepare_for_training(model, setting, device, torch, network_module=mods["lora_wan"],
                                          swap_config_class=mods["BlockSwapConfig"]))


def prepare_for_training(model: Any, setting: Setting, device: Any, torch: Any, *, network_module: Any,
                         swap_config_class: Any, cast_to: Any = None) -> tuple[Any, Any, Any]:
    """trainer_base.py after the DiT is loaded: ``_load_dit_and_swap`` (eval, frozen, block swap),
    ``_build_network`` (LoRA, checkpointing), ``_build_optimizer_and_dataloader`` and ``_prepare_with_accelerator``
    (the fp8 cast ``cast_to`` when the loader left the weights in the file's dtype, the DiT to the GPU)."""
    model.eval()
    model.requires_grad_(False)
    swap_args = argparse.Namespace(gradient_checkpointing=setting.grad_ckpt)
    if setting.blocks_to_swap > 0:
        model.enable_block_swap(setting.blocks_to_swap,
                                swap_config_class.from_args(swap_args, device, supports_backward=True))
        model.move_to_device_except_swap_blocks(device)
    network = network_module.create_arch_network(1.0, setting.rank, float(setting.rank), None, None, model,
                                                 neuron_dropout=None)
    network.apply_to(None, model, apply_text_encoder=False, apply_unet=True)
    if setting.grad_ckpt:
        model.enable_gradient_checkpointing(setting.grad_ckpt_offload)
        network.enable_gradient_checkpointing()
    network.to(device)  # accelerator.prepare(network); LoRA stays fp32 (network_dtype)
    params, _ = network.prepare_optimizer_params(unet_lr=1e-4)
    optimizer = make_optimizer(setting.optimizer, params, torch)
    if cast_to is not None:
        model.to(cast_to)
    if setting.blocks_to_swap > 0:
        model.move_to_device_except_swap_blocks(device)
        model.prepare_block_swap_before_forward()
    else:
        model.to(device)
    model.train() if setting.grad_ckpt else model.eval()
    network.prepare_grad_etc(model)
    return model, network, optimizer


def make_optimizer(kind: str, params: Any, torch: Any) -> Any:
    """trainer_base.get_optimizer for "AdamW" (torch) and "AdamW8bit" (bitsandbytes)."""
    if kind == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=1e-4)
    return torch.optim.AdamW(params, lr=1e-4)


def train_step(objects: tuple[Any, ...], setting: Setting, device: Any, torch: Any, mods: dict[str, Any]) -> float:
    """One step of the training loop: noise, DiT forward under autocast, flow-matching MSE, backward, clip, step."""
    config, model, network, optimizer = objects
    lat_f, lat_h, lat_w = (setting.frames - 1) // 4 + 1, setting.height // 8, setting.width // 8
    b = setting.batch
    latents = torch.randn(b, 16, lat_f, lat_h, lat_w, device=device)  # network_dtype fp32, as _call_dit casts
    noise = torch.randn_like(latents)
    sigmas = torch.rand(b, device=device).view(b, 1, 1, 1, 1)
    noisy = (1 - sigmas) * latents + sigmas * noise
    timesteps = sigmas.flatten() * 1000
    context = [torch.randn(TEXT_TOKENS, 4096, device=device) for _ in range(b)]
    image_latents = clip_fea = None
    if config.i2v:  # wan_cache_latents --i2v: 4 mask channels + 16 latent channels; Wan2.1 also CLIP features
        image_latents = torch.randn(b, 20, lat_f, lat_h, lat_w, device=device)
        if not config.v2_2:
            clip_fea = torch.randn(b, 257, 1280, device=device)
    if setting.grad_ckpt:
        noisy.requires_grad_(True)
        for tensor in (*context, image_latents, clip_fea):
            if tensor is not None:
                tensor.requires_grad_(True)
    seq_len = lat_f * lat_h * lat_w // 4
    network.on_step_start()
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):  # accelerator.autocast(), bf16
        pred = model(noisy, t=timesteps, context=context, clip_fea=clip_fea, seq_len=seq_len, y=image_latents)
    pred = torch.stack(pred, dim=0)
    loss = torch.nn.functional.mse_loss(pred.float(), noise - latents, reduction="none").mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(network.get_trainable_params(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def family_of(setting: Setting) -> str:
    return "hunyuan" if setting.task in HUNYUAN_TASKS else "wan"


def driver_for(setting: Setting) -> tuple[Callable[..., tuple[Any, ...]], Callable[..., float]]:
    """(build, train step) of the setting's model family; both take that family's imported modules."""
    if family_of(setting) == "hunyuan":
        hunyuan = _hunyuan_driver()
        return hunyuan.build, hunyuan.train_step
    return build, train_step


def import_families(trainer_src: str, settings: list[Setting], *, smoke: bool, torch: Any) -> dict[str, Any]:
    """The trainer modules of each model family the settings use (tiny configs for --smoke)."""
    mods: dict[str, Any] = {}
    families = {family_of(s) for s in settings}
    if "wan" in families:
        if smoke and not torch.cuda.is_available():
            # wan/modules/t5.py evaluates torch.cuda.current_device() as a default argument at import time.
            torch.cuda.current_device = lambda: 0
        mods["wan"] = import_trainer(trainer_src)
        if smoke:
            shrink_configs(mods["wan"])
    if "hunyuan" in families:
        mods["hunyuan"] = _hunyuan_driver().import_hunyuan(trainer_src)
        if smoke:
            _hunyuan_driver().shrink_for_smoke(mods["hunyuan"], torch)
    return mods


def measure(mods: dict[str, Any], setting: Setting, device: Any, torch: Any) -> dict[str, Any]:
    record: dict[str, Any] = {**asdict(setting), "tokens": tokens_of(setting), "status": "ok"}
    cuda = device.type == "cuda"
    started = time.perf_counter()
    objects: tuple[Any, ...] = ()
    build_fn, step_fn = driver_for(setting)
    family_mods = mods[family_of(setting)]
    try:
        objects = build_fn(family_mods, setting, device, torch)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            record["setup_alloc_gib"] = torch.cuda.memory_allocated() / GIB
        step_times, losses = [], []
        for _ in range(setting.steps):
            t0 = time.perf_counter()
            losses.append(step_fn(objects, setting, device, torch, family_mods))
            if cuda:
                torch.cuda.synchronize()
            step_times.append(time.perf_counter() - t0)
        record["loss"] = losses[-1]
        record["step_s"] = min(step_times)
        if cuda:
            record["peak_alloc_gib"] = torch.cuda.max_memory_allocated() / GIB
            record["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
            free, total = torch.cuda.mem_get_info()
            record["driver_used_gib"] = (total - free) / GIB  # reserved + CUDA context, as nvidia-smi sees it
            record["reserved_now_gib"] = torch.cuda.memory_reserved() / GIB
    except torch.OutOfMemoryError as exc:
        record["status"] = "oom"
        record["error"] = str(exc).splitlines()[0][:300]
    except Exception as exc:  # a broken setting must not stop the sweep; the record says why
        record["status"] = "error"
        record["error"] = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        objects = ()
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    record["wall_s"] = time.perf_counter() - started
    return record


def host_facts(torch: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {"torch": torch.__version__, "python": sys.version.split()[0],
                             "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        facts.update(gpu=torch.cuda.get_device_name(0), total_gib=total / GIB, context_gib=(total - free) / GIB)
    return facts


def smoke_settings() -> list[Setting]:
    """Tiny CPU run: every code path (fp8 scaled, no checkpointing, I2V) on a 2-block model with small shapes."""
    # fp32 weights: CPU autocast cannot run musubi's fp32 time-embedding region over bf16 weights.
    base = Setting(name="smoke", frames=5, width=64, height=64, optimizer="adamw", steps=1, checkpoint_dtype="float32")
    # Plain fp8 (e4m3fn LayerNorm weights) needs CUDA autocast, which runs layer_norm in fp32; the CPU's does not.
    hv, fp = replace(base, name="smoke-hv", task="hv"), replace(base, name="smoke-fp", task="framepack", frames=37)
    return [base, replace(base, name="smoke-nogc", grad_ckpt=False),
            replace(base, name="smoke-fp8s", fp8_base=True, fp8_scaled=True),
            replace(base, name="smoke-i2v", task="i2v-14B"), replace(base, name="smoke-a14b", task="t2v-A14B"),
            hv, replace(hv, name="smoke-hv-nogc", grad_ckpt=False), replace(hv, name="smoke-hv-split", split_attn=True,
                                                                               batch=2),
            replace(hv, name="smoke-hv-b2-offload", batch=2, grad_ckpt_offload=True),
            fp, replace(fp, name="smoke-fp-fp8s", fp8_base=True, fp8_scaled=True),
            replace(fp, name="smoke-fp-split", split_attn=True, batch=2), replace(fp, name="smoke-fp-w5", window=5)]


def shrink_configs(mods: dict[str, Any]) -> None:
    """For --smoke: keep the architectures' structure but make them tiny, so a CPU can run them."""
    for config in mods["WAN_CONFIGS"].values():
        config.update(dim=128, ffn_dim=256, num_heads=2, num_layers=2)


def print_table(records: list[dict[str, Any]]) -> None:
    print(f"{'setting':28} {'tokens':>7} {'alloc GiB':>9} {'reserved':>9} {'setup':>7} {'s/step':>7} status")
    for r in records:
        print(f"{r['name']:28} {r['tokens']:>7} {r.get('peak_alloc_gib', 0):>9.2f} {r.get('peak_reserved_gib', 0):>9.2f}"
              f" {r.get('setup_alloc_gib', 0):>7.2f} {r.get('step_s', 0):>7.2f} {r['status']} {r.get('error', '')[:60]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainer-src", required=True, help="musubi-tuner's src folder (contains musubi_tuner/)")
    suites = {**SUITES, **_hunyuan_driver().SUITES}
    parser.add_argument("--suite", action="append", choices=sorted(suites), default=[], help="repeatable")
    parser.add_argument("--only", action="append", default=[], help="run only settings with these names")
    parser.add_argument("--out", default="vram_calibration.json", help="JSON file the records are written to")
    parser.add_argument("--budget-s", type=float, default=540.0, help="skip settings once this much time is spent")
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU: checks the code paths only")
    parser.add_argument("--alloc-conf", default=None,
                        help="PYTORCH_CUDA_ALLOC_CONF for this run, e.g. expandable_segments:True (the studio's)")
    args = parser.parse_args(argv)
    if args.alloc_conf is not None:
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = args.alloc_conf  # read when CUDA initialises, so before torch

    import torch

    if args.smoke:
        settings, device = smoke_settings(), torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU: run with --smoke to check the code paths on the CPU")
        settings = [s for suite in (args.suite or ["wan13"]) for s in suites[suite]]
        device = torch.device("cuda")
    if args.only:
        settings = [s for s in settings if s.name in args.only]
    mods = import_families(args.trainer_src, settings, smoke=args.smoke, torch=torch)
    report: dict[str, Any] = {"host": host_facts(torch), "records": []}
    started = time.perf_counter()
    for setting in settings:
        if time.perf_counter() - started > args.budget_s:
            report["records"].append({**asdict(setting), "tokens": tokens_of(setting), "status": "skipped"})
            continue
        record = measure(mods, setting, device, torch)
        report["records"].append(record)
        print(json.dumps(record), flush=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
    Path(args.out).write_text(json.dumps(report, indent=1))
    print_table(report["records"])
    return 0 if all(r["status"] in ("ok", "oom", "skipped") for r in report["records"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
