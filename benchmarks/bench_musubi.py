"""musubi-tuner backend timings: planning every shipped preset, scanning a large dataset folder, listing checkpoints.

Run: ``python benchmarks/bench_musubi.py``. Planning runs when the user opens the Train tab and before each run,
so it should stay well under the GUI's tick; the folder scan is the only part that grows with the dataset.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backends.base import PlanOptions
from backends.musubi_dataset import scan_folder
from backends.musubi_tuner import MusubiTuner
from studio.presets import load_preset
from studio.settings import Settings, TrainerInstall

FIELDS = {"musubi_tuner": MusubiTuner.options}
PRESETS = sorted((Path(__file__).resolve().parent.parent / "presets").glob("musubi-*.toml"))


def timed(func: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and worst wall time in milliseconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), max(samples)


def settings_for(root: Path) -> Settings:
    settings = Settings(data_root=str(root / "data"), models_root="/models", output_root=str(root / "out"))
    settings.trainers["musubi_tuner"] = TrainerInstall("/opt/musubi_tuner", "/opt/musubi_tuner/venv/bin/python")
    return settings


def main() -> None:
    backend = MusubiTuner()
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = settings_for(root)
        for path in PRESETS:
            preset = load_preset(path, FIELDS)
            rows.append((f"plan {path.stem}", *timed(
                lambda p=preset: backend.plan(p, settings, str(root / "run"), PlanOptions()), 200)))
        for count in (1_000, 10_000):
            folder = root / "data" / f"clips{count}"
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"clip{i:05d}.mp4").touch()
                (folder / f"clip{i:05d}.txt").touch()
            rows.append((f"scan folder, {count} clips + captions", *timed(lambda f=folder: scan_folder(str(f)), 20)))
        out = root / "out"
        for i in range(500):
            state = out / f"my_lora-{i:06d}-state"
            state.mkdir(parents=True)
            os.utime(state, (1_700_000_000 + i, 1_700_000_000 + i))
            (out / f"other-{i:06d}-state").mkdir()
        preset = load_preset(PRESETS[0], FIELDS)
        preset.values["output"]["name"] = "my_lora"
        preset.values["output"]["dir"] = str(out)
        rows.append(("find_checkpoints, 500 of 1000 dirs", *timed(lambda: backend.find_checkpoints(preset, settings),
                                                                   50)))
    width = max(len(name) for name, _, _ in rows)
    print(f"{'operation':<{width}}  {'median ms':>10}  {'worst ms':>9}")
    for name, median, worst in rows:
        print(f"{name:<{width}}  {median:>10.3f}  {worst:>9.3f}")


if __name__ == "__main__":
    main()
