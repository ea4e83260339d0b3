"""Generator benchmark: wall time, rows/s and peak RSS of `titans.data.synth.generate`.

Each measurement runs in a fresh child process, so the peak RSS is the generator's own (plus the
interpreter and imports, reported separately) and the time includes building the catalogue once,
as a user's first call does. Time covers `generate(...)` only, not imports.

Usage: python benchmarks/bench_generator.py [ROWS] [--seed S]   (prints one JSON object)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _child(rows: int, seed: int) -> dict:
    from titans.data.synth import generate

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    frame = generate(rows, seed=seed)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "rows": len(frame),
        "seconds": round(seconds, 2),
        "rows_per_s": round(len(frame) / seconds),
        "peak_rss_mb": round(peak / 1024, 1),
        "rss_after_imports_mb": round(rss_before / 1024, 1),
        "frame_mb": round(frame.memory_usage(deep=True).sum() / 2**20, 1),
    }


def run(rows: int = 1_000_000, seed: int = 7) -> dict:
    """Generate `rows` rows in a fresh process; return rows, seconds, rows_per_s, peak RSS MB."""
    argv = [sys.executable, __file__, str(rows), "--seed", str(seed), "--child"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"generator benchmark failed: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout)
    result["command"] = f"python benchmarks/bench_generator.py {rows} --seed {seed}"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    result = _child(args.rows, args.seed) if args.child else run(args.rows, args.seed)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
