"""Training benchmark: `titans train --mode full` (1,000,000 generated rows) wall time and peak RSS.

Runs the real CLI in a child process against a throw-away TITANS_HOME, so the figure is what a
user sees, including MLflow logging and registration.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(rows: int = 1_000_000, seed: int = 7) -> dict:
    titans_bin = Path(sys.executable).with_name("titans")
    with tempfile.TemporaryDirectory(prefix="titans-bench-train-") as home:
        env = {**os.environ, "TITANS_HOME": home}
        env.pop("TITANS_TRACKING_URI", None)
        argv = [str(titans_bin), "train", "--generate", str(rows), "--seed", str(seed)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
        seconds = time.perf_counter() - started
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr[-2000:]}")
    return {
        "rows": rows,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(max(peak_kb, before) / 1024, 1),
        "command": f"titans train --generate {rows} --seed {seed}",
    }


if __name__ == "__main__":
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print(json.dumps(run(rows), indent=2))
