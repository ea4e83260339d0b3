"""The four Titans Finance models: one ModelSpec each, looked up by name."""

from __future__ import annotations

from titans.models.base import ModelSpec, TrainedModel, get_spec, model_names

__all__ = ["ModelSpec", "TrainedModel", "get_spec", "model_names"]
