"""Scan speed: 1,000 small clips, cold (no probe cache) and warm; PyAV threads vs one ffmpeg process per file.

Targets (issue 3): <= 10 s cold on 2 cores, <= 0.5 s warm. Run: ``python benchmarks/bench_scan.py [--clips N]``.
The clips are generated once into a cache folder (12 distinct ffmpeg-made clips: mp4/mkv/webm, 16/24/30 fps,
9 to 121 frames, each copied under many names) and reused by later runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from studio.media import scan_folder
from tests.media_fixtures import ffmpeg_exe, make_clip

VARIANTS = [(suffix, fps, frames) for suffix in (".mp4", ".mkv", ".webm") for fps, frames in
            ((16, 33), (24, 57), (30, 121), (30, 9))]


def make_clips(folder: Path, count: int) -> Path:
    marker = folder / f".complete-{count}"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    sources = folder / ".sources"
    for suffix, fps, frames in VARIANTS:
        codec = "libvpx-vp9" if suffix == ".webm" else "libx264"
        make_clip(sources / f"v{fps}_{frames}{suffix}", frames=frames, fps=fps, size=(96, 64), codec=codec)
    originals = sorted(sources.iterdir())
    for index in range(count):
        source = originals[index % len(originals)]
        target = folder / f"clip_{index:05d}{source.suffix}"
        shutil.copyfile(source, target)
        if index % 3:
            target.with_suffix(".txt").write_text(f"caption {index}")
    marker.touch()
    return folder


def ffprobe_less_ffmpeg(path: str) -> int:
    """The alternative: one ``ffmpeg -i`` process per file (imageio-ffmpeg ships no ffprobe)."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True, text=True)
    return len(result.stderr)


def timed(label: str, func, rows: list[tuple[str, float, str]], note: str = "") -> float:
    started = time.perf_counter()
    func()
    seconds = time.perf_counter() - started
    rows.append((label, seconds, note))
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "vls-bench-scan"))
    args = parser.parse_args()
    folder = make_clips(Path(args.folder) / f"clips{args.clips}", args.clips)
    cache = Path(args.folder) / "probe-cache.json"
    rows: list[tuple[str, float, str]] = []
    cores = os.cpu_count() or 1

    for workers in (1, 2, 4, 8, 16):
        timed(f"cold scan, PyAV, {workers} thread(s)", lambda w=workers: scan_folder(folder, workers=w), rows)
    cache.unlink(missing_ok=True)
    cold = timed("cold scan + write probe cache (default workers)", lambda: scan_folder(folder, probe_cache=cache),
                 rows, "target <= 10 s")
    warm = timed("warm scan (probe cache, captions re-read)", lambda: scan_folder(folder, probe_cache=cache), rows,
                 "target <= 0.5 s")
    subset = [str(p) for p in sorted(folder.glob("clip_*"))[:100]]
    with ThreadPoolExecutor(max_workers=cores) as pool:
        spawn = timed(f"100 files, ffmpeg -i per file, {cores} procs", lambda: list(pool.map(ffprobe_less_ffmpeg, subset)),
                      rows)
    rows.append(("  -> extrapolated to all files", spawn * args.clips / 100, "why PyAV threads were chosen"))
    media = scan_folder(folder, probe_cache=cache)
    print(f"{args.clips} clips in {folder} ({sum(m.size_bytes for m in media) / 1e6:.1f} MB), {cores} CPU core(s)")
    print(f"{'measurement':<52} {'seconds':>9}  note")
    for label, seconds, note in rows:
        print(f"{label:<52} {seconds:>9.3f}  {note}")
    bad = [m for m in media if m.error]
    print(f"errors: {len(bad)}; frame counts: {sorted({m.frames for m in media})}")
    return 0 if cold <= 10 and warm <= 0.5 and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
