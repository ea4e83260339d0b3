"""deploy/compose.yaml, checked statically (no Docker engine runs here): every service's image or
build, port, volume, variable, command and healthcheck refers to something that exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from titans.cli import _register_groups, app
from titans.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
#: what the issue asks the stack to hold
SERVICES = {
    "api",
    "monitor",
    "data-monitor",
    "scheduler",
    "mlflow",
    "postgres",
    "redis",
    "prometheus",
    "alertmanager",
    "grafana",
}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")
PINNED = re.compile(r"^[\w./-]+:(?!latest$)[\w.-]*\d[\w.-]*$")


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text("utf-8"))
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _env_example() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    return {name.strip(): value for name, value in pairs}


def test_the_stack_has_every_service_each_with_a_healthcheck() -> None:
    services = _services()
    assert set(services) >= SERVICES
    for name, service in services.items():
        check = service.get("healthcheck", {})
        assert check.get("test") and check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert service.get("restart"), name


def test_images_are_pinned_and_builds_point_at_real_dockerfiles() -> None:
    for name, service in _services().items():
        image = INTERPOLATION.sub(lambda m: _env_example()[m.group(1)], service["image"])
        assert PINNED.match(image), f"{name}: image {image!r} is not pinned to a version"
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), name


def test_every_bind_mount_exists_and_every_named_volume_is_declared() -> None:
    declared = set(_compose()["volumes"])
    used: set[str] = set()
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"


def test_host_ports_are_unique_and_only_the_api_listens_beyond_loopback() -> None:
    seen: dict[str, str] = {}
    for name, service in _services().items():
        for port in service.get("ports", []):
            host = port.rsplit(":", 1)[0]
            assert host not in seen, f"{name} and {seen.get(host)} both publish {host}"
            seen[host] = name
            if name != "api":
                assert host.startswith("127.0.0.1:"), f"{name} publishes {port} on every address"


def test_dependencies_exist_and_wait_for_health() -> None:
    services = _services()
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition["condition"] in {
                "service_healthy",
                "service_completed_successfully",
            }, name
        for network in service.get("networks", []):
            assert network in _compose()["networks"], f"{name}: unknown network {network}"


def test_every_variable_is_documented_in_the_env_example() -> None:
    text = COMPOSE.read_text("utf-8")
    used = set(INTERPOLATION.findall(text))
    assert used == set(_env_example()), f"undocumented: {used - set(_env_example())}"
    # required secrets have no default: compose refuses to start without them
    for secret in ("POSTGRES_PASSWORD", "TITANS_API_KEYS", "GRAFANA_ADMIN_PASSWORD"):
        assert re.search(rf"\$\{{{secret}:\?", text), secret
        assert _env_example()[secret] == "", f"{secret} must not have an example value"


def _setting_exists(variable: str) -> bool:
    """True when TITANS_<NAME>[__<FIELD>] names a real Settings field (or alias)."""
    name = variable.removeprefix("TITANS_")
    top, _, nested = name.lower().partition("__")
    fields = Settings.model_fields
    aliases = {f.alias for f in fields.values() if f.alias}
    if variable in aliases:
        return True
    if top not in fields:
        return False
    if not nested:
        return True
    annotation = fields[top].annotation
    return nested in getattr(annotation, "model_fields", {})


@pytest.mark.parametrize(
    ("variable", "known"),
    [
        ("TITANS_DATABASE_URL", True),
        ("TITANS_MONITOR__INTERVAL_SECONDS", True),
        ("TITANS_MONITOR__INTERVAL", False),
        ("TITANS_DATABSE_URL", False),
    ],
)
def test_the_settings_check_tells_real_names_from_typos(variable: str, known: bool) -> None:
    assert _setting_exists(variable) is known


def test_every_titans_variable_is_a_real_setting() -> None:
    for name, service in _services().items():
        for variable in service.get("environment", {}) or {}:
            if variable.startswith("TITANS_"):
                assert _setting_exists(variable), f"{name}: {variable} is not a Titans setting"


def test_every_titans_command_exists_in_the_cli() -> None:
    _register_groups()
    cli = get_command(app)
    for name, service in _services().items():
        command = service.get("command") or []
        if command[:1] != ["titans"]:
            continue
        words = [w for w in command[1:] if not w.startswith("-")]
        node: Any = cli
        for word in words:
            if not hasattr(node, "commands") or word not in node.commands:
                break
            node = node.commands[word]
        assert node is not cli and not hasattr(node, "commands"), f"{name}: {command}"
        options = {o for p in node.params for o in p.opts}
        for flag in (w.split("=")[0] for w in command if w.startswith("--")):
            assert flag in options or flag.startswith("--no-"), f"{name}: unknown {flag}"


def test_prometheus_and_alertmanager_copies_differ_only_in_addresses() -> None:
    for base, copy, swaps in (
        (
            DEPLOY / "prometheus" / "prometheus.yml",
            DEPLOY / "prometheus" / "prometheus.compose.yml",
            {
                "127.0.0.1:8000": "api:8000",
                "127.0.0.1:9102": "monitor:9102",
                "127.0.0.1:9103": "data-monitor:9102",
                "127.0.0.1:9093": "alertmanager:9093",
            },
        ),
        (
            DEPLOY / "alertmanager" / "alertmanager.yml",
            DEPLOY / "alertmanager" / "alertmanager.compose.yml",
            {"http://127.0.0.1:8000/": "http://api:8000/"},
        ),
    ):
        text = base.read_text("utf-8")
        for old, new in swaps.items():
            assert old in text, f"{base.name} no longer has {old}"
            text = text.replace(old, new)
        assert yaml.safe_load(text) == yaml.safe_load(copy.read_text("utf-8")), copy.name
    mounted = {v.split(":")[0] for s in _services().values() for v in s.get("volumes", [])}
    assert "./prometheus/prometheus.compose.yml" in mounted
    assert "./alertmanager/alertmanager.compose.yml" in mounted


def test_the_compose_targets_are_the_services_and_ports_of_the_stack() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.compose.yml").read_text("utf-8"))
    services = _services()
    for job in config["scrape_configs"]:
        for target in (t for c in job["static_configs"] for t in c["targets"]):
            host, port = target.split(":")
            assert host in services, f"{job['job_name']}: no service {host}"
            command = " ".join(services[host].get("command", []))
            assert port in command or f"{port}:{port}" in services[host].get("ports", [])
