"""Config tab: choose trainer and model, load/save/import/export presets, edit every key, live preview and findings."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from backends import backend_fields, backend_names, get_backend
from gui.context import GuiContext
from gui.form import PresetForm
from gui.i18n import tr
from studio.config_service import apply_fix, findings_for, findings_markdown, preview_plan
from studio.fields import PresetError
from studio.findings import Finding
from studio.presets import (
    Preset,
    check_name,
    dump_preset,
    list_presets,
    load_preset,
    new_preset,
    parse_preset,
    portable,
    save_preset,
    switch_backend,
    unresolved_paths,
)
from studio.schema import COMMON_FIELDS, COMMON_SECTIONS

SECTION_TITLES = {
    "dataset": ("Dataset", "数据集"), "model": ("Model files", "模型文件"), "network": ("LoRA network", "LoRA 网络"),
    "optimizer": ("Optimizer", "优化器"), "training": ("Training", "训练"), "memory": ("Memory / VRAM", "显存"),
    "output": ("Output", "输出"),
}
OPEN_SECTIONS = ("dataset", "model")
DEFAULT_PRESET = "musubi-wan21-t2v-1.3b-24gb"  # the seeds' most common starting point


def build_config_tab(ctx: GuiContext) -> None:
    fields = backend_fields()
    library = lambda: list_presets(ctx.settings.presets_dir, fields)  # noqa: E731 - re-read on every use
    first = _initial_preset(library())
    state = gr.State(first)

    with gr.Row():
        preset_dd = gr.Dropdown(choices=sorted(library()), value=first.name, label=tr("cfg.preset", "Preset", "预设"),
                                elem_id="cfg-preset", scale=3)
        load_btn = gr.Button(tr("cfg.load", "Load", "加载"), elem_id="cfg-load", scale=1)
        backend_dd = gr.Dropdown(choices=[(get_backend(n).label, n) for n in backend_names()], value=first.backend,
                                 label=tr("cfg.backend", "Trainer", "训练器"), elem_id="cfg-backend", scale=2)
        arch_dd = gr.Dropdown(choices=_arch_choices(first.backend), value=first.architecture,
                              label=tr("cfg.arch", "Model", "模型"), elem_id="cfg-arch", scale=2)
    with gr.Row():
        name_tb = gr.Textbox(value=first.name, label=tr("cfg.name", "Preset name", "预设名称"), elem_id="cfg-name",
                             scale=2)
        notes_tb = gr.Textbox(value=first.meta.get("notes", ""), label=tr("cfg.notes", "Notes", "备注"), scale=3)
        save_btn = gr.Button(tr("cfg.save", "Save preset", "保存预设"), variant="primary", elem_id="cfg-save", scale=1)
    with gr.Row():
        export_btn = gr.Button(tr("cfg.export", "Export (portable)", "导出（可移植）"), elem_id="cfg-export")
        import_btn = gr.UploadButton(tr("cfg.import", "Import preset .toml", "导入预设 .toml"), file_types=[".toml"],
                                     elem_id="cfg-import")
        export_file = gr.File(label=tr("cfg.exported", "Exported preset", "导出的预设"), visible=False,
                              elem_id="cfg-export-file")
    status = gr.Markdown(elem_id="cfg-status")
    findings_md = gr.Markdown(elem_id="cfg-findings")
    with gr.Row():
        fix_dd = gr.Dropdown(choices=[], label=tr("cfg.fixes", "One-click fixes", "一键修复"), elem_id="cfg-fix",
                             scale=3)
        fix_btn = gr.Button(tr("cfg.apply_fix", "Apply fix", "应用修复"), elem_id="cfg-apply-fix", scale=1)

    form = PresetForm()
    section_findings: dict[str, gr.Markdown] = {}  # findings repeated beside the fields they concern
    with gr.Row():
        with gr.Column(scale=3):
            for section in COMMON_SECTIONS:
                en, zh = SECTION_TITLES[section]
                with gr.Accordion(tr(f"cfg.section.{section}", en, zh), open=section in OPEN_SECTIONS):
                    section_findings[section] = gr.Markdown(elem_id=f"cfg-findings-{section}")
                    form.add((f for f in COMMON_FIELDS if f.section == section), first)
            with gr.Accordion(tr("cfg.section.backend", "Trainer-specific options", "训练器专用选项"), open=False):
                section_findings["backend"] = gr.Markdown(elem_id="cfg-findings-backend")
                for name in backend_names():
                    form.add(fields[name], first)
        with gr.Column(scale=2):
            files_code = gr.Code(language=None, label=tr("cfg.files", "Generated files (read-only)",
                                                          "生成的文件（只读）"), interactive=False, elem_id="cfg-files",
                                 lines=24, max_lines=60)
            commands_code = gr.Code(language="shell", label=tr("cfg.commands", "Commands (read-only)", "命令（只读）"),
                                    interactive=False, elem_id="cfg-commands", lines=12, max_lines=40)

    form_outputs = [backend_dd, arch_dd, name_tb, notes_tb, *form.components]
    view_outputs = [files_code, commands_code, findings_md, fix_dd, *section_findings.values()]
    editable = {state, backend_dd, arch_dd, name_tb, notes_tb, *form.components}

    def current(data: dict[Any, Any]) -> tuple[Preset, list[PresetError]]:
        preset: Preset = data[state].copy()
        preset.meta.update(backend=data[backend_dd], architecture=data[arch_dd], notes=data[notes_tb] or "")
        errors: list[PresetError] = []
        try:
            preset.meta["name"] = check_name(data[name_tb])
        except PresetError as exc:
            errors.append(exc)
        preset, field_errors = form.collect(data, preset)
        return preset, errors + field_errors

    def show(preset: Preset) -> list[Any]:
        return [gr.update(value=preset.backend), gr.update(choices=_arch_choices(preset.backend),
                                                          value=preset.architecture),
                preset.name, preset.meta.get("notes", ""), *form.updates_for(preset)]

    def refresh(data: dict[Any, Any]) -> list[Any]:
        preset, errors = current(data)
        if errors:
            by_section = [_errors_markdown([e for e in errors if _section_of(e.field) == name])
                          for name in section_findings]
            return [gr.update(), gr.update(), _errors_markdown(errors), gr.update(choices=[], value=None),
                    *by_section]
        preview = preview_plan(preset, ctx.settings)
        findings = findings_for(preset, ctx.settings)
        files_text = "\n\n".join(f"# ---- {name} ----\n{text}" for name, text in preview.files.items())
        if preview.error:
            findings.insert(0, Finding("error", preview.error.split(":")[0], preview.error))
        notes = "\n".join(f"- {n}" for n in preview.notes)
        fixes = [f.action.label for f in findings if f.action]
        placeholder = "# No files: fix the error shown above." if preview.error else ""
        by_section = [findings_markdown(findings, name) for name in section_findings]
        return [files_text or placeholder, preview.commands, findings_markdown(findings) + ("\n" + notes if notes
                else ""), gr.update(choices=fixes, value=fixes[0] if fixes else None), *by_section]

    def load(name: str) -> list[Any]:
        path = library().get(name)
        if path is None:
            raise gr.Error(f"no preset named {name!r}")
        preset = load_preset(path, fields)
        return [preset, *show(preset), f"Loaded **{preset.name}** from `{path}`"]

    def change_backend(data: dict[Any, Any]) -> list[Any]:
        preset, _ = current(data)
        preset.meta["backend"] = data[state].backend  # the form still holds the old trainer's table
        switched = switch_backend(preset, data[backend_dd], fields)
        archs = get_backend(switched.backend).architecture_ids
        if switched.architecture not in archs:
            switched.meta["architecture"] = archs[0]
        return [switched, *show(switched)]

    def change_arch(data: dict[Any, Any]) -> list[Any]:
        preset, _ = current(data)
        return [preset, *form.visibility_for(preset.backend, preset.architecture)]

    def save(data: dict[Any, Any]) -> list[Any]:
        preset, errors = current(data)
        if errors:
            return [gr.update(), _errors_markdown(errors)]
        path = save_preset(preset, ctx.settings.presets_dir)
        return [gr.update(choices=sorted(library()), value=preset.name), f"Saved **{preset.name}** to `{path}`"]

    def export(data: dict[Any, Any]) -> list[Any]:
        preset, errors = current(data)
        if errors:
            return [gr.update(visible=False), _errors_markdown(errors)]
        text = dump_preset(portable(preset, ctx.settings.roots(), fields))
        target = Path(tempfile.mkdtemp(prefix="vls-export-")) / f"{preset.name}.toml"
        target.write_text(text, encoding="utf-8")
        return [gr.update(value=str(target), visible=True), f"Exported **{preset.name}** (paths as ${{ROOT}}/...)"]

    def import_file(upload: Any) -> list[Any]:
        path = Path(upload if isinstance(upload, str) else upload.name)
        try:
            preset = parse_preset(path.read_bytes(), fields, path.name)
        except PresetError as exc:
            raise gr.Error(f"Not imported: {exc}") from None
        problems = unresolved_paths(preset, ctx.settings.roots(), fields)
        report = "\n".join(f"- {p}" for p in problems) or "- every path resolves on this machine"
        message = f"Imported **{preset.name}** (not saved yet: press Save).\n{report}"
        return [preset, *show(preset), message]

    def fix(data: dict[Any, Any]) -> list[Any]:
        preset, errors = current(data)
        chosen = data[fix_dd]
        action = next((f.action for f in findings_for(preset, ctx.settings) if f.action and f.action.label == chosen), None)
        if errors or action is None:
            return [preset, *show(preset), "Nothing to apply."]
        fixed = apply_fix(preset, action)
        return [fixed, *show(fixed), f"Applied: {action.label}"]

    # Refreshes share one ordered lane, so a slow page-load refresh can never land after (and overwrite) the
    # refresh of a later edit.
    ordered = {"concurrency_id": "cfg-refresh", "concurrency_limit": 1, "show_progress": "hidden"}
    load_btn.click(load, [preset_dd], [state, *form_outputs, status]).then(refresh, editable, view_outputs,
                                                                          **ordered)
    backend_dd.input(change_backend, editable, [state, *form_outputs]).then(refresh, editable, view_outputs,
                                                                          **ordered)
    arch_dd.input(change_arch, editable, [state, *form.components]).then(refresh, editable, view_outputs, **ordered)
    # always_last: keystrokes that arrive while a refresh runs are not dropped; the newest value is shown last.
    gr.on([c.input for c in (name_tb, notes_tb, *form.components)], refresh, editable, view_outputs,
          trigger_mode="always_last", **ordered)
    save_btn.click(save, editable, [preset_dd, status])
    export_btn.click(export, editable, [export_file, status])
    import_btn.upload(import_file, [import_btn], [state, *form_outputs, status]).then(refresh, editable,
                                                                                     view_outputs, **ordered)
    fix_btn.click(fix, editable | {fix_dd}, [state, *form_outputs, status]).then(refresh, editable, view_outputs,
                                                                                 **ordered)
    ctx.app.load(refresh, editable, view_outputs, **ordered)


def _initial_preset(library: dict[str, Path]) -> Preset:
    fields = backend_fields()
    for name in sorted(library, key=lambda n: (n != DEFAULT_PRESET, n)):
        try:
            return load_preset(library[name], fields)
        except PresetError:
            continue
    return new_preset(fields, "musubi_tuner", "wan2.1-t2v-1.3b", "new-preset")


def _arch_choices(backend: str) -> list[tuple[str, str]]:
    return [(arch.label, arch_id) for arch_id, arch in get_backend(backend).architectures.items()]


def _section_of(dotted: str) -> str:
    return "backend" if dotted.startswith("backend.") else dotted.split(".")[0]


def _errors_markdown(errors: list[PresetError]) -> str:
    return "\n".join(f"- ⛔ `{e.field}` {e.message}" for e in errors)
