"""'Check install': run the trainer's own python (from machine settings) to see what imports and which version."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# Runs inside the trainer's interpreter. Fixed text of ours: module names are passed as argv, never spliced in.
_PROBE = r"""
import importlib, json, sys
out = {"python": sys.version.split()[0], "modules": {}}
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
        out["modules"][name] = {"ok": True, "version": str(getattr(module, "__version__", ""))}
    except Exception as exc:
        out["modules"][name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
try:
    import torch
    out["cuda"] = bool(torch.cuda.is_available())
    out["torch_cuda"] = str(torch.version.cuda)
except Exception:
    out["cuda"] = None
print("@@PROBE@@" + json.dumps(out))
"""


@dataclass
class InstallReport:
    trainer: str
    ok: bool
    python: str = ""
    python_version: str = ""
    commit: str = ""
    modules: dict[str, dict] = field(default_factory=dict)
    cuda: bool | None = None
    problems: list[str] = field(default_factory=list)
    install_steps: str = ""


def git_commit(folder: str | Path) -> str:
    """The checked-out commit of a git checkout, read from .git without running git."""
    git_dir = Path(folder) / ".git"
    try:
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head[:12]
        ref = head.split(None, 1)[1]
        loose = git_dir / ref
        if loose.exists():
            return loose.read_text().strip()[:12]
        for line in (git_dir / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:12]
    except OSError:
        return ""
    return ""


def check_install(backend, settings, *, timeout: float = 120.0) -> InstallReport:
    """Probe ``backend``'s install as configured in ``settings``; every problem says what to do."""
    install = settings.trainer(backend.name)
    report = InstallReport(trainer=backend.name, ok=False, install_steps=backend.install_steps)
    if not install.install_dir:
        report.problems.append(f"{backend.label} install folder is not set: Settings > {backend.label} > install folder")
        return report
    folder = Path(install.install_dir)
    if not folder.is_dir():
        report.problems.append(f"install folder {folder} does not exist")
        return report
    report.commit = git_commit(folder)
    for rel in backend.required_files:
        if not (folder / rel).exists():
            report.problems.append(f"{folder / rel} is missing: is this a {backend.label} checkout?")
    python = install.python_path()
    report.python = python
    if not python or not Path(python).exists():
        report.problems.append(
            f"{backend.label} python not found ({python or 'not set'}): set Settings > python to the interpreter of "
            "the trainer's own venv/conda env"
        )
        return report
    try:
        done = subprocess.run(
            [python, "-c", _PROBE, *backend.probe_modules],
            cwd=folder, capture_output=True, text=True, timeout=timeout, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        report.problems.append(f"could not run {python}: {exc}")
        return report
    marker = [line for line in done.stdout.splitlines() if line.startswith("@@PROBE@@")]
    if not marker:
        report.problems.append(f"{python} did not run the probe: {(done.stderr or done.stdout).strip()[-300:]}")
        return report
    data = json.loads(marker[-1][len("@@PROBE@@"):])
    report.python_version = data.get("python", "")
    report.modules = data.get("modules", {})
    report.cuda = data.get("cuda")
    for name, result in report.modules.items():
        if not result.get("ok"):
            report.problems.append(f"`import {name}` fails in {python}: {result.get('error')}")
    report.ok = not report.problems
    return report
