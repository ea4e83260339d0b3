"""OnnxPipeline: a fitted model's estimator steps as an ONNX graph run by onnxruntime.

The Titans feature stage (``FeaturePipeline`` / ``AnomalyFeatures``: text hashing, vocabularies,
reference statistics) stays in Python, as every model artifact carries it; everything after it
(scaler, linear model, isolation forest) runs as one ONNX graph. An ``OnnxPipeline`` stands in
for the sklearn ``Pipeline`` in a :class:`~titans.models.base.TrainedModel`'s state, so the
model specs' ``predict`` and the serving API use it unchanged: it answers ``predict_proba`` /
``predict`` / ``score_samples`` and ``classes_`` as the pipeline did. It pickles the graph's
bytes and session options, never the live session.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from titans.models.fast import CategoryPredictor, FastPredictor, typed_record

if TYPE_CHECKING:
    import onnxruntime

#: what the estimator part computes: class probabilities, a regression value, an outlier score
OnnxKind = Literal["classifier", "regressor", "outlier"]
GraphLevel = Literal["disable", "basic", "extended", "all"]


@dataclass(frozen=True)
class SessionTuning:
    """onnxruntime session options: graph optimisation level and thread counts.

    One intra-op thread and sequential execution suit single-row latency (no thread hand-off
    for a few microseconds of work); more threads only pay off for large batches.
    """

    graph_level: GraphLevel = "all"
    intra_op_threads: int = 1
    inter_op_threads: int = 1

    def session_options(self) -> onnxruntime.SessionOptions:
        import onnxruntime as ort

        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[self.graph_level]
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # warnings and below are onnxruntime's own business
        return options

    def describe(self) -> str:
        return (
            f"graph={self.graph_level}, intra_op_threads={self.intra_op_threads}, "
            f"inter_op_threads={self.inter_op_threads}"
        )


@dataclass
class OnnxPipeline:
    """Feature stage in Python, estimator steps in onnxruntime; quacks like the sklearn
    Pipeline it replaces (``predict_proba``/``classes_``, ``predict``, ``score_samples``)."""

    features: Any
    onnx_bytes: bytes
    kind: OnnxKind
    n_features: int
    #: class labels in output column order (classifiers)
    classes: tuple[str, ...] = ()
    #: added to an isolation forest's ONNX score to give sklearn's ``score_samples``
    score_offset: float = 0.0
    tuning: SessionTuning = field(default_factory=SessionTuning)
    #: what the graph stores: "float32", or "float16 weights" (cast to float32 when loaded)
    precision: str = "float32"
    #: the sklearn steps that were converted, for lineage (``MaxAbsScaler -> SGDClassifier``)
    converted_steps: str = ""
    #: what the serving API reports as the model's flavour (see model_store.flavour_of)
    flavour: str = "onnxruntime"
    _session: Any = field(default=None, init=False, repr=False, compare=False)
    _io: tuple[str, list[str]] | None = field(default=None, init=False, repr=False, compare=False)
    _lock: Any = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    # ------------------------------------------------------------------ pickling

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_session"] = None
        state["_io"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._session, self._io = None, None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the session

    @property
    def session(self) -> onnxruntime.InferenceSession:
        """The onnxruntime session (built once, on first use)."""
        if self._session is None:
            import onnxruntime as ort

            with self._lock:
                if self._session is None:
                    self._session = ort.InferenceSession(
                        self.onnx_bytes,
                        sess_options=self.tuning.session_options(),
                        providers=["CPUExecutionProvider"],
                    )
        return self._session

    def retuned(self, tuning: SessionTuning) -> OnnxPipeline:
        """The same graph under other session options."""
        return OnnxPipeline(
            features=self.features,
            onnx_bytes=self.onnx_bytes,
            kind=self.kind,
            n_features=self.n_features,
            classes=self.classes,
            score_offset=self.score_offset,
            tuning=tuning,
            precision=self.precision,
            converted_steps=self.converted_steps,
        )

    def run_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """The graph's main output for a dense float32 feature matrix: probabilities
        (n, classes), regression values (n,) or sklearn ``score_samples`` (n,)."""
        session = self.session
        if self._io is None:
            # only the output we read: a classifier's label and a forest's verdict cost time
            outputs = [o.name for o in session.get_outputs()]
            wanted = outputs[0] if self.kind == "regressor" else outputs[1]
            self._io = (session.get_inputs()[0].name, [wanted])
        input_name, output_names = self._io
        (out,) = session.run(output_names, {input_name: matrix})
        if self.kind == "classifier":
            return np.asarray(out, dtype=np.float64)
        if self.kind == "regressor":
            return np.asarray(out, dtype=np.float64).reshape(-1)
        return np.asarray(out, dtype=np.float64).reshape(-1) + self.score_offset

    def feature_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The feature stage's batch output as the graph's dense float32 input."""
        matrix = self.features.transform(frame)
        dense = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
        return np.ascontiguousarray(dense, dtype=np.float32)

    # ------------------------------------------------------------------ the Pipeline API

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.run_matrix(self.feature_matrix(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        out = self.run_matrix(self.feature_matrix(frame))
        if self.kind == "classifier":
            return self.classes_[out.argmax(axis=1)]
        return out

    def score_samples(self, frame: pd.DataFrame) -> np.ndarray:
        return self.run_matrix(self.feature_matrix(frame))

    # ------------------------------------------------------------------ one row

    def feature_row(self, typed: Mapping[str, Any]) -> np.ndarray:
        """One typed record's features as a (1, n_features) float32 array; the same values
        ``feature_matrix`` gives its row (entries_one / transform_one equal the batch row)."""
        entries_one = getattr(self.features, "entries_one", None)
        if entries_one is not None:
            row = np.zeros((1, self.n_features), dtype=np.float32)
            columns, values = entries_one(typed)
            if columns:
                row[0, np.array(columns, dtype=np.intp)] = np.array(values, dtype=np.float64)
            return row
        dense = np.asarray(self.features.transform_one(typed), dtype=np.float64)
        return np.ascontiguousarray(dense.reshape(1, -1), dtype=np.float32)

    def single_row_predictor(self, trained: Any) -> FastPredictor | None:
        """The compiled single-row path of a TrainedModel holding this pipeline (or None)."""
        state = trained.state
        if trained.spec_name == "category" and self.kind == "classifier":
            return OnnxCategoryPredictor(self)
        if trained.spec_name == "amount" and self.kind == "regressor":
            return OnnxAmountPredictor(self, state["log_interval"])
        if trained.spec_name == "anomaly" and self.kind == "outlier":
            return OnnxAnomalyPredictor(self, state["threshold"])
        return None


class OnnxCategoryPredictor(CategoryPredictor):
    """``CategorySpec.predict`` for one record, probabilities from the ONNX graph.

    A CategoryPredictor (the API takes its top classes straight from the probabilities).
    """

    def __init__(self, pipeline: OnnxPipeline) -> None:
        self.pipeline = pipeline
        self.classes = [str(c) for c in pipeline.classes]
        self.binary = len(self.classes) == 2
        self.columns = ("prediction", "probability", *(f"proba_{c}" for c in self.classes))

    def probabilities(self, record: Mapping[str, Any]) -> np.ndarray:
        proba = self.pipeline.run_matrix(self.pipeline.feature_row(typed_record(record)))[0]
        if not math.isfinite(proba.sum()):  # CategorySpec.predict's "unsure" rule
            proba = np.full(proba.size, 1.0 / proba.size)
        return proba


class OnnxAmountPredictor(FastPredictor):
    """``AmountSpec.predict`` for one record: the ONNX log prediction and its interval."""

    columns = ("prediction", "lower", "upper")

    def __init__(self, pipeline: OnnxPipeline, log_interval: tuple[float, float]) -> None:
        self.pipeline = pipeline
        self.lo, self.hi = float(log_interval[0]), float(log_interval[1])

    def predict_one(self, record: Mapping[str, Any]) -> dict[str, Any]:
        log_pred = self.pipeline.run_matrix(self.pipeline.feature_row(typed_record(record)))
        values = np.expm1(
            np.maximum(np.concatenate([log_pred, log_pred + self.lo, log_pred + self.hi]), 0.0)
        ).tolist()
        return dict(zip(self.columns, values, strict=True))


class OnnxAnomalyPredictor(FastPredictor):
    """``AnomalySpec.predict`` for one record: the ONNX forest's score and the threshold."""

    columns = ("score", "is_anomaly")

    def __init__(self, pipeline: OnnxPipeline, threshold: float) -> None:
        self.pipeline = pipeline
        self.threshold = float(threshold)

    def predict_one(self, record: Mapping[str, Any]) -> dict[str, Any]:
        scores = self.pipeline.run_matrix(self.pipeline.feature_row(typed_record(record)))
        score = float(-scores[0])
        return {"score": score, "is_anomaly": score > self.threshold}
