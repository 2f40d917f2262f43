"""The preprocessing form of the Dataset tab: ffmpeg jobs into a new folder, with progress, cancel and a report."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from gui.i18n import pick, tr
from studio.architectures import ARCHITECTURES
from studio.media import dataset_folder, default_probe_cache, scan_folder
from studio.preprocess import (
    PreprocessError,
    PreprocessOptions,
    crop_box,
    crop_preview,
    decodable_image_formats,
    plan_job,
)
from studio.preprocess_run import PreprocessReport, PreprocessRun
from studio.settings import studio_home

OPERATION_CHOICES = [
    ("Change fps (e.g. to the model's 16) / 改帧率", "fps"),
    ("Trim to N frames / 截取前 N 帧", "trim"),
    ("Crop & resize keeping aspect / 裁剪并缩放（保持比例）", "crop_resize"),
    ("Extract every Nth frame as images / 每 N 帧抽一张图", "extract_frames"),
    ("Convert images (webp/avif/heic/jfif/png) / 转换图片格式", "convert_images"),
    ("First frame of each video (I2V reference) / 每个视频的首帧（I2V 参考图）", "first_frame"),
]
# One job per browser session, so Cancel stops the job its own page started.
_RUNS: dict[str, PreprocessRun] = {}


def output_folder(text: str, data_root: str) -> Path:
    """The output folder typed by the user, kept under the data root (it need not exist yet)."""
    root = Path(data_root).expanduser().resolve()
    value = (text or "").strip()
    if value.startswith("${DATA}"):
        value = value[len("${DATA}"):].lstrip("/\\")
    if not value:
        raise PreprocessError("type an output folder, e.g. ${DATA}/my_clips_16fps")
    path = Path(value).expanduser()
    folder = (path if path.is_absolute() else root / path).resolve()
    if not folder.is_relative_to(root):
        raise PreprocessError(f"{folder} is outside the data folder {root}; write the output under it")
    return folder


def trim_hint(frames: float | None) -> str:
    """The valid counts around N for Wan/Hunyuan (4N+1) and LTX/CogVideoX (8N+1)."""
    count = int(frames or 1)
    wan = ARCHITECTURES["wan2.1-t2v-1.3b"].nearest_valid_frames(count)
    ltx = ARCHITECTURES["ltx-video"].nearest_valid_frames(count)
    return f"4N+1 (Wan, Hunyuan): {wan[0]} / {wan[1]}  ·  8N+1 (LTX): {ltx[0]} / {ltx[1]}"


def build_preprocess_section(ctx: Any, folder: gr.Textbox) -> dict[str, gr.components.Component]:
    formats = ", ".join(f"{name} {'✓' if ok else '✗'}" for name, ok in decodable_image_formats().items())
    gr.Markdown(tr("ds.pre.intro",
                   "Writes into a **new folder**; the originals are never changed. Captions are copied along.",
                   "输出到**新文件夹**，原始文件不会被修改。描述文件会一并复制。"))
    with gr.Row():
        operation = gr.Dropdown(OPERATION_CHOICES, value="fps", elem_id="ds-pre-op",
                                label=tr("ds.pre.op", "Operation", "操作"))
        output = gr.Textbox(label=tr("ds.pre.out", "Output folder (new, under the data folder)",
                                     "输出文件夹（新建，位于数据文件夹内）"),
                            placeholder="${DATA}/my_clips_16fps", elem_id="ds-pre-out")
    with gr.Row():
        fps = gr.Number(16, label=tr("ds.pre.fps", "Target fps", "目标帧率"), minimum=1, maximum=240,
                        elem_id="ds-pre-fps")
        frames = gr.Number(33, precision=0, minimum=1, label=tr("ds.pre.frames", "Keep first N frames", "保留前 N 帧"),
                           elem_id="ds-pre-frames")
        width = gr.Number(832, precision=0, label=tr("ds.pre.w", "Width", "宽"), elem_id="ds-pre-w")
        height = gr.Number(480, precision=0, label=tr("ds.pre.h", "Height", "高"), elem_id="ds-pre-h")
        every = gr.Number(8, precision=0, minimum=1, label=tr("ds.pre.every", "Every Nth frame", "每 N 帧"))
        image_format = gr.Radio(["jpg", "png"], value="jpg", label=tr("ds.pre.fmt", "Image format", "图片格式"))
        copy_captions = gr.Checkbox(True, label=tr("ds.pre.captions", "Copy captions", "复制描述文件"))
    hint = gr.Markdown(trim_hint(33), elem_id="ds-pre-hint")
    with gr.Row():
        gr.Markdown(tr("ds.pre.formats", "Image formats this ffmpeg reads:", "此 ffmpeg 可读取的图片格式："))
        gr.Markdown(formats, elem_id="ds-pre-formats")
    with gr.Row():
        preview_btn = gr.Button(tr("ds.pre.preview", "Preview crop", "预览裁剪"), elem_id="ds-pre-preview")
        run_btn = gr.Button(tr("ds.pre.run", "Run", "开始处理"), variant="primary", elem_id="ds-pre-run")
        cancel_btn = gr.Button(tr("ds.pre.cancel", "Cancel", "取消"), variant="stop", elem_id="ds-pre-cancel")
    preview = gr.Image(label=tr("ds.pre.preview_img", "Crop box on the first frame", "首帧上的裁剪框"), type="pil",
                       interactive=False, height=240)
    progress = gr.Markdown(elem_id="ds-pre-progress")

    frames.change(trim_hint, [frames], [hint], show_progress="hidden")

    def options_of(op: str, fps_v: float, frames_v: float, w: float, h: float, every_v: float, fmt: str,
                   captions: bool) -> PreprocessOptions:
        return PreprocessOptions(op, float(fps_v or 16), int(frames_v or 1), int(w or 0), int(h or 0),
                                 int(every_v or 1), fmt, bool(captions))

    def show_preview(folder_text: str, w: float, h: float, request: gr.Request) -> Any:
        from PIL import Image

        try:
            source = dataset_folder(folder_text, ctx.settings.data_root)
            media = [m for m in scan_folder(source, probe_cache=default_probe_cache(source)) if m.ok]
            if not media:
                raise PreprocessError(pick(request, "no readable file to preview", "没有可预览的文件"))
            first = media[0]
            box = crop_box(first.width, first.height, int(w), int(h))
            png = crop_preview(first.path, box, studio_home() / "cache" / "crop_preview.png")
            with Image.open(png) as image:
                picture = image.copy()
            text = f"{first.name}: {first.width}x{first.height} -> crop {box.width}x{box.height} at ({box.x}, {box.y})"
            return picture, text
        except (PreprocessError, ValueError, FileNotFoundError) as exc:
            return None, f"⛔ {exc}"

    def run(folder_text: str, out_text: str, *values: Any, request: gr.Request) -> Iterator[str]:
        try:
            source = dataset_folder(folder_text, ctx.settings.data_root)
            options = options_of(*values)
            media = scan_folder(source, probe_cache=default_probe_cache(source))
            plan = plan_job(options, media, source_dir=source, output_dir=output_folder(out_text, ctx.settings.data_root))
        except (PreprocessError, ValueError, FileNotFoundError) as exc:
            yield f"⛔ {exc}"
            return
        if not plan.tasks:
            yield "⛔ " + pick(request, f"nothing to do: {len(plan.skipped)} file(s) do not apply to this operation",
                               f"没有可处理的文件：{len(plan.skipped)} 个文件不适用于此操作")
            return
        job = PreprocessRun(plan, options)
        _RUNS[request.session_hash or "local"] = job
        yield from _follow(job, request)

    def cancel(request: gr.Request) -> str:
        job = _RUNS.get(request.session_hash or "local")
        if job is None:
            return pick(request, "no job is running", "没有正在运行的任务")
        job.cancel()
        return pick(request, "cancelling: stopping the running ffmpeg processes ...", "正在取消：停止 ffmpeg 进程……")

    values = [operation, fps, frames, width, height, every, image_format, copy_captions]
    preview_btn.click(show_preview, [folder, width, height], [preview, progress])
    run_btn.click(run, [folder, output, *values], [progress])
    cancel_btn.click(cancel, None, [progress])
    return {"operation": operation, "fps": fps, "output": output, "progress": progress}


def _follow(job: PreprocessRun, request: Any) -> Iterator[str]:
    state: dict[str, Any] = {"done": 0, "total": len(job.plan.tasks), "last": ""}
    result: list[PreprocessReport] = []

    def on_progress(done: int, total: int, message: str) -> None:
        state.update(done=done, total=total, last=message)

    thread = threading.Thread(target=lambda: result.append(job.run(on_progress)), daemon=True)
    thread.start()
    while thread.is_alive():
        yield _progress_html(state, request)
        time.sleep(0.4)
    thread.join()
    yield report_markdown(result[0], request)


def _progress_html(state: dict[str, Any], request: Any) -> str:
    label = pick(request, "Processing", "处理中")
    return (f"{label} {state['done']}/{state['total']} <progress value='{state['done']}' max='{state['total']}'>"
            f"</progress> {state['last']}")


def report_markdown(report: PreprocessReport, request: Any = None) -> str:
    lines = [("⚠️ " if report.cancelled or report.failed else "✅ ") + report.summary()]
    lines += [f"- ✗ {Path(r.source).name}: {r.message}" for r in report.failed[:20]]
    lines += [f"- {Path(r.source).name} → {', '.join(Path(o).name for o in r.outputs[:4])}"
              + (f" (+{len(r.outputs) - 4})" if len(r.outputs) > 4 else "") + (f" — {r.message}" if r.message else "")
              for r in report.results if r.ok][:40]
    lines += [f"- skipped {Path(f).name}: {why}" for f, why in report.skipped[:20]]
    return "\n".join(lines)

