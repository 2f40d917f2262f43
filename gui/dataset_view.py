"""What the Dataset tab shows, built from studio objects: table rows, summary text, histograms, simulation tables.

Pure functions (no event wiring), so the tab module stays a layout and the formatting is testable on its own.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from gui.i18n import is_chinese
from studio.buckets import BucketReport
from studio.media import MediaInfo, media_problems, summarize

SCAN_COLUMNS = ["File 文件", "Kind 类型", "Size 尺寸", "Frames 帧数", "FPS 帧率", "Seconds 秒", "Codec 编码",
                "MB", "Caption 描述", "First line 首行", "Problems 问题"]
SIM_COLUMNS = ["File 文件", "Status 状态", "Counted frames 计数帧", "Frame bucket 帧桶", "Resolution 分辨率桶",
               "Samples 样本", "What happens 说明"]
BUCKET_COLUMNS = ["Dataset 数据集", "Width 宽", "Height 高", "Frames 帧", "Samples 样本", "Kept 保留", "Batches 批次"]
PREVIEW_COLUMNS = ["Caption file 描述文件", "Now 当前", "New 修改后"]



def scan_table(media: list[MediaInfo]) -> pd.DataFrame:
    rows = []
    for m in media:
        rows.append([
            m.name, m.kind, f"{m.width}x{m.height}" if m.width else "", m.frames or "",
            round(m.fps, 3) if m.fps else "", round(m.duration, 2) if m.duration else "", m.codec,
            round(m.size_bytes / 1e6, 2), m.caption_status, m.caption_first_line[:80], "; ".join(media_problems(m)),
        ])
    return pd.DataFrame(rows, columns=SCAN_COLUMNS)


def summary_markdown(media: list[MediaInfo], request: Any = None, *, i2v: bool = False) -> str:
    s = summarize(media)
    zh = is_chinese(request)
    if zh:
        text = (f"**{s['files']}** 个文件：**{s['videos']}** 个视频，**{s['images']}** 张图片，"
                f"**{s['unreadable']}** 个无法读取；缺少描述 **{s['missing_captions']}**，空描述 "
                f"**{s['empty_captions']}**；视频总长 {s['total_video_seconds']} 秒；帧率 {s['fps_values']}")
    else:
        text = (f"**{s['files']}** files: **{s['videos']}** videos, **{s['images']}** images, "
                f"**{s['unreadable']}** unreadable; captions missing **{s['missing_captions']}**, empty "
                f"**{s['empty_captions']}**; {s['total_video_seconds']} s of video; fps {s['fps_values']}")
    if i2v and not s["videos"]:
        text += "\n\n⛔ " + ("图生视频（I2V）模型必须用视频训练，此文件夹没有视频。" if zh else
                             "Image-to-video (I2V) models train on videos: this folder has none.")
    elif i2v and s["images"]:
        text += "\n\n⚠️ " + ("I2V 训练只使用视频，图片不会被使用。" if zh else
                             "I2V trains on videos only: the images here are not used.")
    return text


def resolution_figure(media: list[MediaInfo]) -> go.Figure:
    counts = Counter(f"{m.width}x{m.height}" for m in media if m.ok and m.width)
    labels = sorted(counts, key=lambda k: -counts[k])
    figure = go.Figure(go.Bar(x=labels, y=[counts[k] for k in labels], marker_color="#4c78a8"))
    figure.update_layout(title="Resolution / 分辨率", xaxis_title="W x H", yaxis_title="files",
                         height=280, margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return figure


def duration_figure(media: list[MediaInfo]) -> go.Figure:
    durations = [m.duration for m in media if m.ok and m.kind == "video"]
    figure = go.Figure(go.Histogram(x=durations, nbinsx=20, marker_color="#f58518"))
    figure.update_layout(title="Duration / 时长 (s)", xaxis_title="seconds", yaxis_title="clips",
                         height=280, margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return figure


def simulation_table(report: BucketReport) -> pd.DataFrame:
    rows = [[c.name, c.status, c.counted_frames, c.bucket if c.bucket is not None else "",
             "x".join(map(str, c.resolution_bucket)) if c.resolution_bucket else "", c.samples, c.reason]
            for c in report.clips]
    return pd.DataFrame(rows, columns=SIM_COLUMNS)


def bucket_table(report: BucketReport) -> pd.DataFrame:
    rows = [[b.dataset or report.backend, b.width, b.height, b.frames, b.items, b.kept, b.batches]
            for b in report.size_buckets]
    return pd.DataFrame(rows, columns=BUCKET_COLUMNS)


def simulation_markdown(report: BucketReport, preset: Any, request: Any = None) -> str:
    zh = is_chinese(request)
    frames = list(preset.get("dataset.frames"))
    if zh:
        head = (f"**{preset.name}**（{report.backend}，{report.architecture}，帧数 {frames}）：每轮 "
                f"**{report.samples_per_epoch}** 个样本，**{report.steps_per_epoch}** 步，丢弃 **{len(report.dropped)}** "
                f"个文件")
    else:
        head = (f"**{preset.name}** ({report.backend}, {report.architecture}, frames {frames}): "
                f"**{report.samples_per_epoch}** samples and **{report.steps_per_epoch}** steps per epoch; "
                f"**{len(report.dropped)}** file(s) dropped or ignored")
    lines = [head]
    lines += [f"- ⛔ {e}" for e in report.errors]
    lines += [f"- {n}" for n in report.notes]
    return "\n".join(lines)


def preview_table(rows: list[tuple[str, str | None, str]]) -> pd.DataFrame:
    from pathlib import Path

    return pd.DataFrame([[Path(f).name, "(none)" if old is None else old, new] for f, old, new in rows],
                        columns=PREVIEW_COLUMNS)
