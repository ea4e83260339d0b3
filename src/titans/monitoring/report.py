"""The monitoring report: one self-contained HTML page per model and window.

The page shows drift per feature (with the reference and current distributions drawn), data
quality, realised and estimated performance, latency and system figures, metric history and
alerts. Charts are inline SVG whose geometry is computed here; the page loads nothing from
anywhere (no scripts, fonts, styles or images from outside), so it opens offline.

Distributions come from the model's reference profile, never from the training data:

>>> import numpy as np, pandas as pd
>>> from titans.monitoring.profile import ReferenceProfile
>>> rng = np.random.default_rng(0)
>>> reference = pd.DataFrame({"x": rng.normal(size=5_000), "c": rng.choice(["a", "b"], 5_000)})
>>> profile = ReferenceProfile.from_frame(reference, kinds={"x": "numeric", "c": "categorical"})
>>> current = pd.DataFrame({"x": rng.normal(1.0, size=800), "c": ["a"] * 600 + ["b"] * 200})
>>> charts = feature_distributions(profile, current, bins=10)
>>> len(charts["x"]["edges"]), round(sum(charts["x"]["reference"]), 9), sum(charts["x"]["current"])
(11, 1.0, 1.0)
>>> charts["c"]["categories"], [round(s, 3) for s in charts["c"]["current"]]
(['a', 'b'], [0.75, 0.25])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from titans.errors import InputError
from titans.monitoring.profile import OTHER, CategoricalProfile, NumericProfile, ReferenceProfile
from titans.monitoring.stattests import NumericSample

__all__ = [
    "OTHER_LABEL",
    "build_report_context",
    "feature_distributions",
    "render_report",
    "write_report",
]

#: share cut from each end of both samples when choosing a numeric chart's range; what lies
#: beyond falls into the outer bins
TAIL_SHARE = 0.005
#: the bucket after a categorical chart's top values
OTHER_LABEL = "other"
#: share of a reference sketch's knots that must be whole numbers for the column to be charted
#: as whole numbers (with bins aligned to them)
INTEGRAL_KNOT_SHARE = 0.9
TEMPLATE_NAME = "monitoring_report.html.j2"

# chart geometry (SVG user units)
_DIST_W, _DIST_H = 440.0, 210.0
_DIST_MARGIN = {"left": 46.0, "right": 10.0, "top": 28.0, "bottom": 34.0}
_DIST_BOTTOM_CATEGORICAL = 74.0
_HIST_W, _HIST_H = 340.0, 130.0
_HIST_MARGIN = {"left": 52.0, "right": 12.0, "top": 12.0, "bottom": 30.0}
_MIN_BAR_PX = 1.0  # a positive share is never drawn invisible
_LABEL_CHARS = 14

# ----------------------------------------------------------------------------- distributions


def feature_distributions(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    columns: Iterable[str] | None = None,
    bins: int = 20,
    top: int = 12,
) -> dict[str, dict[str, Any]]:
    """Chart data per column: the profile's reference distribution beside the current one.

    Numeric: ``bins`` equal-width bins (``bins + 1`` ``edges``) spanning the 0.5 %–99.5 %
    quantiles of both sides; bins are ``[a, b)`` and the outer ones also take everything
    beyond. A column of whole numbers gets edges halfway between them, each bin as many values
    wide, so it may get fewer than ``bins`` bins (day of month: 16 bins of 2 days). Reference
    shares interpolate the profile's quantile sketch, current ones are a histogram.
    Categorical: the ``top`` values by the larger of their two shares, then
    ``"other"`` for the rest (current values the profile does not list count there when the
    profile lumped rare values, as the drift test counts them). Missing values are left out;
    each side's shares sum to 1 unless that side has no values (then all 0).
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise InputError(f"bins must be a positive integer, not {bins!r}")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InputError(f"top must be a positive integer, not {top!r}")
    wanted = list(columns) if columns is not None else list(profile.columns)
    for where, available in (("reference profile", profile.columns), ("current data", current)):
        missing = [c for c in wanted if c not in available]
        if missing:
            raise InputError(
                f"column(s) {', '.join(map(repr, missing))} not in the {where}; pick columns "
                f"among {', '.join(sorted(map(str, available)))}"
            )
    out: dict[str, dict[str, Any]] = {}
    for name in wanted:
        stored = profile.columns[name]
        if isinstance(stored, NumericProfile):
            out[name] = _numeric_distribution(stored, current[name], bins)
        else:
            out[name] = _categorical_distribution(stored, current[name], top)
    return out


def _numeric_distribution(profile: NumericProfile, values: pd.Series, bins: int) -> dict[str, Any]:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    finite = numbers[np.isfinite(numbers)]
    reference = NumericSample.from_profile(profile) if profile.count else None
    levels = np.array([TAIL_SHARE, 1.0 - TAIL_SHARE])
    spans = []
    if reference is not None:
        spans.append(reference.quantile(levels))
    if finite.size:
        spans.append(np.quantile(finite, levels))
    if spans:
        lo = float(min(s[0] for s in spans))
        hi = float(max(s[1] for s in spans))
    else:
        lo, hi = 0.0, 1.0
    if _integral(reference, finite):
        # whole numbers: edges halfway between them, each bin holding the same count of values
        # (equal-width bins over 1..31 would alternately hold one and two days of the month)
        values_spanned = math.ceil(hi) - math.floor(lo) + 1
        width = math.ceil(values_spanned / bins)
        lo = math.floor(lo) - 0.5
        edges = lo + width * np.arange(math.ceil(values_spanned / width) + 1, dtype="float64")
        hi = float(edges[-1])
    else:
        if not hi > lo:  # a constant column: widen around its value
            pad = max(abs(lo) * 0.05, 0.5)
            lo, hi = lo - pad, hi + pad
        edges = np.linspace(lo, hi, bins + 1)
    bins = edges.size - 1
    if reference is not None:
        # F(x⁻) at the inner edges: bins [a, b), the convention np.histogram uses
        below = reference.cdf(edges[1:-1], "left")
        ref_shares = np.maximum(np.diff(np.concatenate(([0.0], below, [1.0]))), 0.0)
    else:
        ref_shares = np.zeros(bins)
    if finite.size:
        counts, _ = np.histogram(np.clip(finite, lo, hi), bins=edges)
        cur_shares = counts / finite.size
    else:
        cur_shares = np.zeros(bins)
    return {
        "kind": "numeric",
        "edges": edges.tolist(),
        "reference": ref_shares.tolist(),
        "current": cur_shares.tolist(),
        "n_reference": int(profile.count),
        "n_current": int(finite.size),
    }


def _integral(reference: NumericSample | None, current: np.ndarray) -> bool:
    """Whether a column holds whole numbers: every current value, and nearly every knot of the
    reference sketch (a knot between two adjacent values of the data is interpolated)."""
    if reference is None and not current.size:
        return False
    if current.size and not np.array_equal(current, np.round(current)):
        return False
    if reference is None:
        return True
    knots = reference.values
    return bool(np.mean(knots == np.round(knots)) >= INTEGRAL_KNOT_SHARE)


def _categorical_distribution(
    profile: CategoricalProfile, values: pd.Series, top: int
) -> dict[str, Any]:
    listed = {label: count for label, count in profile.frequencies.items() if label != OTHER}
    ref_rest = float(profile.frequencies.get(OTHER, 0))
    ref_total = float(sum(profile.frequencies.values()))
    counted = values.astype("string").value_counts(dropna=True)
    counted.index = counted.index.astype(str)
    cur_total = float(counted.sum())
    cur_rest = 0.0
    if OTHER in profile.frequencies:
        known = counted.index.isin(list(listed))
        cur_rest = float(counted[~known].sum())
        counted = counted[known]
    labels = pd.Index(list(listed)).append(counted.index.difference(pd.Index(list(listed))))
    table = pd.DataFrame(
        {
            "reference": pd.Series(listed, dtype="float64").reindex(labels, fill_value=0.0),
            "current": counted.astype("float64").reindex(labels, fill_value=0.0),
        },
        index=labels,
    )
    table["reference"] /= ref_total or 1.0
    table["current"] /= cur_total or 1.0
    table["peak"] = table[["reference", "current"]].max(axis=1)
    table["label"] = table.index
    table = table.sort_values(["peak", "label"], ascending=[False, True], kind="stable")
    shown, rest = table.iloc[:top], table.iloc[top:]
    categories = [str(label) for label in shown.index]
    reference = shown["reference"].tolist()
    current = shown["current"].tolist()
    rest_ref = (ref_rest / ref_total if ref_total else 0.0) + float(rest["reference"].sum())
    rest_cur = (cur_rest / cur_total if cur_total else 0.0) + float(rest["current"].sum())
    if rest_ref > 0.0 or rest_cur > 0.0:
        other = OTHER_LABEL if OTHER_LABEL not in categories else f"({OTHER_LABEL})"
        categories.append(other)
        reference.append(rest_ref)
        current.append(rest_cur)
    return {
        "kind": "categorical",
        "categories": categories,
        "reference": reference,
        "current": current,
        "n_reference": int(ref_total),
        "n_current": int(cur_total),
    }


# ----------------------------------------------------------------------------- formatting


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _num(value: Any, digits: int = 4) -> str:
    """A number for a table cell: ints with separators, floats to ``digits`` significant."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    number = _finite(value)
    if number is None:
        return "—"
    if number == int(number) and abs(number) < 1e15:
        return f"{int(number):,}"
    return f"{number:.{digits}g}"


def _pct(value: Any, digits: int = 1) -> str:
    number = _finite(value)
    return "—" if number is None else f"{number * 100:.{digits}f}%"


def _compact(value: float) -> str:
    """An axis label: 3 significant digits, k/M suffixes."""
    magnitude = abs(value)
    if magnitude >= 1e9:
        return f"{value / 1e9:.3g}G"
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.3g}"


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"


def _text(value: Any, default: str = "—") -> str:
    return default if value is None else str(value)


# ----------------------------------------------------------------------------- charts


def _distribution_chart(name: str, data: Mapping[str, Any], drifted: bool) -> dict[str, Any]:
    """Geometry of one paired-bar chart (reference vs current share per bin or category)."""
    kind = str(data.get("kind", "numeric"))
    ref = np.nan_to_num(np.asarray(data.get("reference", []), dtype="float64"))
    cur = np.nan_to_num(np.asarray(data.get("current", []), dtype="float64"))
    if ref.shape != cur.shape:
        raise InputError(
            f"distribution of {name!r}: {ref.size} reference vs {cur.size} current shares; "
            "build it with feature_distributions()"
        )
    groups = int(ref.size)
    if kind == "numeric":
        edges = np.asarray(data.get("edges", []), dtype="float64")
        if edges.size != groups + 1:
            raise InputError(
                f"distribution of {name!r}: {edges.size} edges for {groups} bins; "
                "build it with feature_distributions()"
            )
        edge_labels = [_compact(float(e)) for e in edges]
        bin_labels = [f"[{edge_labels[i]}, {edge_labels[i + 1]})" for i in range(groups)]
        if groups > 1:  # the outer bins also hold what lies beyond the edges
            bin_labels[0] = f"< {edge_labels[1]}"
            bin_labels[-1] = f"≥ {edge_labels[-2]}"
    else:
        bin_labels = [str(c) for c in data.get("categories", [])]
        if len(bin_labels) != groups:
            raise InputError(
                f"distribution of {name!r}: {len(bin_labels)} categories for {groups} shares; "
                "build it with feature_distributions()"
            )
    bottom = _DIST_BOTTOM_CATEGORICAL if kind == "categorical" else _DIST_MARGIN["bottom"]
    left, top = _DIST_MARGIN["left"], _DIST_MARGIN["top"]
    plot_w = _DIST_W - left - _DIST_MARGIN["right"]
    plot_h = _DIST_H - top - bottom
    base = top + plot_h
    peak = float(max(ref.max(initial=0.0), cur.max(initial=0.0)))
    scale = plot_h / peak if peak > 0 else 0.0
    group_w = plot_w / max(groups, 1)
    bar_w = group_w * 0.4
    starts = left + np.arange(groups) * group_w + group_w * 0.1
    bars: list[dict[str, Any]] = []
    for side, shares, offset in (("reference", ref, 0.0), ("current", cur, bar_w)):
        heights = np.where(shares > 0, np.maximum(shares * scale, _MIN_BAR_PX), 0.0)
        for i in np.flatnonzero(heights > 0):
            bars.append(
                {
                    "side": side,
                    "x": round(float(starts[i] + offset), 2),
                    "y": round(float(base - heights[i]), 2),
                    "w": round(float(bar_w), 2),
                    "h": round(float(heights[i]), 2),
                    "title": f"{side} {_pct(shares[i])} · {bin_labels[i]}",
                }
            )
    if kind == "numeric" and groups:
        ticks = sorted({0, groups // 2, groups})
        anchors = {0: "start", groups: "end"}
        x_labels = [
            {
                "x": round(left + t * group_w, 2),
                "y": base + 14,
                "text": edge_labels[t],
                "anchor": anchors.get(t, "middle"),
            }
            for t in ticks
        ]
    else:
        x_labels = [
            {
                "x": round(left + (i + 0.5) * group_w, 2),
                "y": base + 10,
                "text": _short(label),
                "full": label,
                "anchor": "end",
            }
            for i, label in enumerate(bin_labels)
        ]
    return {
        "column": name,
        "kind": kind,
        "drifted": drifted,
        "width": _DIST_W,
        "height": _DIST_H,
        "plot": {"left": left, "top": top, "right": left + plot_w, "base": base},
        "bars": bars,
        "x_labels": x_labels,
        "rotate_labels": kind == "categorical",
        "y_top_label": _pct(peak),
        "empty": peak <= 0,
        "n_reference": _num(data.get("n_reference")),
        "n_current": _num(data.get("n_current")),
        "legend": [
            {"side": "reference", "x": left, "text": "reference"},
            {"side": "current", "x": left + 92.0, "text": "current"},
        ],
        "caption": (
            "outer bins include values beyond the shown range" if kind == "numeric" else ""
        ),
    }


def _history_charts(history: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """One small line chart per metric of ``history`` (points ordered by time)."""
    if not history:
        return []
    frame = pd.DataFrame(
        {
            "ts": [str(h.get("ts", "")) for h in history],
            "metric": [str(h.get("metric", "")) for h in history],
            "value": pd.to_numeric(pd.Series([h.get("value") for h in history]), errors="coerce"),
            "threshold": pd.to_numeric(
                pd.Series([h.get("threshold") for h in history], dtype="object"), errors="coerce"
            ),
        }
    )
    frame["time"] = pd.to_datetime(frame["ts"], errors="coerce", utc=True, format="ISO8601")
    frame = frame[np.isfinite(frame["value"].to_numpy(dtype="float64"))]
    charts: list[dict[str, Any]] = []
    left, top = _HIST_MARGIN["left"], _HIST_MARGIN["top"]
    plot_w = _HIST_W - left - _HIST_MARGIN["right"]
    plot_h = _HIST_H - top - _HIST_MARGIN["bottom"]
    for metric, group in frame.groupby("metric", sort=False):
        if group["time"].notna().all():
            group = group.sort_values("time", kind="stable")
            seconds = (group["time"] - group["time"].iloc[0]).dt.total_seconds().to_numpy()
            stamps = group["time"].dt.strftime("%Y-%m-%d %H:%M")
        else:  # a timestamp that does not parse: points evenly spaced, in the given order
            seconds = np.arange(len(group), dtype="float64")
            stamps = group["ts"]
        if not float(seconds[-1] - seconds[0]) > 0:
            seconds = np.arange(len(group), dtype="float64")
        values = group["value"].to_numpy(dtype="float64")
        thresholds = group["threshold"].to_numpy(dtype="float64")
        known = np.isfinite(thresholds)
        span_values = np.concatenate((values, thresholds[known]))
        y_lo, y_hi = float(span_values.min()), float(span_values.max())
        if not y_hi > y_lo:
            pad = max(abs(y_lo) * 0.05, 0.01)
            y_lo, y_hi = y_lo - pad, y_hi + pad
        x_span = float(seconds[-1] - seconds[0])
        xs = left + ((seconds - seconds[0]) / x_span if x_span > 0 else np.full(1, 0.5)) * plot_w
        ys = top + (y_hi - values) / (y_hi - y_lo) * plot_h
        ty = top + (y_hi - thresholds) / (y_hi - y_lo) * plot_h
        points = [
            {"x": round(float(x), 2), "y": round(float(y), 2), "title": f"{ts}: {_num(v)}"}
            for x, y, ts, v in zip(xs, ys, group["ts"], values, strict=True)
        ]
        line = " ".join(f"{p['x']},{p['y']}" for p in points)
        threshold_line = " ".join(
            f"{round(float(x), 2)},{round(float(y), 2)}"
            for x, y in zip(xs[known], ty[known], strict=True)
        )
        if known.sum() == 1:  # one threshold: draw it across the chart
            y = round(float(ty[known][0]), 2)
            threshold_line = f"{left},{y} {left + plot_w},{y}"
        charts.append(
            {
                "metric": str(metric),
                "width": _HIST_W,
                "height": _HIST_H,
                "plot": {"left": left, "top": top, "right": left + plot_w, "base": top + plot_h},
                "points": points,
                "line": line,
                "threshold_line": threshold_line or None,
                "y_hi": _num(y_hi, 3),
                "y_lo": _num(y_lo, 3),
                "x_start": str(stamps.iloc[0]),
                "x_end": str(stamps.iloc[-1]),
                "latest": _num(values[-1]),
                "threshold": _num(thresholds[known][-1]) if known.any() else None,
                "count": len(points),
            }
        )
    return charts


# ----------------------------------------------------------------------------- sections


def _unavailable(section: str, reasons: Mapping[str, Any], default: str) -> dict[str, Any]:
    reason = reasons.get(section)
    return {"available": False, "reason": str(reason) if reason else default}


def _drift_section(
    drift: Mapping[str, Any] | None, section: str, reasons: Mapping[str, Any]
) -> dict[str, Any]:
    if drift is None:
        return _unavailable(section, reasons, "drift was not computed for this window")
    columns: Mapping[str, Mapping[str, Any]] = drift.get("columns") or {}
    rows: list[dict[str, Any]] = []
    for name, result in columns.items():
        score_kind = result.get("kind")
        threshold = result.get("threshold")
        note = result.get("note")
        drifted = bool(result.get("drifted"))
        rule = "p <" if score_kind == "p_value" else "≥"
        rows.append(
            {
                "feature": str(name),
                "kind": _text(result.get("column_kind")),
                "test": _text(result.get("test")),
                "score": _num(result.get("score")),
                "threshold": f"{rule} {_num(threshold)}" if threshold is not None else "—",
                "drifted": drifted,
                "verdict": "drifted" if drifted else ("no score" if note else "no drift"),
                "note": _text(note, ""),
                "n_reference": _num(result.get("n_reference")),
                "n_current": _num(result.get("n_current")),
            }
        )
    rows.sort(key=lambda row: not row["drifted"])  # stable: drifted first, else as given
    verdicts = {row["feature"]: row["drifted"] for row in rows}
    distributions: Mapping[str, Mapping[str, Any]] = drift.get("distributions") or {}
    order = [r["feature"] for r in rows if r["feature"] in distributions]
    order += [name for name in distributions if name not in verdicts]
    charts = [
        _distribution_chart(name, distributions[name], verdicts.get(name, False)) for name in order
    ]
    n_drifted = sum(row["drifted"] for row in rows)
    return {
        "available": True,
        "drifted": bool(drift.get("drifted")),
        "share_drifted": _pct(drift.get("share_drifted")),
        "drift_share": _pct(drift.get("drift_share")),
        "n_drifted": n_drifted,
        "n_features": len(rows),
        "rows": rows,
        "charts": charts,
        "status": "bad" if drift.get("drifted") else ("warn" if n_drifted else "ok"),
    }


def _quality_section(
    quality: Mapping[str, Any] | None, reasons: Mapping[str, Any]
) -> dict[str, Any]:
    if quality is None:
        return _unavailable("quality", reasons, "no data-quality check for this window")
    faults = [
        {
            "check": _text(f.get("check")),
            "column": _text(f.get("column")),
            "count": _num(f.get("count")),
            "examples": ", ".join(str(e) for e in f.get("examples") or []),
        }
        for f in quality.get("faults") or []
    ]
    return {
        "available": True,
        "rows": _num(quality.get("rows")),
        "score": _num(quality.get("quality_score")),
        "breakdown": [(str(k), _num(v)) for k, v in (quality.get("breakdown") or {}).items()],
        "completeness": [
            (str(k), _pct(v, 2)) for k, v in (quality.get("completeness") or {}).items()
        ],
        "alert_metrics": [
            (str(k), _pct(v, 2)) for k, v in (quality.get("alert_metrics") or {}).items()
        ],
        "faults": faults,
        "status": "warn" if faults else "ok",
    }


def _performance_card(card: Mapping[str, Any] | None, label: str, missing: str) -> dict[str, Any]:
    if card is None:
        return {"label": label, "available": False, "reason": missing}
    degraded = card.get("degraded")
    return {
        "label": label,
        "available": True,
        "metric": _text(card.get("metric")),
        "value": _num(card.get("value")),
        "interval": f"[{_num(card.get('lower'))}, {_num(card.get('upper'))}]",
        "n": _num(card.get("n")),
        "method": _text(card.get("method")),
        "baseline": _num(card.get("baseline")),
        "degraded": degraded,
        "status": "bad" if degraded else ("ok" if degraded is False else "na"),
        "verdict": "degraded" if degraded else ("ok" if degraded is False else "unknown"),
    }


def _performance_section(
    performance: Mapping[str, Any] | None, reasons: Mapping[str, Any]
) -> dict[str, Any]:
    if performance is None:
        return _unavailable("performance", reasons, "no performance figures for this window")
    pending = performance.get("labels_pending")
    waiting = (
        f"no labelled predictions yet ({_num(pending)} await labels)"
        if pending
        else "no labelled predictions in this window"
    )
    cards = [
        _performance_card(performance.get("realised"), "realised", waiting),
        _performance_card(
            performance.get("estimated"), "estimated", "no estimate (needs model confidences)"
        ),
    ]
    change_points = performance.get("change_points")
    if any(c.get("degraded") for c in cards):
        status = "bad"
    else:
        status = "ok" if any(c["available"] for c in cards) else "na"
    return {
        "available": True,
        "cards": cards,
        "change_points": _num(change_points) if change_points is not None else None,
        "detector": _text(performance.get("detector")),
        "labels_pending": _num(pending if pending is not None else 0),
        "status": status,
    }


def _system_section(system: Mapping[str, Any] | None, reasons: Mapping[str, Any]) -> dict[str, Any]:
    if system is None:
        return _unavailable("system", reasons, "no latency or system metrics for this window")
    latency: Mapping[str, Any] = system.get("latency_ms") or {}
    figures = [
        *((f"latency {q}", f"{_num(latency.get(q))} ms") for q in ("p50", "p95", "p99")),
        ("throughput", f"{_num(system.get('throughput_rps'))} req/s"),
        ("error rate", _pct(system.get("error_rate"), 2)),
        ("CPU", f"{_num(system.get('cpu_percent'), 3)} %"),
        ("memory", f"{_num(system.get('memory_mb'), 4)} MB"),
    ]
    return {"available": True, "figures": figures}


def _alerts_section(
    alerts: Sequence[Mapping[str, Any]] | None, reasons: Mapping[str, Any]
) -> dict[str, Any]:
    if alerts is None:
        return _unavailable("alerts", reasons, "alert state was not read for this window")
    rows = [
        {
            "name": _text(a.get("name")),
            "severity": _text(a.get("severity")),
            "status": _text(a.get("status")),
            "first_seen": _text(a.get("first_seen")),
            "summary": _text(a.get("summary"), ""),
        }
        for a in alerts
    ]
    firing = sum(row["status"] == "firing" for row in rows)
    return {"available": True, "rows": rows, "firing": firing, "status": "bad" if firing else "ok"}


def _summary(context: Mapping[str, Any]) -> list[dict[str, str]]:
    """The badges at the top of the page: one per section, "n/a" when it is not available."""

    def badge(label: str, section: Mapping[str, Any], text: str) -> dict[str, str]:
        if not section["available"]:
            return {"label": label, "text": "not available", "status": "na"}
        return {"label": label, "text": text, "status": str(section.get("status", "ok"))}

    drift, prediction = context["drift"], context["prediction_drift"]
    quality, performance, alerts = context["quality"], context["performance"], context["alerts"]
    perf_text = ""
    if performance["available"]:
        shown = [c for c in performance["cards"] if c["available"]]
        perf_text = ", ".join(f"{c['label']} {c['metric']} {c['value']}" for c in shown)
    return [
        badge(
            "data drift",
            drift,
            f"{drift.get('n_drifted')} of {drift.get('n_features')} features drifted",
        ),
        badge(
            "prediction drift", prediction, "drifted" if prediction.get("n_drifted") else "no drift"
        ),
        badge(
            "data quality",
            quality,
            f"score {quality.get('score')}, {len(quality.get('faults', []))} faults",
        ),
        badge("performance", performance, perf_text or "no figures yet"),
        badge("alerts", alerts, f"{alerts.get('firing')} firing"),
    ]


def build_report_context(report: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the template draws, formatted: sections, chart geometry, badges.

    A section given as ``None`` becomes ``{"available": False, "reason": ...}``; the reason
    comes from the optional ``report["unavailable"][section]`` or a generic line.
    """
    if not isinstance(report, Mapping):
        raise InputError(f"the report must be a mapping (dict), not {type(report).__name__}")
    reasons: Mapping[str, Any] = report.get("unavailable") or {}
    window: Mapping[str, Any] = report.get("window") or {}
    predictions = report.get("predictions")
    context: dict[str, Any] = {
        "title": _text(report.get("title"), "Titans monitoring report"),
        "generated_at": _text(report.get("generated_at")),
        "model": _text(report.get("model")),
        "version": _text(report.get("version"), "unversioned"),
        "window": {
            "start": _text(window.get("start")),
            "end": _text(window.get("end")),
            "label": _text(window.get("label"), ""),
        },
        "predictions": _num(predictions if predictions is not None else 0),
        "drift": _drift_section(report.get("drift"), "drift", reasons),
        "prediction_drift": _drift_section(
            report.get("prediction_drift"), "prediction_drift", reasons
        ),
        "quality": _quality_section(report.get("quality"), reasons),
        "performance": _performance_section(report.get("performance"), reasons),
        "system": _system_section(report.get("system"), reasons),
        "alerts": _alerts_section(report.get("alerts"), reasons),
        "history": _history_charts(report.get("history")),
        "notes": [str(n) for n in report.get("notes") or []],
    }
    context["summary"] = _summary(context)
    return context


# ----------------------------------------------------------------------------- rendering


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("titans.monitoring", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(TEMPLATE_NAME)


def render_report(report: Mapping[str, Any]) -> str:
    """The report (the dict ModelMonitor builds) as one self-contained HTML page."""
    return _template().render(r=build_report_context(report))


def write_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Render the report and write it to ``path`` (parents created); returns the path."""
    target = Path(path)
    html = render_report(report)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"cannot write the report to {target} ({exc}); pick a writable path"
        ) from exc
    return target
