"""The app: one Blocks with the tabs in the order a user works (data -> models -> config -> train -> results)."""

from __future__ import annotations

import gradio as gr

from gui.config_tab import build_config_tab
from gui.context import GuiContext
from gui.dataset_tab import build_dataset_tab
from gui.download_tab import build_download_tab
from gui.i18n import tr
from gui.results_tab import build_results_tab
from gui.settings_tab import build_settings_tab
from gui.train_tab import build_train_tab

TABS = (
    ("dataset", ("Dataset", "数据集"), build_dataset_tab),
    ("download", ("Model download", "模型下载"), build_download_tab),
    ("config", ("Config", "配置"), build_config_tab),
    ("train", ("Train", "训练"), build_train_tab),
    ("results", ("Results", "结果"), build_results_tab),
    ("settings", ("Settings", "设置"), build_settings_tab),
)


def build_app(ctx: GuiContext) -> gr.Blocks:
    with gr.Blocks(title="Video LoRA Studio") as demo:
        ctx.app = demo
        gr.Markdown(tr("app.title", "## Video LoRA Studio", "## 视频 LoRA 训练工作室"))
        with gr.Tabs(elem_id="main-tabs"):
            for tab_id, (en, zh), build in TABS:
                with gr.Tab(tr(f"tab.{tab_id}", en, zh), id=tab_id, elem_id=f"tab-{tab_id}"):
                    build(ctx)
    return demo


def served_folders(ctx: GuiContext) -> list[str]:
    """Folders whose files handlers may hand to the browser (logs, LoRA downloads); nothing else is served."""
    s = ctx.settings
    return [folder for folder in (s.runs_dir, s.output_root) if folder]
