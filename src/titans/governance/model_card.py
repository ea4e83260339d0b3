"""Model cards: what the registry, the runs and their artifacts say about one model, as Markdown.

:func:`model_card_context` gathers the facts (every missing one is None, rendered
"not recorded"); :func:`render_model_card` fills ``templates/model_card.md.j2`` with them.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from titans.config import MODEL_KEYS, Settings
from titans.errors import InputError, ModelNotFoundError
from titans.governance.approvals import ApprovalRecord

__all__ = [
    "NOT_RECORDED",
    "attach_approvals",
    "model_card_context",
    "registry_client",
    "render_model_card",
]

NOT_RECORDED = "not recorded"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "model_card.md.j2"
REPORT_ARTIFACT = "validation/validation_report.json"
WARNINGS_ARTIFACT = "training_warnings.txt"
#: version tags that name the version a retrain started from (the metadata manager's, then older)
PARENT_TAGS = ("titans.parent_version", "parent_version")


def registry_client(settings: Settings) -> Any:
    """An MlflowClient on the settings' tracking and registry URI (MLflow's chatter quieted)."""
    from mlflow import MlflowClient

    settings.ensure_home()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def model_card_context(model_name: str, settings: Settings) -> dict[str, Any]:
    """Everything the card shows for registered model ``model_name`` (or its key, ``amount``)."""
    from mlflow.exceptions import MlflowException

    name = settings.registered_name(model_name) if model_name in MODEL_KEYS else model_name
    if not isinstance(name, str) or not name.strip():
        raise InputError("give a registered model name, e.g. titans-category")
    client = registry_client(settings)
    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        raise ModelNotFoundError(
            f"no registered model {name!r}; list models with `titans registry list` or train "
            "one with `titans train`"
        ) from exc
    # search_model_versions returns empty aliases on the sqlite store: read them here
    aliases_of: dict[str, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():
        aliases_of.setdefault(str(version), []).append(alias)
    quoted = name.replace("'", "\\'")
    found = client.search_model_versions(f"name='{quoted}'")
    versions = sorted(found, key=lambda v: int(v.version), reverse=True)
    spec = _spec_for(name, versions, settings)
    rows = [_version_row(v, aliases_of.get(str(v.version), [])) for v in versions]
    focus = _focus(rows)
    detail: dict[str, Any] | None = None
    if focus is not None:
        version = next(v for v in versions if str(v.version) == focus["version"])
        detail = _version_detail(client, version, focus, spec)
    return {
        "name": name,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "description": registered.description or None,
        "intended_use": getattr(spec, "description", None) or None,
        "task": getattr(spec, "task", None),
        "primary_metric": getattr(spec, "primary_metric", None),
        "direction": getattr(spec, "direction", None),
        "aliases": dict(registered.aliases or {}),
        "versions": rows,
        "focus": detail,
        "approvals": [],
    }


def _minute(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def attach_approvals(context: dict[str, Any], records: list[ApprovalRecord]) -> dict[str, Any]:
    """Add the model's approval history (oldest first) and each version's latest approval."""
    rows = []
    latest: dict[str, str] = {}
    for record in records:
        status = record.status
        if status == "approved" and not record.active:
            status = "approved (lapsed)"
        latest[record.model_version] = status
        rows.append(
            {
                "id": record.id,
                "version": record.model_version,
                "status": status,
                "requester": record.requester,
                "decided_by": record.decided_by,
                "decided_at": _minute(record.decided_at),
                "expires_at": _minute(record.expires_at),
                "comment": record.comment or None,
            }
        )
    for version in context["versions"]:
        version["approval"] = latest.get(version["version"])
    context["approvals"] = rows
    return context


def render_model_card(context: dict[str, Any]) -> str:
    """The Markdown card for a context from :func:`model_card_context` (plus ``approvals``)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["nr"] = _or_not_recorded
    env.filters["cell"] = _cell
    env.filters["num"] = _number
    text = env.get_template(TEMPLATE_NAME).render(**context, NOT_RECORDED=NOT_RECORDED)
    # collapse the blank lines that optional blocks leave behind
    lines: list[str] = []
    for line in text.splitlines():
        if line.strip() or (lines and lines[-1].strip()):
            lines.append(line.rstrip())
    return "\n".join(lines).strip() + "\n"


# ---------------------------------------------------------------- gathering


def _spec_for(name: str, versions: list[Any], settings: Settings) -> Any:
    from titans.models.base import get_spec

    key = next((v.tags.get("titans.model") for v in versions if v.tags.get("titans.model")), None)
    if key is None and name.startswith(settings.model_name_prefix):
        key = name[len(settings.model_name_prefix) :]
    if key not in MODEL_KEYS:
        return None
    return get_spec(key, settings)


def _version_row(version: Any, aliases: list[str]) -> dict[str, Any]:
    tags = dict(version.tags or {})
    created = version.creation_timestamp
    return {
        "version": str(version.version),
        "stage": tags.get("stage") or None,
        "aliases": sorted(aliases),
        "validation_status": tags.get("validation_status") or None,
        "primary_score": tags.get("titans.primary_score") or None,
        "data_version": tags.get("titans.data_version") or None,
        "created": (
            datetime.fromtimestamp(created / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            if created
            else None
        ),
        "run_id": version.run_id or None,
        "approval": None,
        "tags": tags,
    }


def _focus(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The version the card details: production, else staging, else the newest."""
    for alias in ("production", "staging"):
        for row in rows:
            if alias in row["aliases"]:
                return row
    return rows[0] if rows else None


def _version_detail(client: Any, version: Any, row: dict[str, Any], spec: Any) -> dict[str, Any]:
    tags: dict[str, str] = row["tags"]
    run = _run(client, row["run_id"])
    metrics: dict[str, float] = dict(run.data.metrics) if run is not None else {}
    params: dict[str, str] = dict(run.data.params) if run is not None else {}
    run_tags: dict[str, str] = dict(run.data.tags) if run is not None else {}
    report = _json_artifact(client, row["run_id"], REPORT_ARTIFACT)
    warnings_text = _text_artifact(client, row["run_id"], WARNINGS_ARTIFACT)
    primary = tags.get("titans.primary_metric") or getattr(spec, "primary_metric", None)
    direction = getattr(spec, "direction", None)
    score = _float(tags.get("titans.primary_score"))
    if score is None:
        score = _metric(metrics, primary)
    baseline = _float(tags.get("titans.baseline_score"))
    if baseline is None:
        baseline = _metric(metrics, f"baseline_{primary}")
    improvement = None
    if score is not None and baseline is not None and direction in ("max", "min"):
        improvement = score - baseline if direction == "max" else baseline - score
    metric_rows = [
        {"name": key, "model": value, "baseline": metrics.get(f"baseline_{key}")}
        for key, value in sorted(metrics.items())
        # row counts are lineage (shown there), not quality
        if not key.startswith("baseline_")
        and key != "margin_over_baseline"
        and not key.endswith("_rows")
    ]
    checks = (report or {}).get("checks") or {}
    fairness = checks.get("fairness")
    return {
        "version": row["version"],
        "aliases": row["aliases"],
        "stage": row["stage"],
        "run_id": row["run_id"],
        "source": version.source or None,
        "lineage": {
            "data_version": tags.get("titans.data_version") or run_tags.get("titans.data_version"),
            "data_source": tags.get("titans.data_source") or run_tags.get("titans.data_source"),
            "git_commit": tags.get("titans.git_commit") or run_tags.get("titans.git_commit"),
            "package_version": tags.get("titans.package_version"),
            "python_version": tags.get("titans.python_version"),
            "parent_version": next((tags[t] for t in PARENT_TAGS if tags.get(t)), None),
            "train_window": _window(params, "train"),
            "train_rows": params.get("train_rows"),
            "test_window": _window(params, "test"),
            "test_rows": params.get("test_rows"),
        },
        "primary": {
            "metric": primary,
            "direction": direction,
            "score": score,
            "baseline": baseline,
            "improvement": improvement,
        },
        "metrics": metric_rows,
        "validation": _validation(tags, report, checks),
        "fairness": _fairness(fairness),
        "limitations": _limitations(tags, warnings_text, checks),
    }


def _validation(
    tags: dict[str, str], report: dict[str, Any] | None, checks: dict[str, Any]
) -> dict[str, Any]:
    status = tags.get("validation_status") or (
        None if report is None else ("passed" if report.get("passed") else "failed")
    )
    return {
        "status": status,
        "validated_at": (report or {}).get("validated_at") or tags.get("validated_at"),
        "report_found": report is not None,
        "holdout_rows": (report or {}).get("holdout_rows"),
        "checks": [
            {
                "name": name,
                "passed": check.get("passed"),
                "reasons": list(check.get("reasons") or []),
                "notes": list(check.get("notes") or []),
            }
            for name, check in checks.items()
            if isinstance(check, dict)
        ],
    }


def _fairness(check: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(check, dict):
        return None
    details = check.get("details") or {}
    thresholds = check.get("thresholds") or {}
    features = []
    for feature, report in (details.get("features") or {}).items():
        features.append(
            {
                "feature": feature,
                "gap": report.get("gap"),
                "best": report.get("best_segment"),
                "worst": report.get("worst_segment"),
                "compared": report.get("compared_segments"),
                "skipped": len(report.get("skipped") or []),
                "gated": report.get("gated", True),
            }
        )
    return {
        "passed": check.get("passed"),
        "metric": details.get("metric") or thresholds.get("metric"),
        "max_gap": thresholds.get("max_fairness_gap"),
        "overall": details.get("overall"),
        "features": features,
        "reasons": list(check.get("reasons") or []),
        "notes": list(check.get("notes") or []),
    }


def _limitations(
    tags: dict[str, str], warnings_text: str | None, checks: dict[str, Any]
) -> list[str]:
    items = [line.strip() for line in (warnings_text or "").splitlines() if line.strip()]
    if tags.get("titans.data_source") == "generated":
        items.append(
            "trained and evaluated on synthetic transactions: real ledgers may behave differently"
        )
    for name, check in checks.items():
        if isinstance(check, dict):
            items.extend(f"{name}: {reason}" for reason in check.get("reasons") or [])
    return items


def _run(client: Any, run_id: str | None) -> Any:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def _download(client: Any, run_id: str | None, path: str, tmp: str) -> Path | None:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    folder, _, filename = path.rpartition("/")
    try:
        listed = client.list_artifacts(run_id, folder or None)
        if not any(Path(item.path).name == filename for item in listed):
            return None
        return Path(client.download_artifacts(run_id, path, tmp))
    except (MlflowException, OSError):
        return None


def _json_artifact(client: Any, run_id: str | None, path: str) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory() as tmp:
        local = _download(client, run_id, path, tmp)
        if local is None:
            return None
        try:
            loaded = json.loads(local.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    return loaded if isinstance(loaded, dict) else None


def _text_artifact(client: Any, run_id: str | None, path: str) -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        local = _download(client, run_id, path, tmp)
        if local is None:
            return None
        try:
            return local.read_text(encoding="utf-8")
        except OSError:
            return None


def _window(params: dict[str, str], prefix: str) -> str | None:
    start, end = params.get(f"{prefix}_start"), params.get(f"{prefix}_end")
    return f"{start} to {end}" if start and end else None


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _metric(metrics: dict[str, float], key: str | None) -> float | None:
    return None if key is None else _float(metrics.get(key))


# ---------------------------------------------------------------- template filters


def _or_not_recorded(value: Any) -> Any:
    if value is None or value == "" or value == []:
        return NOT_RECORDED
    return value


def _cell(value: Any) -> str:
    """A value safe inside a Markdown table cell."""
    text = NOT_RECORDED if value is None or value == "" else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _number(value: Any) -> str:
    number = _float(value)
    if number is None:
        return NOT_RECORDED
    return f"{number:.4g}"
