"""Rendering for the model download tab: catalogue table, set details, job progress, check results.

Pure functions of studio objects (no Gradio import), so the tab only wires them up. Everything user- or
hub-provided is HTML-escaped before it goes into the progress panel.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from gui.i18n import pick
from studio.catalogue import ModelSet
from studio.download_jobs import ACTIVE, DownloadJob
from studio.findings import Finding, sort_findings

TABLE_COLUMNS = ["Set 模型集", "GB", "Trainers 训练器", "Models 模型", "On disk 本地", "Repo 仓库"]
STATUS_WORDS = {
    "complete": ("downloaded", "已下载"), "partial": ("partial", "部分"), "missing": ("-", "-"),
    "planning": ("listing files", "正在列出文件"), "running": ("downloading", "下载中"), "done": ("done", "完成"),
    "failed": ("failed", "失败"), "cancelled": ("cancelled", "已取消"), "interrupted": ("interrupted", "已中断"),
}
LEVEL_ICONS = {"error": "❌", "warning": "⚠️", "info": "ℹ️"}


def word(status: str, request: Any) -> str:
    en, zh = STATUS_WORDS.get(status, (status, status))
    return pick(request, en, zh)


def title(model_set: ModelSet, request: Any) -> str:
    return pick(request, model_set.title, model_set.title_zh or model_set.title)


def catalogue_table(sets: list[ModelSet], statuses: dict[str, str], request: Any = None) -> pd.DataFrame:
    rows = [[f"{s.id}: {title(s, request)}", round(s.approx_gb, 2), ", ".join(s.trainers), ", ".join(s.architectures),
             word(statuses.get(s.id, "missing"), request), s.hf_repo] for s in sets]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def set_details(model_set: ModelSet | None, target: str, request: Any = None) -> str:
    if model_set is None:
        return ""
    notes = pick(request, model_set.notes, model_set.notes_zh or model_set.notes)
    patterns = []
    if model_set.allow:
        patterns.append(pick(request, "only ", "仅 ") + ", ".join(f"`{p}`" for p in model_set.allow))
    if model_set.ignore:
        patterns.append(pick(request, "skipping ", "跳过 ") + ", ".join(f"`{p}`" for p in model_set.ignore))
    fills = {**model_set.fills, **{k: v for t in model_set.trainer_fills.values() for k, v in t.items()}}
    lines = [
        f"**{title(model_set, request)}** (`{model_set.id}`, ~{model_set.approx_gb:g} GB)",
        "",
        notes,
        "",
        f"- Hugging Face: [`{model_set.hf_repo}`](https://huggingface.co/{model_set.hf_repo}) @ `{model_set.revision}`"
        + (f"; ModelScope: `{model_set.modelscope_repo}`" if model_set.modelscope_repo else
           pick(request, "; not on ModelScope (use a mirror endpoint)", "；ModelScope 无此文件（可使用镜像地址）")),
        f"- {pick(request, 'Files', '文件')}: {'; '.join(patterns) or pick(request, 'the whole repo', '整个仓库')}",
        f"- {pick(request, 'Saved to', '保存到')}: `{target}`",
        f"- {pick(request, 'Fills', '填入')}: " + ", ".join(f"`{k}` ← `{v}`" for k, v in fills.items()),
        f"- {pick(request, 'Sources', '出处')}: " + "; ".join(model_set.sources),
        f"- {pick(request, 'Verified', '核对')}: {model_set.verified}",
    ]
    return "\n".join(lines)


def _gb(size: float) -> str:
    """Sizes as the hub pages show them (decimal units), small files in MB/kB so they do not read 0.00 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{int(size)} B"


def _bar(fraction: float, label: str, elem_class: str) -> str:
    percent = max(0.0, min(1.0, fraction)) * 100
    return (f'<div class="{elem_class}" style="margin:2px 0">'
            f'<progress max="100" value="{percent:.1f}" style="width:60%"></progress> '
            f'<span>{html.escape(label)}</span></div>')


def progress_html(jobs: list[DownloadJob], request: Any = None) -> str:
    """Recent jobs, newest first: total bar, speed and ETA, and a bar per file for running jobs."""
    if not jobs:
        return f'<div id="dl-jobs-empty">{html.escape(pick(request, "No downloads yet.", "还没有下载任务。"))}</div>'
    blocks = []
    for job in jobs:
        head = f"{job.set_id}: {word(job.status, request)}"
        if job.total_bytes:
            head += f" — {100 * job.fraction:.1f}% ({_gb(job.done_bytes)} / {_gb(job.total_bytes)})"
        if job.status == "running" and job.bytes_per_s > 0:
            head += f", {job.bytes_per_s / 1e6:.1f} MB/s, ETA {int(job.eta_s // 60)} min {int(job.eta_s % 60)} s"
        parts = [f'<div class="dl-job" data-status="{html.escape(job.status)}" data-set="{html.escape(job.set_id)}">',
                 f"<b>{html.escape(head)}</b>", _bar(job.fraction, "", "dl-total")]
        if job.message:
            parts.append(f'<div class="dl-message">{html.escape(job.message)}</div>')
        if job.status in ACTIVE:
            for state in job.files:
                fraction = state.done / state.size if state.size else 1.0
                label = f"{state.path} ({_gb(state.done)} / {_gb(state.size)})"
                parts.append(_bar(fraction, label, "dl-file"))
        parts.append("</div>")
        blocks.append("".join(parts))
    return '<div id="dl-jobs">' + "<hr>".join(blocks) + "</div>"


def findings_markdown(findings: list[Finding], request: Any = None) -> str:
    if not findings:
        return pick(request, "No model paths to check for this trainer.", "该训练器没有需要检查的模型路径。")
    ordered = sort_findings(findings)
    errors = sum(f.level == "error" for f in ordered)
    head = (pick(request, f"**{errors} problem(s)** with the model files:", f"模型文件有 **{errors}** 个问题：")
            if errors else pick(request, "**Model files look right.**", "**模型文件检查通过。**"))
    lines = [head, ""]
    for f in ordered:
        line = f"- {LEVEL_ICONS.get(f.level, '')} `{f.field}`: {f.message}"
        if f.fix:
            line += f" — *{f.fix}*"
        lines.append(line)
    return "\n".join(lines)


def changes_markdown(changes: dict[str, tuple[Any, Any]], saved_to: str, request: Any = None) -> str:
    if not changes:
        return pick(request, f"Nothing to change; the preset already uses these files ({saved_to}).",
                    f"无需修改，预设已使用这些文件（{saved_to}）。")
    lines = [pick(request, f"Saved to `{saved_to}`:", f"已保存到 `{saved_to}`：")]
    lines += [f"- `{key}`: `{old}` → `{new}`" for key, (old, new) in changes.items()]
    return "\n".join(lines)
