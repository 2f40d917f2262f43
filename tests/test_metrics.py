"""Log parsing, TensorBoard reading, metric series and log tails on the trainers' real output formats.

Console lines are copied from the sources' issue reports (shared/reference): musubi-tuner #477 and #26, diffusion-pipe
#410 and #531; event files are real TFRecord/protobuf bytes written by tensorboardX (tests/fixtures/tb/make_events.py).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from studio.logtail import LogTail, collapse_cr, last_lines, shared_tail
from studio.metric_series import MetricsFile, downsample_indices, parse_records, plot_data, shared_metrics
from studio.metrics import LineSplitter, MetricsTracker, Smoother, parse_interval
from studio.tbevents import EventFileError, EventFileReader, find_event_files, masked_crc32c

TB = Path(__file__).parent / "fixtures" / "tb"
MUSUBI_477 = "steps:  38%|███▊      | 36/96 [13:09<21:55, 21.93s/it, avr_loss=0.0796]"
MUSUBI_26 = "steps:  13%|█████████▏      | 440/3300 [21:33<2:20:06,  2.94s/it, avr_loss=nan]"
DP_410 = ("[2025-09-04 15:18:01,200] [INFO] [logging.py:107:log_dist] [Rank 0] step=1, skipped=0, lr=[1.5968e-07], "
          "mom=[0.0]\nsteps: 1 loss: 0.0614 iter time (s): 531.283 samples/sec: 0.008\n")
DP_531 = "steps: 18 loss: nan iter time (s): 3.235 samples/sec: 0.309\n"


def feed(tracker: MetricsTracker, text: str, chunk: int = 0) -> list[dict]:
    splitter = LineSplitter()
    data = text.encode()
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)] if chunk else [data]
    records = []
    for part in chunks:
        records += tracker.feed_lines(splitter.feed(part), now=100.0)
    return records + tracker.feed_lines(splitter.flush(), now=100.0) + tracker.flush(now=100.0)


# Line splitting ---------------------------------------------------------------------------------------


def test_splitter_ends_lines_at_cr_lf_and_crlf_across_chunks():
    splitter = LineSplitter()
    assert splitter.feed(b"a\rb\r") == [b"a", b"b"]
    assert splitter.feed(b"\nc\r\nd") == [b"", b"c"]  # "\r" then "\n" in the next chunk: one empty line only
    assert splitter.feed(b"e") == []
    assert splitter.flush() == [b"de"]
    assert splitter.flush() == []


def test_splitter_cuts_a_line_that_never_ends():
    splitter = LineSplitter()
    lines = splitter.feed(b"x" * 100_000)
    assert len(lines) == 1 and len(lines[0]) == 64 * 1024


# musubi-tuner -----------------------------------------------------------------------------------------


def test_musubi_tqdm_line_from_issue_477():
    tracker = MetricsTracker("musubi_tuner")
    records = feed(tracker, MUSUBI_477 + "\n")
    step = next(r for r in records if r["kind"] == "step")
    assert (step["step"], step["total"], step["loss"], step["s_per_it"]) == (36, 96, 0.0796, 21.93)
    assert step["eta_s"] == 21 * 60 + 55
    assert tracker.progress.total == 96


def test_musubi_nan_loss_and_hour_interval_from_issue_26():
    tracker = MetricsTracker("musubi_tuner")
    step = next(r for r in feed(tracker, "\r" + MUSUBI_26) if r["kind"] == "step")
    assert math.isnan(step["loss"]) and step["eta_s"] == 2 * 3600 + 20 * 60 + 6 and step["s_per_it"] == 2.94
    assert step["smooth"] is None  # a NaN never enters the smoothed curve


def test_musubi_keeps_the_postfix_redraw_of_each_step():
    # progress_bar.update(1) redraws step 2 with step 1's loss, then set_postfix redraws it with its own.
    text = ("\rsteps:   0%|          | 0/4 [00:00<?, ?it/s]"
            "\rsteps:  25%|██▌       | 1/4 [00:01<00:03,  1.10it/s, avr_loss=0.5]"
            "\rsteps:  50%|█████     | 2/4 [00:02<00:02,  1.05it/s, avr_loss=0.5]"
            "\rsteps:  50%|█████     | 2/4 [00:02<00:02,  1.05it/s, avr_loss=0.4]\n")
    records = [r for r in feed(MetricsTracker("musubi_tuner"), text, chunk=7) if r["kind"] == "step"]
    assert [(r["step"], r["loss"]) for r in records] == [(1, 0.5), (2, 0.4)]
    assert records[1]["s_per_it"] == pytest.approx(1 / 1.05, rel=1e-4)


def test_first_step_rate_is_not_a_speed():
    # musubi resets its bar after step 1, so step 1's rate is noise: "1385.17it/s" on the H100 smoke run
    text = ("\rsteps:   6%|▌         | 1/18 [00:00<00:00, 1385.17it/s, avr_loss=2.62]"
            "\rsteps:  11%|█         | 2/18 [00:01<00:25,  1.61s/it, avr_loss=2.55]\n")
    records = [r for r in feed(MetricsTracker("musubi_tuner"), text) if r["kind"] == "step"]
    assert records[0]["s_per_it"] is None and records[0]["eta_s"] is None
    assert records[1]["s_per_it"] == 1.61 and records[1]["eta_s"] == 25


def test_musubi_epochs_totals_and_caching_bars():
    text = ("  num epochs / epoch数: 16\n  total optimization steps / 学習ステップ数: 320\n"
            "caching latents: 40%|████      | 4/10 [00:02<00:03,  2.00it/s]\n"
            "\nepoch 1/16\n" + "\rsteps:   0%|          | 1/320 [00:05<?, ?it/s, avr_loss=0.1]"
            + "\nepoch 2/16\n")
    tracker = MetricsTracker("musubi_tuner")
    records = feed(tracker, text)
    assert tracker.progress.epochs == 16 and tracker.progress.total == 320
    assert tracker.progress.bar_desc == "caching latents" and tracker.progress.bar_n == 4
    assert [(r["epoch"], r["step"]) for r in records if r["kind"] == "epoch"] == [(1, 0), (2, 1)]
    step = next(r for r in records if r["kind"] == "step")
    assert step["epoch"] == 1 and step["s_per_it"] is None and step["eta_s"] is None


@pytest.mark.parametrize("line", [
    "steps: abc loss: 1", "the epoch was long", "steps:  38%|███▊      | 36/96", "epoch 3 of 16",
    "INFO:root:total optimization steps unknown", "avr_loss=0.5",
])
def test_lines_that_only_look_like_progress_are_ignored(line):
    tracker = MetricsTracker("musubi_tuner")
    assert feed(tracker, line + "\n") == []
    assert tracker.progress.step == 0 and tracker.progress.total == 0


# diffusion-pipe / DeepSpeed ---------------------------------------------------------------------------


def test_deepspeed_lines_from_issue_410_merge_lr_and_loss():
    tracker = MetricsTracker("diffusion_pipe", expected_epochs=10)
    records = feed(tracker, DP_410)
    assert records[0] == {"kind": "epoch", "epoch": 1, "step": 0, "t": 100.0}
    step = records[1]
    assert (step["step"], step["loss"], step["lr"], step["s_per_it"]) == (1, 0.0614, 1.5968e-07, 531.283)


def test_deepspeed_nan_from_issue_531_and_extra_losses():
    records = feed(MetricsTracker("diffusion_pipe"),
                   DP_531 + "steps: 19 loss: 0.1000 mse: 0.0500 iter time (s): 3.000 samples/sec: 0.333\n")
    assert math.isnan(records[1]["loss"]) and records[2]["loss"] == 0.1 and records[2]["s_per_it"] == 3.0


def test_diffusion_pipe_total_is_derived_from_the_first_epoch():
    lines = "".join(f"steps: {s} loss: 0.1 iter time (s): 2.000 samples/sec: 0.5\n" +
                    ("Started new epoch: 2\n" if s == 5 else "") for s in range(1, 8))
    tracker = MetricsTracker("diffusion_pipe", expected_epochs=4)
    records = feed(tracker, lines)
    assert tracker.progress.total == 20
    assert records[-1]["total"] == 20 and records[-1]["eta_s"] == (20 - 7) * 2.0
    assert [r["step"] for r in records if r["kind"] == "epoch"] == [0, 5]
    assert MetricsTracker("diffusion_pipe", max_steps=50).progress.total == 50


def test_diffusion_pipe_resume_line_sets_the_position():
    tracker = MetricsTracker("diffusion_pipe")
    feed(tracker, "Resuming training from checkpoint. Resuming at epoch: 3, step: 41\n")
    assert (tracker.progress.epoch, tracker.progress.step) == (3, 40)


def test_resume_skips_steps_already_recorded_and_keeps_the_smoothing():
    tracker = MetricsTracker("diffusion_pipe")
    previous = feed(tracker, "".join(f"steps: {s} loss: 0.2 iter time (s): 1.0 samples/sec: 1\n" for s in (1, 2, 3)))
    again = MetricsTracker("diffusion_pipe")
    again.resume(tracker.progress, last_recorded_step=3)
    records = feed(again, "".join(f"steps: {s} loss: 0.2 iter time (s): 1.0 samples/sec: 1\n" for s in (3, 4)))
    assert [r["step"] for r in records if r["kind"] == "step"] == [4]
    assert records[-1]["smooth"] == pytest.approx(previous[-1]["smooth"])


def test_smoother_debiases_and_skips_non_finite_values():
    smoother = Smoother(0.9)
    assert smoother.add(None) is None
    assert smoother.add(2.0) == pytest.approx(2.0)
    assert smoother.add(math.nan) == pytest.approx(2.0)
    assert smoother.add(4.0) == pytest.approx((0.9 * 0.2 + 0.1 * 4.0) / (1 - 0.81))


def test_interval_parsing():
    assert parse_interval("13:09") == 789.0 and parse_interval("302:43:29") == 302 * 3600 + 43 * 60 + 29
    assert parse_interval("?") is None


# TensorBoard ------------------------------------------------------------------------------------------


def event_file(kind: str) -> Path:
    return next((TB / kind).rglob("events.out.tfevents.*"))


def test_reads_musubi_scalars_including_nan_and_tensor_form():
    scalars = EventFileReader(event_file("musubi")).read_new()
    current = [s for s in scalars if s.tag == "loss/current"]
    assert [s.step for s in current] == list(range(1, 22))
    assert current[0].value == pytest.approx(0.118) and current[0].wall_time == 1_700_000_001.0
    assert all(math.isnan(s.value) for s in current[17:20])
    assert current[20].value == 0.5  # written as a new_style tensor
    assert [(s.step, round(s.value, 3)) for s in scalars if s.tag == "loss/epoch"] == [(2, 0.09), (3, 0.08)]
    assert {s.tag for s in scalars} == {"loss/current", "loss/average", "lr/unet", "loss/epoch"}


def test_reads_a_file_that_is_still_being_written(tmp_path):
    data = event_file("diffusion_pipe").read_bytes()
    target = tmp_path / "events.out.tfevents.1.host"
    reader = EventFileReader(target)
    seen = []
    for cut in range(0, len(data) + 37, 37):  # append 37 bytes at a time: records arrive cut in the middle
        target.write_bytes(data[:cut])
        seen += reader.read_new()
    losses = [s for s in seen if s.tag == "train/loss"]
    assert [s.step for s in losses] == list(range(1, 22)) and math.isinf(losses[-1].value)
    assert reader.offset == len(data)


def test_a_corrupt_record_header_is_reported(tmp_path):
    target = tmp_path / "events.out.tfevents.bad"
    target.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04" + b"x" * 20)
    with pytest.raises(EventFileError, match="bad record header"):
        EventFileReader(target).read_new()
    assert masked_crc32c(b"\x10\x00\x00\x00\x00\x00\x00\x00") != 0x04030201


def test_find_event_files_ignores_older_runs(tmp_path):
    shutil.copytree(TB / "diffusion_pipe", tmp_path / "runs")
    path = next((tmp_path / "runs").rglob("events*"))
    assert find_event_files([str(tmp_path / "runs")]) == [path]
    assert find_event_files([str(tmp_path / "runs")], newer_than=path.stat().st_mtime + 10) == []


# Metric series and plots ------------------------------------------------------------------------------


def write_records(path: Path, records: list[dict], tail: str = "") -> None:
    with open(path, "a") as out:
        out.write("".join(json.dumps(r) + "\n" for r in records) + tail)


def test_metrics_file_reads_only_new_complete_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_records(path, [{"kind": "step", "step": 1, "loss": 0.5, "smooth": 0.5}], tail='{"kind": "st')
    reader = MetricsFile(path)
    assert reader.refresh() and reader.series.count == 1 and reader.version == 1
    assert not reader.refresh()
    with open(path, "a") as out:
        out.write('ep", "step": 2, "loss": NaN, "smooth": 0.5}\n{"kind": "epoch", "epoch": 2, "step": 2}\n')
    assert reader.refresh() and reader.series.count == 2 and math.isnan(reader.series.loss.view[1])
    assert reader.series.epochs == [(2, 2)]


def test_a_damaged_line_costs_only_itself():
    records = parse_records([b'{"kind": "step", "step": 1}', b'{"kind": "st', b'{"kind": "step", "step": 3}'])
    assert [r["step"] for r in records] == [1, 3]


def test_downsampling_keeps_spikes_and_the_last_point():
    values = np.sin(np.arange(100_000) / 500.0)
    values[12_345] = 50.0
    values[54_321] = -50.0
    index = downsample_indices(values, 2000)
    assert len(index) <= 2001 and 12_345 in index and 54_321 in index and index[-1] == 99_999
    assert list(downsample_indices(values[:10], 2000)) == list(range(10))


def test_plot_data_marks_nan_steps_and_epochs(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"kind": "step", "step": s, "loss": math.nan if s > 9_000 else 1.0 / s, "smooth": 0.1}
               for s in range(1, 10_001)]
    records += [{"kind": "epoch", "epoch": e, "step": e * 100} for e in range(1, 101)]
    records += [{"kind": "tb", "tag": "loss/current", "step": 1, "value": 0.3}]
    write_records(path, records)
    data = plot_data(shared_metrics(path).series, max_points=500, backend="musubi_tuner", max_markers=50)
    assert len(data.steps) <= 501 and data.points == 10_000 and data.loss_label == "avr_loss"
    assert len(data.bad_steps) == 50 and data.bad_steps[0] == 9_001
    assert len(data.epoch_steps) == 50 and data.tb_loss == ("loss/current", [1.0], [0.3])
    assert None not in data.loss[:10]


# Log tail ---------------------------------------------------------------------------------------------


def test_collapse_cr_shows_the_last_redraw():
    assert collapse_cr("steps: 1/4\rsteps: 2/4\r") == "steps: 2/4"
    assert collapse_cr("plain") == "plain"


def test_tail_reads_only_new_bytes_and_shows_the_live_bar(tmp_path):
    log = tmp_path / "log.txt"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(100_000)))
    tail = LogTail(log, max_lines=50)
    tail.refresh()
    assert tail.bytes_read == 256 * 1024  # the first look reads only the end
    assert tail.text().splitlines()[-1] == "line 99999" and len(tail.text().splitlines()) == 50
    with open(log, "ab") as out:
        out.write(b"\rsteps: 1/9\rsteps: 2/9")
    before = tail.bytes_read
    assert tail.refresh()
    assert tail.bytes_read - before == len(b"\rsteps: 1/9\rsteps: 2/9")
    assert tail.text().splitlines()[-1] == "steps: 2/9"
    assert not tail.refresh()


def test_tail_starts_over_when_the_log_is_replaced(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("old 1\nold 2\nold 3\n")
    tail = shared_tail(log, 10)
    assert "old 3" in tail.text()
    log.write_text("new\n")
    assert shared_tail(log, 10).text() == "new"
    assert last_lines(log, 5) == ["new"]
