"""The HTTP floor of the serving benchmark: a bare FastAPI app, one POST route, a constant answer.

It runs under uvicorn exactly as `titans serve` runs the prediction API (``uvicorn.run`` with the
default loop and HTTP implementation, one process, no access log), so what it sustains is the
most any FastAPI endpoint can on this machine: parsing nothing, computing nothing.

Usage: python benchmarks/floor_app.py --port PORT [--host 127.0.0.1] [--log-level warning]
"""

from __future__ import annotations

import argparse
from typing import Any

from fastapi import FastAPI

#: what every request gets back (the size of a one-row category answer, roughly)
CONSTANT: dict[str, Any] = {
    "prediction": "software",
    "probability": 0.9,
    "top_classes": [{"category": "software", "probability": 0.9}],
}

app = FastAPI(title="HTTP floor")


@app.post("/predict/category")
async def predict_category() -> dict[str, Any]:
    """The constant answer, whatever was posted (the body is not read; no thread pool hop)."""
    return CONSTANT


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    # the same call titans.cli.serve makes: uvicorn.run(app, host, port, log_level, access_log)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
