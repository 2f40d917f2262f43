"""Runner benchmark: a fixture trainer printing 5,000 lines/s, plots of 100k points, the tail of a 1 GB log.

    python benchmarks/bench_runner.py [--seconds 60] [--viewers 3] [--log-mb 1024]

Targets (issue 4): the GUI-side reader under 5% of a core with flat memory while the trainer spams its log;
a plot refresh with 100,000 metric points within 100 ms of server time; a log-tail tick costs O(new bytes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backends.base import OutputSpec, Plan, Step  # noqa: E402
from studio import jobs, runner  # noqa: E402
from studio.logtail import LogTail, shared_tail  # noqa: E402
from studio.metric_series import MetricsFile, plot_data, shared_metrics  # noqa: E402

FAKE = str(REPO / "tests" / "fixtures" / "fake_trainer.py")
LABELS = {"loss": "loss", "smoothed": "smoothed", "epoch": "epoch", "nan": "NaN", "step": "step",
          "title": "Loss ({points} steps)"}


def viewer_tick(cfg, job_id: str, with_plot: bool) -> None:
    """What one Train-tab viewer costs the server per tick (gui/train_tab.py tick + plot_tick)."""
    from gui.loss_plot import loss_figure

    state = runner.job_state(cfg, job_id)
    shared_tail(Path(cfg.runs_dir) / job_id / jobs.LOG_FILE, 300).text()
    if with_plot:
        metrics = shared_metrics(Path(cfg.runs_dir) / job_id / jobs.METRICS_FILE)
        loss_figure(plot_data(metrics.series, backend=state.backend), labels=LABELS).to_json()


def bench_spam(seconds: float, viewers: int, work: Path) -> list[tuple[str, str, str]]:
    from backends import backend_fields
    from studio.presets import new_preset
    from studio.settings import load_settings

    os.environ["VIDEO_LORA_STUDIO_HOME"] = str(work / "home")
    cfg = load_settings(None)
    preset = new_preset(backend_fields(), "diffusion_pipe", "wan2.1-t2v-1.3b", "bench")
    out = work / "out"

    def build(job_dir: str, options) -> Plan:
        step = Step("train", [sys.executable, FAKE, "--spam", "5000", "--seconds", str(seconds)], "", {})
        return Plan("diffusion_pipe", "wan2.1-t2v-1.3b", job_dir, {}, [step],
                    OutputSpec(str(out), (), (), (), "TRAINING COMPLETE!"))

    state = runner.submit(build, preset=preset, settings=cfg, launch=runner.LaunchOptions(stop_on_nan=False))
    job_dir = Path(cfg.runs_dir) / state.job_id
    while (state := jobs.read_state(job_dir)).status != jobs.RUNNING or not state.trainer_pid:
        time.sleep(0.05)
    supervisor = psutil.Process(state.supervisor_pid)
    trainer = psutil.Process(state.trainer_pid)
    me = psutil.Process()
    sup_cpu0, me_cpu0, t0 = _cpu(supervisor), _cpu(me), time.monotonic()
    rss: list[int] = []
    ticks = 0
    sup_rate = trainer_rate = 0.0
    while jobs.read_state(job_dir).status == jobs.RUNNING:
        tick_start = time.monotonic()
        for _ in range(viewers):
            viewer_tick(cfg, state.job_id, with_plot=ticks % 5 == 0)  # 2 s ticks, plot every 5th ~ 10 s
        rss.append(me.memory_info().rss)
        elapsed = time.monotonic() - t0
        if elapsed > 0.5 and supervisor.is_running() and trainer.is_running():  # last sample while both ran
            sup_rate = (_cpu(supervisor) - sup_cpu0) / elapsed
            trainer_rate = _cpu(trainer) / elapsed
        ticks += 1
        time.sleep(max(0.0, 2.0 - (time.monotonic() - tick_start)))
    wall = time.monotonic() - t0
    me_cpu = _cpu(me) - me_cpu0
    final = jobs.read_state(job_dir)
    lines = _count_lines(job_dir / jobs.LOG_FILE)
    records = _count_lines(job_dir / jobs.METRICS_FILE)
    half = len(rss) // 2
    return [
        ("trainer output", f"{lines:,} lines in {wall:.0f} s", f"{lines / wall:,.0f} lines/s, job {final.status}"),
        ("supervisor CPU", f"{100 * sup_rate:.1f}% of a core",
         f"parsed {records:,} metric records"),
        ("fake trainer CPU (reference)", f"{100 * trainer_rate:.1f}% of a core", ""),
        (f"GUI reader CPU, {viewers} viewers", f"{100 * me_cpu / wall:.2f}% of a core", "target < 5%"),
        ("GUI reader RSS", f"{rss[0] / 2**20:.0f} -> {rss[-1] / 2**20:.0f} MiB",
         f"2nd half grew {(rss[-1] - rss[half]) / 2**20:+.1f} MiB (flat = no leak)"),
    ]


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def bench_plot(work: Path, points: int = 100_000) -> list[tuple[str, str, str]]:
    from gui.loss_plot import loss_figure

    path = work / "metrics.jsonl"
    with open(path, "w") as out:
        for step in range(1, points + 1):
            loss = math.nan if step % 9973 == 0 else 0.1 + 0.05 * math.sin(step / 300)
            out.write(json.dumps({"kind": "step", "step": step, "loss": loss, "smooth": 0.1, "lr": 2e-4,
                                  "s_per_it": 1.5, "eta_s": 10.0, "epoch": step // 1000 + 1, "total": points,
                                  "t": 1.7e9}) + "\n")
            if step % 1000 == 0:
                out.write(json.dumps({"kind": "epoch", "epoch": step // 1000 + 1, "step": step, "t": 1.7e9}) + "\n")
    reader = MetricsFile(path)
    start = time.perf_counter()
    reader.refresh()
    first_load = time.perf_counter() - start
    timings = []
    for i in range(20):
        with open(path, "a") as out:
            out.write(json.dumps({"kind": "step", "step": points + i + 1, "loss": 0.1, "smooth": 0.1}) + "\n")
        start = time.perf_counter()
        reader.refresh()
        data = plot_data(reader.series)
        payload = loss_figure(data, labels=LABELS).to_json()
        timings.append(time.perf_counter() - start)
    timings.sort()
    return [
        ("plot: first read of 100k records", f"{first_load * 1000:.0f} ms", "once per job per server process"),
        ("plot refresh, 100k points", f"{timings[len(timings) // 2] * 1000:.1f} ms median",
         f"max {timings[-1] * 1000:.1f} ms; {len(data.steps)} points drawn, {len(payload) // 1024} KiB JSON"),
    ]


def bench_tail(work: Path, megabytes: int) -> list[tuple[str, str, str]]:
    path = work / "big.log"
    block = b"".join(b"[INFO] step %07d: some trainer noise that fills the log\n" % i for i in range(16_384))
    with open(path, "wb") as out:
        written = 0
        while written < megabytes * 2**20:
            out.write(block)
            written += len(block)
    tail = LogTail(path)
    start = time.perf_counter()
    tail.refresh()
    first = time.perf_counter() - start
    first_bytes = tail.bytes_read
    start = time.perf_counter()
    idle = tail.refresh()
    idle_time = time.perf_counter() - start
    with open(path, "ab") as out:
        out.write(block)
    before = tail.bytes_read
    start = time.perf_counter()
    tail.refresh()
    tail.text()
    grow = time.perf_counter() - start
    return [
        (f"log tail: first look at {written / 2**30:.2f} GiB", f"{first * 1000:.1f} ms",
         f"read {first_bytes / 1024:.0f} KiB"),
        ("log tail: tick, nothing new", f"{idle_time * 1e6:.0f} µs", f"changed={idle}"),
        (f"log tail: tick after +{len(block) / 2**20:.1f} MiB", f"{grow * 1000:.1f} ms",
         f"read {(tail.bytes_read - before) / 2**20:.2f} MiB (= the new bytes)"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the fake trainer spams")
    parser.add_argument("--viewers", type=int, default=3, help="simulated browser tabs")
    parser.add_argument("--log-mb", type=int, default=1024, help="size of the big log for the tail test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        work = Path(tmp)
        rows = bench_spam(args.seconds, args.viewers, work) + bench_plot(work) + bench_tail(work, args.log_mb)
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"{'measure':<{width}}  {'result':<{value_width}}  notes")
    print("-" * (width + value_width + 40))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {note}")


if __name__ == "__main__":
    main()
