"""`make bench`: every comparison side by side in one run → docs/benchmarks.md and .json.

Usage: python benchmarks/run_benchmarks.py [--quick] [--only NAME ...]
--quick runs reduced sizes (a smoke check CI may run: it asserts completion and valid JSON,
never a timing).
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    bench_drift,
    bench_generator,
    bench_model_targets,
    bench_serving,
    bench_training,
)


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
    rows = []
    for mode in ("ci",) if quick else ("ci", "full"):
        r = bench_training.run(mode)
        goal, met = (
            ("≤ 90 s (issue 3)", r["seconds"] <= 90)
            if mode == "ci"
            else ("fits 2 cores / 24 GB; time and peak memory recorded", r["peak_rss_mb"] < 24_000)
        )
        rows.append(
            {
                "benchmark": "training",
                "measure": f"`--mode {mode}`: train + log + register all four on {r['rows']:,} rows"
                " (s)",
                "ours": r["seconds"],
                "anchor": None,
                "ratio": None,
                "goal": goal,
                "met": met,
                "details": r,
                "command": r["command"],
            }
        )
    return rows


def _model_targets(quick: bool) -> list[dict[str, Any]]:
    rows = 20_000 if quick else 200_000
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


def _serving(quick: bool) -> list[dict[str, Any]]:
    seconds, connections = (3, (16,)) if quick else (20, (16, 64))
    r = bench_serving.run(seconds=seconds, connections=connections)
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
    # --quick: 100k rows, and Evidently only when its venv already exists (no install in CI)
    rows = 100_000 if quick else 1_000_000
    r = bench_drift.run(rows=rows, install=not quick)
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


BENCHMARKS: dict[str, Callable[[bool], list[dict[str, Any]]]] = {
    "generator": _generator,
    "model targets": _model_targets,
    "training": _training,
    "serving": _serving,
    "drift": _drift,
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
    for name in args.only or BENCHMARKS:
        print(f"== {name}", flush=True)
        try:
            results[name] = BENCHMARKS[name](args.quick)
        except Exception as exc:  # a failed comparison is reported, the others still run
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(results[name], indent=1)[:2000], flush=True)
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
        "sections": {**kept_sections, **{name: made for name in results}},
    }
    (out / f"benchmarks{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"benchmarks{suffix}.md").write_text(render_markdown(report) + "\n")
    failed = [n for n, r in results.items() if isinstance(r, dict) and "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
