"""`titans deploy` against real `titans serve` processes on a real registry.

Two versions of the category model are trained once per module (both approved by a person).
Two real APIs read that registry: ``polling`` asks the registry every second,
``frozen`` never does (model_poll_seconds=0), so only POST /admin/reload moves it. Each test
first puts production where it needs it (through the registry manager and /admin/reload), so
the tests do not depend on each other's order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support.serving import bearer, copy_registry, promote, serving_settings
from integration.conftest import _free_port, stop_process, wait_until_healthy
from titans.config import Settings
from titans.deployment import (
    DeploymentRefused,
    K8sTarget,
    LocalTarget,
    deploy_production,
    deploy_staging,
    previous_production,
    rollback,
)
from titans.errors import DeploymentError
from titans.governance.audit import AuditLogger
from titans.governance.governance import ModelGovernanceManager
from titans.registry.registry_manager import ModelRegistryManager
from titans.serving.auth import generate_api_key

NAME = "titans-category"
ROWS = 2_000
PREDICT_RAW, PREDICT_KEY = generate_api_key("svc", ["predict"])
ADMIN_RAW, ADMIN_KEY = generate_api_key("ops", ["admin"])


@dataclass
class World:
    home: Path
    settings: Settings
    #: a copy of the registry right after training: two versions, no alias
    template: Path


@dataclass
class Apis:
    polling: str
    frozen: str

    @property
    def urls(self) -> list[str]:
        return [self.polling, self.frozen]


def _settings(home: Path) -> Settings:
    return serving_settings(home, [PREDICT_KEY, ADMIN_KEY])


def _env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment that makes `Settings()` in another process equal ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TITANS_", "MLFLOW_TRACKING"))}
    env.update(
        TITANS_HOME=str(settings.home),
        TITANS_GOVERNANCE_POLICY_PATH=str(settings.governance_policy_path),
        TITANS_GOVERNANCE_IDENTITIES=json.dumps(
            [i.model_dump() for i in settings.governance_identities]
        ),
        TITANS_VALIDATION=settings.validation.model_dump_json(),
        TITANS_API_KEYS=json.dumps([k.model_dump() for k in settings.api_keys]),
        OMP_NUM_THREADS="1",
    )
    env.update(overrides)
    return env


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Category version 1 in production; version 2 registered and approved by bob."""
    from titans.data.synth import generate
    from titans.models.train import train_models

    home = tmp_path_factory.mktemp("deployment")
    settings = _settings(home)
    versions = []
    for seed in (5, 6):
        (result,) = train_models(
            generate(ROWS, seed=seed), models=["category"], seed=seed, settings=settings
        )
        versions.append(result.version)
    assert versions == ["1", "2"]
    template = copy_registry(home, tmp_path_factory.mktemp("deployment-template"))
    promote(settings, NAME, "1")
    governance = ModelGovernanceManager(settings)
    request = governance.request_model_approval(f"models:/{NAME}/2", "retrained", "ann")
    governance.approve(request, "bob", "ok")
    return World(home, settings, template)


@pytest.fixture(scope="module")
def apis(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apis]:
    """Two real `titans serve` processes on 127.0.0.1, stopped by PID at the end."""
    titans = Path(sys.executable).with_name("titans")
    logs = tmp_path_factory.mktemp("deployment-logs")
    started: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for label, poll in (("polling", "1"), ("frozen", "0")):
            port = _free_port()
            log = logs / f"{label}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(  # stopped by PID (its process group) below
                    [str(titans), "serve", "--host", "127.0.0.1", "--port", str(port)],
                    env=_env(world.settings, TITANS_MODEL_POLL_SECONDS=poll),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            started.append((proc, f"http://127.0.0.1:{port}", log))
        for proc, url, log in started:
            wait_until_healthy(proc, f"{url}/health", log)
        yield Apis(polling=started[0][1], frozen=started[1][1])
    finally:
        for proc, _, _ in started:
            stop_process(proc)


def _served(url: str) -> str | None:
    """The version of titans-category GET /models shows (asked independently of deploy)."""
    listed = httpx.get(f"{url}/models", headers=bearer(PREDICT_RAW), timeout=10).json()
    return next((m["version"] for m in listed["models"] if m["name"] == NAME), None)


def _production(world: World) -> str | None:
    return ModelRegistryManager(world.settings).get_alias_version(NAME, "production")


def _serve(world: World, apis: Apis, version: str) -> None:
    """Put ``version`` in production (rollback or gated promotion) and reload both APIs."""
    manager = ModelRegistryManager(world.settings)
    if manager.get_alias_version(NAME, "production") != version:
        moved = manager.rollback_model(NAME, version, actor="setup")
        if not moved:  # never validated yet: promote it through the gates instead
            assert manager.promote_model(NAME, version, "production", actor="ann"), (
                manager.last_refusal
            )
    for url in apis.urls:
        httpx.post(f"{url}/admin/reload", headers=bearer(ADMIN_RAW), timeout=60).raise_for_status()
        assert _served(url) == version


def _deployment_entries(world: World) -> list[Any]:
    entries = AuditLogger(world.settings).entries(model_name=NAME)
    return [e for e in entries if e.action.startswith("deployment.")]


def _cli(monkeypatch: pytest.MonkeyPatch, world: World, *args: str, **env: str) -> int:
    """Run `titans ARGS` in this process as a user would (exit code, TitansError handling)."""
    from titans.cli import main

    for key in [k for k in os.environ if k.startswith("TITANS_")]:
        monkeypatch.delenv(key)
    for key, value in _env(world.settings, COLUMNS="200", **env).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["titans", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------ against real APIs


@pytest.mark.integration
def test_deploy_production_returns_once_every_api_serves_the_new_version(
    world: World, apis: Apis
) -> None:
    _serve(world, apis, "1")
    before = len(_deployment_entries(world))

    result = deploy_production(
        "category",
        "2",
        settings=world.settings,
        actor="ann",
        reason="retrained on November data",
        target=LocalTarget(apis.urls, ADMIN_RAW, timeout=60),
    )

    assert (result.registered_name, result.alias) == (NAME, "production")
    assert (result.from_version, result.to_version, result.status) == ("1", "2", "serving")
    assert result.endpoints_checked == apis.urls
    assert [e.version for e in result.endpoints] == ["2", "2"]
    # the frozen API never polls: only deploy's POST /admin/reload can have moved it
    assert _served(apis.frozen) == "2" and _served(apis.polling) == "2"
    assert _production(world) == "2"
    assert result.to_dict()["endpoints_checked"] == apis.urls
    (entry,) = _deployment_entries(world)[before:]
    assert (entry.action, entry.actor, entry.model_version) == ("deployment.completed", "ann", "2")
    assert entry.details["reason"] == "retrained on November data"


@pytest.mark.integration
def test_cli_rollback_returns_to_the_previous_version_through_the_api_poll(
    world: World,
    apis: Apis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _serve(world, apis, "1")
    _serve(world, apis, "2")

    # a predict key cannot POST /admin/reload: the polling API must pick version 1 up itself
    code = _cli(
        monkeypatch, world, "deploy", "rollback", "category", "--api-url", apis.polling,
        "--api-key", PREDICT_RAW, "--timeout", "60", "--as", "oncall", "--reason", "F1 alert",
    )  # fmt: skip

    out = capsys.readouterr()
    assert code == 0, out.err
    assert "rolled back" in out.out and "2 → 1" in out.out
    assert f"serves at {apis.polling}" in out.out
    assert "own registry poll" in out.out
    assert _served(apis.polling) == "1"
    assert _production(world) == "1"
    entry = _deployment_entries(world)[-1]
    assert (entry.action, entry.actor, entry.details["reason"]) == (
        "deployment.completed",
        "oncall",
        "F1 alert",
    )


@pytest.mark.integration
def test_cli_refused_promotion_exits_1_and_the_api_keeps_serving(
    world: World,
    apis: Apis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _serve(world, apis, "1")
    before = len(_deployment_entries(world))
    # macro-F1 cannot reach 1.01: the validation gate refuses version 2 (approved by bob)
    failing = world.settings.validation.model_copy(deep=True)
    failing.category.primary_floor = 1.01

    code = _cli(
        monkeypatch, world, "deploy", "production", "category", "2",
        "--api-url", apis.polling, "--api-key", ADMIN_RAW, "--timeout", "5",
        TITANS_VALIDATION=failing.model_dump_json(),
    )  # fmt: skip

    err = _one_line(capsys.readouterr().err)
    assert code == 1
    assert f"promotion of {NAME} version 2 to Production refused at the validation gate" in err
    assert "nothing was rolled out" in err
    assert _production(world) == "1"
    assert _served(apis.polling) == "1"
    assert len(_deployment_entries(world)) == before  # no rollout started


@pytest.mark.integration
def test_an_api_that_never_picks_the_version_up_times_out_naming_both_versions(
    world: World, apis: Apis
) -> None:
    _serve(world, apis, "1")
    # the frozen API never polls and a predict key cannot ask it to reload
    target = LocalTarget([apis.frozen], PREDICT_RAW, timeout=2, poll_interval=0.25)

    with pytest.raises(DeploymentError) as caught:
        deploy_production("category", "2", settings=world.settings, actor="ann", target=target)

    message = str(caught.value)
    assert "\n" not in message
    assert f"{apis.frozen} still serves {NAME} version 1" in message
    assert "expected version 2" in message
    assert "titans serve" in message and f"{apis.frozen}/ready" in message
    assert "pass an admin --api-key" in message
    assert _production(world) == "2"  # the alias moved; the API did not follow
    assert _served(apis.frozen) == "1"
    entry = _deployment_entries(world)[-1]
    assert entry.action == "deployment.failed" and "expected version 2" in entry.details["error"]

    # rerunning with an admin key resumes: nothing is promoted again, the API is reloaded
    resumed = deploy_production(
        "category",
        "2",
        settings=world.settings,
        actor="ann",
        target=LocalTarget([apis.frozen], ADMIN_RAW, timeout=30),
    )
    assert (resumed.promoted, resumed.from_version, resumed.status) == (False, "2", "serving")
    assert _served(apis.frozen) == "2"


@pytest.mark.integration
def test_a_refused_rollback_raises_the_registry_refusal_and_nothing_moves(
    world: World, apis: Apis
) -> None:
    _serve(world, apis, "2")

    with pytest.raises(DeploymentRefused) as caught:
        rollback(
            "category",
            to_version="42",
            settings=world.settings,
            target=LocalTarget([apis.polling], ADMIN_RAW, timeout=5),
        )

    refusal = caught.value.refusal
    assert refusal is not None and (refusal.gate, refusal.action) == ("exists", "rollback")
    assert "has no version '42'" in str(caught.value)
    assert _production(world) == "2" and _served(apis.polling) == "2"


@pytest.mark.integration
def test_a_key_the_api_refuses_stops_the_deployment_before_anything_moves(
    world: World, apis: Apis
) -> None:
    _serve(world, apis, "1")
    target = LocalTarget([apis.polling], "not-a-key", timeout=5)

    with pytest.raises(DeploymentError, match=r"refused GET /models \(401") as caught:
        deploy_production("category", "2", settings=world.settings, target=target)

    assert "--api-key" in str(caught.value)
    assert _production(world) == "1"


# ------------------------------------------------------------------ without an API


def test_an_unreachable_api_stops_the_deployment_before_anything_moves(world: World) -> None:
    before = _production(world)
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there

    version = "2" if before != "2" else "1"  # approved and validated: the gates would pass

    with pytest.raises(DeploymentError) as caught:
        deploy_production(
            "category",
            version,
            settings=world.settings,
            target=LocalTarget([url], ADMIN_RAW, timeout=5),
        )

    message = str(caught.value)
    assert message.startswith(f"cannot reach the API at {url}")
    assert "titans serve" in message and "--api-url" in message
    assert _production(world) == before


def test_k8s_target_without_helm_says_so_and_promotes_nothing(
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _production(world)
    target_version = "2" if before != "2" else "1"  # approved: the gates would pass
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    entries_before = len(AuditLogger(world.settings).entries(model_name=NAME))

    code = _cli(
        monkeypatch, world, "deploy", "production", "category", target_version,
        "--target", "k8s", "--chart", str(tmp_path / "no-chart"), PATH=str(empty_bin),
    )  # fmt: skip

    err = _one_line(capsys.readouterr().err)
    assert code == 1
    assert "cannot deploy to Kubernetes: helm is not installed" in err
    assert f"{tmp_path / 'no-chart' / 'Chart.yaml'} does not exist" in err
    assert "nothing was promoted" in err
    assert _production(world) == before
    # not even a refusal: the registry was never asked
    assert len(AuditLogger(world.settings).entries(model_name=NAME)) == entries_before


def test_k8s_check_names_the_missing_chart_when_helm_is_there(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a real executable named helm whose `helm list` fails like one without a cluster
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    helm = fake_bin / "helm"
    helm.write_text(
        "#!/bin/sh\necho 'Error: Kubernetes cluster unreachable: dial tcp 127.0.0.1:6443' >&2\n"
        "exit 1\n"
    )
    helm.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake_bin))

    with pytest.raises(DeploymentError) as caught:
        K8sTarget(chart=tmp_path / "chart").check()

    message = str(caught.value)
    assert "helm is not installed" not in message
    assert "Chart.yaml does not exist" in message
    assert "no Kubernetes cluster reachable (helm list: Error: Kubernetes cluster unreachable" in (
        message
    )


def test_deploy_staging_moves_only_the_staging_alias(world: World) -> None:
    manager = ModelRegistryManager(world.settings)
    production = manager.get_alias_version(NAME, "production")
    version = "2" if production != "2" else "1"  # production cannot go back to staging

    result = deploy_staging("titans-category", version, settings=world.settings, actor="ann")

    assert (result.alias, result.to_version, result.status) == ("staging", version, "promoted")
    assert result.endpoints == ()
    assert any("no API serves the staging alias" in note for note in result.notes)
    assert manager.get_alias_version(NAME, "staging") == version
    assert manager.get_alias_version(NAME, "production") == production
    entry = _deployment_entries(world)[-1]
    assert (entry.action, entry.details["alias"]) == ("deployment.completed", "staging")


def test_rollback_goes_to_the_version_the_current_one_replaced_never_forward(
    world: World, tmp_path: Path
) -> None:
    settings = _settings(copy_registry(world.template, tmp_path / "home"))
    manager = ModelRegistryManager(settings)
    promote(settings, NAME, "1")
    promote(settings, NAME, "2")
    assert previous_production(manager, NAME, "2") == "1"

    assert manager.rollback_model(NAME, "1", actor="oncall")
    # version 1 replaced nothing: a second rollback must not return to version 2
    with pytest.raises(DeploymentError) as caught:
        previous_production(manager, NAME, "1")
    assert "no production version of titans-category older than version 1" in str(caught.value)
    assert "--to VERSION" in str(caught.value)
