"""`titans deploy`: promote a version through the gates, roll it out, wait until it serves."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from titans.cli._common import console, progress, settings
from titans.cli.registry import _actor_default
from titans.deployment.deploy import (
    DEFAULT_API_URL,
    DEFAULT_CHART,
    DEFAULT_RELEASE,
    DeploymentResult,
    K8sTarget,
    LocalTarget,
    Target,
    deploy_production,
    deploy_staging,
    rollback,
)
from titans.errors import InputError
from titans.registry.registry_manager import ModelRegistryManager

app = typer.Typer(
    help="Promote through every gate, roll out to the running API(s) and wait until they serve "
    "the version; roll back the same way.",
    no_args_is_help=True,
)

_MODEL_HELP = "Model key (category) or registered name (titans-category)."
_TARGETS = ("local", "k8s")


_ACTOR = typer.Option(
    None,
    "--as",
    "--actor",
    envvar="TITANS_ACTOR",
    help="Who deploys, for the audit trail (default: the login name).",
)
_TARGET = typer.Option(
    "local", "--target", help="local: running `titans serve` API(s); k8s: helm upgrade."
)
_API_URL = typer.Option(
    None,
    "--api-url",
    envvar="TITANS_DEPLOY_API_URL",
    help=f"Base URL of an API to wait on (repeat for several, or space-separated in the env "
    f"var; default {DEFAULT_API_URL}; with --target k8s: none, helm's --wait only).",
    show_default=False,
)
_API_KEY = typer.Option(
    None,
    "--api-key",
    envvar="TITANS_DEPLOY_API_KEY",
    help="API key for GET /models; with role admin deploy also POSTs /admin/reload.",
    show_default=False,
)
_TIMEOUT = typer.Option(
    60.0, "--timeout", min=0.1, help="Seconds to wait for the API(s) (k8s: the helm rollout)."
)
_CHART = typer.Option(DEFAULT_CHART, "--chart", help="Helm chart directory (--target k8s).")
_REASON = typer.Option("", "--reason", help="Why (kept in the audit trail).")


def _target(
    kind: str, api_urls: list[str] | None, api_key: str | None, timeout: float, chart: Path
) -> Target:
    kind = kind.strip().lower()
    if kind not in _TARGETS:
        raise InputError(f"unknown target {kind!r}; use one of: {', '.join(_TARGETS)}")
    if kind == "k8s":
        return K8sTarget(
            chart=chart,
            release=DEFAULT_RELEASE,
            timeout=timeout,
            api_urls=list(api_urls or []),
            api_key=api_key,
        )
    return LocalTarget(list(api_urls or [DEFAULT_API_URL]), api_key, timeout=timeout)


@app.command("staging")
def staging_cmd(
    model: str = typer.Argument(..., help=_MODEL_HELP),
    version: str = typer.Argument(..., help="The version to promote to Staging."),
    actor: str | None = _ACTOR,
    reason: str = _REASON,
) -> None:
    """Promote a version to Staging through every gate (no API serves staging: no rollout)."""
    manager = ModelRegistryManager(settings())
    with progress() as bar:
        task = bar.add_task(f"promoting {model} v{version} to Staging", total=1)
        result = deploy_staging(
            model, version, actor=actor or _actor_default(), reason=reason, manager=manager
        )
        bar.update(task, completed=1)
    _print(result)


@app.command("production")
def production_cmd(
    model: str = typer.Argument(..., help=_MODEL_HELP),
    version: str = typer.Argument(..., help="The version to deploy."),
    target: str = _TARGET,
    api_url: list[str] | None = _API_URL,
    api_key: str | None = _API_KEY,
    timeout: float = _TIMEOUT,
    chart: Path = _CHART,
    actor: str | None = _ACTOR,
    reason: str = _REASON,
) -> None:
    """Promote to Production through every gate, roll out, wait until the API(s) serve it."""
    rollout = _target(target, api_url, api_key, timeout, chart)
    manager = ModelRegistryManager(settings())
    with progress() as bar:
        task = bar.add_task(f"deploying {model} v{version} to production ({target})", total=1)
        result = deploy_production(
            model,
            version,
            actor=actor or _actor_default(),
            reason=reason,
            target=rollout,
            manager=manager,
        )
        bar.update(task, completed=1)
    _print(result)


@app.command("rollback")
def rollback_cmd(
    model: str = typer.Argument(..., help=_MODEL_HELP),
    to: str | None = typer.Option(
        None, "--to", help="Version to return to (default: the one the current version replaced)."
    ),
    target: str = _TARGET,
    api_url: list[str] | None = _API_URL,
    api_key: str | None = _API_KEY,
    timeout: float = _TIMEOUT,
    chart: Path = _CHART,
    actor: str | None = _ACTOR,
    reason: str = _REASON,
) -> None:
    """Point production back at an earlier validated version, roll out, wait until it serves."""
    rollout = _target(target, api_url, api_key, timeout, chart)
    manager = ModelRegistryManager(settings())
    with progress() as bar:
        task = bar.add_task(f"rolling back {model} ({target})", total=1)
        result = rollback(
            model,
            to_version=to,
            actor=actor or _actor_default(),
            reason=reason,
            target=rollout,
            manager=manager,
        )
        bar.update(task, completed=1)
    _print(result)


def _print(result: DeploymentResult) -> None:
    """A short table of what moved and what each API serves now, then the notes."""
    verb = "rolled back" if result.action == "rollback" else "deployed"
    if result.status != "serving":
        verb = "promoted"
    table = Table(title=f"{result.registered_name}: {verb} to {result.alias}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("alias", f"{result.alias}: {result.from_version or '-'} → {result.to_version}")
    table.add_row("promoted", "yes" if result.promoted else "no (already there)")
    table.add_row("target", result.target)
    for endpoint in result.endpoints:
        table.add_row(f"serves at {endpoint.url}", f"version {endpoint.version or '-'}")
    if result.endpoints:
        table.add_row("waited", f"{result.waited_seconds:.1f} s")
    table.add_row("status", result.status)
    console.print(table)
    for note in result.notes:
        console.print(f"  {note}", highlight=False)
    colour = "green" if result.status == "serving" else "yellow"
    where = (
        f"serving on {len(result.endpoints)} API(s)"
        if result.endpoints
        else f"clients load models:/{result.registered_name}@{result.alias}"
    )
    console.print(
        f"[{colour}]{verb}[/{colour}] {result.registered_name} to version {result.to_version}: "
        + where,
        highlight=False,
    )
