"""Incremental parsing of trainer output into progress and metric records (metrics.jsonl).

The supervisor feeds raw bytes as they arrive; lines end at ``\\n``, ``\\r`` or ``\\r\\n`` because tqdm redraws its
bar with a bare ``\\r`` when the output is not a terminal. Formats, checked in the trainers' sources:

- musubi-tuner ``training/trainer_base.py``: ``tqdm(range(max_train_steps), smoothing=0, desc="steps")`` with
  ``set_postfix(avr_loss=...)`` -> ``steps:  38%|███▊      | 36/96 [13:09<21:55, 21.93s/it, avr_loss=0.0796]``;
  ``accelerator.print(f"\\nepoch {epoch + 1}/{num_train_epochs}")``; ``total optimization steps / 学習ステップ数: N``.
  ``progress_bar.update(1)`` redraws step N with step N-1's postfix, then ``set_postfix`` redraws N with its own loss,
  so the last line seen for a step is the one kept.
- DeepSpeed ``runtime/pipe/engine.py`` (diffusion-pipe): ``steps: N loss: 0.0614 iter time (s): 531.283 samples/sec:
  0.008`` (extra ``name: value`` losses may sit between loss and iter time); ``runtime/engine.py _report_progress``
  logs ``[Rank 0] step=N, skipped=0, lr=[1.5968e-07], mom=[0.0]`` *before* the loss line of the same step.
- diffusion-pipe ``utils/saver.py``: ``Started new epoch: N`` (printed after the last step of epoch N-1);
  ``train.py``: ``Resuming training from checkpoint. Resuming at epoch: X, step: Y``. It prints no step total, so the
  total is ``max_steps`` or ``epochs x steps per epoch`` once the first epoch has ended.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

MUSUBI = "musubi_tuner"
DIFFUSION_PIPE = "diffusion_pipe"
MAX_LINE_BYTES = 64 * 1024  # a "line" longer than this (binary junk, no newline ever) is cut, never buffered forever

_LINE_END = re.compile(rb"\r\n|\r|\n")
_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf|NaN|Inf|-inf|-nan)"
_TQDM = re.compile(
    r"(?:^|\s)(?P<desc>[^|\r\n]*?):?\s*(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s*"
    r"\[(?P<elapsed>[\d:]+)<(?P<remaining>[\d:?]+),\s*(?P<rate>[\d.]+|\?)(?P<unit>s/it|it/s)(?P<postfix>[^\]]*)\]"
)
_AVR_LOSS = re.compile(r"\bavr_loss=(" + _NUMBER + ")")
_MUSUBI_EPOCH = re.compile(r"^\s*epoch (\d+)/(\d+)\s*$")
_MUSUBI_TOTAL = re.compile(r"total optimization steps[^:]*:\s*(\d+)")
_MUSUBI_EPOCHS = re.compile(r"num epochs / epoch数:\s*(\d+)")
_DS_LOSS = re.compile(
    r"^steps: (\d+) loss: (" + _NUMBER + r") .*?iter time \(s\): ([\d.]+) samples/sec: ([\d.]+)"
)
_DS_LR = re.compile(r"\[Rank 0\] step=(\d+), skipped=(\d+), lr=\[([^\]]*)\]")
_DP_EPOCH = re.compile(r"^Started new epoch: (\d+)")
_DP_RESUME = re.compile(r"Resuming at epoch: (\d+), step: (\d+)")


def parse_float(text: str) -> float:
    """Trainer numbers, including ``nan``/``inf`` (tqdm and f-strings print them lowercase)."""
    return float(text)


def parse_interval(text: str) -> float | None:
    """tqdm's ``MM:SS`` / ``H:MM:SS`` (hours may exceed 24) -> seconds; ``?`` -> None."""
    if "?" in text:
        return None
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return float(seconds)


class LineSplitter:
    """Bytes in, complete lines out. A trailing partial line waits for the next chunk."""

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> list[bytes]:
        if not data:
            return []
        buf = self._partial + data
        parts = _LINE_END.split(buf)
        # A "\r\n" split across two chunks yields one extra empty line, which every consumer ignores.
        self._partial = parts.pop()
        if len(self._partial) > MAX_LINE_BYTES:
            parts.append(self._partial[:MAX_LINE_BYTES])
            self._partial = b""
        return parts

    def flush(self) -> list[bytes]:
        rest, self._partial = self._partial, b""
        return [rest] if rest else []


@dataclass
class Progress:
    """What a viewer shows: the plan step running, the trainer's step/epoch, speed and loss."""

    phase: str = ""  # the plan step's name ("cache latents", "train")
    phase_index: int = 0
    phase_count: int = 0
    bar_desc: str = ""  # a non-training tqdm bar (caching), for "what is it doing now"
    bar_n: int = 0
    bar_total: int = 0
    step: int = 0
    total: int = 0
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    smooth: float | None = None
    lr: float | None = None
    s_per_it: float | None = None
    eta_s: float | None = None
    updated: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Smoother:
    """Debiased exponential moving average (TensorBoard's smoothing). NaN/inf values are skipped, so one bad step
    does not erase the curve; the watchdog reports them separately."""

    def __init__(self, weight: float = 0.95) -> None:
        self.weight = weight
        self._last = 0.0
        self._count = 0

    def add(self, value: float | None) -> float | None:
        if value is None or not math.isfinite(value):
            return self.value
        self._last = self._last * self.weight + (1 - self.weight) * value
        self._count += 1
        return self.value

    def seed(self, value: float | None) -> None:
        """Continue from a known smoothed value (a re-attached supervisor) instead of starting over."""
        if value is not None and math.isfinite(value):
            self._last, self._count = value, 10_000

    @property
    def value(self) -> float | None:
        if not self._count:
            return None
        return self._last / (1 - self.weight ** self._count)


@dataclass
class _Pending:
    step: int
    loss: float | None = None
    lr: float | None = None
    s_per_it: float | None = None
    eta_s: float | None = None


@dataclass
class MetricsTracker:
    """Turns trainer lines into ``Progress`` and metric records.

    Records (one JSON object per line of metrics.jsonl):
    ``{"kind": "step", "step", "loss", "smooth", "lr", "s_per_it", "eta_s", "epoch", "total", "t"}``,
    ``{"kind": "epoch", "epoch", "step", "t"}`` (the epoch begins after ``step``),
    ``{"kind": "tb", "tag", "step", "value", "t"}`` (TensorBoard scalars, added by the supervisor).
    """

    backend: str
    expected_epochs: int = 0  # from the preset, for trainers that do not print it (diffusion-pipe)
    max_steps: int = 0
    smoothing: float = 0.95
    progress: Progress = field(default_factory=Progress)
    last_step_recorded: int = 0  # records at or below this step are not written again (re-attach)

    def __post_init__(self) -> None:
        self._smoother = Smoother(self.smoothing)
        self._pending: _Pending | None = None
        self._lr_step: tuple[int, float] | None = None
        self._epoch_start_step: dict[int, int] = {}
        if self.expected_epochs and not self.progress.epochs:
            self.progress.epochs = self.expected_epochs
        if self.max_steps and not self.progress.total:
            self.progress.total = self.max_steps

    def resume(self, progress: Progress, last_recorded_step: int) -> None:
        self.progress = progress
        self.last_step_recorded = max(last_recorded_step, 0)
        self._smoother.seed(progress.smooth)
        if progress.epoch:
            self._epoch_start_step[progress.epoch] = progress.step

    # Feeding ---------------------------------------------------------------------------------------

    def feed_lines(self, lines: list[bytes], now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        records: list[dict[str, Any]] = []
        for raw in lines:
            if raw:
                self._feed_line(raw.decode("utf-8", "replace"), now, records)
        return records

    def flush(self, now: float | None = None) -> list[dict[str, Any]]:
        """Emit the step still waiting for a later redraw (at the end of a plan step)."""
        records: list[dict[str, Any]] = []
        self._emit_pending(time.time() if now is None else now, records)
        return records

    def _feed_line(self, line: str, now: float, records: list[dict[str, Any]]) -> None:
        if "%|" in line:
            self._tqdm_line(line, now, records)
        elif line.startswith("steps: "):
            self._ds_loss_line(line, now, records)
        elif "[Rank 0] step=" in line:
            match = _DS_LR.search(line)
            if match and match.group(3).strip():
                with contextlib.suppress(ValueError):  # an lr printed as a tensor repr: keep the last good one
                    self._lr_step = (int(match.group(1)), parse_float(match.group(3).split(",")[0]))
        elif "epoch" in line:
            self._epoch_line(line, now, records)
        elif "total optimization steps" in line and (match := _MUSUBI_TOTAL.search(line)):
            self.progress.total = int(match.group(1))

    def _tqdm_line(self, line: str, now: float, records: list[dict[str, Any]]) -> None:
        match = _TQDM.search(line)
        if not match:
            return
        desc = match.group("desc").strip()
        n, total = int(match.group("n")), int(match.group("total"))
        if desc != "steps":
            # A caching or loading bar: shown as "what it is doing", never as a training step.
            self.progress.bar_desc, self.progress.bar_n, self.progress.bar_total = desc, n, total
            self.progress.updated = now
            return
        self.progress.total = total
        if n == 0:
            return
        rate = match.group("rate")
        s_per_it = None
        # musubi's bar is reset after step 1 (trainer_base.py), so the first update's rate is elapsed-since-reset
        # noise ("1385.17it/s" on the H100 smoke run): speed and ETA start from step 2.
        first_update = n == 1
        if rate != "?" and not first_update:
            value = float(rate)
            s_per_it = value if match.group("unit") == "s/it" else (1.0 / value if value else None)
        loss_match = _AVR_LOSS.search(match.group("postfix"))
        if self._pending is not None and n != self._pending.step:
            self._emit_pending(now, records)
        if self._pending is None:
            self._pending = _Pending(step=n)
        if loss_match:
            self._pending.loss = parse_float(loss_match.group(1))
        self._pending.s_per_it = s_per_it
        self._pending.eta_s = None if first_update else parse_interval(match.group("remaining"))
        self._show(self._pending, now)

    def _ds_loss_line(self, line: str, now: float, records: list[dict[str, Any]]) -> None:
        match = _DS_LOSS.match(line)
        if not match:
            return
        self._emit_pending(now, records)
        step = int(match.group(1))
        s_per_it = float(match.group(3))
        lr = self._lr_step[1] if self._lr_step and self._lr_step[0] == step else self.progress.lr
        if not self.progress.epoch:
            self._start_epoch(1, 0, now, records)
        pending = _Pending(step=step, loss=parse_float(match.group(2)), lr=lr, s_per_it=s_per_it)
        total = self._derived_total()
        if total:
            self.progress.total = total
            pending.eta_s = max(total - step, 0) * s_per_it
        self._pending = pending
        self._emit_pending(now, records)

    def _epoch_line(self, line: str, now: float, records: list[dict[str, Any]]) -> None:
        if match := _MUSUBI_EPOCH.match(line):
            self._emit_pending(now, records)
            self.progress.epochs = int(match.group(2))
            self._start_epoch(int(match.group(1)), self.progress.step, now, records)
        elif match := _DP_EPOCH.match(line):
            self._start_epoch(int(match.group(1)), self.progress.step, now, records)
        elif match := _DP_RESUME.search(line):
            self.progress.epoch = int(match.group(1))
            self.progress.step = int(match.group(2)) - 1
        elif match := _MUSUBI_EPOCHS.search(line):
            self.progress.epochs = int(match.group(1))

    # Records ---------------------------------------------------------------------------------------

    def _start_epoch(self, epoch: int, step: int, now: float, records: list[dict[str, Any]]) -> None:
        if epoch == self.progress.epoch:
            return
        self.progress.epoch = epoch
        self._epoch_start_step[epoch] = step
        self.progress.updated = now
        records.append({"kind": "epoch", "epoch": epoch, "step": step, "t": round(now, 3)})

    def _derived_total(self) -> int:
        """diffusion-pipe prints no total: max_steps, else epochs x steps per epoch once an epoch has ended."""
        if self.max_steps:
            return self.max_steps
        starts = sorted(self._epoch_start_step.items())
        for (e1, s1), (e2, s2) in itertools.pairwise(starts):
            if e2 == e1 + 1 and s2 > s1 and self.progress.epochs:
                return (s2 - s1) * self.progress.epochs
        return self.progress.total

    def _show(self, pending: _Pending, now: float) -> None:
        p = self.progress
        p.step, p.loss, p.s_per_it, p.eta_s, p.updated = pending.step, pending.loss, pending.s_per_it, pending.eta_s, now
        if pending.lr is not None:
            p.lr = pending.lr

    def _emit_pending(self, now: float, records: list[dict[str, Any]]) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        smooth = self._smoother.add(pending.loss)
        self._show(pending, now)
        self.progress.smooth = smooth
        if pending.step <= self.last_step_recorded:
            return
        self.last_step_recorded = pending.step
        records.append({
            "kind": "step", "step": pending.step, "loss": pending.loss, "smooth": _short(smooth), "lr": pending.lr,
            "s_per_it": _short(pending.s_per_it), "eta_s": _short(pending.eta_s), "epoch": self.progress.epoch,
            "total": self.progress.total, "t": round(now, 3),
        })


def _short(value: float | None) -> float | None:
    """6 significant digits: metrics.jsonl stays small and the plot loses nothing."""
    return None if value is None else float(f"{value:.6g}")


def tb_records(scalars: list[Any], now: float | None = None) -> list[dict[str, Any]]:
    """TensorBoard scalars (studio.tbevents.Scalar) as metrics.jsonl records."""
    stamp = round(time.time() if now is None else now, 3)
    return [{"kind": "tb", "tag": s.tag, "step": s.step, "value": s.value, "t": stamp} for s in scalars]
