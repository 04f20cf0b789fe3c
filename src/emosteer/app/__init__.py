"""The interactive steering app: validation and steering (`core`) behind a Gradio page (`ui`)."""

from emosteer.app.core import AppConfig, SteeringApp, parse_axis_specs

__all__ = ["AppConfig", "SteeringApp", "parse_axis_specs"]
