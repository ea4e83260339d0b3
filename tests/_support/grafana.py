"""The Grafana dashboards of deploy/grafana as data: panels and their PromQL, variables
substituted the way Grafana would with "All" selected."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
#: Grafana's built-in interval variables, at the values a 15 s scrape gives
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    def substituted(self, values: dict[str, str]) -> str:
        """The expression with every $variable replaced (KeyError for an unknown one)."""

        def replace(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            return values[name] if name in values else BUILTINS[name]

        return VARIABLE.sub(replace, self.expr)


def load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return board


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows excluded, nested row panels included)."""
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board.get("templating", {}).get("list", [])}


def all_values(board: dict[str, Any]) -> dict[str, str]:
    """Each query variable as Grafana sends it with "All" selected (its allValue regex)."""
    values = {}
    for name, variable in variables(board).items():
        if variable["type"] == "query":
            values[name] = variable["allValue"]
    return values


def queries() -> list[Query]:
    return [
        Query(board["uid"], panel["title"], target["refId"], target["expr"])
        for board in map(load, DASHBOARDS)
        for panel in panels(board)
        for target in panel["targets"]
    ]
