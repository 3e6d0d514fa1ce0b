"""HTTP answers for the threshold store's failures, for every route: `install_store_errors`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from labelcut.app.store import SetIsActive, StoreUnavailable

RETRY_AFTER_S = 5


async def store_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """503: the database cannot be reached; nothing was written, predictions go on."""
    return JSONResponse(
        status_code=503,
        content={
            "detail": f"{exc} Nothing was changed. Predictions keep using the last active "
            "threshold set; retry once /readyz answers 200."
        },
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def set_is_active(_request: Request, exc: Exception) -> JSONResponse:
    """409: archiving the active set."""
    return JSONResponse(status_code=409, content={"detail": str(exc)})


def install_store_errors(app: FastAPI) -> None:
    """Map StoreUnavailable to 503 (with Retry-After) and SetIsActive to 409."""
    app.add_exception_handler(StoreUnavailable, store_unavailable)
    app.add_exception_handler(SetIsActive, set_is_active)
