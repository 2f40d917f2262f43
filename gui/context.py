"""What every tab needs: this machine's settings and where they live. One instance per running app."""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from studio.settings import Settings, load_settings


@dataclass
class GuiContext:
    settings_path: str
    settings: Settings = field(init=False)
    # The Blocks being built, so a tab can register page-load events (set by gui.app.build_app).
    app: gr.Blocks | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.reload()

    def reload(self) -> Settings:
        self.settings = load_settings(self.settings_path)
        return self.settings


def username(request: gr.Request | None) -> str:
    """Who triggered an event (for job records); "local" when auth is off."""
    return (getattr(request, "username", None) or "local") if request is not None else "local"
