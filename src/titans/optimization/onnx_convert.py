"""Convert a TrainedModel's estimator steps to ONNX (skl2onnx), store large weights as float16.

What converts: every step after the Titans feature stage (which stays in Python, see
:mod:`titans.optimization.onnx_model`). A step skl2onnx has no converter for is an
:class:`OptimizationError` naming it, raised before anything is logged or registered: there is
no silent fallback to the sklearn model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from titans.errors import TitansError
from titans.features import FeaturePipeline
from titans.models.anomaly import AnomalyFeatures
from titans.models.base import TrainedModel
from titans.optimization.onnx_model import OnnxKind, OnnxPipeline
from titans.validation.resolve import _first_line

log = logging.getLogger(__name__)

#: the feature stages every Titans artifact carries in Python (text hashing has no ONNX op)
FEATURE_STAGES: tuple[type, ...] = (FeaturePipeline, AnomalyFeatures)
#: ONNX opsets: 17 for the main domain, 3 for ai.onnx.ml (TreeEnsemble, LinearRegressor, ...)
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
#: float initializers with at least this many elements are stored as float16
FLOAT16_MIN_ELEMENTS = 1024


class OptimizationError(TitansError):
    """A model cannot be optimised as asked (no converter, lost accuracy, wrong model kind)."""


def split_pipeline(trained: TrainedModel) -> tuple[Any, Pipeline]:
    """The feature stage (kept in Python) and the estimator steps (to convert)."""
    state = trained.state
    pipeline = state.get("pipeline") if isinstance(state, dict) else None
    if isinstance(pipeline, OnnxPipeline):
        raise OptimizationError(
            f"{trained.spec_name}: this version already runs on onnxruntime "
            f"({pipeline.converted_steps}); optimise its sklearn source version instead"
        )
    if not isinstance(pipeline, Pipeline):
        raise OptimizationError(
            f"{trained.spec_name}: the model holds no scikit-learn Pipeline to convert "
            f"(state: {', '.join(state) if isinstance(state, dict) else type(state).__name__}); "
            "ONNX conversion covers the category, amount and anomaly models"
        )
    first = pipeline.steps[0][1]
    if not isinstance(first, FEATURE_STAGES) or len(pipeline.steps) < 2:
        raise OptimizationError(
            f"{trained.spec_name}: the pipeline does not start with a Titans feature stage "
            f"followed by estimator steps (steps: {_step_names(pipeline)}); "
            "train it with `titans train`"
        )
    return first, Pipeline(pipeline.steps[1:])


def _step_names(pipeline: Pipeline) -> str:
    return " -> ".join(type(step).__name__ for _, step in pipeline.steps)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _kind(estimator: Any, spec_name: str) -> OnnxKind:
    if hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_"):
        return "classifier"
    if hasattr(estimator, "score_samples") and spec_name == "anomaly":
        return "outlier"
    if hasattr(estimator, "predict"):
        return "regressor"
    raise OptimizationError(
        f"{spec_name}: {type(estimator).__name__} neither classifies, regresses nor scores "
        "outliers; nothing to convert"
    )


def check_convertible(steps: Pipeline) -> None:
    """OptimizationError naming each step skl2onnx has no converter for."""
    from skl2onnx._supported_operators import sklearn_operator_name_map

    missing = [
        f"{name} ({_qualified(type(step))})"
        for name, step in steps.steps
        if type(step) not in sklearn_operator_name_map
    ]
    if missing:
        raise OptimizationError(
            f"skl2onnx has no converter for {', '.join(missing)}; the model was not converted "
            "and the registry is unchanged (register a converter with "
            "skl2onnx.update_registered_converter, or keep serving the sklearn version)"
        )


def convert(trained: TrainedModel) -> OnnxPipeline:
    """The model's estimator steps as an ONNX graph in float32 (OptimizationError if not)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    features, steps = split_pipeline(trained)
    check_convertible(steps)
    estimator = steps.steps[-1][1]
    kind = _kind(estimator, trained.spec_name)
    n_features = _n_features(features)
    options: dict[int, dict[str, Any]] | None = (
        {id(estimator): {"zipmap": False}} if kind == "classifier" else None
    )
    try:
        graph = convert_sklearn(
            steps,
            initial_types=[("features", FloatTensorType([None, n_features]))],
            options=options,
            target_opset=TARGET_OPSET,
        )
    except Exception as exc:  # skl2onnx raises RuntimeError, MissingShapeCalculator, ...
        raise OptimizationError(
            f"skl2onnx could not convert {_step_names(steps)} "
            f"({type(exc).__name__}: {_first_line(exc)}); the registry is unchanged"
        ) from exc
    classes = tuple(str(c) for c in estimator.classes_) if kind == "classifier" else ()
    offset = float(estimator.offset_) if kind == "outlier" else 0.0
    return OnnxPipeline(
        features=features,
        onnx_bytes=graph.SerializeToString(),
        kind=kind,
        n_features=n_features,
        classes=classes,
        score_offset=offset,
        converted_steps=_step_names(steps),
    )


def _n_features(features: Any) -> int:
    n = getattr(features, "n_features_out_", None)
    if n is None:
        n = len(features.get_feature_names_out())
    return int(n)


def with_float16_weights(
    pipeline: OnnxPipeline, min_elements: int = FLOAT16_MIN_ELEMENTS
) -> tuple[OnnxPipeline, int]:
    """The graph with each large float32 initializer stored as float16 and cast back to float32
    when the session loads (onnxruntime folds the cast), and how many were converted.

    Returns the pipeline unchanged (0) when no initializer qualifies: ops that keep their
    weights in attributes (LinearRegressor, TreeEnsemble) are not supported.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(pipeline.onnx_bytes)
    graph = model.graph
    casts = []
    kept = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            kept.append(init)
            continue
        half_name = f"{init.name}__float16"
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), half_name)
        kept.append(half)
        casts.append(
            helper.make_node("Cast", [half_name], [init.name], to=TensorProto.FLOAT, name=half_name)
        )
    if not casts:
        return pipeline, 0
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*casts, *nodes])
    onnx.checker.check_model(model)
    converted = OnnxPipeline(
        features=pipeline.features,
        onnx_bytes=model.SerializeToString(),
        kind=pipeline.kind,
        n_features=pipeline.n_features,
        classes=pipeline.classes,
        score_offset=pipeline.score_offset,
        tuning=pipeline.tuning,
        precision="float16 weights",
        converted_steps=pipeline.converted_steps,
    )
    return converted, len(casts)
