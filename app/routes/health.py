"""Liveness and readiness."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from labelcut.app.deps import ServiceDep
from labelcut.app.schemas import Health

router = APIRouter(tags=["health"])


@router.get(
    "/healthz", response_model=Health, response_model_exclude_none=True, summary="The process is up"
)
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    response_model_exclude_none=True,
    summary="The model is loaded and warm (503 before)",
    responses={503: {"model": Health, "description": "Still loading, or the load failed."}},
)
def readyz(service: ServiceDep) -> Health | JSONResponse:
    if service.ready.is_set():
        return Health(status="ready")
    if service.load_error:
        body = Health(status="error", detail=service.load_error)
    else:
        body = Health(status="loading")
    return JSONResponse(status_code=503, content=body.model_dump())
