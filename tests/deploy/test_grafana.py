"""The Grafana provisioning and dashboards, checked without Grafana (it cannot be installed
here): structure, variables, and that every PromQL expression names only metrics the platform
exports. Whether each expression returns data against real traffic is the job of
tests/integration/test_observability_stack.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from _support import grafana
from titans.monitoring import metric_names as mn

PROVISIONING = grafana.GRAFANA_DIR / "provisioning"
METRIC = re.compile(r"\b(titans_[a-z0-9_]+)")
#: Prometheus' own series a dashboard may read besides the platform's
PROMETHEUS_SERIES = {"up"}
#: what the task list asks for: model performance, data quality, system health, business
EXPECTED = {
    "titans-model-performance",
    "titans-data-quality",
    "titans-system-health",
    "titans-business",
}


def _boards() -> list[dict[str, Any]]:
    return [grafana.load(path) for path in grafana.DASHBOARDS]


def test_the_four_dashboards_of_the_task_list_exist_with_unique_uids() -> None:
    uids = [board["uid"] for board in _boards()]
    assert sorted(uids) == sorted(EXPECTED)
    titles = [board["title"] for board in _boards()]
    assert len(set(titles)) == len(titles) and all(t.startswith("Titans / ") for t in titles)


@pytest.mark.parametrize("path", grafana.DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_has_a_datasource_a_place_and_a_query(path: Any) -> None:
    board = grafana.load(path)
    assert board["schemaVersion"] >= 36 and board["panels"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(set(ids)) == len(ids), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
        taken = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not taken & cells, f"{panel['title']} overlaps another panel"
        cells |= taken
    for panel in grafana.panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["description"] and panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]


@pytest.mark.parametrize("path", grafana.DASHBOARDS, ids=lambda p: p.name)
def test_variables_are_defined_and_query_exported_labels(path: Any) -> None:
    board = grafana.load(path)
    defined = grafana.variables(board)
    assert defined["datasource"]["type"] == "datasource"
    for query in (q for q in grafana.queries() if q.dashboard == board["uid"]):
        # KeyError here: the expression uses a variable the dashboard does not define
        query.substituted(grafana.all_values(board))
    for variable in defined.values():
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]["query"])
            assert match, variable["name"]
            metric = mn.get(match.group(1))
            assert match.group(2) in metric.labels, f"{metric.name} has no label {match.group(2)}"


def _unexported(expr: str) -> set[str]:
    """Metric names in ``expr`` the platform does not export under that exact name."""
    exported = {m.exported_name for m in mn.METRICS.values() if m.kind != "histogram"}
    for family in (m for m in mn.METRICS.values() if m.kind == "histogram"):
        exported |= {f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum")}
    return set(METRIC.findall(expr)) - exported


def test_no_panel_queries_a_metric_the_platform_does_not_export() -> None:
    for query in grafana.queries():
        assert METRIC.search(query.expr) or "up{" in query.expr, query
        unexported = _unexported(query.expr)
        assert not unexported, f"{query.dashboard} / {query.panel} reads {unexported}"


def test_the_export_check_catches_a_wrong_name() -> None:
    # a counter without _total, a typo, a histogram family queried bare
    assert _unexported("rate(titans_predictions[5m])") == {"titans_predictions"}
    assert _unexported("titans_drift_shares") == {"titans_drift_shares"}
    assert _unexported("titans_request_duration_seconds") == {"titans_request_duration_seconds"}
    assert _unexported("sum(rate(titans_request_duration_seconds_count[1m]))") == set()


def test_provisioning_points_grafana_at_prometheus_and_the_dashboards() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "${PROMETHEUS_URL}"
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "titans.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/titans"
