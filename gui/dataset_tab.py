"""Dataset tab: pick a folder under the data root, scan it, fix captions, see what the trainer will do, preprocess.

Layout and wiring only; scanning, captions, bucket rules and ffmpeg jobs live in studio/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from gui.context import GuiContext
from gui.dataset_preprocess import build_preprocess_section
from gui.dataset_view import (
    BUCKET_COLUMNS,
    PREVIEW_COLUMNS,
    SCAN_COLUMNS,
    SIM_COLUMNS,
    bucket_table,
    duration_figure,
    preview_table,
    resolution_figure,
    scan_table,
    simulation_markdown,
    simulation_table,
    summary_markdown,
)
from gui.i18n import pick, tr
from studio import captions
from studio.bucket_fixes import is_preprocess_fix
from studio.fields import PresetError
from studio.findings import Fix
from studio.media import MediaInfo, dataset_folder, default_probe_cache, list_media, scan_folder, sub_folders

BULK_OPS = [("Fill missing captions / 补全缺失描述", "fill"), ("Add trigger word / 添加触发词", "add"),
            ("Remove trigger word / 删除触发词", "remove"), ("Find & replace / 查找替换", "replace")]
SAMPLE_FOLDER = "sample_dataset"


def _backend_fields() -> dict[str, Any]:
    from backends import backend_fields

    return backend_fields()


def preset_names(ctx: GuiContext) -> list[str]:
    from studio.presets import list_presets

    return sorted(list_presets(ctx.settings.presets_dir, _backend_fields()))


def load_named_preset(ctx: GuiContext, name: str) -> Any:
    from studio.presets import list_presets, load_preset

    fields = _backend_fields()
    library = list_presets(ctx.settings.presets_dir, fields)
    if name not in library:
        raise LookupError(f"no preset named {name!r}")
    return load_preset(library[name], fields)


def _scan(ctx: GuiContext, folder_text: str, extension: str = ".txt") -> tuple[Path, list[MediaInfo]]:
    folder = dataset_folder(folder_text, ctx.settings.data_root)
    return folder, scan_folder(folder, probe_cache=default_probe_cache(folder), caption_extension=extension)


def folder_fix(ctx: GuiContext, preset: Any, folder: Path) -> Fix | None:
    """"Point the preset at this folder" when it trains on another one."""
    from studio.presets import resolve_path

    try:
        current = Path(resolve_path(preset.get("dataset.path"), ctx.settings.roots(), "dataset.path")).resolve()
    except PresetError:
        current = None
    if current == folder:
        return None
    root = Path(ctx.settings.data_root).expanduser().resolve()
    value = "${DATA}/" + folder.relative_to(root).as_posix() if folder != root else "${DATA}"
    return Fix(f"Point the preset's dataset.path at this folder ({value})", {"dataset.path": value})


def build_dataset_tab(ctx: GuiContext) -> None:
    gr.Markdown(tr("ds.intro",
                   "Pick a folder under the data folder, scan it, and see what the trainer will really do with each "
                   "clip before any GPU time is spent.",
                   "选择数据文件夹下的目录并扫描，在使用显卡之前看清训练器会如何处理每个视频。"))
    with gr.Row():
        pick_folder = gr.Dropdown(sub_folders(ctx.settings.data_root), value=None, elem_id="ds-folder-pick",
                                  label=tr("ds.pick", "Folders under the data folder", "数据文件夹下的目录"), scale=2)
        folder = gr.Textbox(label=tr("ds.folder", "Dataset folder", "数据集文件夹"), placeholder="${DATA}/my_clips",
                            elem_id="ds-folder", scale=3)
        refresh = gr.Button(tr("ds.refresh", "Refresh list", "刷新列表"), scale=1, elem_id="ds-refresh")
    with gr.Row():
        preset = gr.Dropdown(preset_names(ctx), value=None, elem_id="ds-preset",
                             label=tr("ds.preset", "Preset to simulate", "用于模拟的预设"), scale=3)
        scan_btn = gr.Button(tr("ds.scan", "Scan", "扫描"), variant="primary", elem_id="ds-scan", scale=1)
        sample_btn = gr.Button(tr("ds.sample", "Make sample dataset", "生成示例数据集"), elem_id="ds-sample", scale=1)
    status = gr.Markdown(elem_id="ds-status")
    summary = gr.Markdown(elem_id="ds-summary")
    with gr.Row():
        res_plot = gr.Plot(label=tr("ds.res", "Resolutions", "分辨率"), elem_id="ds-res-plot")
        dur_plot = gr.Plot(label=tr("ds.dur", "Durations", "时长"), elem_id="ds-dur-plot")
    table = gr.Dataframe(headers=SCAN_COLUMNS, label=tr("ds.table", "Files", "文件"), interactive=False, wrap=True,
                         elem_id="ds-table")

    with gr.Accordion(tr("ds.sim", "What the trainer will do (bucket simulation)", "训练器会怎么做（分桶模拟）"),
                      open=True):
        sim_summary = gr.Markdown(elem_id="ds-sim-summary")
        sim_table = gr.Dataframe(headers=SIM_COLUMNS, label=tr("ds.sim.table", "Per file", "逐个文件"),
                                 interactive=False, wrap=True,
                                 elem_id="ds-sim-table")
        buckets = gr.Dataframe(headers=BUCKET_COLUMNS,
                               label=tr("ds.sim.buckets", "Size buckets after batching", "分批后的尺寸桶"),
                               interactive=False, elem_id="ds-sim-buckets")
        with gr.Row():
            fix_choice = gr.Dropdown([], label=tr("ds.fix", "One-click fixes", "一键修复"), elem_id="ds-fix", scale=4)
            fix_btn = gr.Button(tr("ds.fix.apply", "Apply fix to the preset", "应用到预设"), elem_id="ds-fix-apply",
                                scale=1)
        fix_status = gr.Markdown(elem_id="ds-fix-status")
    fixes_state = gr.State([])

    with gr.Accordion(tr("ds.cap", "Captions", "描述文件"), open=False):
        with gr.Row():
            cap_file = gr.Dropdown([], label=tr("ds.cap.file", "File", "文件"), elem_id="ds-cap-file", scale=2)
            cap_text = gr.Textbox(label=tr("ds.cap.text", "Caption", "描述"), lines=3, elem_id="ds-cap-text", scale=4)
        cap_save = gr.Button(tr("ds.cap.save", "Save caption", "保存描述"), elem_id="ds-cap-save")
        with gr.Row():
            bulk_op = gr.Dropdown(BULK_OPS, value="fill", label=tr("ds.bulk.op", "Bulk operation", "批量操作"),
                                  elem_id="ds-bulk-op")
            bulk_a = gr.Textbox(label=tr("ds.bulk.a", "Caption / trigger word / find", "描述 / 触发词 / 查找"),
                                elem_id="ds-bulk-a")
            bulk_b = gr.Textbox(label=tr("ds.bulk.b", "Replace with (find & replace)", "替换为（查找替换）"),
                                elem_id="ds-bulk-b")
        with gr.Row():
            bulk_preview = gr.Button(tr("ds.bulk.preview", "Preview", "预览"), elem_id="ds-bulk-preview")
            bulk_apply = gr.Button(tr("ds.bulk.apply", "Apply", "应用"), variant="primary", elem_id="ds-bulk-apply")
            bulk_undo = gr.Button(tr("ds.bulk.undo", "Undo last bulk change", "撤销上次批量修改"), elem_id="ds-bulk-undo")
        bulk_table = gr.Dataframe(headers=PREVIEW_COLUMNS,
                                  label=tr("ds.bulk.table", "What will change", "将要修改的内容"), interactive=False,
                                  wrap=True, elem_id="ds-bulk-table")
        cap_status = gr.Markdown(elem_id="ds-cap-status")
    bulk_state = gr.State([])

    with gr.Accordion(tr("ds.pre", "Preprocess (ffmpeg)", "预处理（ffmpeg）"), open=False):
        pre = build_preprocess_section(ctx, folder)

    scan_outputs = [status, summary, res_plot, dur_plot, table, sim_summary, sim_table, buckets, fix_choice,
                    fixes_state, cap_file]

    def scan(folder_text: str, preset_name: str | None, request: gr.Request) -> tuple:
        empty = ("", None, None, None, "", None, None, gr.update(choices=[], value=None), [], gr.update())
        try:
            chosen = load_named_preset(ctx, preset_name) if preset_name else None
            extension = chosen.get("dataset.caption_extension") if chosen else ".txt"
            path, media = _scan(ctx, folder_text, extension)
        except (ValueError, FileNotFoundError, LookupError, PresetError) as exc:
            return (f"⛔ {exc}", *empty)
        i2v = False
        sim: tuple = ("", None, None, gr.update(choices=[], value=None), [])
        if chosen is not None:
            from studio.architectures import get_architecture
            from studio.buckets import simulate

            i2v = get_architecture(chosen.architecture).i2v
            report = simulate(chosen, media)
            fixes = list(report.fixes)
            extra = folder_fix(ctx, chosen, path)
            if extra:
                fixes.append(extra)
            sim = (simulation_markdown(report, chosen, request), simulation_table(report), bucket_table(report),
                   gr.update(choices=[f.label for f in fixes], value=fixes[0].label if fixes else None),
                   [{"label": f.label, "changes": f.changes} for f in fixes])
        elif media:
            sim = (pick(request, "Choose a preset to see what the trainer will do.", "选择预设即可查看训练器的处理方式。"),
                   None, None, gr.update(choices=[], value=None), [])
        found = pick(request, f"Scanned `{path}`: {len(media)} file(s).", f"已扫描 `{path}`：{len(media)} 个文件。")
        return (found, summary_markdown(media, request, i2v=i2v), resolution_figure(media), duration_figure(media),
                scan_table(media), *sim, gr.update(choices=[m.name for m in media], value=None))

    def make_sample(request: gr.Request) -> tuple[Any, ...]:
        from studio.sample_data import make_sample_dataset

        root = Path(ctx.settings.data_root).expanduser()
        target, number = root / SAMPLE_FOLDER, 1
        while target.exists() and list_media(target):
            number += 1
            target = root / f"{SAMPLE_FOLDER}_{number}"
        try:
            made = make_sample_dataset(target)
        except (OSError, ValueError) as exc:
            return gr.update(), gr.update(), f"⛔ {exc}"
        value = "${DATA}/" + target.name
        return (value, gr.update(choices=sub_folders(root), value=value),
                pick(request, f"Made {len(made)} sample files in `{target}`.", f"已在 `{target}` 生成 {len(made)} 个示例文件。"))

    def apply_fix(folder_text: str, preset_name: str | None, label: str | None, fixes: list[dict[str, Any]],
                  request: gr.Request) -> tuple[Any, ...]:
        from studio.presets import save_preset, set_value

        chosen_fix = next((f for f in fixes if f["label"] == label), None)
        if not preset_name or chosen_fix is None:
            return pick(request, "⛔ choose a preset and a fix first", "⛔ 请先选择预设和修复项"), gr.update(), gr.update()
        fix = Fix(chosen_fix["label"], chosen_fix["changes"])
        if is_preprocess_fix(fix):
            return (pick(request, "The preprocessing form below is filled in: choose an output folder and run it.",
                         "已填好下方的预处理表单：选择输出文件夹后运行。"),
                    fix.changes.get("preprocess.operation", "fps"), fix.changes.get("preprocess.fps", 16))
        try:
            chosen = load_named_preset(ctx, preset_name)
            for dotted, value in fix.changes.items():
                set_value(chosen, dotted, value, _backend_fields())
            saved = save_preset(chosen, ctx.settings.presets_dir)
        except (PresetError, LookupError, OSError) as exc:
            return f"⛔ {exc}", gr.update(), gr.update()
        return (pick(request, f"Saved `{saved}` with {fix.changes}. Scan again to see the result.",
                     f"已保存 `{saved}`，修改：{fix.changes}。重新扫描即可查看结果。"), gr.update(), gr.update())

    def load_caption(folder_text: str, name: str | None) -> str:
        if not name:
            return ""
        try:
            path = dataset_folder(folder_text, ctx.settings.data_root) / name
        except (ValueError, FileNotFoundError):
            return ""
        return captions.read_caption(path) or ""

    def save_caption(folder_text: str, name: str | None, text: str, request: gr.Request) -> str:
        try:
            folder_path = dataset_folder(folder_text, ctx.settings.data_root)
            if not name or Path(name).name != name or not (folder_path / name).is_file():
                raise ValueError(pick(request, "choose a file first", "请先选择文件"))
            written = captions.write_caption(folder_path / name, text)
        except (ValueError, FileNotFoundError) as exc:
            return f"⛔ {exc}"
        return pick(request, f"Saved `{written.name}`.", f"已保存 `{written.name}`。")

    def bulk_rows(folder_text: str, op: str, a: str, b: str) -> tuple[Path, list]:
        path = dataset_folder(folder_text, ctx.settings.data_root)
        media = [entry.path for entry in list_media(path)]
        if op == "fill":
            return path, captions.preview_fill_missing(media, a)
        if op == "add":
            return path, captions.preview_add_trigger(media, a)
        if op == "remove":
            return path, captions.preview_remove_trigger(media, a)
        return path, captions.preview_replace(media, a, b)

    def preview(folder_text: str, op: str, a: str, b: str, request: gr.Request) -> tuple[Any, ...]:
        try:
            _path, rows = bulk_rows(folder_text, op, a, b)
        except (ValueError, FileNotFoundError) as exc:
            return None, [], f"⛔ {exc}"
        return preview_table(rows), rows, pick(request, f"{len(rows)} caption(s) would change.",
                                               f"将修改 {len(rows)} 个描述文件。")

    def apply(folder_text: str, op: str, a: str, b: str, shown: list, request: gr.Request) -> tuple[Any, ...]:
        try:
            path, rows = bulk_rows(folder_text, op, a, b)
            if [list(r) for r in rows] != [list(r) for r in shown]:
                raise ValueError(pick(request, "captions changed since the preview (or no preview yet): preview again",
                                      "预览之后描述已变化（或尚未预览）：请重新预览"))
            record = captions.apply_changes(rows, folder=path, label=f"{op}: {a}")
        except (ValueError, FileNotFoundError) as exc:
            return f"⛔ {exc}", gr.update()
        return pick(request, f"Changed {len(record.entries)} caption(s). Undo is available.",
                    f"已修改 {len(record.entries)} 个描述文件，可撤销。"), None

    def undo(folder_text: str, request: gr.Request) -> str:
        try:
            result = captions.undo_last(dataset_folder(folder_text, ctx.settings.data_root))
        except (ValueError, FileNotFoundError, LookupError) as exc:
            return f"⛔ {exc}"
        text = pick(request, f"Undid '{result.label}': {len(result.restored)} caption(s) restored.",
                    f"已撤销“{result.label}”：恢复 {len(result.restored)} 个描述文件。")
        if result.conflicts:
            text += pick(request, f" Left alone (edited since): {', '.join(Path(f).name for f in result.conflicts)}",
                         f" 未改动（之后被编辑过）：{', '.join(Path(f).name for f in result.conflicts)}")
        return text

    pick_folder.change(lambda value: value or gr.update(), [pick_folder], [folder])
    refresh.click(lambda: (gr.update(choices=sub_folders(ctx.settings.data_root)),
                           gr.update(choices=preset_names(ctx))), None, [pick_folder, preset])
    scan_btn.click(scan, [folder, preset], scan_outputs)
    folder.submit(scan, [folder, preset], scan_outputs)
    preset.change(scan, [folder, preset], scan_outputs)
    sample_btn.click(make_sample, None, [folder, pick_folder, status]).then(scan, [folder, preset], scan_outputs)
    fix_btn.click(apply_fix, [folder, preset, fix_choice, fixes_state], [fix_status, pre["operation"], pre["fps"]])
    cap_file.change(load_caption, [folder, cap_file], [cap_text])
    cap_save.click(save_caption, [folder, cap_file, cap_text], [cap_status]).then(scan, [folder, preset], scan_outputs)
    bulk_preview.click(preview, [folder, bulk_op, bulk_a, bulk_b], [bulk_table, bulk_state, cap_status])
    bulk_apply.click(apply, [folder, bulk_op, bulk_a, bulk_b, bulk_state], [cap_status, bulk_table]).then(
        scan, [folder, preset], scan_outputs)
    bulk_undo.click(undo, [folder], [cap_status]).then(scan, [folder, preset], scan_outputs)
