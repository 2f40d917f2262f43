"""A small sample dataset made from ffmpeg test patterns, so a new user sees the whole flow without own data.

The clips are chosen to show what the Dataset tab explains: the seeds' 57-frame 30 fps clip (counted as 30 frames
by diffusion-pipe for Wan), clips at 16 and 24 fps, a portrait clip for aspect buckets and one still image.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from studio.atomic import write_text_atomic
from studio.media import list_media
from studio.preprocess import PreprocessError, base_argv


@dataclass(frozen=True)
class SampleClip:
    name: str
    source: str  # an ffmpeg lavfi test source
    fps: float
    frames: int
    size: tuple[int, int]
    caption: str


SAMPLES = (
    SampleClip("testsrc_30fps_57f.mp4", "testsrc2", 30, 57, (320, 192),
               "sample video, a colorful test pattern with a moving counter"),
    SampleClip("mandelbrot_16fps.mp4", "mandelbrot", 16, 65, (320, 192),
               "sample video, a slow zoom into a glowing fractal"),
    SampleClip("life_24fps.mp4", "life=ratio=0.3:mold=10:life_color=#00ff88:death_color=#202040", 24, 72,
               (320, 192), "sample video, cells of the game of life growing and dying"),
    SampleClip("bars_portrait_16fps.mp4", "smptehdbars", 16, 49, (192, 320),
               "sample video, color bars in portrait orientation"),
    SampleClip("still_pattern.png", "testsrc", 1, 1, (320, 192), "sample image, a test pattern"),
)


def _argv(clip: SampleClip, target: Path) -> list[str]:
    width, height = clip.size
    source = f"{clip.source}:size={width}x{height}:rate={clip.fps:g}" if ":" in clip.source or "=" in clip.source \
        else f"{clip.source}=size={width}x{height}:rate={clip.fps:g}"
    if target.suffix == ".png":
        return [*base_argv(), "-f", "lavfi", "-i", source, "-frames:v", "1", "-update", "1", str(target)]
    return [*base_argv(), "-f", "lavfi", "-i", source, "-frames:v", str(clip.frames), "-c:v", "libx264",
            "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", str(target)]


def make_sample_dataset(folder: str | Path) -> list[Path]:
    """Write the sample clips and their captions into ``folder`` (created; must hold no media yet)."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    if list_media(target):
        raise FileExistsError(f"{target} already holds media files; choose an empty folder for the sample dataset")

    def make(clip: SampleClip) -> Path:
        final = target / clip.name
        partial = target / f".partial-{clip.name}"
        result = subprocess.run(_argv(clip, partial.with_suffix(final.suffix)), capture_output=True, text=True,
                                timeout=120)
        produced = partial.with_suffix(final.suffix)
        if result.returncode != 0:
            produced.unlink(missing_ok=True)
            raise PreprocessError(f"ffmpeg could not make {clip.name}: {result.stderr.strip()[-300:]}")
        produced.replace(final)
        write_text_atomic(final.with_suffix(".txt"), clip.caption + "\n")
        return final

    with ThreadPoolExecutor(max_workers=len(SAMPLES)) as pool:
        return list(pool.map(make, SAMPLES))
