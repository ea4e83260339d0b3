"""Features shared by training and serving: one sklearn transformer, `FeaturePipeline`."""

from titans.features.pipeline import FeaturePipeline, FeaturePipelineNotFittedError

__all__ = ["FeaturePipeline", "FeaturePipelineNotFittedError"]
