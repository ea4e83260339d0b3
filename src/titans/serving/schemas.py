"""Request and response bodies of the prediction API (pydantic, with bounds)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: absolute amounts above this are refused (a typo, not a transaction)
MAX_ABS_AMOUNT = 1e9
MIN_DATE = dt.date(1970, 1, 1)
MAX_DATE = dt.date(2100, 12, 31)
#: hard schema cap on list lengths; Settings.max_batch_size is checked per request below it
MAX_LIST_ITEMS = 100_000

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
#: what the schema tells clients: a YYYY-MM-DD day between MIN_DATE and MAX_DATE
DATE_PATTERN = r"^(19[7-9][0-9]|20[0-9][0-9]|2100)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"

PredictableModel = Literal["category", "amount", "anomaly", "cashflow"]


class Transaction(BaseModel):
    """One transaction in the export format's fields (snake_case)."""

    model_config = ConfigDict(extra="forbid")

    date: dt.date = Field(
        description=f"Day of the transaction, YYYY-MM-DD, from {MIN_DATE} to {MAX_DATE}.",
        json_schema_extra={"pattern": DATE_PATTERN},
    )
    type: Literal["Income", "Expense"]
    description: str = Field(default="", max_length=5_000)
    amount: float = Field(
        ge=-MAX_ABS_AMOUNT,
        le=MAX_ABS_AMOUNT,
        allow_inf_nan=False,
        description="Signed amount: expenses negative, income positive.",
    )
    payment_method: str | None = Field(default=None, max_length=100)
    reference: str | None = Field(default=None, max_length=200)
    status: str | None = Field(default=None, max_length=50)
    category: str | None = Field(default=None, max_length=100)
    receipt_url: str | None = Field(default=None, max_length=2_000)
    entity_id: str | None = Field(
        default=None, max_length=200, description="Customer or entity id (A/B routing)."
    )

    @field_validator("date", mode="before")
    @classmethod
    def _iso_day(cls, value: object) -> object:
        if isinstance(value, dt.date) or (isinstance(value, str) and _ISO_DAY.fullmatch(value)):
            return value
        raise ValueError("use a day in YYYY-MM-DD form")

    @field_validator("date")
    @classmethod
    def _date_in_range(cls, value: dt.date) -> dt.date:
        if not MIN_DATE <= value <= MAX_DATE:
            raise ValueError(f"date must lie between {MIN_DATE} and {MAX_DATE}")
        return value

    def as_row(self) -> dict[str, object]:
        """The fields the models read, with the date as YYYY-MM-DD text."""
        row: dict[str, object] = self.model_dump(exclude={"entity_id"})
        row["date"] = self.date.isoformat()
        return row


class CashflowRequest(BaseModel):
    """Recent transactions (oldest first or not: they are summed per day) to forecast from."""

    model_config = ConfigDict(extra="forbid")

    history: list[Transaction] = Field(
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        description="Recent transactions; the forecast covers the days after the latest one.",
    )


class BatchRequest(BaseModel):
    """Up to Settings.max_batch_size transactions for one model (category, amount, anomaly)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(max_length=50, description="category, amount or anomaly")
    transactions: list[Transaction] = Field(min_length=1, max_length=MAX_LIST_ITEMS)


# ---------------------------------------------------------------------- responses


class ClassProbability(BaseModel):
    category: str
    probability: float


class CategoryPrediction(BaseModel):
    prediction: str
    probability: float
    top_classes: list[ClassProbability]


class AmountPrediction(BaseModel):
    prediction: float = Field(description="Predicted absolute amount.")
    lower: float
    upper: float


class AnomalyPrediction(BaseModel):
    score: float
    is_anomaly: bool


class ForecastDay(BaseModel):
    date: dt.date
    prediction: float
    lower: float
    upper: float


class CashflowForecast(BaseModel):
    forecast: list[ForecastDay]


class ServedBy(BaseModel):
    """Which model version answered, and under which A/B arm."""

    model_config = ConfigDict(protected_namespaces=())

    model: PredictableModel
    model_name: str
    version: str
    alias: str
    #: the A/B arm that answered; null when no A/B test runs for the model
    arm: Literal["A", "B"] | None = None


class CategoryResponse(ServedBy):
    prediction_id: str
    prediction: CategoryPrediction


class AmountResponse(ServedBy):
    prediction_id: str
    prediction: AmountPrediction


class AnomalyResponse(ServedBy):
    prediction_id: str
    prediction: AnomalyPrediction


class CashflowResponse(ServedBy):
    prediction_id: str
    prediction: CashflowForecast


class BatchItem(BaseModel):
    prediction_id: str
    prediction: CategoryPrediction | AmountPrediction | AnomalyPrediction


class BatchResponse(ServedBy):
    predictions: list[BatchItem]


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    status: Literal["ok", "degraded"]
    registry_up: bool
    reasons: list[str]
    missing: list[str]


class ModelInfo(BaseModel):
    model: str
    name: str
    version: str
    alias: str
    loaded_at: str
    flavour: str
    #: "compiled" when one transaction is scored without pandas (titans.models.fast)
    single_row_path: Literal["compiled", "batch"] = "batch"


class ModelsResponse(BaseModel):
    #: the production version of each model
    models: list[ModelInfo]
    #: versions held for running A/B tests (alias "challenger"), besides production
    challengers: list[ModelInfo] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    detail: str


class FeedbackRequest(BaseModel):
    """The actual outcome of an earlier prediction (true category, amount, anomaly, cash flow)."""

    model_config = ConfigDict(extra="forbid")

    prediction_id: str = Field(
        min_length=1, max_length=64, description="The prediction_id the API answered with."
    )
    actual: dict[str, Any] = Field(
        description='The outcome, e.g. {"category": "Software"} or {"amount": 59.99}.',
        max_length=50,
    )


class FeedbackResponse(BaseModel):
    prediction_id: str
    status: Literal["stored"]


# ---------------------------------------------------------------- admin and approvals

_VERSION = r"^[1-9][0-9]{0,9}$"
_MODEL = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"


class PromoteRequest(BaseModel):
    """Move a stage alias to a version: ``model`` is a key (``category``) or registered name."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=_MODEL, description="Model key (category) or registered name.")
    version: str = Field(pattern=_VERSION, description="Registered version number.")
    stage: Literal["staging", "production"] = "production"


class RollbackRequest(BaseModel):
    """Point ``production`` back at an earlier version that passed validation."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=_MODEL, description="Model key (category) or registered name.")
    version: str = Field(pattern=_VERSION, description="The version production returns to.")
    reason: str = Field(min_length=1, max_length=1_000, description="Why (audited).")


class RegistryActionResponse(BaseModel):
    model: str
    version: str
    stage: str
    alias_version: str | None
    reload: dict[str, str]


class RefusalResponse(BaseModel):
    """A promotion or rollback a gate refused (HTTP 409)."""

    detail: str
    gate: str
    reason: str


class ABTestRequest(BaseModel):
    """Start an A/B (or shadow) test between two versions of one model."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
    model: str = Field(pattern=_MODEL, description="Model key (category) or registered name.")
    version_a: str = Field(pattern=_VERSION)
    version_b: str = Field(pattern=_VERSION)
    traffic_split: float = Field(
        gt=0.0,
        le=1.0,
        description="Share of traffic sent to B (split mode, below 1), or that B also scores "
        "(shadow mode, up to 1).",
    )
    mode: Literal["split", "shadow"] = "split"

    @model_validator(mode="after")
    def _split_below_one(self) -> ABTestRequest:
        if self.mode == "split" and self.traffic_split >= 1.0:
            raise ValueError(
                "traffic_split must be below 1 in split mode (A keeps some traffic); "
                "use mode 'shadow' to score every request with B"
            )
        return self


class StopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1_000)


class ABTestInfo(BaseModel):
    name: str
    model: str
    version_a: str
    version_b: str
    traffic_split: float
    mode: str
    status: str


class ReloadResponse(BaseModel):
    reload: dict[str, str]


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=2_000)


class ApprovalInfo(BaseModel):
    id: str
    model_name: str
    model_version: str
    requester: str
    justification: str
    status: str
    created_at: str
    expires_at: str
    decided_by: str | None = None
    comment: str | None = None


class PendingResponse(BaseModel):
    pending: list[ApprovalInfo]


class AlertmanagerAlert(BaseModel):
    """One alert of Alertmanager's webhook payload (version 4)."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(max_length=100)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=100)
    startsAt: dt.datetime  # Alertmanager's own field names (camelCase)
    endsAt: dt.datetime | None = None
    generatorURL: str = Field(default="", max_length=2000)
    fingerprint: str = Field(pattern=r"^[0-9a-f]{1,32}$")


class AlertmanagerWebhook(BaseModel):
    """The body Alertmanager POSTs to a webhook receiver (version 4)."""

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = Field(max_length=200)
    groupKey: str = Field(default="", max_length=2000)
    alerts: list[AlertmanagerAlert] = Field(min_length=1, max_length=1000)


class AlertIntakeResponse(BaseModel):
    received: int
    opened: int
    updated: int
    resolved: int
