"""Stopping a trainer: graceful first, then harder, until the whole process tree is gone.

Stages, each given time to work before the next:
1. diffusion-pipe only: create ``<run folder>/save_quit`` (utils/saver.py checks it after every step, saves a
   checkpoint and exits), so the stop costs no progress. A step can take minutes, so this stage waits longest.
2. SIGINT to the trainer's process group (Ctrl+C: KeyboardInterrupt in every worker; launchers forward it).
3. SIGTERM, 4. SIGKILL to the group and every descendant ever seen (a worker may have left the group).
"""

from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from studio import processes


@dataclass(frozen=True)
class StopTimeouts:
    save_quit_s: float = 600.0  # one diffusion-pipe step plus its checkpoint save
    interrupt_s: float = 60.0
    terminate_s: float = 15.0

    @classmethod
    def for_speed(cls, s_per_it: float | None, base: StopTimeouts | None = None) -> StopTimeouts:
        """Give save_quit three steps (a 500 s/it run needs that long), at least its base value."""
        base = base or cls()
        if s_per_it and s_per_it > 0:
            return StopTimeouts(max(base.save_quit_s, 3 * s_per_it + 120), base.interrupt_s, base.terminate_s)
        return base


@dataclass
class StopController:
    pid: int
    save_quit: Path | None = None  # the signal file, when the trainer understands one
    timeouts: StopTimeouts = field(default_factory=StopTimeouts)
    stages: list[tuple[str, float]] = field(default_factory=list)
    stage: int = -1
    stage_started: float = 0.0
    actions: list[str] = field(default_factory=list)  # what was done, for the log

    @property
    def started(self) -> bool:
        return self.stage >= 0

    def begin(self, *, force: bool = False, now: float | None = None) -> None:
        if self.started:
            if force and self.stages[self.stage][0] in ("save_quit", "interrupt"):
                self._enter(self._index("terminate"), now)
            return
        t = self.timeouts
        self.stages = [("interrupt", t.interrupt_s), ("terminate", t.terminate_s), ("kill", 5.0)]
        if self.save_quit is not None:
            self.stages.insert(0, ("save_quit", t.save_quit_s))
        self._enter(self._index("terminate") if force else 0, now)

    def tick(self, known: list[psutil.Process], now: float | None = None) -> None:
        """Move to the next stage when the current one had its time."""
        if not self.started:
            return
        now = time.monotonic() if now is None else now
        wait = self.stages[self.stage][1]
        if now - self.stage_started >= wait and self.stage + 1 < len(self.stages):
            self._enter(self.stage + 1, now, known)

    def _index(self, name: str) -> int:
        return next(i for i, (action, _) in enumerate(self.stages) if action == name)

    def _enter(self, index: int, now: float | None, known: list[psutil.Process] | None = None) -> None:
        self.stage = index
        self.stage_started = time.monotonic() if now is None else now
        action = self.stages[index][0]
        self.actions.append(action)
        if action == "save_quit" and self.save_quit is not None:
            with contextlib.suppress(OSError):
                self.save_quit.touch()
        elif action == "interrupt":
            processes.interrupt_group(self.pid)
        else:
            targets = processes.alive([*processes.tree(self.pid), *(known or [])])
            sig = signal.SIGTERM if action == "terminate" else getattr(signal, "SIGKILL", signal.SIGTERM)
            processes.signal_all(targets, sig, group=self.pid)
