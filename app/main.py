"""create_app(): the FastAPI application, its routers and middleware."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from app.config import Settings, get_settings
from app.lifespan import lifespan
from app.limits import BodySizeLimitMiddleware
from app.routes import health, model, predict, thresholds

DESCRIPTION = """
Serves a multi-label PyTorch classifier and tunes one decision threshold per
label from each label's precision-recall curve. A label is predicted iff
`score >= threshold`.
"""


def create_app(
    settings: Settings | None = None, *, on_load_error: Callable[[], None] | None = None
) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="labelcut",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.on_load_error = on_load_error
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    for router in (health.router, model.router, predict.router, thresholds.router):
        app.include_router(router)
    return app
