"""Dependencies shared by the routes: the service, readiness, and the two keys."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPBearer
from pydantic import SecretStr

from labelcut.app.service import Service


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.0.0.1, dual-stack).

    Anything that is not an IP address (a unix socket, a test client's name) is not.
    """
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


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


# Declared so /docs and OpenAPI clients see the keys; the checks themselves are below
# (auto_error=False: these only document, and return None when the header is absent).
admin_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminKey",
    description="LABELCUT_ADMIN_KEY. When it is set, tuning and activation need it; "
    "when it is not, they answer loopback clients only.",
)
api_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="LABELCUT_API_KEY. When it is set, /predict needs it.",
)


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
    if not is_loopback(request.client.host if request.client else None):
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
