"""Run every CPU benchmark, one after another, each printing its own table.

    python benchmarks/run_all.py            # full sizes (issue targets: 1,000 clips, 60 s of trainer output, 1 GB log)
    python benchmarks/run_all.py --quick    # smaller sizes for a fast look

The GPU measurements (vram_calibrate.py, device_train_smoke.py) need the trainer and a CUDA device: see their
docstrings and docs/vram.md.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = {
    "bench_scan.py": [],
    "bench_runner.py": [],
    "bench_downloads.py": [],
    "bench_preflight.py": [],
    "bench_musubi.py": [],
    "bench_diffusion_pipe.py": [],
}
QUICK = {**FULL, "bench_scan.py": ["--clips", "200"], "bench_runner.py": ["--seconds", "10", "--log-mb", "128"]}


def main(argv: list[str]) -> int:
    plan = QUICK if "--quick" in argv else FULL
    failed = []
    for script, args in plan.items():
        print(f"\n=== {script} {' '.join(args)}", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(HERE / script), *args], check=False)
        print(f"--- {script}: exit {done.returncode} in {time.monotonic() - started:.1f} s", flush=True)
        if done.returncode:
            failed.append(script)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
