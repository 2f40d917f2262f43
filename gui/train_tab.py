"""Train tab: start a preset (pre-flight + exact commands), watch any job live, stop, resume.

Everything live is a cheap read of the job folder on a gr.Timer tick with ``concurrency_limit=None``, so any
number of viewers never queue behind each other and never touch the trainer: the GUI owns no process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from backends import PlanOptions, backend_fields, get_backend
from gui.context import GuiContext, username
from gui.i18n import pick, tr
from gui.loss_plot import loss_figure
from gui.train_view import gpu_markdown, job_label, plot_labels, progress_html, status_markdown
from studio import jobs, runner
from studio.config_service import findings_markdown
from studio.fields import PresetError
from studio.gpu import detect_gpus, shared_sampler
from studio.jobs import JobError, JobState
from studio.logtail import shared_tail
from studio.metric_series import plot_data, shared_metrics
from studio.presets import Preset, list_presets, load_preset

FAST_TICK_S = 2.0
PLOT_TICK_S = 5.0
JOBS_TICK_S = 10.0
LOG_LINES = 300
LIVE = {"concurrency_limit": None, "show_progress": "hidden"}


def build_train_tab(ctx: GuiContext) -> None:
    gpus = detect_gpus()
    gpu_choices = [(f"GPU {g.index}: {g.name} ({g.total_mib / 1024:.0f} GB)", g.index) for g in gpus]

    with gr.Row():
        preset_dd = gr.Dropdown(choices=_preset_names(ctx), label=tr("train.preset", "Preset", "预设"),
                                elem_id="train-preset", scale=3)
        gpu_dd = gr.Dropdown(choices=gpu_choices, multiselect=True, value=[], elem_id="train-gpu", scale=2,
                             label=tr("train.gpu", "GPUs (empty = the preset's, else the default GPU)",
                                      "显卡（留空 = 预设中的，否则为默认显卡）"))
        stop_nan = gr.Checkbox(value=True, elem_id="train-stop-nan", scale=1,
                               label=tr("train.stop_nan", "Stop when the loss becomes NaN", "损失为 NaN 时自动停止"))
        start_btn = gr.Button(tr("train.start", "Start training", "开始训练"), variant="primary",
                              elem_id="train-start", scale=1)
    preflight_md = gr.Markdown(elem_id="train-preflight")
    with gr.Accordion(tr("train.commands", "Exact commands that will run", "将要运行的完整命令"), open=False):
        command_code = gr.Code(language="shell", interactive=False, elem_id="train-command")

    gr.Markdown(tr("train.jobs_title", "### Jobs", "### 训练任务"))
    with gr.Row():
        job_dd = gr.Dropdown(choices=[], label=tr("train.job", "Job", "任务"), elem_id="train-job", scale=4)
        refresh_btn = gr.Button(tr("train.refresh", "Refresh list", "刷新列表"), elem_id="train-refresh", scale=1)
    status_md = gr.Markdown(elem_id="train-status")
    progress = gr.HTML(elem_id="train-progress")
    with gr.Row():
        stop_btn = gr.Button(tr("train.stop", "Stop (save and quit)", "停止（保存后退出）"), variant="stop",
                             elem_id="train-stop")
        force_btn = gr.Button(tr("train.force_stop", "Force stop", "强制停止"), elem_id="train-force-stop")
        resume_dd = gr.Dropdown(choices=[], label=tr("train.resume_from", "Resume from checkpoint", "从存档续训"),
                                elem_id="train-resume-from", scale=2)
        resume_btn = gr.Button(tr("train.resume", "Resume", "续训"), elem_id="train-resume")
    action_md = gr.Markdown(elem_id="train-action")
    plot = gr.Plot(label=tr("train.plot", "Loss", "损失曲线"), elem_id="train-loss-plot")
    log_box = gr.Textbox(label=tr("train.log", "Log (last lines)", "日志（最后若干行）"), lines=16, max_lines=16,
                         autoscroll=True, interactive=False, elem_id="train-log")
    log_file = gr.DownloadButton(tr("train.log_download", "Download full log", "下载完整日志"),
                                 elem_id="train-log-download", visible=False)
    gpu_md = gr.Markdown(elem_id="train-gpu-panel")
    plot_version = gr.State(-1)  # per viewer: the metrics version its plot shows

    fast_timer = gr.Timer(FAST_TICK_S)
    plot_timer = gr.Timer(PLOT_TICK_S)
    jobs_timer = gr.Timer(JOBS_TICK_S)

    def preview(preset_name: str | None, gpu_ids: list[int], request: gr.Request):
        if not preset_name:
            return "", ""
        try:
            preset = _load(ctx, preset_name)
            text = _findings_text(preset, ctx, request)
            plan = get_backend(preset.backend).plan(
                preset, ctx.settings, str(Path(ctx.settings.runs_dir) / "<job>"),
                PlanOptions(gpu_ids=runner.resolve_gpu_ids(preset, ctx.settings, gpu_ids)))
            return text, runner.command_preview(plan)
        except (PresetError, LookupError, OSError) as exc:
            return f"⛔ {exc}", ""

    def start(preset_name: str | None, gpu_ids: list[int], stop_on_nan: bool, request: gr.Request):
        if not preset_name:
            return gr.update(), pick(request, "Choose a preset first.", "请先选择预设。")
        try:
            preset = _load(ctx, preset_name)
            errors = runner.preflight_errors(preset, ctx.settings)
            if errors:
                return gr.update(), pick(request, "⛔ Pre-flight found errors; fix them in the Config tab:\n\n",
                                         "⛔ 预检发现错误，请在“配置”页修正：\n\n") + findings_markdown(errors)
            state = runner.start_preset(preset, ctx.settings, runner.LaunchOptions(
                gpu_ids=list(gpu_ids or []), user=username(request), stop_on_nan=bool(stop_on_nan)))
        except (PresetError, JobError, LookupError, OSError) as exc:
            return gr.update(), f"⛔ {exc}"
        message = pick(request, f"Job `{state.job_id}` is {state.status}.", f"任务 `{state.job_id}` 状态：{state.status}。")
        return _job_choices(ctx, state.job_id), message

    def refresh_jobs(selected: str | None):
        return _job_choices(ctx, selected)

    def tick(job_id: str | None, request: gr.Request):
        """Every 2 s per visible viewer: state, progress, log tail, GPUs. Reads files only."""
        state, position = _state(ctx, job_id)
        log_text, download = "", gr.update(visible=False)
        if state is not None:
            log_path = Path(ctx.settings.runs_dir) / state.job_id / jobs.LOG_FILE
            if log_path.exists():
                log_text = shared_tail(log_path, LOG_LINES).text()
                download = gr.update(value=str(log_path), visible=True)
        return (status_markdown(state, position=position, request=request), progress_html(state, request=request),
                log_text, download, gpu_markdown(shared_sampler().latest(), request=request))

    def plot_tick(job_id: str | None, shown: int, request: gr.Request):
        """Every 5 s: re-send the figure only when new metrics arrived (a figure is the biggest payload)."""
        if not job_id:
            return gr.skip(), shown
        metrics = shared_metrics(Path(ctx.settings.runs_dir) / job_id / jobs.METRICS_FILE)
        if metrics.version == shown:
            return gr.skip(), shown
        backend = _backend_of(ctx, job_id)
        data = plot_data(metrics.series, backend=backend)
        return loss_figure(data, labels=plot_labels(request)), metrics.version

    def select(job_id: str | None, request: gr.Request):
        points: list[str] = []
        state, _ = _state(ctx, job_id)
        if state is not None and not state.active:
            try:
                points = runner.resume_points(ctx.settings, state.job_id)
            except (PresetError, JobError, LookupError, OSError):
                points = []
        return (gr.update(choices=points, value=points[-1] if points else None), -1,
                *tick(job_id, request))

    def stop(job_id: str | None, request: gr.Request, force: bool = False):
        if not job_id:
            return pick(request, "Choose a job first.", "请先选择任务。")
        try:
            state = runner.stop_job(ctx.settings, job_id, user=username(request), force=force)
        except JobError as exc:
            return f"⛔ {exc}"
        if state.status == jobs.STOPPED:
            return pick(request, f"Job removed: {state.reason}.", f"任务已移除：{state.reason}。")
        return pick(request, "Stop requested: the trainer saves where it can, then ends.",
                    "已请求停止：训练器会尽量先保存再退出。")

    def resume(job_id: str | None, point: str | None, request: gr.Request):
        if not job_id:
            return gr.update(), pick(request, "Choose a job first.", "请先选择任务。")
        try:
            state = runner.resume_job(ctx.settings, job_id, user=username(request), resume_from=point or "")
        except (JobError, PresetError, LookupError, OSError) as exc:
            return gr.update(), f"⛔ {exc}"
        return _job_choices(ctx, state.job_id), pick(request, f"Resuming as job `{state.job_id}`.",
                                                     f"已作为新任务 `{state.job_id}` 续训。")

    live_outputs = [status_md, progress, log_box, log_file, gpu_md]
    if ctx.app is not None:  # presets saved and jobs started since the app began
        ctx.app.load(lambda: gr.update(choices=_preset_names(ctx)), None, [preset_dd], **LIVE)
        ctx.app.load(refresh_jobs, [job_dd], [job_dd], **LIVE)
    gr.on([preset_dd.change, gpu_dd.change], preview, [preset_dd, gpu_dd], [preflight_md, command_code])
    start_btn.click(start, [preset_dd, gpu_dd, stop_nan], [job_dd, action_md], concurrency_limit=1,
                    concurrency_id="train-start")
    refresh_btn.click(refresh_jobs, [job_dd], [job_dd], **LIVE)
    jobs_timer.tick(refresh_jobs, [job_dd], [job_dd], **LIVE)
    job_dd.change(select, [job_dd], [resume_dd, plot_version, *live_outputs], **LIVE).then(
        plot_tick, [job_dd, plot_version], [plot, plot_version], **LIVE)
    fast_timer.tick(tick, [job_dd], live_outputs, **LIVE)
    plot_timer.tick(plot_tick, [job_dd, plot_version], [plot, plot_version], **LIVE)
    def force_stop(job_id: str | None, request: gr.Request):
        return stop(job_id, request, force=True)

    stop_btn.click(stop, [job_dd], [action_md])
    force_btn.click(force_stop, [job_dd], [action_md])
    resume_btn.click(resume, [job_dd, resume_dd], [job_dd, action_md])


def _preset_names(ctx: GuiContext) -> list[str]:
    return sorted(list_presets(ctx.settings.presets_dir, backend_fields()))


def _load(ctx: GuiContext, name: str) -> Preset:
    library = list_presets(ctx.settings.presets_dir, backend_fields())
    if name not in library:
        raise LookupError(f"no preset named {name!r}; save it in the Config tab first")
    return load_preset(library[name], backend_fields())


def _findings_text(preset: Preset, ctx: GuiContext, request: Any) -> str:
    from studio.preflight import check

    findings = check(preset, ctx.settings, media=None, gpus=detect_gpus())
    if not findings:
        return pick(request, "✅ Pre-flight found nothing to fix.", "✅ 预检没有发现问题。")
    return findings_markdown(findings)


def _job_choices(ctx: GuiContext, selected: str | None):
    states = runner.list_jobs(ctx.settings)
    choices = [(job_label(s), s.job_id) for s in states]
    ids = {s.job_id for s in states}
    value = selected if selected in ids else (states[0].job_id if states else None)
    return gr.update(choices=choices, value=value)


def _state(ctx: GuiContext, job_id: str | None) -> tuple[JobState | None, int]:
    if not job_id:
        return None, 0
    try:
        state = runner.job_state(ctx.settings, job_id)
    except JobError:
        return None, 0
    position = jobs.queue_position(jobs.list_states(ctx.settings.runs_dir), job_id) if state.status == "queued" else 0
    return state, position


def _backend_of(ctx: GuiContext, job_id: str) -> str:
    try:
        return jobs.read_state(Path(ctx.settings.runs_dir) / job_id).backend
    except JobError:
        return ""
