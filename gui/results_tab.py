"""Results tab: per job, the LoRA files and resumable checkpoints its trainer wrote, with downloads."""

from __future__ import annotations

import os
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from backends import get_backend
from gui.context import GuiContext
from gui.i18n import pick, tr
from gui.train_view import job_label
from studio import runner
from studio.jobs import JobError
from studio.outcome import spec_from_dict

COLUMNS = ["Kind 类型", "Name 名称", "MB", "Modified 修改时间", "Path 路径"]


def build_results_tab(ctx: GuiContext) -> None:
    with gr.Row():
        job_dd = gr.Dropdown(choices=[], label=tr("results.job", "Job", "任务"), elem_id="results-job", scale=4)
        refresh_btn = gr.Button(tr("results.refresh", "Refresh", "刷新"), elem_id="results-refresh", scale=1)
    summary = gr.Markdown(elem_id="results-summary")
    table = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="results-table", wrap=True)
    files = gr.File(label=tr("results.download", "LoRA files (download)", "LoRA 文件（下载）"), file_count="multiple",
                    interactive=False, elem_id="results-files")

    def refresh(selected: str | None):
        states = runner.list_jobs(ctx.settings)
        ids = [s.job_id for s in states]
        value = selected if selected in ids else (ids[0] if ids else None)
        return gr.update(choices=[(job_label(s), s.job_id) for s in states], value=value)

    def show(job_id: str | None, request: gr.Request):
        if not job_id:
            return pick(request, "No job yet.", "还没有任务。"), pd.DataFrame(columns=COLUMNS), None
        try:
            outputs, output_dir = job_outputs(ctx, job_id)
        except (JobError, OSError, ValueError, KeyError) as exc:
            return f"⛔ {exc}", pd.DataFrame(columns=COLUMNS), None
        rows = [_row("LoRA", p) for p in outputs.loras] + [_row("checkpoint", p) for p in outputs.checkpoints]
        served = [p for p in outputs.loras if _served(ctx, p)]
        text = pick(request, f"{len(outputs.loras)} LoRA file(s), {len(outputs.checkpoints)} checkpoint(s) in "
                             f"`{output_dir}`.", f"`{output_dir}` 中有 {len(outputs.loras)} 个 LoRA 文件、"
                             f"{len(outputs.checkpoints)} 个存档。")
        if len(served) < len(outputs.loras):
            text += pick(request, " Files outside the output or runs folder of the Settings cannot be downloaded "
                                  "here; copy them from the path shown.",
                         " 不在“设置”中输出文件夹或任务文件夹内的文件无法在此下载，请按路径自行复制。")
        return text, pd.DataFrame(rows, columns=COLUMNS), served or None

    refresh_btn.click(refresh, [job_dd], [job_dd]).then(show, [job_dd], [summary, table, files])
    job_dd.change(show, [job_dd], [summary, table, files])
    if ctx.app is not None:  # fill the job list when the page loads
        ctx.app.load(refresh, [job_dd], [job_dd])


def job_outputs(ctx: GuiContext, job_id: str):
    """The job's files through its backend's find_outputs (the plan's OutputSpec)."""
    plan = runner.load_plan(ctx.settings, job_id)
    spec = spec_from_dict(plan["outputs"])
    if spec is None:
        raise ValueError(f"job {job_id} has no output description")
    return get_backend(plan["backend"]).find_outputs(spec), spec.output_dir


def _row(kind: str, path: str) -> list[object]:
    try:
        stat = os.stat(path)
    except OSError:
        return [kind, os.path.basename(path), "", "", path]
    size = stat.st_size if os.path.isfile(path) else _folder_size(path)
    return [kind, os.path.basename(path.rstrip("/")) or path, round(size / 2**20, 1),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(stat.st_mtime)), path]


def _folder_size(path: str) -> int:
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                continue
    return total


def _served(ctx: GuiContext, path: str) -> bool:
    """Only files under the folders the app serves (settings output and runs folders) are offered."""
    target = Path(path).resolve()
    for folder in (ctx.settings.output_root, ctx.settings.runs_dir):
        if folder and target.is_relative_to(Path(folder).resolve()) and target.is_file():
            return True
    return False
