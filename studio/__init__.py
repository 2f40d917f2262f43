"""Video LoRA Studio core: presets, settings, plans, checks and jobs. Never imports Gradio or torch."""

__version__ = "0.1.0"
