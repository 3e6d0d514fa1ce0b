"""Dependencies shared by the routes: the service, readiness, and the two keys."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from pydantic import SecretStr

from app.service import Service

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_ready_service(service: Annotated[Service, Depends(get_service)]) -> Service:
    if not service.ready.is_set():
        detail = (
            f"The model failed to load: {service.load_error}"
            if service.load_error
            else "The model is still loading; retry shortly."
        )
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=detail)
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
ReadyService = Annotated[Service, Depends(get_ready_service)]


def _check_bearer(request: Request, key: SecretStr, what: str) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"{what} needs an 'Authorization: Bearer <key>' header.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(token.strip().encode(), key.get_secret_value().encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"The key for {what} is wrong.")


def require_admin(request: Request, service: ServiceDep) -> None:
    """Tuning and activation: the admin key when set, else loopback clients only."""
    key = service.settings.admin_key
    if key is not None:
        _check_bearer(request, key, "this admin operation")
        return
    host = request.client.host if request.client else ""
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="Admin operations are open only to clients on loopback while "
            "LABELCUT_ADMIN_KEY is not set; set it and send 'Authorization: Bearer <key>'.",
        )


def require_api_key(request: Request, service: ServiceDep) -> None:
    """/predict: the API key when LABELCUT_API_KEY is set, else open."""
    key = service.settings.api_key
    if key is not None:
        _check_bearer(request, key, "/predict")
