"""GPU facts from NVML (nvidia-ml-py). Imported lazily so machines without a driver still run the studio."""

from __future__ import annotations

from dataclasses import dataclass


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
