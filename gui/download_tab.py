"""Model download tab: pick the files a trainer needs, download them in the background, fill and check a preset.

Downloads run in their own process (studio.download_jobs); this tab starts them and renders their job files on a
timer, so a reload or a second browser shows the same progress. Logic lives in studio/; rendering in
gui/download_view.py.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from gui.context import GuiContext
from gui.download_view import (
    catalogue_table,
    changes_markdown,
    findings_markdown,
    progress_html,
    set_details,
    title,
)
from gui.i18n import pick, tr
from studio.architectures import ARCHITECTURES
from studio.catalogue import CATALOGUE_TRAINERS, ModelSet, load_catalogue
from studio.download_jobs import active_job_for, cancel_job, list_jobs, start_job_process
from studio.downloads import DownloadError, local_status, target_dir
from studio.fields import PresetError
from studio.weights_rules import trainer_label

ALL = "all"
JOBS_SHOWN = 6


def _sets(trainer: str, arch: str) -> list[ModelSet]:
    trainer = "" if trainer == ALL else trainer
    arch = "" if arch == ALL else arch
    return [s for s in load_catalogue().values() if s.applies_to(trainer, arch)]


def _set_choices(sets: list[ModelSet], request: Any) -> list[tuple[str, str]]:
    return [(f"{s.id} — {title(s, request)}", s.id) for s in sets]


def _presets(ctx: GuiContext) -> dict[str, Any]:
    from backends import backend_fields
    from studio.presets import list_presets

    return list_presets(ctx.settings.presets_dir, backend_fields())


def _load_preset(ctx: GuiContext, name: str) -> Any:
    from backends import backend_fields
    from studio.presets import load_preset

    library = _presets(ctx)
    if name not in library:
        raise LookupError(f"no preset named {name!r}; choose one from the list")
    return load_preset(library[name], backend_fields())


def build_download_tab(ctx: GuiContext) -> None:
    catalogue = load_catalogue()
    first = next(iter(catalogue.values()))
    gr.Markdown(tr("dl.intro",
                   "Download exactly the files your trainer needs (resumable, checked against the hub listing), "
                   "then fill a preset's model paths with one click and check them.",
                   "只下载训练器需要的文件（可断点续传，并与仓库清单校验），然后一键填入预设的模型路径并检查。"))
    with gr.Row():
        trainer_dd = gr.Dropdown([(tr("dl.all", "All", "全部"), ALL), *[(trainer_label(t), t) for t in CATALOGUE_TRAINERS]],
                                 value=ALL, label=tr("dl.trainer", "Trainer", "训练器"), elem_id="dl-trainer")
        arch_dd = gr.Dropdown([(tr("dl.all", "All", "全部"), ALL), *[(a.label, a.id) for a in ARCHITECTURES.values()]],
                              value=ALL, label=tr("dl.arch", "Model", "模型"), elem_id="dl-arch")
    table = gr.Dataframe(label=tr("dl.table", "Model file sets", "模型文件集"), interactive=False, wrap=True,
                         elem_id="dl-table")
    set_dd = gr.Dropdown(_set_choices(list(catalogue.values()), None), value=first.id,
                         label=tr("dl.set", "Set", "模型集"), elem_id="dl-set")
    details = gr.Markdown(elem_id="dl-details")
    with gr.Row():
        source = gr.Radio([("Hugging Face", "hf"), ("ModelScope", "modelscope")], value="hf",
                          label=tr("dl.source", "Source", "下载源"), elem_id="dl-source", scale=2)
        endpoint = gr.Textbox(value=ctx.settings.hf_endpoint, label=tr("dl.endpoint", "Endpoint (mirror)", "地址（镜像）"),
                              placeholder="https://huggingface.co", elem_id="dl-endpoint", scale=3)
        start_btn = gr.Button(tr("dl.start", "Download", "下载"), variant="primary", elem_id="dl-start", scale=1)
        cancel_btn = gr.Button(tr("dl.cancel", "Cancel", "取消"), variant="stop", elem_id="dl-cancel", scale=1)
    message = gr.Markdown(elem_id="dl-message")
    progress = gr.HTML(elem_id="dl-progress")
    gr.Markdown(tr("dl.use", "### Use the files in a preset", "### 在预设中使用这些文件"))
    with gr.Row():
        preset_dd = gr.Dropdown(sorted(_presets(ctx)), label=tr("dl.preset", "Preset", "预设"), elem_id="dl-preset",
                                scale=3)
        fill_btn = gr.Button(tr("dl.fill", "Fill model paths from this set", "用此模型集填入模型路径"),
                             elem_id="dl-fill", scale=2)
        check_btn = gr.Button(tr("dl.check", "Check model files", "检查模型文件"), elem_id="dl-check", scale=1)
    fill_result = gr.Markdown(elem_id="dl-fill-result")
    check_result = gr.Markdown(elem_id="dl-check-result")
    timer = gr.Timer(1.0)

    def show_table(trainer: str, arch: str, current: str, request: gr.Request) -> tuple[Any, Any]:
        sets = _sets(trainer, arch)
        statuses = {s.id: local_status(s, ctx.settings) for s in sets}
        ids = [s.id for s in sets]
        value = current if current in ids else (ids[0] if ids else None)
        return catalogue_table(sets, statuses, request), gr.update(choices=_set_choices(sets, request), value=value)

    def show_details(set_id: str, request: gr.Request) -> str:
        model_set = load_catalogue().get(set_id)
        if model_set is None:
            return ""
        return set_details(model_set, str(target_dir(model_set, ctx.settings)), request)

    def start(set_id: str, chosen_source: str, url: str, request: gr.Request) -> tuple[str, str]:
        ctx.reload()
        model_set = load_catalogue().get(set_id)
        if model_set is None:
            return pick(request, "Choose a set first.", "请先选择模型集。"), progress_html(list_jobs(JOBS_SHOWN), request)
        try:
            model_set.repo_for(chosen_source)
            job = start_job_process(model_set, ctx.settings, source=chosen_source, endpoint=url.strip())
        except (DownloadError, ValueError) as exc:
            return f"❌ {exc}", progress_html(list_jobs(JOBS_SHOWN), request)
        text = pick(request, f"Started {model_set.id} (job {job.job_id}).", f"已开始下载 {model_set.id}（任务 {job.job_id}）。")
        return text, progress_html(list_jobs(JOBS_SHOWN), request)

    def cancel(set_id: str, request: gr.Request) -> str:
        model_set = load_catalogue().get(set_id)
        job = active_job_for(model_set) if model_set else None
        if job is None:
            return pick(request, "No running download for this set.", "此模型集没有正在进行的下载。")
        return cancel_job(job.job_id)

    def source_changed(chosen_source: str) -> Any:
        # Each hub has its own address; a Hugging Face mirror URL means nothing to ModelScope.
        if chosen_source == "hf":
            return gr.update(value=ctx.settings.hf_endpoint, placeholder="https://huggingface.co")
        return gr.update(value="", placeholder="https://www.modelscope.cn")

    def tick(request: gr.Request) -> str:
        return progress_html(list_jobs(JOBS_SHOWN), request)

    def fill(preset_name: str, set_id: str, request: gr.Request) -> tuple[str, str]:
        from studio.model_files import check_model_files, fill_preset_paths, filled_changes
        from studio.presets import save_preset

        try:
            preset = _load_preset(ctx, preset_name)
            filled = fill_preset_paths(preset, set_id, ctx.settings)
            saved = save_preset(filled, ctx.settings.presets_dir)
        except (PresetError, LookupError, OSError) as exc:
            return f"❌ {exc}", ""
        changes = changes_markdown(filled_changes(preset, filled), str(saved), request)
        return changes, findings_markdown(check_model_files(filled, ctx.settings), request)

    def check(preset_name: str, request: gr.Request) -> str:
        from studio.model_files import check_model_files

        try:
            preset = _load_preset(ctx, preset_name)
        except (PresetError, LookupError, OSError) as exc:
            return f"❌ {exc}"
        return findings_markdown(check_model_files(preset, ctx.settings), request)

    filters = [trainer_dd, arch_dd]
    for dropdown in filters:
        dropdown.change(show_table, [*filters, set_dd], [table, set_dd])
    set_dd.change(show_details, [set_dd], [details])
    start_btn.click(start, [set_dd, source, endpoint], [message, progress]).then(
        show_table, [*filters, set_dd], [table, set_dd])
    cancel_btn.click(cancel, [set_dd], [message])
    source.change(source_changed, [source], [endpoint])
    timer.tick(tick, None, [progress], concurrency_limit=None, show_progress="hidden")
    fill_btn.click(fill, [preset_dd, set_dd], [fill_result, check_result])
    check_btn.click(check, [preset_dd], [check_result])
    if ctx.app is not None:  # page load: fresh status for this browser, whatever happened since the app started
        ctx.app.load(show_table, [*filters, set_dd], [table, set_dd])
        ctx.app.load(show_details, [set_dd], [details])
        ctx.app.load(tick, None, [progress])
