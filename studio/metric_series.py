"""Reading metrics.jsonl for plots: incremental (only bytes appended since the last read) and shared by viewers.

A run of many hours has 100k+ step records; each plot refresh must cost the new lines plus a downsample to
<= 2k points, never a re-read of the file, and several browser tabs watching one job share one reader.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# TensorBoard tags that hold a per-step training loss (musubi's console only shows a moving average).
RAW_LOSS_TAGS = ("loss/current", "train/loss")
EPOCH_LOSS_TAGS = ("loss/epoch", "train/epoch_loss")


class _Growable:
    """A float64 array with amortised appends (a list of 100k floats costs 4x the memory and a copy per plot)."""

    def __init__(self) -> None:
        self._data = np.empty(1024)
        self.size = 0

    def extend(self, values: list[float]) -> None:
        need = self.size + len(values)
        if need > len(self._data):
            grown = np.empty(max(need, 2 * len(self._data)))
            grown[:self.size] = self._data[:self.size]
            self._data = grown
        self._data[self.size:need] = values
        self.size = need

    @property
    def view(self) -> np.ndarray:
        return self._data[:self.size]


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


@dataclass
class MetricSeries:
    steps: _Growable = field(default_factory=_Growable)
    loss: _Growable = field(default_factory=_Growable)
    smooth: _Growable = field(default_factory=_Growable)
    epochs: list[tuple[int, int]] = field(default_factory=list)  # (epoch, step it starts after)
    tb: dict[str, tuple[_Growable, _Growable]] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)  # the newest step record

    def add(self, records: list[dict[str, Any]]) -> None:
        steps, loss, smooth = [], [], []
        tb_new: dict[str, tuple[list[float], list[float]]] = {}
        for record in records:
            kind = record.get("kind")
            if kind == "step":
                steps.append(float(record["step"]))
                loss.append(_num(record.get("loss")))
                smooth.append(_num(record.get("smooth")))
                self.last = record
            elif kind == "epoch":
                self.epochs.append((int(record["epoch"]), int(record["step"])))
            elif kind == "tb":
                xs, ys = tb_new.setdefault(record["tag"], ([], []))
                xs.append(float(record["step"]))
                ys.append(_num(record.get("value")))
        self.steps.extend(steps)
        self.loss.extend(loss)
        self.smooth.extend(smooth)
        for tag, (xs, ys) in tb_new.items():
            gx, gy = self.tb.setdefault(tag, (_Growable(), _Growable()))
            gx.extend(xs)
            gy.extend(ys)

    @property
    def count(self) -> int:
        return self.steps.size


def parse_records(lines: list[bytes]) -> list[dict[str, Any]]:
    """JSON lines -> dicts. One ``json.loads`` over the whole batch (10x faster than per line); a damaged line
    (a crash mid-write) only costs a per-line retry of that batch."""
    lines = [line for line in lines if line.strip()]
    if not lines:
        return []
    try:
        return json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records


class MetricsFile:
    """metrics.jsonl of one job, read from where the last refresh stopped."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self._partial = b""
        self.series = MetricSeries()
        self.version = 0  # bumped when new records arrive, so a viewer can skip an unchanged plot
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        with self._lock:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                return False
            if size < self.offset:  # rewritten: start over
                self.offset, self._partial, self.series = 0, b"", MetricSeries()
            if size == self.offset:
                return False
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(size - self.offset)
            self.offset += len(data)
            data = self._partial + data
            lines = data.split(b"\n")
            self._partial = lines.pop()
            records = parse_records(lines)
            if records:
                self.series.add(records)
                self.version += 1
            return bool(records)


_CACHE: OrderedDict[str, MetricsFile] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 16


def shared_metrics(path: str | Path) -> MetricsFile:
    """One reader per metrics file for the whole process, least recently used dropped beyond 16 jobs."""
    key = str(Path(path).resolve())
    with _CACHE_LOCK:
        reader = _CACHE.pop(key, None) or MetricsFile(key)
        _CACHE[key] = reader
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    reader.refresh()
    return reader


def downsample_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` points keeping each bucket's min and max (spikes survive, unlike a stride).

    Non-finite values are never chosen as a bucket's extreme; callers mark them separately.
    """
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    buckets = max(max_points // 2, 1)
    size = math.ceil(n / buckets)
    padded_len = buckets * size
    finite = np.isfinite(values)
    lows = np.full(padded_len, np.inf)
    highs = np.full(padded_len, -np.inf)
    lows[:n] = np.where(finite, values, np.inf)
    highs[:n] = np.where(finite, values, -np.inf)
    rows = np.arange(buckets) * size
    argmin = lows.reshape(buckets, size).argmin(axis=1) + rows
    argmax = highs.reshape(buckets, size).argmax(axis=1) + rows
    chosen = np.unique(np.concatenate([argmin, argmax, [n - 1]]))
    return chosen[chosen < n]


@dataclass
class PlotData:
    steps: list[float]
    loss: list[float | None]
    smooth: list[float | None]
    bad_steps: list[float]  # steps whose loss was NaN/inf
    epoch_steps: list[tuple[int, float]]
    tb_loss: tuple[str, list[float], list[float | None]] | None
    points: int  # total step records behind the plot
    loss_label: str  # what the console loss is ("avr_loss" for musubi, "loss" otherwise)


def _clean(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values.tolist()]


def plot_data(series: MetricSeries, *, max_points: int = 2000, backend: str = "", max_markers: int = 200) -> PlotData:
    """Downsampled arrays for a loss plot (<= ``max_points`` per line)."""
    steps, loss, smooth = series.steps.view, series.loss.view, series.smooth.view
    index = downsample_indices(loss, max_points)
    bad = steps[~np.isfinite(loss)]
    if len(bad) > max_markers:
        bad = bad[np.linspace(0, len(bad) - 1, max_markers).astype(int)]
    epochs = series.epochs
    if len(epochs) > max_markers:
        stride = math.ceil(len(epochs) / max_markers)
        epochs = epochs[::stride]
    tb_loss = None
    for tag in RAW_LOSS_TAGS:
        if tag in series.tb:
            xs, ys = series.tb[tag]
            tb_index = downsample_indices(ys.view, max_points)
            tb_loss = (tag, xs.view[tb_index].tolist(), _clean(ys.view[tb_index]))
            break
    return PlotData(
        steps=steps[index].tolist(), loss=_clean(loss[index]), smooth=_clean(smooth[index]),
        bad_steps=bad.tolist(), epoch_steps=[(e, float(s)) for e, s in epochs], tb_loss=tb_loss,
        points=series.count, loss_label="avr_loss" if backend == "musubi_tuner" else "loss",
    )
