"""Fit the VRAM model's constants to the measured peaks and print the error table (docs/vram.md).

    python benchmarks/vram_fit.py          # error table of studio.vram against every measurement
    python benchmarks/vram_fit.py --fit    # least-squares constants from the fitting runs (wan13, wan14)

The measurements are the JSON files ``benchmarks/vram_calibrate.py`` wrote on the device GPU, kept in
benchmarks/data/. The fitting runs used PyTorch's default allocator; the validation runs (held out, except the
two ``v-*-81f-480p`` repeats) used ``expandable_segments:True`` as the studio launches trainers, so only they
measure what the card must hold (``driver_used_gib`` = reserved memory + CUDA context). The HunyuanVideo /
FramePack runs (``vram_hunyuan_h100.json``, also ``expandable_segments:True``) are not fitted: they check the
architecture-specific terms (block kinds, context tokens, sdpa mask, FramePack's fp8_scaled exclusions).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio import vram_model as vram  # noqa: E402
from studio.vram import MemorySettings, breakdown_of  # noqa: E402

DATA = ROOT / "benchmarks" / "data"
FIT_FILES = ("vram_wan13_h100.json", "vram_wan14_h100.json")
VALIDATION_FILE = "vram_validate_h100.json"
HUNYUAN_FILE = "vram_hunyuan_h100.json"
HUNYUAN_VALIDATION_FILE = "vram_hunyuan_validate_h100.json"
# runs with the studio's allocator setting: judged on the card total
TOTAL_FILES = (VALIDATION_FILE, HUNYUAN_FILE, HUNYUAN_VALIDATION_FILE)
TASK_ARCH = {"t2v-1.3B": "wan2.1-t2v-1.3b", "t2v-14B": "wan2.1-t2v-14b", "i2v-14B": "wan2.1-i2v-14b",
             "t2v-A14B": "wan2.2-t2v-a14b", "i2v-A14B": "wan2.2-i2v-a14b", "hv": "hunyuan-video",
             "framepack": "framepack"}
SET_OF_FILE = {VALIDATION_FILE: "validate", HUNYUAN_FILE: "hunyuan", HUNYUAN_VALIDATION_FILE: "hv-valid"}
FITTED = ("overhead_gib", "grad_fraction", "work_d", "work_f", "nogc_d", "nogc_f", "wan22_d")
HUNYUAN_FITTED = ("hunyuan_activation_scale", "hunyuan_slack_fraction")
# FramePack, plain fp8, no swap: load_packed_model puts the bf16 file on the GPU before the fp8 cast, and the freed
# segments stay reserved under the training step (27.9 GiB vs 23.4 allocated): a load effect, not slack.
LOAD_CACHE_RUNS = ("fp-37f-640sq-fp8",)


def load_records(name: str) -> list[dict[str, Any]]:
    report = json.loads((DATA / name).read_text())
    return [r for r in report["records"] if r.get("status") == "ok"]


def settings_of(record: dict[str, Any]) -> MemorySettings:
    """The memory settings of one measured run (musubi-tuner argument names in vram_calibrate.Setting)."""
    return MemorySettings(
        trainer="musubi_tuner", arch_id=TASK_ARCH[record["task"]], frames=record["frames"], width=record["width"],
        height=record["height"], batch=record["batch"], rank=record["rank"], optimizer=record["optimizer"],
        fp8=record["fp8_base"], fp8_scaled=record["fp8_scaled"], grad_ckpt=record["grad_ckpt"],
        ckpt_offload=record["grad_ckpt_offload"], blocks_to_swap=record["blocks_to_swap"],
        window=record.get("window", 9), split_attn=record.get("split_attn", False),  # --sdpa in every run
    )


def allocated(ms: MemorySettings, constants: vram.Constants) -> float:
    """Peak allocated GiB under ``constants`` (no allocator slack, no CUDA context)."""
    saved = vram.MUSUBI
    vram.MUSUBI = constants
    try:
        return vram.peak_allocated_gib(ms)
    finally:
        vram.MUSUBI = saved


def card_total(ms: MemorySettings, constants: vram.Constants) -> float:
    """Estimated GiB the card must hold under ``constants``."""
    saved = vram.MUSUBI
    vram.MUSUBI = constants
    try:
        return sum(breakdown_of(ms).values())
    finally:
        vram.MUSUBI = saved


def _solve_1d(slopes: list[float], targets: list[float], measured: list[float]) -> float:
    """x minimising sum(((slope x - target) / measured)^2)."""
    weights = np.array([1.0 / m for m in measured])
    a, b = np.array(slopes) * weights, np.array(targets) * weights
    return float(a @ b / (a @ a))


def fit_hunyuan(records: list[dict[str, Any]]) -> dict[str, float]:
    """HunyuanVideo / FramePack: the activation scale on the peak allocated memory, then the slack fraction on the
    card total (the runs in LOAD_CACHE_RUNS excluded from the latter). Both are linear: one solve each."""
    neutral = replace(vram.MUSUBI, hunyuan_activation_scale=1.0, hunyuan_slack_fraction=0.0)
    settings = [settings_of(r) for r in records]
    base = [allocated(ms, replace(neutral, hunyuan_activation_scale=0.0)) for ms in settings]
    slopes = [allocated(ms, neutral) - b for ms, b in zip(settings, base, strict=True)]
    measured = [r["peak_alloc_gib"] for r in records]
    scale = _solve_1d(slopes, [m - b for m, b in zip(measured, base, strict=True)], measured)
    scaled = replace(neutral, hunyuan_activation_scale=scale)
    kept = [(ms, r) for ms, r in zip(settings, records, strict=True) if r["name"] not in LOAD_CACHE_RUNS]
    totals = [card_total(ms, scaled) for ms, _ in kept]
    slopes = [card_total(ms, replace(scaled, hunyuan_slack_fraction=1.0)) - t for (ms, _), t in zip(kept, totals, strict=True)]
    measured = [r["driver_used_gib"] for _, r in kept]
    slack = _solve_1d(slopes, [m - t for m, t in zip(measured, totals, strict=True)], measured)
    return {"hunyuan_activation_scale": scale, "hunyuan_slack_fraction": slack}


def fit(records: list[dict[str, Any]]) -> dict[str, float]:
    """Least squares on relative error: the constants are linear in the model, so one solve finds them."""
    zero = replace(vram.MUSUBI, **{name: 0.0 for name in FITTED})
    rows, targets = [], []
    for record in records:
        ms = settings_of(record)
        base = allocated(ms, zero)
        rows.append([allocated(ms, replace(zero, **{name: 1.0})) - base for name in FITTED])
        targets.append(record["peak_alloc_gib"] - base)
    weights = np.array([1.0 / r["peak_alloc_gib"] for r in records])
    solution, *_ = np.linalg.lstsq(np.array(rows) * weights[:, None], np.array(targets) * weights, rcond=None)
    return dict(zip(FITTED, (float(v) for v in solution), strict=True))


def error_rows() -> list[dict[str, Any]]:
    """One row per measured run: estimate vs measurement, as relative errors."""
    rows = []
    for name in (*FIT_FILES, *TOTAL_FILES):
        for record in load_records(name):
            ms = settings_of(record)
            parts = breakdown_of(ms)
            row = {"set": SET_OF_FILE.get(name, "fit"), "name": record["name"],
                   "tokens": record["tokens"] * record["batch"], "measured_alloc": record["peak_alloc_gib"],
                   "estimated_alloc": vram.peak_allocated_gib(ms), "estimated_total": sum(parts.values())}
            row["alloc_error"] = row["estimated_alloc"] / row["measured_alloc"] - 1
            if name in TOTAL_FILES:
                row["measured_total"] = record["driver_used_gib"]
                row["total_error"] = row["estimated_total"] / row["measured_total"] - 1
            rows.append(row)
    return rows


def summary(errors: list[float]) -> str:
    absolute = [abs(e) for e in errors]
    return (f"n={len(errors)}  median |error| {statistics.median(absolute):.1%}  worst {max(absolute):.1%}  "
            f"mean error {statistics.fmean(errors):+.1%}")


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'set':8} {'run':30} {'tokens':>7} {'alloc meas':>10} {'est':>6} {'err':>7}   {'total meas':>10} "
          f"{'est':>6} {'err':>7}")
    for r in rows:
        total = (f"{r['measured_total']:>10.2f} {r['estimated_total']:>6.2f} {r['total_error']:>+7.1%}"
                 if "total_error" in r else "")
        print(f"{r['set']:8} {r['name']:30} {r['tokens']:>7} {r['measured_alloc']:>10.2f} "
              f"{r['estimated_alloc']:>6.2f} {r['alloc_error']:>+7.1%}   {total}")
    print()
    print("peak allocated, fitting runs:     ", summary([r["alloc_error"] for r in rows if r["set"] == "fit"]))
    print("peak allocated, validation runs:  ", summary([r["alloc_error"] for r in rows if r["set"] == "validate"]))
    print("GPU total (nvidia-smi), validation:",
          summary([r["total_error"] for r in rows if r["set"] == "validate"]))
    for label, name in (("HV / FramePack fitting", "hunyuan"), ("HV / FramePack held out", "hv-valid")):
        print(f"peak allocated, {label}:".ljust(35), summary([r["alloc_error"] for r in rows if r["set"] == name]))
        print(f"GPU total, {label}:".ljust(35), summary([r["total_error"] for r in rows if r["set"] == name]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", action="store_true", help="print least-squares constants from the fitting runs")
    args = parser.parse_args(argv)
    if args.fit:
        records = [r for name in FIT_FILES for r in load_records(name)]
        fitted = fit(records)
        print(json.dumps({k: round(v, 3) for k, v in fitted.items()}, indent=1))
        print("current:", {k: v for k, v in asdict(vram.MUSUBI).items() if k in FITTED})
        fitted = fit_hunyuan(load_records(HUNYUAN_FILE))
        print("HunyuanVideo / FramePack:", json.dumps({k: round(v, 3) for k, v in fitted.items()}))
        print("current:", {k: v for k, v in asdict(vram.MUSUBI).items() if k in HUNYUAN_FITTED})
        return 0
    print_table(error_rows())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
