"""``GET /ui/report``: the monitoring report of one model and window, as one HTML page.

The page is built on request from the prediction log (see ``titans.monitoring.report``); it is
self-contained (inline styles and SVG, no scripts), so it also works saved to disk.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from titans.errors import InputError, ModelNotFoundError
from titans.monitoring.model_monitor import ModelMonitor
from titans.serving.deps import AnyKey, SettingsDep, StoreDep
from titans.serving.schemas import ErrorResponse

router = APIRouter(prefix="/ui", tags=["ui"])

#: errors are JSON even though the page is HTML: spelled out, since a ``model`` here would be
#: documented under the route's text/html media type
_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {
        "description": "Error",
        "content": {"application/json": {"schema": ErrorResponse.model_json_schema()}},
    }
    for c in (401, 403, 404, 422)
}


def _monitor(request: Request, settings: SettingsDep, store: StoreDep) -> ModelMonitor:
    """One ModelMonitor per app, so each version's reference is loaded once."""
    monitor: ModelMonitor | None = getattr(request.app.state, "model_monitor", None)
    if monitor is None:
        monitor = ModelMonitor(settings, store=store)
        request.app.state.model_monitor = monitor
    return monitor


@router.get("/report", response_class=HTMLResponse, responses=_ERRORS)
def report(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    _: AnyKey,
    model: Annotated[
        str, Query(pattern=r"^(category|amount|anomaly)$", description="Model key.")
    ] = "category",
    window: Annotated[
        str,
        Query(
            pattern=r"^[1-9][0-9]{0,3}(s|m|h|d)$",
            description="Window ending now, e.g. 1h, 30m, 1d.",
        ),
    ] = "1h",
) -> HTMLResponse:
    """Drift per feature with its distributions, data quality, performance, latency, alerts."""
    from titans.monitoring.report import render_report

    monitor = _monitor(request, settings, store)
    try:
        data = monitor.build_report(model, window)
    except ModelNotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    except InputError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return HTMLResponse(render_report(data))
