"""Liveness and readiness (model loaded and warm; threshold store reachable)."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from labelcut.app.deps import ServiceDep
from labelcut.app.schemas import Health

router = APIRouter(tags=["health"])


@router.get(
    "/healthz", response_model=Health, response_model_exclude_none=True, summary="The process is up"
)
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    response_model_exclude_none=True,
    summary="The model is loaded and warm and the threshold store answers (503 otherwise)",
    responses={
        503: {
            "model": Health,
            "description": "status 'loading', 'error' (the load failed) or "
            "'store_unreachable' (detail names the store, password masked, and the error).",
        }
    },
)
async def readyz(
    service: ServiceDep,
    store: Annotated[
        Literal["required", "optional"],
        Query(
            description="optional: ready while the model serves its last active set, even "
            "with the store unreachable (the answer's detail still says so)."
        ),
    ] = "required",
) -> Health | JSONResponse:
    # No I/O here: the store's health is what its last round trip (the watcher polls
    # several times a second) found, so readiness never waits on the database.
    if not service.ready.is_set():
        if service.load_error:
            body = Health(status="error", detail=service.load_error)
        elif service.store_error:
            body = Health(status="store_unreachable", detail=service.store_error)
        else:
            body = Health(status="loading")
        return JSONResponse(status_code=503, content=body.model_dump(exclude_none=True))
    problem = service.store_problem()
    if problem is None:
        return Health(status="ready")
    if store == "optional":
        return Health(status="ready", detail=problem)
    body = Health(status="store_unreachable", detail=problem)
    return JSONResponse(status_code=503, content=body.model_dump())
