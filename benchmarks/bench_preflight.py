"""How long pre-flight takes: the Config tab re-runs it next to the fields, the Train tab before Start.

    python benchmarks/bench_preflight.py [--clips 100]

Builds a real machine (trainer folders, model files, N ffmpeg-made clips with captions) in a temp folder, then
times ``studio.vram.estimate`` and ``studio.preflight.check`` (with the scanned media passed in, and with the
dataset scan included). Target: a full check under 0.5 s for 100 clips, so it can run on every field change.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from preflight_support import PLENTY_DISK, PLENTY_RAM, card, ready_machine, shipped  # noqa: E402

from studio.media import scan_folder  # noqa: E402
from studio.preflight import check  # noqa: E402
from studio.vram import estimate  # noqa: E402


def median_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-preflight-") as tmp:
        machine = ready_machine(Path(tmp), clips=args.clips, frames=33)
        media = scan_folder(machine.data / "my_clips")
        gpus = [card(24)]
        rows = []
        for name in ("musubi-wan21-t2v-1.3b-24gb", "diffusion-pipe-wan21-t2v-1.3b-24gb"):
            preset = shipped(name)
            rows.append((name, "vram.estimate", median_ms(lambda p=preset: estimate(p, gpus=gpus), 200)))
            rows.append((name, f"check, {len(media)} clips given", median_ms(
                lambda p=preset: check(p, machine.settings, media, gpus, disk_free=PLENTY_DISK,
                                       ram_total=PLENTY_RAM), 10)))
            rows.append((name, f"check + scan of {len(media)} clips", median_ms(
                lambda p=preset: check(p, machine.settings, None, gpus, disk_free=PLENTY_DISK,
                                       ram_total=PLENTY_RAM), 3)))
    print(f"{'preset':38} {'what':32} {'median ms':>10}")
    for name, what, ms in rows:
        print(f"{name:38} {what:32} {ms:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
