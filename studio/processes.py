"""Process groups and trees: start detached, signal a whole trainer (launcher + workers), leave no orphans.

Trainers are launchers (``accelerate launch``, ``deepspeed``) that fork workers; a worker may even start its own
session. Signalling the group reaches the usual case, walking the psutil tree reaches the rest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

import psutil

WINDOWS = sys.platform == "win32"


def detached_kwargs() -> dict[str, object]:
    """Popen options for a process that must outlive its parent and not share its console signals."""
    if WINDOWS:
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS  # type: ignore[attr-defined]
        return {"creationflags": flags}
    return {"start_new_session": True}


def group_kwargs() -> dict[str, object]:
    """Popen options for a trainer step: its own process group, so a stop signal reaches launcher and workers."""
    if WINDOWS:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
    return {"start_new_session": True}


def interrupt_group(pid: int) -> None:
    """Ctrl+C for the trainer's whole group: Python raises KeyboardInterrupt and unwinds (launchers forward it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if WINDOWS:
            os.kill(pid, signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        else:
            os.killpg(pid, signal.SIGINT)


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (empty when it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def signal_all(processes: Iterable[psutil.Process], sig: int, *, group: int = 0) -> None:
    """Send ``sig`` to the group leader's group (POSIX) and to every listed process still alive."""
    if group and not WINDOWS:
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.killpg(group, sig)
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if sig == getattr(signal, "SIGKILL", None) or (WINDOWS and sig != signal.SIGINT):
                process.kill()
            else:
                process.send_signal(sig)


def alive(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
    result = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                result.append(process)
    return result


def _group_exists(pgid: int) -> bool:
    """A worker that was never seen may still sit in the trainer's group (its pgid is the trainer's pid, which
    the kernel does not hand out again while the group has members). Zombies do not count: they are already dead
    and only wait for a parent (or an init that never reaps, in some containers) to collect them."""
    if WINDOWS:
        return False
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def kill_tree(pid: int, *, term_timeout: float = 10.0, known: Iterable[psutil.Process] = ()) -> list[int]:
    """SIGTERM then SIGKILL the tree of ``pid`` (plus ``known`` descendants seen earlier, plus its process group);
    returns pids that survived even SIGKILL (normally none)."""
    processes = {p.pid: p for p in [*tree(pid), *known]}
    targets = alive(processes.values())
    if not targets and not _group_exists(pid):
        return []
    signal_all(targets, signal.SIGTERM, group=pid)
    _, still = psutil.wait_procs(targets, timeout=term_timeout)
    deadline = time.monotonic() + (term_timeout if not targets else 0.0)
    while not still and _group_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.1)  # members we never saw: give them the same grace
    still = alive(still)
    if still or _group_exists(pid):
        signal_all(still, getattr(signal, "SIGKILL", signal.SIGTERM), group=pid)
        _, still = psutil.wait_procs(still, timeout=5.0)
    return [p.pid for p in alive(still)]
