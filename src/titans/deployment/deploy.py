"""Deploy a model version: promote it through the registry's gates, then see the API serve it.

``deploy_production`` and ``rollback`` move the ``production`` alias with
:class:`~titans.registry.registry_manager.ModelRegistryManager` (every gate, approval and audit
entry as for ``titans registry promote``), then roll the change out to a *target* and wait until
every API reports the new version on ``GET /models``:

- :class:`LocalTarget`: running ``titans serve`` processes. With an admin API key each one is
  asked to ``POST /admin/reload``; otherwise the API's own registry poll
  (``model_poll_seconds``) picks the version up.
- :class:`K8sTarget`: ``helm upgrade --install`` of the chart in ``deploy/helm/titans``, only
  where helm, the chart and a reachable cluster all exist.

The target is checked *before* anything moves, so an unreachable API or a missing helm leaves
the registry as it was. ``deploy_staging`` only moves the ``staging`` alias: the API serves the
``production`` alias alone (see titans.serving.model_store), so there is nothing to roll out or
wait for; the staging version is loaded by clients as ``models:/<name>@staging``.

Deploying (or rolling back with an explicit version) to the version production already names
skips the move and only rolls out and waits, so rerunning a deployment that timed out resumes
it. Every rollout that starts ends in one audit entry, ``deployment.completed`` or
``deployment.failed``, with the target, endpoints and reason.
"""

from __future__ import annotations

import math
import shutil
import subprocess  # nosec B404 - fixed helm argv, no shell
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import httpx

import titans
from titans.config import MODEL_KEYS, Settings
from titans.errors import DeploymentError, InputError, PromotionRefused
from titans.registry.registry_manager import (
    ARCHIVED,
    VALIDATION_STATUS_TAG,
    ModelRegistryManager,
    PromotionRefusal,
)

#: where `titans serve` listens by default
DEFAULT_API_URL = "http://127.0.0.1:8000"
#: the chart `titans deploy --target k8s` upgrades, relative to the repository root
DEFAULT_CHART = Path("deploy/helm/titans")
DEFAULT_RELEASE = "titans"
#: longest wait for one HTTP answer from an API (the overall wait is the target's timeout)
REQUEST_TIMEOUT_S = 5.0
#: longest wait for `helm list` when checking that a cluster answers
CLUSTER_CHECK_TIMEOUT_S = 20.0


class DeploymentRefused(PromotionRefused):
    """The registry refused to move the alias; ``refusal`` names the gate and its reason."""

    def __init__(self, message: str, refusal: PromotionRefusal | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal


@dataclass(frozen=True)
class Endpoint:
    """What one API reported at the end of a rollout."""

    url: str
    #: the version of the model GET /models showed last (None: not listed or not answering)
    version: str | None
    #: what POST /admin/reload said for the model, or why it was not asked
    reload: str | None = None


@dataclass(frozen=True)
class Rollout:
    """What a target did after the alias moved."""

    endpoints: tuple[Endpoint, ...] = ()
    waited_seconds: float = 0.0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeploymentResult:
    """One deployment or rollback, as it ended."""

    #: the model as the caller named it (key such as ``category`` or registered name)
    model: str
    registered_name: str
    alias: str
    action: str
    from_version: str | None
    to_version: str
    target: str
    #: False when the alias already named ``to_version`` (only the rollout was checked)
    promoted: bool
    #: ``serving`` (every API reports to_version) or ``promoted`` (nothing serves the alias)
    status: str
    endpoints: tuple[Endpoint, ...] = ()
    waited_seconds: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def endpoints_checked(self) -> list[str]:
        return [e.url for e in self.endpoints]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["endpoints"] = [asdict(e) for e in self.endpoints]
        out["notes"] = list(self.notes)
        out["endpoints_checked"] = self.endpoints_checked
        out["waited_seconds"] = round(self.waited_seconds, 3)
        return out


class Target(Protocol):
    """Where a production alias move is rolled out to."""

    name: str

    def check(self) -> None:
        """Raise DeploymentError when a rollout cannot start (before anything moves)."""

    def roll_out(self, registered_name: str, model_key: str | None, version: str) -> Rollout:
        """Make the API(s) serve ``version``; DeploymentError when they do not in time."""


# ---------------------------------------------------------------------- local target


@dataclass
class LocalTarget:
    """Running `titans serve` APIs, checked on ``GET /models`` until they serve the version.

    ``api_key`` authenticates GET /models (any role) and, when the key has role ``admin`` and
    ``reload`` is on, POST /admin/reload; without it the API's registry poll must pick the
    version up within ``timeout`` seconds.
    """

    api_urls: list[str] = field(default_factory=lambda: [DEFAULT_API_URL])
    api_key: str | None = None
    timeout: float = 60.0
    poll_interval: float = 0.5
    reload: bool = True
    name: str = "local"

    def __post_init__(self) -> None:
        self.api_urls = [u.strip().rstrip("/") for u in self.api_urls if u and u.strip()]
        if not self.api_urls:
            raise InputError(f"no API URL to deploy to; pass --api-url (default {DEFAULT_API_URL})")
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise InputError(f"timeout must be a positive number of seconds, got {self.timeout}")
        if not (self.poll_interval > 0 and math.isfinite(self.poll_interval)):
            raise InputError(
                f"poll interval must be a positive number of seconds, got {self.poll_interval}"
            )

    def _client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(headers=headers, timeout=REQUEST_TIMEOUT_S)

    def check(self) -> None:
        """Every API answers GET /models with this key (so a bad URL or key moves nothing)."""
        with self._client() as client:
            for url in self.api_urls:
                _served(client, url)

    def roll_out(self, registered_name: str, model_key: str | None, version: str) -> Rollout:
        started = time.monotonic()
        notes: list[str] = []
        reloads: dict[str, str] = {}
        with self._client() as client:
            if self.reload and self.api_key:
                for url in self.api_urls:
                    reloads[url] = _reload(client, url, registered_name, model_key, version)
            elif self.reload:
                notes.append(
                    "no API key given: waiting for each API's own registry poll "
                    "(model_poll_seconds)"
                )
            if any(r.startswith("not reloaded") for r in reloads.values()):
                notes.append(
                    "the key cannot POST /admin/reload: waiting for each API's own registry "
                    "poll (model_poll_seconds)"
                )
            seen = self._wait(client, registered_name, version, started)
            waited = time.monotonic() - started
            endpoints = tuple(
                Endpoint(url, _version_of(seen.get(url), registered_name), reloads.get(url))
                for url in self.api_urls
            )
            lagging = [e for e in endpoints if e.version != version]
            if lagging:
                first = lagging[0]
                raise DeploymentError(
                    _lagging_message(first, seen.get(first.url), registered_name, version, waited)
                    + (f" ({len(lagging) - 1} more API(s) lag too)" if len(lagging) > 1 else "")
                    + _ready_hint(client, first, registered_name)
                )
        return Rollout(endpoints, waited, tuple(notes))

    def _wait(
        self, client: httpx.Client, name: str, version: str, started: float
    ) -> dict[str, list[dict[str, Any]] | str]:
        """Poll GET /models until every API serves ``version`` or the timeout passes.

        Returns, per URL, its last answer: the served models, or why it did not answer (an
        API restarting during a rollout is not a failure until the timeout).
        """
        seen: dict[str, list[dict[str, Any]] | str] = {}
        pending = list(self.api_urls)
        deadline = started + self.timeout
        max_polls = math.ceil(self.timeout / self.poll_interval) + 2
        for _ in range(max_polls):
            for url in list(pending):
                try:
                    served = _served(client, url)
                except DeploymentError as exc:
                    seen[url] = str(exc)
                    continue
                seen[url] = served
                if _version_of(served, name) == version:
                    pending.remove(url)
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                break
            time.sleep(min(self.poll_interval, remaining))
        return seen


def _served(client: httpx.Client, url: str) -> list[dict[str, Any]]:
    """The ``models`` list of GET /models; DeploymentError with what to do otherwise."""
    try:
        response = client.get(f"{url}/models")
    except httpx.HTTPError as exc:
        raise DeploymentError(
            f"cannot reach the API at {url} ({type(exc).__name__}: {_first_line(exc)}); start "
            "it with `titans serve` or pass the right --api-url"
        ) from exc
    if response.status_code in (401, 403):
        raise DeploymentError(
            f"the API at {url} refused GET /models ({response.status_code}: "
            f"{_detail(response)}); pass a valid key with --api-key or TITANS_DEPLOY_API_KEY"
        )
    if response.status_code != 200:
        raise DeploymentError(
            f"the API at {url} answered GET /models with {response.status_code} "
            f"({_detail(response)}); check GET {url}/ready and the `titans serve` logs"
        )
    try:
        models = response.json()["models"]
        if not isinstance(models, list):
            raise TypeError("models is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise DeploymentError(
            f"{url} does not answer GET /models like a Titans API ({_first_line(exc)}); "
            "pass the URL of a `titans serve`"
        ) from exc
    return [m for m in models if isinstance(m, dict)]


def _reload(client: httpx.Client, url: str, name: str, model_key: str | None, version: str) -> str:
    """POST /admin/reload: the API's outcome for the model, or why it was not reloaded.

    A reload that reports the version failed to load or warm up is a DeploymentError at once:
    the API keeps its old version, so waiting would only end in a timeout.
    """
    try:
        response = client.post(f"{url}/admin/reload")
    except httpx.HTTPError as exc:
        return f"not reloaded ({type(exc).__name__}: {_first_line(exc)})"
    if response.status_code != 200:
        return f"not reloaded ({response.status_code}: {_detail(response)})"
    try:
        outcomes = response.json().get("reload", {})
    except ValueError:
        outcomes = {}
    outcome = str(outcomes.get(model_key, "")) if model_key and isinstance(outcomes, dict) else ""
    if outcome.startswith("failed"):
        raise DeploymentError(
            f"the API at {url} could not load {name} version {version} ({outcome}); it keeps "
            f"serving the previous version: check the `titans serve` logs and GET {url}/ready"
        )
    return outcome or "reloaded"


def _version_of(seen: list[dict[str, Any]] | str | None, name: str) -> str | None:
    """The version of ``name`` in a GET /models answer; None when not listed or no answer."""
    if not isinstance(seen, list):
        return None
    for model in seen:
        if model.get("name") == name:
            return str(model.get("version"))
    return None


def _lagging_message(
    endpoint: Endpoint,
    seen: list[dict[str, Any]] | str | None,
    name: str,
    version: str,
    waited: float,
) -> str:
    if not isinstance(seen, list):  # it stopped answering
        return (
            f"{endpoint.url} did not answer after the promotion of {name} version {version} "
            f"(waited {waited:.0f} s): {seen}"
        )
    if endpoint.version is None:
        served = ", ".join(f"{m.get('name')} v{m.get('version')}" for m in seen)
        return (
            f"{endpoint.url} does not serve {name} at all after {waited:.0f} s, expected "
            f"version {version} (it serves: {served or 'nothing'})"
        )
    return (
        f"{endpoint.url} still serves {name} version {endpoint.version} after {waited:.0f} s, "
        f"expected version {version}"
    )


def _ready_hint(client: httpx.Client, endpoint: Endpoint, name: str) -> str:
    """What to do next, with the API's own /ready reasons about ``name`` when it gives any."""
    url = endpoint.url
    reasons = ""
    try:
        ready = client.get(f"{url}/ready").json()
        about = [str(r) for r in ready.get("reasons", []) if name in str(r)]
        if about:
            reasons = f" (/ready says: {'; '.join(about)})"
    except (httpx.HTTPError, ValueError, AttributeError):
        pass  # the hint is a courtesy; the timeout message stands without it
    reloaded = endpoint.reload is not None and not endpoint.reload.startswith("not reloaded")
    reload_hint = "" if reloaded else ", pass an admin --api-key so deploy can reload it"
    return (
        f"{reasons}; the registry alias has already moved: check the `titans serve` logs and "
        f"GET {url}/ready{reload_hint}, or rerun with a longer --timeout to keep waiting"
    )


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        detail = body.get("detail") if isinstance(body, dict) else None
    except ValueError:
        detail = None
    text = str(detail if detail is not None else response.text or response.reason_phrase)
    return _first_line_of(text)


# ---------------------------------------------------------------------- kubernetes target


@dataclass
class K8sTarget:
    """`helm upgrade --install` of the Titans chart, then (with ``api_urls``) GET /models.

    The pods resolve ``models:/<name>@production`` themselves; the chart value
    ``models.<key>.version`` records which version was rolled out and changes the pod spec, so
    helm rolls the pods and ``--wait`` returns once they are ready.
    """

    chart: Path = DEFAULT_CHART
    release: str = DEFAULT_RELEASE
    namespace: str | None = None
    image_tag: str | None = None
    timeout: float = 300.0
    api_urls: list[str] = field(default_factory=list)
    api_key: str | None = None
    name: str = "k8s"

    def _helm(self) -> str | None:
        return shutil.which("helm")

    def check(self) -> None:
        """helm on PATH, the chart on disk and a cluster that answers `helm list`."""
        problems: list[str] = []
        helm = self._helm()
        if helm is None:
            problems.append(
                "helm is not installed (not on PATH; install it from "
                "https://helm.sh/docs/intro/install/)"
            )
        chart_file = Path(self.chart) / "Chart.yaml"
        if not chart_file.is_file():
            problems.append(
                f"the Helm chart {chart_file} does not exist (run from the repository root or "
                "pass --chart)"
            )
        if helm is not None:
            unreachable = self._cluster_problem(helm)
            if unreachable:
                problems.append(unreachable)
        if problems:
            raise DeploymentError(
                "cannot deploy to Kubernetes: " + "; ".join(problems) + "; nothing was promoted"
            )

    def _cluster_problem(self, helm: str) -> str | None:
        command = [helm, "list", "--short", "--max", "1", *self._namespace_args()]
        try:
            ran = subprocess.run(  # nosec B603 - a fixed argv, no shell
                command,
                capture_output=True,
                text=True,
                timeout=CLUSTER_CHECK_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return (
                f"no Kubernetes cluster reachable (helm list did not answer within "
                f"{CLUSTER_CHECK_TIMEOUT_S:.0f} s); check your kubeconfig with "
                "`kubectl cluster-info`"
            )
        if ran.returncode != 0:
            return (
                f"no Kubernetes cluster reachable (helm list: "
                f"{_first_line_of(ran.stderr or ran.stdout)}); check your kubeconfig with "
                "`kubectl cluster-info`"
            )
        return None

    def _namespace_args(self) -> list[str]:
        return ["--namespace", self.namespace] if self.namespace else []

    def roll_out(self, registered_name: str, model_key: str | None, version: str) -> Rollout:
        helm = self._helm()
        if helm is None:  # it was there at check(); someone removed it meanwhile
            raise DeploymentError("helm is not installed (not on PATH); install it and rerun")
        started = time.monotonic()
        tag = self.image_tag or titans.__version__
        value_key = model_key or registered_name
        command = [
            helm, "upgrade", "--install", self.release, str(self.chart),
            "--set-string", f"image.tag={tag}",
            "--set-string", f"models.{value_key}.version={version}",
            "--wait", "--timeout", f"{math.ceil(self.timeout)}s",
            *self._namespace_args(),
        ]  # fmt: skip
        try:
            ran = subprocess.run(  # nosec B603 - a fixed argv, no shell
                command,
                capture_output=True,
                text=True,
                timeout=self.timeout + 60.0,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DeploymentError(
                f"helm upgrade of release {self.release} did not finish within "
                f"{self.timeout + 60:.0f} s; the registry alias has already moved: check "
                "`helm status` and `kubectl get pods`, then rerun"
            ) from exc
        if ran.returncode != 0:
            raise DeploymentError(
                f"helm upgrade of release {self.release} failed "
                f"({_first_line_of(ran.stderr or ran.stdout)}); the registry alias has already "
                "moved: fix the release (`helm status`) and rerun the same command"
            )
        notes = [f"helm upgraded release {self.release} (image tag {tag})"]
        if not self.api_urls:
            notes.append("pass --api-url to also check GET /models on the rolled-out API")
            return Rollout((), time.monotonic() - started, tuple(notes))
        remaining = max(self.timeout - (time.monotonic() - started), 1.0)
        local = LocalTarget(self.api_urls, self.api_key, timeout=remaining)
        checked = local.roll_out(registered_name, model_key, version)
        return Rollout(checked.endpoints, time.monotonic() - started, (*notes, *checked.notes))


# ---------------------------------------------------------------------- deployments


def deploy_staging(
    model: str,
    version: str | int,
    *,
    settings: Settings | None = None,
    actor: str = "system",
    reason: str = "",
    manager: ModelRegistryManager | None = None,
) -> DeploymentResult:
    """Promote ``version`` to Staging through every gate; nothing is rolled out.

    The API serves only the production alias, so no endpoint is waited on; the staging
    version is for clients and tests that load ``models:/<name>@staging``.
    """
    manager = manager if manager is not None else ModelRegistryManager(settings)
    name, _ = _names(manager.settings, model)
    version = str(version).strip()
    before = manager.get_alias_version(name, "staging")
    if not manager.promote_model(name, version, "staging", actor=actor):
        raise _refused(manager.last_refusal, "promotion")
    result = DeploymentResult(
        model=model,
        registered_name=name,
        alias="staging",
        action="deploy",
        from_version=before,
        to_version=version,
        target="registry",
        promoted=True,
        status="promoted",
        notes=(
            "no API serves the staging alias (titans serve loads production only); load it "
            f"as models:/{name}@staging",
        ),
    )
    _audit(manager, actor, result, reason)
    return result


def deploy_production(
    model: str,
    version: str | int,
    *,
    settings: Settings | None = None,
    actor: str = "system",
    reason: str = "",
    target: Target | None = None,
    manager: ModelRegistryManager | None = None,
) -> DeploymentResult:
    """Check the target, promote ``version`` to Production through every gate, roll it out and
    wait until every API serves it.

    A refused promotion raises DeploymentRefused (nothing is rolled out); a target that
    cannot be reached raises DeploymentError before the promotion; an API that does not serve
    the version within the target's timeout raises DeploymentError after it.
    """
    manager = manager if manager is not None else ModelRegistryManager(settings)
    target = target if target is not None else LocalTarget()
    name, key = _names(manager.settings, model)
    version = str(version).strip()
    current = manager.get_alias_version(name, "production")
    target.check()
    promoted = current != version
    if promoted and not manager.promote_model(name, version, "production", actor=actor):
        raise _refused(manager.last_refusal, "promotion")
    return _roll_out(manager, target, model, name, key, "deploy", current, version, promoted,
                     actor, reason)  # fmt: skip


def rollback(
    model: str,
    *,
    to_version: str | int | None = None,
    settings: Settings | None = None,
    actor: str = "system",
    reason: str = "",
    target: Target | None = None,
    manager: ModelRegistryManager | None = None,
) -> DeploymentResult:
    """Point production back at ``to_version`` (default: the version the current one replaced
    when it was promoted, see previous_production), roll it out and wait like
    deploy_production."""
    manager = manager if manager is not None else ModelRegistryManager(settings)
    target = target if target is not None else LocalTarget()
    name, key = _names(manager.settings, model)
    current = manager.get_alias_version(name, "production")
    if current is None:
        raise DeploymentRefused(
            f"{name} has no production version to roll back from; deploy one with "
            f"`titans deploy production {model} VERSION`"
        )
    version = (
        str(to_version).strip()
        if to_version is not None
        else previous_production(manager, name, current)
    )
    target.check()
    moved = current != version  # a rerun after a timeout only waits again
    if moved and not manager.rollback_model(name, version, actor=actor, reason=reason):
        raise _refused(manager.last_refusal, "rollback")
    return _roll_out(manager, target, model, name, key, "rollback", current, version, moved,
                     actor, reason)  # fmt: skip


def previous_production(manager: ModelRegistryManager, name: str, current: str) -> str:
    """The version production named before ``current`` was last promoted to it.

    Read from the audit trail: the newest promotion of ``current`` to production says which
    version it replaced. Rollbacks are not followed, so rolling back twice walks further back
    rather than returning to the version just rolled back from. Without such an entry, the
    newest Archived version older than ``current`` that passed validation.
    """
    for entry in reversed(manager.audit.entries(model_name=name)):
        details = entry.details
        if (
            entry.action == "registry.promoted"
            and details.get("alias") == "production"
            and str(details.get("to_version")) == current
        ):
            earlier = details.get("from_version")
            if earlier in (None, "", current):
                break  # current was the first production version
            return str(earlier)
    older = [
        row["version"]
        for row in manager.get_versions(name)
        if row["stage"] == ARCHIVED
        and row.get(VALIDATION_STATUS_TAG) == "passed"
        and _version_number(row["version"]) < _version_number(current)
    ]
    if older:
        return max(older, key=_version_number)
    raise DeploymentError(
        f"no production version of {name} older than version {current} is known; pass --to "
        f"VERSION (list versions with `titans registry show {name}`)"
    )


def _version_number(version: str) -> int:
    return int(version) if str(version).isdigit() else -1


def _roll_out(
    manager: ModelRegistryManager,
    target: Target,
    model: str,
    name: str,
    key: str | None,
    action: str,
    current: str | None,
    version: str,
    promoted: bool,
    actor: str,
    reason: str,
) -> DeploymentResult:
    result = DeploymentResult(
        model=model,
        registered_name=name,
        alias="production",
        action=action,
        from_version=current,
        to_version=version,
        target=target.name,
        promoted=promoted,
        status="serving",
        notes=() if promoted else (f"version {version} was already production; not promoted",),
    )
    try:
        rollout = target.roll_out(name, key, version)
    except DeploymentError as exc:
        _audit(manager, actor, result, reason, failure=str(exc))
        raise
    result = replace(
        result,
        endpoints=rollout.endpoints,
        waited_seconds=rollout.waited_seconds,
        notes=(*result.notes, *rollout.notes),
    )
    _audit(manager, actor, result, reason)
    return result


def _audit(
    manager: ModelRegistryManager,
    actor: str,
    result: DeploymentResult,
    reason: str,
    failure: str | None = None,
) -> None:
    details = result.to_dict()
    details["reason"] = reason
    if failure is not None:
        details["status"] = "failed"
        details["error"] = failure
    manager.audit.log(
        "deployment.failed" if failure is not None else "deployment.completed",
        actor=actor,
        model_name=result.registered_name,
        model_version=result.to_version,
        details=details,
    )


def _names(settings: Settings, model: str) -> tuple[str, str | None]:
    """(registered name, model key) of a model key (``category``) or a registered name."""
    model = model.strip()
    if model in MODEL_KEYS:
        return settings.registered_name(model), model
    prefix = settings.model_name_prefix
    key = model[len(prefix) :] if model.startswith(prefix) else None
    return model, key if key in MODEL_KEYS else None


def _refused(refusal: PromotionRefusal | None, what: str) -> DeploymentRefused:
    message = str(refusal) if refusal is not None else f"{what} refused"
    return DeploymentRefused(f"{message}; nothing was rolled out", refusal)


def _first_line(exc: BaseException) -> str:
    return _first_line_of(str(exc)) or type(exc).__name__


def _first_line_of(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= 300 else line[:297] + "..."
