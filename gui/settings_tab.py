"""Settings tab: this computer's folders, trainer installs, HF token and default GPU; "Check install"."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gradio as gr

from backends import backend_names, get_backend
from gui.context import GuiContext
from gui.i18n import tr
from studio.install_check import InstallReport, check_install
from studio.settings import SettingsError, TrainerInstall, discover_pythons, save_settings

FOLDERS = (
    ("data_root", "Data folder (${DATA})", "数据文件夹 (${DATA})"),
    ("models_root", "Models folder (${MODELS})", "模型文件夹 (${MODELS})"),
    ("output_root", "Output folder (${OUTPUT})", "输出文件夹 (${OUTPUT})"),
    ("runs_dir", "Studio job folders", "任务文件夹"),
    ("presets_dir", "Your presets", "我的预设文件夹"),
)


def build_settings_tab(ctx: GuiContext) -> None:
    s = ctx.settings
    gr.Markdown(tr("set.intro",
                   "Settings of **this computer** only. They are never written into presets or exports. Trainer "
                   "interpreters are picked from the environments found on this machine, never typed.",
                   "仅适用于**本机**的设置，不会写入预设或导出文件。训练器的 Python 解释器只能从本机发现的环境中选择，不能手动输入。"))
    folders = {key: gr.Textbox(value=getattr(s, key), label=tr(f"set.{key}", en, zh), elem_id=f"set-{key}")
               for key, en, zh in FOLDERS}
    with gr.Row():
        token = gr.Textbox(value="", type="password", elem_id="set-hf-token",
                           label=tr("set.token", "Hugging Face token (leave empty to keep)", "Hugging Face 令牌（留空则不变）"),
                           placeholder="hf_..." if not s.hf_token else "•••••• (set)")
        endpoint = gr.Textbox(value=s.hf_endpoint, label=tr("set.endpoint", "Hub endpoint / mirror", "Hub 地址/镜像"),
                              placeholder="https://huggingface.co")
        gpu = gr.Number(value=s.default_gpu, precision=0, minimum=0,
                        label=tr("set.gpu", "Default GPU index", "默认显卡编号"))
    trainers: dict[str, tuple[gr.Textbox, gr.Dropdown]] = {}
    for name in backend_names():
        backend = get_backend(name)
        install = s.trainer(name)
        with gr.Row():
            folder = gr.Textbox(value=install.install_dir, elem_id=f"set-{name}-dir", scale=3,
                                label=tr(f"set.{name}.dir", f"{backend.label} install folder",
                                         f"{backend.label} 安装目录"))
            python = gr.Dropdown(choices=_python_choices(install), value=install.python or None, scale=3,
                                 allow_custom_value=False, elem_id=f"set-{name}-python",
                                 label=tr(f"set.{name}.python", f"{backend.label} python", f"{backend.label} Python"))
        trainers[name] = (folder, python)
        folder.change(lambda d, n=name: gr.update(choices=_python_choices(TrainerInstall(d, ctx.settings.trainer(n)
                                                                                         .python))),
                      [folder], [python])
    with gr.Row():
        save_btn = gr.Button(tr("set.save", "Save settings", "保存设置"), variant="primary", elem_id="set-save")
        check_btn = gr.Button(tr("set.check", "Check installs", "检查安装"), elem_id="set-check")
    status = gr.Markdown(elem_id="set-status")

    inputs = {*folders.values(), token, endpoint, gpu, *(c for pair in trainers.values() for c in pair)}

    def save(data: dict[Any, Any]) -> str:
        current = ctx.reload()
        updates = {key: (data[box] or "").strip() for key, box in folders.items()}
        new_trainers = dict(current.trainers)
        for name, (folder, python) in trainers.items():
            choice = data[python] or ""
            if choice and choice not in _python_choices(TrainerInstall(data[folder], current.trainer(name).python)):
                return f"⛔ {name}: pick the python from the list"
            new_trainers[name] = TrainerInstall(install_dir=(data[folder] or "").strip(), python=choice)
        try:
            gpu_index = int(data[gpu] or 0)
            if gpu_index < 0:
                raise SettingsError("default GPU index must be 0 or more")
        except (TypeError, ValueError) as exc:
            return f"⛔ {exc}"
        updated = replace(current, **updates, hf_endpoint=(data[endpoint] or "").strip(), default_gpu=gpu_index,
                          hf_token=(data[token] or "").strip() or current.hf_token, trainers=new_trainers)
        path = save_settings(updated, ctx.settings_path)
        ctx.reload()
        return f"Saved `{path}`."

    def check() -> str:
        return "\n\n".join(_report_markdown(check_install(get_backend(n), ctx.settings)) for n in backend_names())

    save_btn.click(save, inputs, [status])
    check_btn.click(check, None, [status])


def _python_choices(install: TrainerInstall) -> list[str]:
    found = discover_pythons(install.install_dir)
    if install.python and install.python not in found:
        found.insert(0, install.python)  # named in the settings file by the machine's owner
    return found


def _report_markdown(report: InstallReport) -> str:
    head = f"**{report.trainer}**: {'✅ ready' if report.ok else '⛔ not ready'}"
    details = [f"python `{report.python or '-'}` {report.python_version}", f"commit `{report.commit or '-'}`"]
    if report.cuda is not None:
        details.append(f"CUDA {'available' if report.cuda else 'NOT available'}")
    lines = [head, " · ".join(details)] + [f"- {p}" for p in report.problems]
    if not report.ok and report.install_steps:
        lines.append(f"```bash\n{report.install_steps.strip()}\n```")
    return "\n".join(lines)
