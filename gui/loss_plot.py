"""The live loss plot: raw and smoothed loss (<= 2k points each), epoch markers, NaN markers."""

from __future__ import annotations

import plotly.graph_objects as go

from studio.metric_series import PlotData


def loss_figure(data: PlotData, *, labels: dict[str, str]) -> go.Figure:
    """``labels``: texts in the viewer's language (loss, smoothed, epoch, nan, step, title)."""
    traces: list[go.Scatter] = [
        go.Scatter(x=data.steps, y=data.loss, mode="lines", name=labels["loss"] + f" ({data.loss_label})",
                   line={"width": 1, "color": "rgba(99,110,250,0.45)"}, connectgaps=False),
        go.Scatter(x=data.steps, y=data.smooth, mode="lines", name=labels["smoothed"],
                   line={"width": 2.5, "color": "#636efa"}),
    ]
    if data.tb_loss:
        tag, xs, ys = data.tb_loss
        traces.append(go.Scatter(x=xs, y=ys, mode="lines", name=f"TensorBoard {tag}",
                                 line={"width": 1, "color": "rgba(0,160,120,0.6)"}))
    finite = [v for v in data.loss if v is not None] or [0.0]
    top = max(finite)
    if data.bad_steps:
        traces.append(go.Scatter(x=data.bad_steps, y=[top] * len(data.bad_steps), mode="markers", name=labels["nan"],
                                 marker={"symbol": "x", "color": "#d62728", "size": 9}))
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": step, "x1": step, "y0": 0, "y1": 1,
               "line": {"width": 1, "dash": "dot", "color": "rgba(120,120,120,0.5)"}}
              for _, step in data.epoch_steps if step > 0]
    if data.epoch_steps:
        traces.append(go.Scatter(x=[s for _, s in data.epoch_steps], y=[top] * len(data.epoch_steps), mode="markers",
                                 name=labels["epoch"], marker={"symbol": "triangle-down", "size": 7, "color": "#888"},
                                 text=[f"{labels['epoch']} {e}" for e, _ in data.epoch_steps], hoverinfo="text+x"))
    figure = go.Figure(data=traces)
    figure.update_layout(
        title={"text": labels["title"].format(points=data.points), "font": {"size": 13}},
        xaxis_title=labels["step"], yaxis_title="loss", shapes=shapes, height=360,
        margin={"l": 50, "r": 20, "t": 40, "b": 40}, legend={"orientation": "h", "y": -0.2},
        uirevision="keep-zoom",  # a refresh keeps the user's zoom
    )
    return figure
