"""The MLflow pyfunc wrapper: a logged Titans model takes RAW transactions in export format."""

from __future__ import annotations

import pickle  # nosec B403 - only our own artifacts, written by titans.models.train
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

with warnings.catch_warnings():
    # mlflow.pyfunc warns at import about its own wrappers' predict type hints
    warnings.simplefilter("ignore", UserWarning)
    import mlflow.pyfunc
    from mlflow.pyfunc import PythonModel
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from titans.data.columns import EXPORT_COLUMNS
from titans.models.base import TrainedModel
from titans.models.inputs import typed_frame

TRAINED_MODEL_ARTIFACT = "trained_model"
PROFILE_ARTIFACT = "reference_profile"
_REQUIRED_INPUTS = {"Date", "Type", "Description", "Amount"}


# MLflow warns at class creation when predict has no type hints, forcing its own "once"
# filter, so only a silenced showwarning keeps it quiet; Titans models coerce raw input.
with warnings.catch_warnings():
    warnings.showwarning = lambda *args, **kwargs: None

    class TitansPyfuncModel(PythonModel):
        """Loads the pickled TrainedModel; predicts on raw rows (export headers or snake_case)."""

        def load_context(self, context: Any) -> None:
            path = Path(context.artifacts[TRAINED_MODEL_ARTIFACT])
            with path.open("rb") as handle:
                self.trained: TrainedModel = pickle.load(handle)  # nosec B301 - our own artifact

        # No type hints here: MLflow would try to validate inputs against them.
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            """Typed frame from the raw rows, then the spec's predict."""
            return self.trained.predict(typed_frame(pd.DataFrame(model_input)))


def input_signature() -> Schema:
    """Export-format columns; types are coerced leniently by the model itself."""
    return Schema(
        [ColSpec(AnyType(), name, required=name in _REQUIRED_INPUTS) for name in EXPORT_COLUMNS]
    )


def signature_for(output_example: pd.DataFrame) -> ModelSignature:
    """Input schema of raw export rows; output schema inferred from an example prediction."""
    from mlflow.models import infer_signature

    outputs = infer_signature(model_output=output_example).outputs
    return ModelSignature(inputs=input_signature(), outputs=outputs)


def log_titans_model(
    model_path: Path,
    profile_path: Path,
    output_example: pd.DataFrame,
    *,
    pip_requirements: list[str],
    tags: dict[str, str],
    input_example: Any = None,
) -> Any:
    """Log a pickled TrainedModel and its reference profile as the Titans pyfunc ``model``
    of the active run (its ModelInfo). Training and the optimiser both log through here."""
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=TitansPyfuncModel(),
        artifacts={
            TRAINED_MODEL_ARTIFACT: str(model_path),
            PROFILE_ARTIFACT: str(profile_path),
        },
        signature=signature_for(output_example),
        input_example=input_example,
        pip_requirements=pip_requirements,
        tags=tags,
    )


def save_trained(model: TrainedModel, directory: Path) -> Path:
    """Pickle a TrainedModel into ``directory`` for logging as a pyfunc artifact."""
    path = directory / "trained_model.pkl"
    with path.open("wb") as handle:
        pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def load_trained(model_uri: str) -> TrainedModel:
    """The TrainedModel behind a logged Titans pyfunc (``models:/name/1``, ``runs:/…``)."""
    loaded = mlflow.pyfunc.load_model(model_uri)
    python_model = loaded.unwrap_python_model()
    if not isinstance(python_model, TitansPyfuncModel):
        from titans.errors import InputError

        raise InputError(f"{model_uri} is not a Titans model; log it with `titans train`")
    return python_model.trained
