"""Pre-flight commands: ``check PRESET [--json]`` (findings; exit 1 on any error) and
``vram PRESET [--gpu-gib N] [--json]`` (estimate, breakdown, verdict, auto-fit)."""

from __future__ import annotations

import argparse
from typing import Any

from studio.cli_common import add_common_options, emit, load_preset_arg, settings_arg
from studio.findings import Finding, has_errors
from studio.gpu import GpuInfo

LEVEL_TAGS = {"error": "ERROR  ", "warning": "WARNING", "info": "info   "}


def register(subparsers: argparse._SubParsersAction) -> None:
    check = subparsers.add_parser("check", help="pre-flight: everything that would make the run fail, with fixes")
    add_common_options(check, takes_preset=True)
    _gpu_option(check)
    check.set_defaults(func=cmd_check)

    vram = subparsers.add_parser("vram", help="estimate peak GPU memory and suggest changes that fit the card")
    add_common_options(vram, takes_preset=True)
    _gpu_option(vram)
    vram.set_defaults(func=cmd_vram)


def _gpu_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu-gib", type=float, metavar="N",
                        help="compare with a card of N GiB instead of this machine's GPUs (e.g. 24 for an RTX 4090)")


def given_gpus(gpu_gib: float | None) -> list[GpuInfo] | None:
    """A stand-in GPU list for ``--gpu-gib`` (None = detect this machine's)."""
    if gpu_gib is None:
        return None
    if gpu_gib <= 0:
        raise ValueError(f"--gpu-gib must be above 0, got {gpu_gib:g}")
    mib = int(gpu_gib * 1024)
    return [GpuInfo(index=0, name=f"{gpu_gib:g} GiB card", total_mib=mib, free_mib=mib)]


def cmd_check(args: argparse.Namespace) -> int:
    from studio.preflight import check

    settings = settings_arg(args)
    preset = load_preset_arg(args, settings)
    findings = check(preset, settings, gpus=given_gpus(args.gpu_gib))
    emit(args, {"preset": preset.name, "ok": not has_errors(findings), "findings": findings},
         format_findings(preset.name, findings))
    return 1 if has_errors(findings) else 0


def format_findings(name: str, findings: list[Finding]) -> str:
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    lines = [f"{name}: {errors} error(s), {warnings} warning(s)"]
    for finding in findings:
        where = f"{finding.field}: " if finding.field else ""
        lines.append(f"{LEVEL_TAGS[finding.level]} {where}{finding.message}")
        if finding.fix:
            lines.append(f"         fix: {finding.fix}")
        if finding.action and finding.action.changes:
            changes = ", ".join(f"{k}={_show(v)}" for k, v in finding.action.changes.items())
            lines.append(f"         one click: {finding.action.label} [{changes}]")
    if not errors:
        lines.append("ready to train" if not warnings else "can train; read the warnings first")
    return "\n".join(lines)


def cmd_vram(args: argparse.Namespace) -> int:
    from studio.vram import estimate
    from studio.vram_preset import max_blocks_to_swap

    settings = settings_arg(args)
    preset = load_preset_arg(args, settings)
    gpus = given_gpus(args.gpu_gib)
    if gpus is None:
        from studio.gpu import detect_gpus
        from studio.preflight import selected_gpus

        gpus = selected_gpus(preset, settings, detect_gpus())
    result = estimate(preset, gpus=gpus or None)
    payload = {"preset": preset.name, **result.to_dict()}
    if result.settings is not None:
        payload["max_blocks_to_swap"] = max_blocks_to_swap(result.settings)
    emit(args, payload, format_vram(preset, result))
    return 0


def format_vram(preset: Any, result: Any) -> str:
    ms = result.settings
    lines = [f"{preset.name}: estimated peak {result.total_gib:.1f} GiB",
             f"  {ms.arch.label} on {preset.backend}: {ms.frames} frames at {ms.width}x{ms.height} = "
             f"{result.tokens:,} tokens x batch {ms.batch}, rank {ms.rank}, {ms.optimizer}, "
             f"{'fp8' if ms.fp8 else 'bf16'} base, checkpointing {'on' if ms.grad_ckpt else 'off'}, "
             f"{ms.blocks_to_swap} blocks swapped"]
    width = max(len(k) for k in result.breakdown)
    lines += [f"  {k:<{width}}  {v:6.2f} GiB" for k, v in result.breakdown.items()]
    lines.append(f"  host RAM for weights: about {result.host_ram_gib:.0f} GiB")
    lines.append(f"  ({result.calibration})")
    verdict = {"fits": "fits", "tight": "tight (may run out)", "wont_fit": "WON'T FIT", "unknown": "no GPU to compare"}
    card = f"{result.gpu_gib:.1f} GiB card" if result.gpu_gib else "no GPU detected (use --gpu-gib N)"
    lines.append(f"verdict on a {card}: {verdict[result.verdict]}")
    if result.text:
        lines.append(f"  {result.text}")
    for fix in result.autofit:
        changes = ", ".join(f"{k}={_show(v)}" for k, v in fix.changes.items())
        lines.append(f"  auto-fit: {fix.label} [{changes}]")
    return "\n".join(lines)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
