"""UI text in English and Simplified Chinese. The browser's language picks one (Gradio's I18n).

Call sites give both strings where they use them, ``tr("train.start", "Start", "开始训练")``, so every tab owns
its own text and no central table has to be edited by everyone.
"""

from __future__ import annotations

import gradio as gr

_EN: dict[str, str] = {}
_ZH: dict[str, str] = {}


def tr(key: str, en: str, zh: str) -> gr.i18n.I18nData:
    """Register ``key`` in both languages and return the value a component label accepts."""
    if _EN.get(key, en) != en or _ZH.get(key, zh) != zh:
        raise ValueError(f"i18n key {key!r} registered twice with different text")
    _EN[key] = en
    _ZH[key] = zh
    return gr.i18n.I18nData(key)


def english(key: str) -> str:
    return _EN[key]


def make_i18n() -> gr.I18n:
    # "zh" covers browsers that report a bare language tag, "zh-CN" the usual mainland locale.
    return gr.I18n(en=dict(_EN), zh=dict(_ZH), **{"zh-CN": dict(_ZH)})


def is_chinese(request: object) -> bool:
    """The browser's language, for messages composed at run time (static labels go through ``tr``)."""
    headers = getattr(request, "headers", None) or {}
    language = headers.get("accept-language", "") if hasattr(headers, "get") else ""
    return language.lower().startswith("zh")


def pick(request: object, en: str, zh: str) -> str:
    return zh if is_chinese(request) else en
