"""Model optimisation: ONNX conversion, float16 weights, pruning, tuned sessions, ensembles."""

from titans.optimization.onnx_convert import OptimizationError
from titans.optimization.optimizer import ModelOptimizer

__all__ = ["ModelOptimizer", "OptimizationError"]
