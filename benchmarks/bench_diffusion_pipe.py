"""diffusion-pipe backend speed: plan() per shipped preset (the GUI re-plans on every edit for its preview) and
find_checkpoints() over many run folders (the Resume list). Run: python benchmarks/bench_diffusion_pipe.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backends.base import PlanOptions
from backends.diffusion_pipe import DiffusionPipe
from studio.presets import load_preset
from studio.settings import Settings, TrainerInstall

REPO = Path(__file__).resolve().parent.parent
BACKEND = DiffusionPipe()
FIELDS = {"diffusion_pipe": BACKEND.options}


def median_ms(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def settings_for(output_root: str) -> Settings:
    settings = Settings(data_root="/data", models_root="/models", output_root=output_root)
    settings.trainers["diffusion_pipe"] = TrainerInstall("/opt/diffusion-pipe", "/opt/diffusion-pipe/venv/bin/python")
    return settings


def make_runs(output_dir: Path, count: int) -> None:
    for i in range(count):
        run = output_dir / f"2025{(i // 28) % 12 + 1:02d}{i % 28 + 1:02d}_{i % 24:02d}-{i % 60:02d}-00"
        (run / "epoch1").mkdir(parents=True, exist_ok=True)
        if i % 2:
            (run / "global_step10").mkdir(exist_ok=True)
            (run / "latest").write_text("global_step10")


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(tmp)
        for path in sorted((REPO / "presets").glob("diffusion-pipe-*.toml")):
            preset = load_preset(path, FIELDS)
            ms = median_ms(lambda p=preset: BACKEND.plan(p, settings, f"{tmp}/job", PlanOptions()), 200)
            rows.append((f"plan {path.stem}", ms))
        preset = load_preset(REPO / "presets" / "diffusion-pipe-wan21-t2v-1.3b-24gb.toml", FIELDS)
        for count in (10, 500):
            output_dir = Path(tmp) / "bench" / str(count)
            make_runs(output_dir / preset.get("output.name"), count)
            local = settings_for(str(output_dir))
            ms = median_ms(lambda s=local: BACKEND.find_checkpoints(preset, s), 20)
            rows.append((f"find_checkpoints, {count} run folders", ms))
    width = max(len(name) for name, _ in rows)
    print(f"{'operation':<{width}}  median ms")
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:9.3f}")


if __name__ == "__main__":
    main()
