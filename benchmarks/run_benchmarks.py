"""`make bench`: every comparison side by side in one run → docs/benchmarks.md and .json.

Usage: python benchmarks/run_benchmarks.py [--quick] [--only NAME ...]
--quick runs reduced sizes (a smoke check CI may run: it asserts completion and valid JSON,
never a timing); its timing rows say "n/a" and it neither installs nor runs Evidently.

Sections, in this order: generator, model targets, training (ci, full: time and peak memory),
serving (ours vs mlflow models serve vs the bare-FastAPI floor), drift (vs Evidently, raw and
against a stored profile), onnx (vs the source model), prediction log (SQLite, Postgres at
TITANS_BENCH_POSTGRES_URL in a throw-away schema), monitoring overhead (log + metrics on vs
off), retrain (end to end). Serving and monitoring serve one promoted category model, trained
once per run. Each section's wall time is recorded beside its rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    bench_drift,
    bench_generator,
    bench_model_targets,
    bench_monitoring,
    bench_onnx,
    bench_prediction_log,
    bench_retrain,
    bench_serving,
    bench_training,
)

#: the Postgres the prediction-log benchmark writes to (a fresh schema, dropped afterwards)
POSTGRES_URL = os.environ.get(
    "TITANS_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
#: predictions/s the prediction log must sustain into each store (> 3× one API process's req/s)
GOAL_LOG_RECORDS_PER_S = 5_000


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _generator(quick: bool) -> list[dict[str, Any]]:
    rows = 100_000 if quick else 1_000_000
    r = bench_generator.run(rows=rows)
    return [
        {
            "benchmark": "generator",
            "measure": f"rows/s generating {rows:,} rows",
            "ours": r["rows_per_s"],
            "anchor": None,
            "ratio": None,
            "goal": "1,000,000 rows in ≤ 15 s",
            "met": r["seconds"] <= 15 if rows == 1_000_000 else None,
            "details": r,
            "command": f"python benchmarks/bench_generator.py {rows}",
        }
    ]


def _training(quick: bool) -> list[dict[str, Any]]:
    if quick:  # a smoke check of the command: the category model on 3,000 rows, no goal
        smoke = bench_training.run("ci", rows=3_000, models="category")
        runs = [("ci", smoke, "smoke check (no goal)", None)]
    else:
        ci, full = bench_training.run("ci"), bench_training.run("full")
        runs = [
            ("ci", ci, "≤ 90 s (issue 3)", ci["seconds"] <= 90),
            ("full", full, "recorded (the issue sets no time goal)", None),
        ]
    rows = []
    for mode, r, goal, met in runs:
        rows.append(
            {
                "benchmark": "training",
                "measure": f"`--mode {mode}`: train + log + register "
                f"{'all four' if r['models'] == 'all' else r['models']} on {r['rows']:,} rows (s)",
                "ours": r["seconds"],
                "anchor": None,
                "ratio": None,
                "goal": goal,
                "met": met,
                "details": r,
                "command": r["command"],
            }
        )
        if mode == "full":
            rows.append(
                {
                    "benchmark": "training",
                    "measure": f"`--mode {mode}`: peak memory (RSS MB) of the training process",
                    "ours": r["peak_rss_mb"],
                    "anchor": None,
                    "ratio": None,
                    "goal": "fits the machine: < 24,000 MB",
                    "met": r["peak_rss_mb"] < 24_000,
                    "details": r,
                    "command": r["command"],
                }
            )
    return rows


def _model_targets(quick: bool) -> list[dict[str, Any]]:
    rows = 5_000 if quick else 200_000
    return [
        {
            "benchmark": "model targets",
            "measure": f"{r['model']}: {r['metric']} on generate({rows:,}, seed=7), last period",
            "ours": r["score"],
            "anchor": r["baseline"],
            "ratio": r["relative_to_baseline"],
            "goal": r["goal"] + " (anchor = the trivial baseline)",
            "met": r["met"] if rows == 200_000 else None,
            "details": r,
            "command": f"python benchmarks/bench_model_targets.py {rows}",
        }
        for r in bench_model_targets.run(rows)
    ]


#: what the run keeps until it ends (the category model serving and monitoring share)
_KEPT = ExitStack()
_MODELS: dict[bool, bench_serving.PromotedModel] = {}


def _category_model(quick: bool) -> bench_serving.PromotedModel:
    """The promoted category model the serving and monitoring benchmarks serve (made once)."""
    if quick not in _MODELS:
        rows = 1_500 if quick else None  # ci_rows
        _MODELS[quick] = _KEPT.enter_context(bench_serving.promoted_model(rows))
    return _MODELS[quick]


def _serving(quick: bool) -> list[dict[str, Any]]:
    seconds, connections = (3, (16,)) if quick else (10, (16, 64))
    r = bench_serving.run(
        seconds=seconds,
        connections=connections,
        model=_category_model(quick),
        start_together=quick,  # --quick: no timing is judged, the servers start at once
    )
    rows = []
    for q in r["ratios"]:
        at_goal = q["connections"] == bench_serving.GOAL_CONNECTIONS
        flag = " — flagged: errors" if q["flagged"] else ""
        rows.append(
            {
                "benchmark": "serving",
                "measure": f"{q['measure']}, {q['connections']} connections"
                f" (anchor = {q['anchor_server']}){flag}",
                "ours": q["ours"],
                "anchor": q["anchor"],
                "ratio": q["ratio"],
                "goal": q["goal"] + ("" if at_goal else " (goal set at 16; for reference)"),
                "met": q["met"] if not quick and at_goal else None,
                "details": {k: q[k] for k in ("connections", "ours", "anchor", "flagged")},
                "command": r["command"],
            }
        )
    if rows:  # the whole result once, with the per-server table
        rows[0]["details"] = r
        rows[0]["markdown"] = bench_serving.markdown(r)
    return rows


def _drift(quick: bool) -> list[dict[str, Any]]:
    # --quick: 100k rows, ours only (Evidently is neither installed nor run: CI's smoke check)
    rows = 100_000 if quick else 1_000_000
    r = bench_drift.run(rows=rows, install=not quick, with_evidently=not quick)
    full = rows == 1_000_000
    anchor = r["evidently_seconds"]
    speedup = round(anchor / r["ours_seconds"], 1) if anchor else None
    profile_speedup = round(anchor / r["profile_seconds"], 1) if anchor else None
    verdicts = r["verdicts_agree"]
    unavailable = "" if anchor else f" — Evidently unavailable: {r['evidently']['unavailable']}"
    rows_out = [
        {
            "benchmark": "drift",
            "measure": f"all {r['columns']} columns, {rows:,} reference × {rows:,} current rows, "
            f"raw reference (s; anchor = Evidently DataDriftPreset, ratio = anchor / ours)"
            f"{unavailable}",
            "ours": r["ours_seconds"],
            "anchor": anchor,
            "ratio": speedup,
            "goal": f"≥ {bench_drift.GOAL_SPEEDUP:g}× faster with the same per-column verdicts"
            f" (verdicts agree: {verdicts})",
            "met": (
                bool(speedup >= bench_drift.GOAL_SPEEDUP and verdicts and r["same_tests"])
                if full and speedup
                else None
            ),
            "details": r,
            "command": r["command"],
            "markdown": bench_drift.markdown(r),
        },
        {
            "benchmark": "drift",
            "measure": f"same job against the stored reference profile (s; ratio = anchor / ours)"
            f"{unavailable}",
            "ours": r["profile_seconds"],
            "anchor": anchor,
            "ratio": profile_speedup,
            "goal": f"≤ {bench_drift.GOAL_PROFILE_SECONDS:g} s"
            f" (verdicts agree with Evidently: {r['profile_verdicts_agree']})",
            "met": r["profile_seconds"] <= bench_drift.GOAL_PROFILE_SECONDS if full else None,
            "details": {
                k: r[k]
                for k in (
                    "profile_seconds",
                    "profile_runs",
                    "profile_build_seconds",
                    "profile_verdicts_agree",
                )
            },
            "command": r["command"],
        },
    ]
    return rows_out


def _retrain(quick: bool) -> list[dict[str, Any]]:
    # the challenger must beat the champion (the policy auto-approves improvements only): a
    # champion on 1,500 rows, the challenger on more. --quick: the 1,500-row model serving and
    # monitoring served (this runs after them), challenger on 6,000 rows; full: a champion of
    # its own, challenger on ci_rows.
    if quick:
        r = bench_retrain.run(rows=6_000, model=_category_model(quick))
    else:
        r = bench_retrain.run(rows=None, champion_rows=1_500)
    return [
        {
            "benchmark": "retrain",
            "measure": f"retrain end to end: trigger_retraining on {r['rows']:,} rows, trigger → "
            "challenger registered, validated, approved, staged, A/B started (s; anchor = the "
            "chain's own training step)",
            "ours": r["seconds"],
            "anchor": r["retrain_step_seconds"],
            "ratio": r["ratio_to_training"],
            "goal": "completes with the challenger in staging and production untouched "
            "(the issue sets no time goal)",
            "met": bool(r["challenger_staged"]),
            "details": r,
            "command": r["command"],
        }
    ]


def _agreement(m: dict[str, Any]) -> str:
    """How the ONNX version agrees with its source, in one short phrase."""
    a = m["agreement"]
    labels = a.get("label_agreement")
    same = f"labels agree on {labels:.1%} of " if labels is not None else ""
    return (
        f"{same}{a['rows']:,} holdout rows, {a['column']} within {a['max_rel_diff']:.1e} "
        f"(relative); {m['metric']} {m['source_metric']:.4g} → {m['onnx_metric']:.4g}"
    )


def _onnx(quick: bool) -> list[dict[str, Any]]:
    r = bench_onnx.run(quick=quick, models=("category",) if quick else bench_onnx.MODELS)
    rows: list[dict[str, Any]] = []
    for model, m in r["models"].items():
        common = {"benchmark": "onnx", "command": r["command"]}
        latency = m["single_row_p50_ratio"]
        rows.append(
            {
                **common,
                "measure": f"{model}: single-row p50 on the serving path (µs; ours = ONNX via "
                f"{m['onnx']['single_row_path']}, anchor = source via "
                f"{m['source']['single_row_path']})",
                "ours": m["onnx"]["single_row_p50_us"],
                "anchor": m["source"]["single_row_p50_us"],
                "ratio": latency,
                "goal": f"≤ 1 (ONNX no slower than its source); {_agreement(m)}",
                "met": None if quick else latency <= 1.0,
                "details": m,
            }
        )
        rows.append(
            {
                **common,
                "measure": f"{model}: model size on disk (bytes; ours = ONNX, {m['precision']}, "
                "anchor = source)",
                "ours": m["onnx"]["size_bytes"],
                "anchor": m["source"]["size_bytes"],
                "ratio": m["size_ratio"],
                "goal": "≤ 1 (ONNX no larger than its source)",
                "met": m["size_ratio"] <= 1.0,
                "details": {k: m[k] for k in ("source_uri", "onnx_uri", "size_ratio")},
            }
        )
    if rows:
        rows[0]["details"] = r
    return rows


def _prediction_log(quick: bool) -> list[dict[str, Any]]:
    records = 10_000 if quick else 50_000
    postgres: str | None = POSTGRES_URL
    unavailable = ""
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(POSTGRES_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # reported as unavailable, never as a figure
        postgres, unavailable = None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    r = bench_prediction_log.run(records=records, postgres_url=postgres)
    rows = []
    for backend in ("sqlite", "postgresql"):
        m = r.get(backend)
        rows.append(
            {
                "benchmark": "prediction log",
                "measure": f"{backend}: predictions/s PredictionLogWriter sustains ({records:,} "
                f"records, {r['producers']} producer threads, batches of {r['batch_size']})"
                + ("" if m else f" — unavailable: {unavailable}"),
                "ours": m["records_per_s"] if m else None,
                "anchor": None,
                "ratio": None,
                "goal": f"≥ {GOAL_LOG_RECORDS_PER_S:,}/s, every record written",
                "met": (
                    m["records_per_s"] >= GOAL_LOG_RECORDS_PER_S and m["written"] == m["records"]
                )
                if m and not quick
                else None,
                "details": m or {"unavailable": unavailable},
                "command": r["command"],
            }
        )
    return rows


def _monitoring(quick: bool) -> list[dict[str, Any]]:
    rounds, seconds = (1, 3) if quick else (3, 10)
    r = bench_monitoring.run(rounds=rounds, seconds=seconds, model=_category_model(quick))
    flag = " — flagged: errors" if r["on"]["flagged"] or r["off"]["flagged"] else ""
    loss_goal = (
        f"≥ {1 - bench_monitoring.GOAL_MAX_LOSS:g} (≤ {bench_monitoring.GOAL_MAX_LOSS:.0%} loss)"
    )
    return [
        {
            "benchmark": "monitoring overhead",
            "measure": f"req/s with prediction log + metrics on vs off, {r['connections']} "
            f"connections, {len(r['turns'])} alternating {r['seconds_per_turn']} s turns "
            f"(ratio = on / off; loss {r['loss']:.1%}){flag}",
            "ours": r["on"]["requests_per_s"],
            "anchor": r["off"]["requests_per_s"],
            "ratio": r["on_off_ratio"],
            "goal": loss_goal + ("" if r["check"]["complete"] else "; log check INCOMPLETE"),
            "met": None if quick else bool(r["met"] and r["check"]["complete"]),
            "details": r,
            "command": r["command"],
            "markdown": bench_monitoring.markdown(r),
        },
        {
            "benchmark": "monitoring overhead",
            "measure": "p99 ms with monitoring on vs off (median of the turns; ratio = on / off)",
            "ours": r["on"]["p99_ms_median"],
            "anchor": r["off"]["p99_ms_median"],
            "ratio": round(r["on"]["p99_ms_median"] / r["off"]["p99_ms_median"], 3)
            if r["off"]["p99_ms_median"]
            else None,
            "goal": "for reference (the goal is on req/s)",
            "met": None,
            "details": {"on": r["on"], "off": r["off"]},
            "command": r["command"],
        },
    ]


BENCHMARKS: dict[str, Callable[[bool], list[dict[str, Any]]]] = {
    "generator": _generator,
    "model targets": _model_targets,
    "training": _training,
    "serving": _serving,
    "drift": _drift,
    "onnx": _onnx,
    "prediction log": _prediction_log,
    "monitoring overhead": _monitoring,
    "retrain": _retrain,
}


def render_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Made by `{report['command']}` on {report['date']} "
        f"({'quick smoke run' if report['quick'] else 'full run'}, {report['seconds']:.0f} s).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}.",
        "The machine is shared and noisy: compare figures of the same run, quote ratios.",
        "",
    ]
    sections = report.get("sections", {})
    for name in report["results"]:
        rows = report["results"][name]
        lines += [f"## {name}", ""]
        made = sections.get(name)
        if made and made["date"] != report["date"]:  # kept from an earlier run (--only)
            mm = made["machine"]
            lines += [
                f"From an earlier run: `{made['command']}` on {made['date']} "
                f"({mm['cpu']}, {mm['cores']} cores); compare it with this section only.",
                "",
            ]
        if made and made.get("seconds") is not None:
            lines += [f"Section time: {made['seconds']:.0f} s.", ""]
        if isinstance(rows, dict) and "error" in rows:
            lines += [f"**Failed**: {rows['error']}", ""]
            continue
        lines += [
            "| measure | ours | anchor | ratio | goal | met | command |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            met = {True: "yes", False: "**no**", None: "n/a"}[r["met"]]
            lines.append(
                f"| {r['measure']} | {_fmt(r['ours'])} | {_fmt(r['anchor'])} | {_fmt(r['ratio'])} "
                f"| {r['goal']} | {met} | `{r['command']}` |"
            )
        lines.append("")
        for r in rows:  # a benchmark's own tables (e.g. serving's per-server runs)
            if r.get("markdown"):
                lines += [r["markdown"], ""]
        for r in rows:
            lines.append(f"- {r['measure']}: `{json.dumps(r['details'])}`")
        lines.append("")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced sizes (smoke check)")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these")
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where to write the results")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, Any] = {}
    section_seconds: dict[str, float] = {}
    with _KEPT:
        for name in args.only or BENCHMARKS:
            _section(name, args.quick, results, section_seconds)
    return _write(args, started, results, section_seconds)


def _section(
    name: str, quick: bool, results: dict[str, Any], section_seconds: dict[str, float]
) -> None:
    """Run one benchmark into ``results``; a failure is recorded, never raised."""
    print(f"== {name}", flush=True)
    t0 = time.perf_counter()
    try:
        results[name] = BENCHMARKS[name](quick)
    except Exception as exc:  # a failed comparison is reported, the others still run
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    section_seconds[name] = round(time.perf_counter() - t0, 1)
    print(json.dumps(results[name], indent=1)[:2000], flush=True)
    print(f"== {name}: {section_seconds[name]} s", flush=True)


def _write(
    args: argparse.Namespace,
    started: float,
    results: dict[str, Any],
    section_seconds: dict[str, float],
) -> int:
    """docs/benchmarks[-quick].{json,md}; 1 when a benchmark failed."""
    command = "make bench" + (" QUICK=1" if args.quick else "")
    if args.only:
        command = f"python benchmarks/run_benchmarks.py{' --quick' if args.quick else ''} " + (
            "--only " + " ".join(f"'{n}'" if " " in n else n for n in args.only)
        )
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    made = {"command": command, "date": date, "machine": machine()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    previous = out / f"benchmarks{suffix}.json"
    kept: dict[str, Any] = {}
    kept_sections: dict[str, Any] = {}
    if args.only and previous.is_file():  # keep the other benchmarks' last results
        old = json.loads(previous.read_text())
        old_sections = old.get("sections") or {
            name: {"command": old["command"], "date": old["date"], "machine": old["machine"]}
            for name in old.get("results", {})
        }
        kept = {k: v for k, v in old.get("results", {}).items() if k not in results}
        kept_sections = {k: old_sections[k] for k in kept if k in old_sections}
    report = {
        "command": command,
        "date": date,
        "quick": args.quick,
        "seconds": time.perf_counter() - started,
        "machine": made["machine"],
        "results": {name: (results | kept)[name] for name in BENCHMARKS if name in results | kept},
        "sections": {
            **kept_sections,
            **{name: {**made, "seconds": section_seconds[name]} for name in results},
        },
    }
    (out / f"benchmarks{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"benchmarks{suffix}.md").write_text(render_markdown(report).rstrip("\n") + "\n")
    failed = [n for n, r in results.items() if isinstance(r, dict) and "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
