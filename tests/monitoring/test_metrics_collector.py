"""MetricsCollector exports parseable Prometheus text, validates names, caps label cardinality;
metric_names defines every metric the app, the alert manager and the alert rules use."""

from __future__ import annotations

import doctest
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from titans.config import Settings
from titans.errors import InputError
from titans.monitoring import metric_names, metrics_collector
from titans.monitoring.alerts import AlertManager
from titans.monitoring.alerts.rules import load_rules
from titans.monitoring.metrics_collector import MetricsCollector
from titans.serving.metrics import ServingMetrics
from titans.serving.model_store import ModelStore
from titans.serving.routes.metrics import ApiMetrics
from titans.store import Store

SRC = Path(__file__).resolve().parents[2] / "src" / "titans"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_exported_text_parses_with_the_values_collected() -> None:
    collector = MetricsCollector()
    collector.collect_prediction_metrics("category", 0.02, accuracy=0.91)
    collector.collect_prediction_metrics("category", 0.2)
    collector.collect_data_quality_metrics("transactions", 0.87)
    collector.collect_business_metrics("revenue_eur", 1234.5, {"region": "eu", "plan": "pro"})

    samples = _samples(collector.export_metrics())

    assert samples[("titans_prediction_time_seconds_count", (("model", "category"),))] == 2
    assert samples[("titans_prediction_time_seconds_sum", (("model", "category"),))] == (
        pytest.approx(0.22)
    )
    bucket = (("le", "0.025"), ("model", "category"))
    assert samples[("titans_prediction_time_seconds_bucket", bucket)] == 1
    assert samples[("titans_model_accuracy", (("model", "category"),))] == 0.91
    assert samples[("titans_data_quality_score", (("dataset", "transactions"),))] == 0.87
    key = ("titans_business_revenue_eur", (("plan", "pro"), ("region", "eu")))
    assert samples[key] == 1234.5


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda c: c.collect_business_metrics("9lives", 1.0, {}), "'9lives'"),
        (lambda c: c.collect_business_metrics("revenue-eur", 1.0, {}), "'revenue-eur'"),
        (lambda c: c.collect_business_metrics("orders_total", 1.0, {}), "reserves"),
        (lambda c: c.collect_business_metrics("revenue", 1.0, {"bad-tag": "x"}), "'bad-tag'"),
        (lambda c: c.collect_business_metrics("revenue", 1.0, {"__name__": "x"}), "'__name__'"),
        (lambda c: c.collect_business_metrics("revenue", 1.0, {"region": ""}), "'region'"),
        (lambda c: c.collect_business_metrics("revenue", float("nan"), {}), "finite"),
        (lambda c: c.collect_data_quality_metrics("transactions", 1.5), "between 0 and 1"),
        (lambda c: c.collect_prediction_metrics("category", -1.0), "non-negative"),
        (lambda c: c.collect_prediction_metrics("", 0.1), "model name"),
    ],
)
def test_invalid_names_and_values_raise_a_one_line_input_error(
    call: Callable[[MetricsCollector], object], fragment: str
) -> None:
    collector = MetricsCollector()
    with pytest.raises(InputError) as raised:
        call(collector)
    message = str(raised.value)
    assert fragment in message
    assert "\n" not in message


def test_tag_names_of_a_business_metric_are_fixed_by_its_first_use() -> None:
    collector = MetricsCollector()
    collector.collect_business_metrics("orders", 3, {"region": "eu"})
    with pytest.raises(InputError, match="same tag names"):
        collector.collect_business_metrics("orders", 4, {"country": "fr"})


def test_label_sets_beyond_the_cap_are_refused_and_counted_while_known_ones_update() -> None:
    collector = MetricsCollector(max_label_sets=3)
    for customer in ("a", "b", "c"):
        assert collector.collect_business_metrics("spend", 1.0, {"customer": customer})
    assert not collector.collect_business_metrics("spend", 9.0, {"customer": "d"})
    assert not collector.collect_business_metrics("spend", 9.0, {"customer": "e"})
    assert collector.collect_business_metrics("spend", 7.0, {"customer": "a"})
    for model in ("m1", "m2", "m3", "m4"):
        collector.collect_prediction_metrics(model, 0.01)

    samples = _samples(collector.export_metrics())

    assert samples[("titans_business_spend", (("customer", "a"),))] == 7.0
    assert ("titans_business_spend", (("customer", "d"),)) not in samples
    refused = "titans_metric_labels_refused_total"
    assert samples[(refused, (("metric", "titans_business_spend"),))] == 2
    assert samples[(refused, (("metric", "titans_prediction_time_seconds"),))] == 1
    assert ("titans_prediction_time_seconds_count", (("model", "m4"),)) not in samples


def test_two_collectors_do_not_share_a_registry() -> None:
    first, second = MetricsCollector(), MetricsCollector()
    first.collect_data_quality_metrics("transactions", 0.5)
    second.collect_business_metrics("orders", 1, {})  # same names may be created in both
    first.collect_business_metrics("orders", 2, {})

    assert first.registry is not second.registry
    assert "titans_data_quality_score{" not in second.export_metrics()
    assert second.registry.get_sample_value("titans_business_orders") == 1
    assert first.registry.get_sample_value("titans_business_orders") == 2


# ------------------------------------------------------------------ metric_names


def _families(registry: CollectorRegistry) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    found: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    for family in registry.collect():
        labels = {k for s in family.samples for k in s.labels if k not in ("le", "quantile")}
        found[family.name] = (family.type, family.documentation, tuple(sorted(labels)))
    return found


def test_every_registered_metric_is_defined_in_metric_names(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, TITANS_HOME=str(tmp_path))  # type: ignore[call-arg]
    registry = CollectorRegistry()
    ServingMetrics(registry)
    api = ApiMetrics(registry)
    api.request_duration.labels("/predict/{model}", "category", "1", "200").observe(0.01)
    api.predictions.labels("category", "1", "none", "food").inc()
    api.errors.labels("bad_request").inc()
    api.model_info.labels("category", "titans-category", "1", "production").set(1)
    ModelStore(
        settings,
        registry=registry,
        client=MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
    )
    alerts = AlertManager(settings, store=Store(url="sqlite://"), channels={})
    alerts.sent_total.labels("slack", "warning").inc()
    alerts.delivery_failures_total.labels("slack").inc()
    alerts.suppressed_total.labels("cooldown").inc()
    registered = {**_families(registry), **_families(alerts.registry)}

    assert len(registered) == 16
    for name, (kind, help_text, labels) in registered.items():
        defined = metric_names.get(name)
        assert defined.kind == kind, name
        assert defined.help == help_text, name
        assert tuple(sorted(defined.labels)) == labels, name


def test_every_titans_name_in_the_sources_and_rules_is_defined() -> None:
    sources = [
        SRC / "serving" / "metrics.py",
        SRC / "serving" / "routes" / "metrics.py",
        SRC / "serving" / "model_store.py",
        SRC / "serving" / "prediction_log.py",
        *sorted((SRC / "monitoring" / "alerts").glob("*.*")),
    ]
    mentioned = {
        name
        for path in sources
        for name in re.findall(r"\btitans_[a-z0-9_]+", path.read_text(encoding="utf-8"))
    }
    assert "titans_registry_up" in mentioned and "titans_alerts_sent" in mentioned
    undefined = [
        n for n in sorted(mentioned) if n.removesuffix("_total") not in metric_names.METRICS
    ]
    assert undefined == []


def test_every_metric_an_alert_rule_watches_is_defined() -> None:
    rules = load_rules()
    assert rules
    for rule in rules:
        assert metric_names.by_rule_name(rule.metric).rule_name == rule.metric


def test_unknown_metric_name_is_an_input_error() -> None:
    with pytest.raises(InputError, match="metric_names"):
        metric_names.get("titans_no_such_metric")


def test_doctests() -> None:
    for module in (metric_names, metrics_collector):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
