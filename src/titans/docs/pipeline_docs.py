"""What the pipeline page shows: the loop and the command running each arc, every command of
the real Typer app, and the schedules and thresholds of the given settings."""

from __future__ import annotations

import inspect
import re
from pathlib import Path, PurePath
from typing import Any

from pydantic import BaseModel

from titans.config import MODEL_KEYS, Settings

__all__ = ["LOOP", "cli_commands", "field_docs", "pipeline_context", "settings_rows"]

#: the loop of DESIGN.md: (step, what happens, the command that runs it)
LOOP: tuple[tuple[str, str, str], ...] = (
    ("data", "generate or validate transactions; version them by content", "titans data validate"),
    ("train", "fit the four models, log runs to MLflow", "titans train"),
    ("validate", "performance, stability and fairness gates", "titans validate"),
    ("register", "a registry version per trained model, with lineage tags", "titans train"),
    ("approve", "four-eyes approval (or the policy's auto-approval)", "titans governance approve"),
    ("promote", "gates, then move the `production` alias", "titans registry promote"),
    ("serve", "the API loads `models:/<name>@production`", "titans serve"),
    ("monitor", "drift, quality and performance per window", "titans monitor run"),
    ("alert", "routed, deduplicated, escalated alerts", "titans alerts list"),
    ("trigger", "retraining triggers past their thresholds", "titans retrain check"),
    ("retrain", "retrain, validate, stage, A/B test the challenger", "titans retrain run"),
    ("A/B decision", "promote the challenger if it won", "titans retrain decide"),
)

_CRON_FIELDS = 5


def cli_commands() -> list[dict[str, Any]]:
    """Every command of the registered ``titans`` app (groups without commands included),
    sorted by path, with its help and parameters."""
    import typer

    from titans.cli import _register_groups, app

    _register_groups()
    root = typer.main.get_command(app)
    found: list[dict[str, Any]] = []
    _walk(root, ["titans"], found)
    return sorted(found, key=lambda c: c["path"])


def _walk(command: Any, path: list[str], found: list[dict[str, Any]]) -> None:
    children = getattr(command, "commands", None)
    if children:
        for name, child in children.items():
            if not getattr(child, "hidden", False):
                _walk(child, [*path, name], found)
        return
    help_text = inspect.cleandoc(command.help or "")
    found.append(
        {
            "path": " ".join(path),
            "help": help_text.split("\n\n")[0].replace("\n", " "),
            "group": children is not None,
            "params": [_param(p) for p in command.params if not getattr(p, "hidden", False)],
        }
    )


def _param(param: Any) -> dict[str, Any]:
    is_argument = param.param_type_name == "argument"
    names = [*param.opts, *param.secondary_opts]
    flag = bool(getattr(param, "is_flag", False))
    return {
        "names": str(param.name).upper() if is_argument else ", ".join(names),
        "kind": "argument" if is_argument else ("flag" if flag else "option"),
        "required": bool(param.required),
        "default": _default(param.default, flag),
        "envvar": param.envvar if isinstance(param.envvar, str) else None,
        "help": " ".join(str(getattr(param, "help", None) or "").split()),
    }


def _default(value: Any, flag: bool) -> str:
    if callable(value) or value is None or (flag and value is False):
        return ""
    if isinstance(value, PurePath):
        # a default relative to where the command runs; an absolute one belongs to a machine
        return "(machine-specific path)" if value.is_absolute() else value.as_posix()
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def field_docs(model: type[BaseModel]) -> dict[str, str]:
    """Each field's ``#:`` comment in the class source (subclasses' comments win).

    >>> from titans.config import MonitorSettings
    >>> field_docs(MonitorSettings)["min_rows"]
    'fewer predictions than this in a window: drift is reported, never judged'
    """
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in lines:
            stripped = line.strip()
            if stripped.startswith("#:"):
                pending.append(stripped[2:].strip())
                continue
            match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:", stripped)
            if match and pending:
                docs[match.group(1)] = " ".join(pending)
            pending = []
    return docs


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, dict):
        return "{}" if not value else ", ".join(f"{k}: {v}" for k, v in sorted(value.items()))
    return str(value)


def settings_rows(
    block: BaseModel, env_prefix: str, names: list[str] | None = None
) -> list[dict[str, str]]:
    """(setting, environment variable, value, meaning) rows of one settings block."""
    docs = field_docs(type(block))
    rows = []
    for name, info in type(block).model_fields.items():
        if names is not None and name not in names:
            continue
        value = getattr(block, name)
        if isinstance(value, BaseModel):
            continue
        rows.append(
            {
                "name": name,
                "env": f"{env_prefix}{name.upper()}",
                "value": _value(value),
                "doc": docs.get(name) or info.description or "",
            }
        )
    return rows


def _validation_rows(settings: Settings) -> list[dict[str, Any]]:
    docs = field_docs(type(settings.validation.category))
    rows = []
    for name, info in type(settings.validation.category).model_fields.items():
        values = [getattr(settings.validation.for_model(k), name) for k in MODEL_KEYS]
        if any(isinstance(v, BaseModel) for v in values):
            continue
        rows.append(
            {
                "name": name,
                "per_model": [_value(v) for v in values],
                "doc": docs.get(name) or info.description or "",
            }
        )
    return rows


#: the RetrainingSettings fields that fire a retrain (the rest shape what a retrain does)
TRIGGERS = ("performance_drop", "drift_share", "max_model_age_days", "min_new_labels")


def pipeline_context(settings: Settings) -> dict[str, Any]:
    """Loop, commands, schedules and thresholds for ``templates/pipeline.md.j2``."""
    commands = cli_commands()
    by_path = {c["path"]: c for c in commands}
    loop = [
        {"step": step, "what": what, "command": command, "exists": command in by_path}
        for step, what, command in LOOP
    ]
    scheduler = by_path.get("titans scheduler")
    check_every = next(
        (
            p["default"]
            for p in (scheduler or {}).get("params", [])
            if "--check-every" in p["names"]
        ),
        None,
    )
    retraining = settings.retraining
    return {
        "loop": loop,
        "serve_step": next(i for i, s in enumerate(loop, 1) if s["step"] == "serve"),
        "commands": commands,
        "schedules": [
            {"model": k, "cron": v, "valid": len(v.split()) == _CRON_FIELDS}
            for k, v in sorted(retraining.schedules.items())
        ],
        "check_every": check_every,
        "monitor_interval": settings.monitor.interval_seconds,
        "monitor_window": settings.monitor.window,
        "model_poll_seconds": settings.model_poll_seconds,
        "triggers": settings_rows(retraining, "TITANS_RETRAINING__", list(TRIGGERS)),
        "retraining": [
            r
            for r in settings_rows(retraining, "TITANS_RETRAINING__")
            if r["name"] not in TRIGGERS and r["name"] != "schedules"
        ],
        "monitor": settings_rows(settings.monitor, "TITANS_MONITOR__"),
        "drift": settings_rows(settings.drift, "TITANS_DRIFT__"),
        "model_keys": list(MODEL_KEYS),
        "validation": _validation_rows(settings),
    }
