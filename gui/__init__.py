"""Gradio layout and event wiring only: domain logic lives in studio/ and backends/."""
