"""Watchdog: catches a run that is wasting GPU hours (NaN/inf loss, divergence, no progress) while it runs.

musubi and kohya print ``avr_loss=nan`` and keep going for hours (musubi #6, #26; sd-scripts #1571, #2137);
users then learn from the finished, useless LoRA. The supervisor feeds every step record and log activity here;
each finding becomes a banner in state.json (with a hint) and, if the launch asked for it, a graceful stop.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

# Hints in English for the CLI and the state file; the GUI shows its own translated text per ``kind``.
HINTS = {
    "nan": "Lower the learning rate; train in bf16 (model.dtype = bfloat16, not fp16); make the mixed precision "
           "match the weights' dtype; for HunyuanVideo/Wan try --split_attn; check that the DiT file is not an "
           "fp8_scaled/quantised file the trainer cannot read.",
    "divergence": "The loss is climbing far above its best value: lower the learning rate (or raise warm-up steps) "
                  "and resume from the last good checkpoint.",
    "stall": "No output and no new step for a long time: the trainer may hang (NCCL on RTX 40xx cards, a full disk, "
             "swapping RAM). Check the log and the GPU panel; stop and resume if it does not move.",
}


@dataclass(frozen=True)
class WatchdogConfig:
    stop_on_nan: bool = False
    stop_on_divergence: bool = False
    divergence_factor: float = 3.0  # smoothed loss above factor x its minimum ...
    divergence_min_steps: int = 50  # ... once this many steps have a smoothed loss (the start is noisy)
    nan_patience: int = 1  # consecutive non-finite losses before reporting (1 = at once)
    stall_minutes: float = 30.0  # 0 = off

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> WatchdogConfig:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Banner:
    kind: str  # nan | divergence | stall
    level: str  # warning | error
    step: int
    message: str
    hint: str
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Watchdog:
    """Fed with step records and log activity; ``check`` returns banners raised since the last call."""

    def __init__(self, config: WatchdogConfig, *, now: float | None = None) -> None:
        self.config = config
        self.raised: set[str] = set()
        self._new: list[Banner] = []
        self._bad_run = 0
        self._best_smooth = math.inf
        self._smooth_count = 0
        self._last_activity = time.time() if now is None else now
        self.stop_requested: Banner | None = None

    def activity(self, now: float | None = None) -> None:
        """The trainer printed something (any byte counts: a slow model load is not a stall)."""
        self._last_activity = time.time() if now is None else now
        self.raised.discard("stall")

    def observe(self, record: dict[str, Any]) -> None:
        """One metrics record (kind step or tb)."""
        if record.get("kind") == "step":
            self._loss(record.get("loss"), int(record["step"]))
            self._smooth(record.get("smooth"), int(record["step"]))
        elif record.get("kind") == "tb" and record.get("tag") in ("loss/current", "train/loss"):
            self._loss(record.get("value"), int(record["step"]))

    def _loss(self, loss: float | None, step: int) -> None:
        if loss is None:
            return
        if math.isfinite(loss):
            self._bad_run = 0
            return
        self._bad_run += 1
        if self._bad_run >= self.config.nan_patience:
            word = "NaN" if math.isnan(loss) else "infinite"
            self._raise("nan", "error", step, f"the loss became {word} at step {step}",
                        stop=self.config.stop_on_nan)

    def _smooth(self, smooth: float | None, step: int) -> None:
        if smooth is None or not math.isfinite(smooth):
            return
        self._smooth_count += 1
        self._best_smooth = min(self._best_smooth, smooth)
        if (self._smooth_count >= self.config.divergence_min_steps and self._best_smooth > 0
                and smooth > self.config.divergence_factor * self._best_smooth):
            self._raise("divergence", "warning", step,
                        f"the smoothed loss {smooth:.4g} at step {step} is {smooth / self._best_smooth:.1f}x its "
                        f"best value {self._best_smooth:.4g}", stop=self.config.stop_on_divergence)

    def check(self, step: int, now: float | None = None) -> list[Banner]:
        now = time.time() if now is None else now
        minutes = self.config.stall_minutes
        if minutes and now - self._last_activity > minutes * 60:
            idle = (now - self._last_activity) / 60
            self._raise("stall", "warning", step, f"no output and no progress for {idle:.0f} minutes", stop=False)
        new, self._new = self._new, []
        return new

    def _raise(self, kind: str, level: str, step: int, message: str, *, stop: bool) -> None:
        if kind in self.raised:
            return
        self.raised.add(kind)
        banner = Banner(kind, level, step, message, HINTS[kind])
        self._new.append(banner)
        if stop and self.stop_requested is None:
            self.stop_requested = banner
