"""Training benchmark: `titans train --mode ci|full` wall time and peak RSS of the child process.

Runs the real CLI in a child process against a throw-away TITANS_HOME, so the figure is what a
user sees, including MLflow logging and registration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(
    mode: str = "full", seed: int = 7, rows: int | None = None, models: str | None = None
) -> dict:
    """Run `titans train --mode MODE` (ci: Settings.ci_rows, full: Settings.full_rows), or on
    ``rows`` generated rows (``--generate``) when given."""
    from titans.config import Settings

    generate = rows
    if rows is None:
        rows = Settings().ci_rows if mode == "ci" else Settings().full_rows
    titans_bin = Path(sys.executable).with_name("titans")
    with tempfile.TemporaryDirectory(prefix="titans-bench-train-") as home:
        env = {**os.environ, "TITANS_HOME": home}
        env.pop("TITANS_TRACKING_URI", None)
        argv = [str(titans_bin), "train", "--mode", mode, "--seed", str(seed)]
        if generate is not None:
            argv += ["--generate", str(generate)]
        if models is not None:
            argv += ["--models", models]
        # A fresh intermediate process, so RUSAGE_CHILDREN covers only this training run
        # (this process's own children include earlier benchmarks).
        probe = (
            "import json, resource, subprocess, sys; "
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "sys.stderr.write(p.stderr); "
            "print(json.dumps([p.returncode, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))"
        )
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", probe, *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        seconds = time.perf_counter() - started
        returncode, peak_kb = json.loads(proc.stdout.strip().splitlines()[-1])
    if returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr[-2000:]}")
    return {
        "rows": rows,
        "models": models or "all",
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "command": " ".join(["titans", *argv[1:]]),
    }


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "full"), indent=2))
