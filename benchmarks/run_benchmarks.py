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

from benchmarks import bench_generator, bench_model_targets, bench_training  # noqa: E402


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


BENCHMARKS: dict[str, Callable[[bool], list[dict[str, Any]]]] = {
    "generator": _generator,
    "model targets": _model_targets,
    "training": _training,
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
    for name in report["results"]:
        rows = report["results"][name]
        lines += [f"## {name}", ""]
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
    report = {
        "command": "make bench" + (" QUICK=1" if args.quick else ""),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "seconds": time.perf_counter() - started,
        "machine": machine(),
        "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (out / f"benchmarks{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"benchmarks{suffix}.md").write_text(render_markdown(report) + "\n")
    failed = [n for n, r in results.items() if isinstance(r, dict) and "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
