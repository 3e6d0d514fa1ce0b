"""create_app(): the FastAPI application, its routers and middleware."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from labelcut.app.config import Settings, get_settings
from labelcut.app.decisions import PolicyCache
from labelcut.app.deps import api_bearer
from labelcut.app.drift_monitor import DriftMonitor
from labelcut.app.jobs import with_jobs
from labelcut.app.lifespan import lifespan
from labelcut.app.limits import install_limits
from labelcut.app.metrics import Metrics, MetricsMiddleware
from labelcut.app.predict_schemas import PredictRequest
from labelcut.app.routes import (
    adapt,
    archive,
    drift,
    evaluate,
    health,
    jobs,
    metrics,
    model,
    predict,
    push,
    thresholds,
    ui,
)
from labelcut.app.store_errors import install_store_errors

DESCRIPTION = """
Serves a multi-label PyTorch classifier and tunes one decision threshold per
label from each label's precision-recall curve. A label is predicted iff
`score >= threshold`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    on_load_error: Callable[[], None] | None = None,
    freeze_gc: bool = False,
) -> FastAPI:
    """The app. `labelcut serve` passes `on_load_error` (stop the server) and
    `freeze_gc=True` (exempt start-up objects from the cyclic collector once loaded);
    tests that build many apps in one process leave both off."""
    settings = settings or get_settings()
    app = FastAPI(
        title="labelcut",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=with_jobs(lifespan),  # the tune jobs' runner inside the app's lifespan
    )
    app.state.settings = settings
    app.state.on_load_error = on_load_error
    app.state.freeze_gc = freeze_gc
    app.state.drift = _drift_monitor_for(app)
    app.state.policies = PolicyCache(app.state.drift)
    app.state.metrics = _metrics_for(app)
    install_limits(app, settings)
    install_store_errors(app)  # the store's failures answer 503/409 on every route
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    # /predict first: routes are matched in order, and it is the one under load.
    predict.register(app)
    for router in (
        health.router,
        model.router,
        thresholds.router,
        evaluate.router,
        push.router,
        archive.router,
        adapt.router,
        metrics.router,
        drift.router,
        jobs.router,
    ):
        app.include_router(router)
    app.include_router(ui.router)  # the web page: /ui, and / redirecting to it
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _metrics_for(app: FastAPI) -> Metrics:
    found = Metrics()

    def queue_depth() -> int:
        batcher = getattr(app.state, "batcher", None)
        return 0 if batcher is None else batcher.depth

    def active_set_id() -> int | None:
        service = getattr(app.state, "service", None)
        if service is None or not service.ready.is_set():
            return None
        return service.active.set_id

    found.add_gauges(queue_depth, active_set_id)
    found.add_drift_gauges(app.state.drift.report)
    return found


def _drift_monitor_for(app: FastAPI) -> DriftMonitor:
    """The drift window of the active set of `app`'s service (LABELCUT_DRIFT_WINDOW rows)."""

    def ready_service() -> Any:
        service = getattr(app.state, "service", None)
        return service if service is not None and service.ready.is_set() else None

    def active() -> Any:
        service = ready_service()
        return None if service is None else service.active

    def labels() -> list[str] | None:
        service = ready_service()
        return None if service is None else list(service.loaded_model.labels)

    return DriftMonitor(active, labels)


def _openapi(app: FastAPI) -> dict[str, Any]:
    # /predict decodes its body in a dependency (JSON or .npy), so FastAPI does not see
    # the PredictRequest model; add it to the components its request body refers to.
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["PredictRequest"] = PredictRequest.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        # Its optional key likewise: /predict's async key check does not declare a scheme.
        components.setdefault("securitySchemes", {})["ApiKey"] = api_bearer.model.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        app.openapi_schema = schema
    return app.openapi_schema
