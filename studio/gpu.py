"""GPU facts from NVML (nvidia-ml-py). Imported lazily so machines without a driver still run the studio."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_mib: int
    free_mib: int
    utilization_pct: int = 0
    temperature_c: int = 0
    power_w: float = 0.0


def detect_gpus() -> list[GpuInfo]:
    """All NVIDIA GPUs on this machine, or [] when there is no driver (CI, laptops)."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GpuInfo(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else name,
                    total_mib=memory.total // 2**20,
                    free_mib=memory.free // 2**20,
                )
            )
        return gpus
    finally:
        pynvml.nvmlShutdown()


# Live monitoring: one background sampler per process, shared by every viewer ---------------------------------


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    utilization_pct: int
    memory_used_mib: int
    memory_total_mib: int
    temperature_c: int
    power_w: float
    power_limit_w: float
    time: float


class NvmlReader:
    """Reads every GPU's utilisation, memory, temperature and power; [] without a driver."""

    def __init__(self) -> None:
        self._nvml = None
        self._handles: list = []
        self._names: list[str] = []

    def open(self) -> bool:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # ImportError, NVMLError (no driver / library): monitoring is simply empty
            return False
        self._nvml = pynvml
        count = pynvml.nvmlDeviceGetCount()
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        names = [pynvml.nvmlDeviceGetName(h) for h in self._handles]
        self._names = [n.decode() if isinstance(n, bytes) else n for n in names]
        return True

    def read(self) -> list[GpuSample]:
        if self._nvml is None:
            return []
        nvml, now, samples = self._nvml, time.time(), []
        for index, handle in enumerate(self._handles):
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            samples.append(GpuSample(
                index=index, name=self._names[index],
                utilization_pct=_nvml_value(lambda h=handle: nvml.nvmlDeviceGetUtilizationRates(h).gpu, 0),
                memory_used_mib=memory.used // 2**20, memory_total_mib=memory.total // 2**20,
                temperature_c=_nvml_value(lambda h=handle: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU), 0),
                power_w=_nvml_value(lambda h=handle: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0, 0.0),
                power_limit_w=_nvml_value(lambda h=handle: nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0, 0.0),
                time=now,
            ))
        return samples

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None


def _nvml_value(read: Callable[[], Any], default: Any) -> Any:
    """Some boards do not report power or temperature (NVML_ERROR_NOT_SUPPORTED): show 0, keep the rest."""
    try:
        return read()
    except Exception:
        return default


class GpuSampler:
    """Samples in one daemon thread every ``interval`` s into a ring buffer; viewers read the buffer, so N open
    browser tabs cost one NVML query per interval, not N. The thread stops after ``idle_stop`` s without readers
    and restarts on the next read."""

    def __init__(self, reader: Any = None, *, interval: float = 2.0, history: int = 150,
                 idle_stop: float = 300.0) -> None:
        self._reader = reader or NvmlReader()
        self.interval = interval
        self.idle_stop = idle_stop
        self._history: deque[list[GpuSample]] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_read = 0.0
        self._retry_at = 0.0  # no driver: try NVML again only after a minute, not on every viewer tick
        self.samples_taken = 0

    def latest(self) -> list[GpuSample]:
        self._touch()
        with self._lock:
            return list(self._history[-1]) if self._history else []

    def history(self) -> list[list[GpuSample]]:
        self._touch()
        with self._lock:
            return list(self._history)

    def _touch(self) -> None:
        self._last_read = time.monotonic()
        with self._lock:
            if (self._thread is None or not self._thread.is_alive()) and self._last_read >= self._retry_at:
                self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        if not self._reader.open():
            self._retry_at = time.monotonic() + 60.0
            return
        try:
            while time.monotonic() - self._last_read < self.idle_stop:
                samples = self._reader.read()
                with self._lock:
                    self._history.append(samples)
                    self.samples_taken += 1
                time.sleep(self.interval)
        finally:
            self._reader.close()


_SHARED: GpuSampler | None = None
_SHARED_LOCK = threading.Lock()


def shared_sampler() -> GpuSampler:
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = GpuSampler()
        return _SHARED
