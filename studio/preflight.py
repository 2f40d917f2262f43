"""Pre-flight: every known way a run fails or silently misbehaves, found before it is launched.

``check(preset, settings, media, gpus)`` returns ``Finding``s (studio.findings): an error blocks the launch, a
warning says what will go wrong or be lost, info explains what the trainer will do. Each says what to change,
and where the change is mechanical it carries a ``Fix`` the GUI applies with one click.

The checks live in topic modules, each a tuple ``CHECKS`` of functions ``(CheckContext) -> list[Finding]``:

* ``checks_frames``  - frame counts and resolution rules per architecture and trainer;
* ``checks_data``    - the dataset as scanned: unreadable files, captions, I2V media, buckets, stale caches;
* ``checks_model``   - model files: missing, dtype vs mixed precision, fp8 kinds, ComfyUI files, CLIP, Wan2.2;
* ``checks_trainer`` - trainer quirks from docs/reference (alpha, resume, optimizers, swap limits, NaN risks);
* ``checks_env``     - install, python, disk, RAM, GPUs and the VRAM estimate with auto-fit.

``check`` is pure given its inputs: pass ``media``, ``gpus``, ``disk_free`` and ``ram_total`` to decide the
environment (tests do); left as None they are read from this machine.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from studio import checks_data, checks_env, checks_frames, checks_model, checks_trainer
from studio.architectures import get_architecture
from studio.check_context import Check, CheckContext
from studio.fields import PresetError
from studio.findings import Finding, sort_findings
from studio.gpu import GpuInfo
from studio.media import MediaInfo
from studio.presets import Preset, resolved
from studio.settings import Settings


def check(preset: Preset, settings: Settings, media: list[MediaInfo] | None = None,
          gpus: list[GpuInfo] | None = None, *, disk_free: int | Mapping[str, int] | None = None,
          ram_total: int | None = None) -> list[Finding]:
    """All findings for launching ``preset`` on this machine, errors first."""
    context = make_context(preset, settings, media, gpus, disk_free=disk_free, ram_total=ram_total)
    findings: list[Finding] = []
    for run in all_checks():
        findings.extend(run(context))
    findings.extend(plan_findings(context, findings))
    return sort_findings(_unique(findings))


def all_checks() -> list[Check]:
    return [*checks_frames.CHECKS, *checks_trainer.CHECKS, *checks_model.CHECKS, *checks_data.CHECKS,
            *checks_env.CHECKS]


def make_context(preset: Preset, settings: Settings, media: list[MediaInfo] | None, gpus: list[GpuInfo] | None,
                 *, disk_free: int | Mapping[str, int] | None, ram_total: int | None) -> CheckContext:
    from backends import backend_fields

    try:
        machine = resolved(preset, settings.roots(), backend_fields())
    except PresetError:
        machine = preset  # checks_env reports the unresolvable root; the rest still runs on the raw values
    if media is None:
        media = scan_dataset(machine)
    if gpus is None:
        from studio.gpu import detect_gpus

        gpus = detect_gpus()
    chosen = selected_gpus(preset, settings, gpus)
    if ram_total is None:
        ram_total = _machine_ram()
    return CheckContext(machine, preset, settings, get_architecture(preset.architecture), media, chosen,
                        _disk_reader(disk_free), ram_total)


def scan_dataset(preset: Preset) -> list[MediaInfo] | None:
    """The dataset folder's media with caption status, or None when the folder is not there."""
    from studio.media import scan_folder

    folder = preset.values["dataset"].get("path", "")
    if not folder or not Path(folder).is_dir():
        return None
    return scan_folder(folder, caption_extension=preset.values["dataset"].get("caption_extension", ".txt"))


def selected_gpus(preset: Preset, settings: Settings, gpus: list[GpuInfo]) -> list[GpuInfo]:
    """The preset's ``training.gpu_ids`` (or the machine's default GPU) among the detected ones."""
    wanted = list(preset.values["training"].get("gpu_ids") or [settings.default_gpu])
    chosen = [g for g in gpus if g.index in wanted]
    return chosen or ([] if preset.values["training"].get("gpu_ids") else gpus[:1])


def _machine_ram() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().total)


def _disk_reader(disk_free: int | Mapping[str, int] | None) -> Callable[[str], int | None]:
    """Free bytes on the file system of a folder: injected (one number, or per folder) or from the OS."""
    if isinstance(disk_free, int):
        return lambda folder: disk_free
    if isinstance(disk_free, Mapping):
        table = dict(disk_free)
        return lambda folder: table.get(folder)

    def from_os(folder: str) -> int | None:
        path = Path(folder)
        while not path.exists() and path != path.parent:
            path = path.parent  # the trainer creates missing folders on the same file system as their parent
        try:
            return shutil.disk_usage(path).free
        except OSError:
            return None

    return from_os


def plan_findings(context: CheckContext, found: list[Finding]) -> list[Finding]:
    """What the backend itself refuses (PlanError), unless a check above already reported that field."""
    from backends import get_backend
    from backends.base import PlanError

    try:
        backend = get_backend(context.backend)
        with tempfile.TemporaryDirectory(prefix="vls-preflight-") as run_dir:
            backend.plan(context.original, context.settings, run_dir)
    except PlanError as exc:
        if any(f.level == "error" and f.field == exc.field for f in found):
            return []
        return [Finding("error", exc.field, f"the trainer command cannot be built: {exc.message}",
                        "change the value named above")]
    except (PresetError, OSError, ValueError, KeyError) as exc:
        if any(f.level == "error" for f in found):
            return []  # already explained by a finding; the plan failing is a consequence
        return [Finding("error", getattr(exc, "field", ""), f"the trainer command cannot be built: {exc}",
                        "fix the problem named above")]
    return []


def _unique(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str, str]] = set()
    unique = []
    for finding in findings:
        key = (finding.level, finding.field, finding.message)
        if key not in seen:
            seen.add(key)
            unique.append(finding)
    return unique


def blocking(findings: list[Finding]) -> list[Finding]:
    """The errors: what the Train tab shows before Start is allowed."""
    return [f for f in findings if f.level == "error"]
