"""What the Train tab shows, as plain functions of a job's state (no Gradio events here, testable directly).

Texts composed at run time follow the browser language (static labels use gui.i18n.tr).
"""

from __future__ import annotations

import html
import math
import time
from typing import Any

from gui.i18n import pick
from studio.gpu import GpuSample
from studio.jobs import JobState

STATUS_TEXT = {
    "queued": ("queued", "排队中"), "starting": ("starting", "启动中"), "running": ("running", "训练中"),
    "succeeded": ("finished", "已完成"), "failed": ("failed", "失败"), "stopped": ("stopped", "已停止"),
}
BANNER_TEXT = {
    "nan": ("Loss is NaN/inf", "损失变为 NaN/无穷大",
            "降低学习率；使用 bf16（model.dtype = bfloat16，不要 fp16）；混合精度与权重精度一致；HunyuanVideo/Wan 可试 "
            "--split_attn；确认 DiT 文件不是训练器不支持的 fp8_scaled/量化文件。"),
    "divergence": ("Loss is diverging", "损失发散",
                   "损失远高于最低值：降低学习率（或增加预热步数），从最后一个正常的存档续训。"),
    "stall": ("No progress", "没有进展",
              "长时间没有输出也没有新步数：训练器可能卡住（RTX 40 系显卡的 NCCL、磁盘已满、内存交换）。查看日志和显卡面板；"
              "若一直不动，请停止后续训。"),
}



def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def job_label(state: JobState) -> str:
    stamp = time.strftime("%m-%d %H:%M", time.localtime(state.created_at)) if state.created_at else ""
    return f"{stamp}  {state.preset_name}  [{state.status}]  ({state.job_id})"


def status_markdown(state: JobState | None, *, position: int, request: Any) -> str:
    if state is None:
        return pick(request, "No job selected. Start one above or pick one from the list.",
                    "未选择任务。请在上方开始训练，或从列表中选择一个任务。")
    en, zh = STATUS_TEXT.get(state.status, (state.status, state.status))
    status = pick(request, en, zh)
    if position:
        status += pick(request, f" (#{position} in the queue for GPU {_gpus(state)})",
                       f"（显卡 {_gpus(state)} 队列第 {position} 位）")
    lines = [f"**{status}** · `{state.job_id}` · {state.preset_name} · {state.backend} · GPU {_gpus(state)}",
             pick(request, f"started by **{state.started_by or '?'}**", f"由 **{state.started_by or '?'}** 启动")
             + (pick(request, f", stopped by **{state.stopped_by}**", f"，由 **{state.stopped_by}** 停止")
                if state.stopped_by else "")]
    if state.reason:
        lines.append(("⛔ " if state.status == "failed" else "ℹ️ ") + html.escape(state.reason))
    if state.last_lines and state.status == "failed":
        lines.append("```\n" + "\n".join(state.last_lines[-12:]) + "\n```")
    for banner in state.banners:
        title_en, title_zh, hint_zh = BANNER_TEXT.get(banner["kind"], (banner["kind"], banner["kind"], ""))
        title = pick(request, title_en, title_zh)
        hint = pick(request, banner.get("hint", ""), hint_zh or banner.get("hint", ""))
        lines.append(f"⚠️ **{title}** — {html.escape(banner['message'])}. {hint}")
    return "\n\n".join(lines)


def _gpus(state: JobState) -> str:
    return ",".join(str(g) for g in state.gpu_ids) or "?"


def progress_html(state: JobState | None, *, request: Any) -> str:
    if state is None:
        return ""
    p = state.progress or {}
    step, total = int(p.get("step") or 0), int(p.get("total") or 0)
    fraction = min(step / total, 1.0) if total else 0.0
    if state.status == "succeeded":
        fraction = 1.0
    parts = []
    if p.get("phase"):
        parts.append(pick(request, f"step {p.get('phase_index')}/{p.get('phase_count')}: {p['phase']}",
                          f"阶段 {p.get('phase_index')}/{p.get('phase_count')}：{p['phase']}"))
    if p.get("bar_desc") and not step:
        parts.append(f"{html.escape(p['bar_desc'])} {p.get('bar_n')}/{p.get('bar_total')}")
    if step:
        parts.append(pick(request, f"step {step}/{total or '?'}", f"步数 {step}/{total or '?'}"))
    if p.get("epoch"):
        parts.append(pick(request, f"epoch {p['epoch']}/{p.get('epochs') or '?'}",
                          f"轮次 {p['epoch']}/{p.get('epochs') or '?'}"))
    if p.get("s_per_it"):
        speed = p["s_per_it"]
        parts.append(f"{speed:.2f} s/it" if speed >= 1 else f"{1 / speed:.2f} it/s")
    if p.get("eta_s") is not None and state.status == "running":
        parts.append(pick(request, f"ETA {duration(p['eta_s'])}", f"剩余 {duration(p['eta_s'])}"))
    if p.get("loss") is not None:
        loss = p["loss"]
        parts.append(f"loss {loss:.4g}" + (f" (smoothed {p['smooth']:.4g})" if p.get("smooth") is not None else ""))
    color = {"failed": "#d62728", "stopped": "#999", "succeeded": "#2ca02c"}.get(state.status, "#636efa")
    return (f'<div id="train-progress-bar" style="border:1px solid #ccc;border-radius:6px;height:18px;'
            f'overflow:hidden"><div style="width:{fraction * 100:.1f}%;height:100%;background:{color}"></div></div>'
            f'<div id="train-progress-text" style="margin-top:4px">{" · ".join(parts)}</div>')


def gpu_markdown(samples: list[GpuSample], *, request: Any) -> str:
    if not samples:
        return pick(request, "No NVIDIA GPU visible to this server (no driver or NVML).",
                    "此服务器上没有可见的 NVIDIA 显卡（没有驱动或 NVML）。")
    header = pick(request, "| GPU | name | util | memory | temp | power |\n|---|---|---|---|---|---|",
                  "| 显卡 | 型号 | 利用率 | 显存 | 温度 | 功耗 |\n|---|---|---|---|---|---|")
    rows = [f"| {s.index} | {s.name} | {s.utilization_pct}% | {s.memory_used_mib / 1024:.1f} / "
            f"{s.memory_total_mib / 1024:.1f} GiB | {s.temperature_c} °C | {s.power_w:.0f} / {s.power_limit_w:.0f} W |"
            for s in samples]
    return "\n".join([header, *rows])


def plot_labels(request: Any) -> dict[str, str]:
    return {
        "loss": pick(request, "loss", "损失"), "smoothed": pick(request, "smoothed", "平滑"),
        "epoch": pick(request, "epoch", "轮次"), "nan": pick(request, "NaN/inf loss", "NaN/无穷损失"),
        "step": pick(request, "step", "步数"),
        "title": pick(request, "Loss ({points} steps)", "损失（{points} 步）"),
    }
