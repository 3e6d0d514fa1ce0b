"""Dependencies shared by the routes: the service, readiness, the two keys, the loopback
rule, and the refusal of parameters a route does not declare."""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
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


# Headers a reverse proxy uses to name the client it forwards for. Any of them naming a
# client that is not loopback (or naming it in a way we cannot read) means "not loopback".
PROXY_HEADERS = (b"forwarded", b"x-forwarded-for", b"x-real-ip")
_FORWARDED_FOR = re.compile(r'(?i)(?:^|[;,\s])for\s*=\s*("[^"]*"|[^;,\s]*)')


def _forwarded_hosts(name: bytes, value: str) -> list[str]:
    """The client addresses one proxy header names, as written (ports and brackets removed).

    `Forwarded: for=192.0.2.1;proto=https, for="[2001:db8::1]:4711"` (RFC 7239),
    `X-Forwarded-For: 192.0.2.1, 10.0.0.1`, `X-Real-IP: 192.0.2.1`.
    """
    if name == b"forwarded":
        found = [m.group(1).strip('"') for m in _FORWARDED_FOR.finditer(value)]
        # A Forwarded header without any for= names no client: read it as unknown.
        items = found or [value]
    else:
        items = value.split(",")
    hosts = []
    for item in items:
        host = item.strip()
        if host.startswith("["):  # [v6] or [v6]:port
            host = host[1:].split("]", 1)[0]
        elif host.count(":") == 1:  # v4:port
            host = host.split(":", 1)[0]
        hosts.append(host)
    return hosts


def proxy_names_a_remote_client(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """True when any Forwarded / X-Forwarded-For / X-Real-IP header names a client that is
    not a loopback address ("unknown", obfuscated names and garbage count as remote)."""
    for raw_name, raw_value in headers:
        name = raw_name.lower()
        if name not in PROXY_HEADERS:
            continue
        value = raw_value.decode("latin-1")
        if not all(is_loopback(host) for host in _forwarded_hosts(name, value)):
            return True
    return False


def is_loopback_request(client_host: str | None, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """The loopback rule: the peer is on loopback and no proxy header names anyone else.

    uvicorn already replaces the peer with X-Forwarded-For's client when the proxy is
    trusted; the other two headers are checked here, and all three alike.
    """
    return is_loopback(client_host) and not proxy_names_a_remote_client(headers)


LOOPBACK_ONLY_DETAIL = (
    "Admin operations are open only to clients on loopback while LABELCUT_ADMIN_KEY is not "
    "set (a request a proxy forwards for another client is not on loopback); set it and send "
    "'Authorization: Bearer <key>'."
)


# The dependencies below are `async def` though they do no I/O: FastAPI runs a plain
# `def` dependency on the thread pool, and /readyz or a queued upload must not wait for a
# thread while uploads being spooled and tunes being judged hold them all (issue 14
# measured the hop on /predict; a CI run saw /readyz at 0.54 s behind 45 queued tunes).
# The plain functions are the rules, for callers that are not dependencies.


def service_of(request: Request) -> Service:
    return request.app.state.service


def ready_or_503(service: Service) -> Service:
    """`service` once its model is loaded; 503 while it loads or after its load failed."""
    if not service.ready.is_set():
        detail = (
            f"The model failed to load: {service.load_error}"
            if service.load_error
            else "The model is still loading; retry shortly."
        )
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=detail)
    return service


async def get_service(request: Request) -> Service:
    return service_of(request)


async def get_ready_service(service: Annotated[Service, Depends(get_service)]) -> Service:
    return ready_or_503(service)


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


def bearer_refusal(authorization: str, key: SecretStr, what: str) -> HTTPException | None:
    """The 401 (no bearer) or 403 (wrong key) for an `Authorization` header value, or None."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"{what} needs an 'Authorization: Bearer <key>' header.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(token.strip().encode(), key.get_secret_value().encode()):
        return HTTPException(status.HTTP_403_FORBIDDEN, detail=f"The key for {what} is wrong.")
    return None


def admin_refusal(
    key: SecretStr | None,
    client_host: str | None,
    headers: Iterable[tuple[bytes, bytes]],
) -> HTTPException | None:
    """Why an admin request is refused (the key when set, else the loopback rule), or None.

    One function for the dependency and for the middleware that runs it before the body.
    """
    headers = list(headers)
    if key is not None:
        authorization = next(
            (v.decode("latin-1") for n, v in headers if n.lower() == b"authorization"), ""
        )
        return bearer_refusal(authorization, key, "this admin operation")
    if not is_loopback_request(client_host, headers):
        return HTTPException(status.HTTP_403_FORBIDDEN, detail=LOOPBACK_ONLY_DETAIL)
    return None


def _check_bearer(request: Request, key: SecretStr, what: str) -> None:
    refusal = bearer_refusal(request.headers.get("authorization", ""), key, what)
    if refusal is not None:
        raise refusal


async def require_admin(request: Request, service: ServiceDep) -> None:
    """Tuning and activation: the admin key when set, else loopback clients only.

    `limits.AdminGuardMiddleware` applies the same rule before the body is read; this
    dependency keeps it in the OpenAPI schema and guards any app built without it.
    """
    client = request.client.host if request.client else None
    refusal = admin_refusal(service.settings.admin_key, client, request.scope.get("headers", []))
    if refusal is not None:
        raise refusal


def check_api_key(request: Request, service: Service) -> None:
    """/predict: the API key when LABELCUT_API_KEY is set (401 missing, 403 wrong), else open."""
    key = service.settings.api_key
    if key is not None:
        _check_bearer(request, key, "/predict")


# --- parameters a route does not declare -------------------------------------------------


def _declared(request: Request) -> tuple[set[str], set[str]]:
    """Names of the query parameters and body (form) fields the matched route declares,
    its dependencies' included (aliases as sent on the wire)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    query: set[str] = set()
    body: set[str] = set()
    stack = [dependant] if dependant is not None else []
    while stack:
        current = stack.pop()
        query.update(p.alias for p in current.query_params)
        body.update(p.alias for p in current.body_params)
        stack.extend(current.dependencies)
    return query, body


def _unknown_errors(where: str, sent: Iterable[str], declared: set[str]) -> list[dict[str, Any]]:
    takes = ", ".join(sorted(declared)) or "none"
    return [
        {
            "type": "extra_forbidden",
            "loc": [where, name],
            "msg": f"Unknown {'query parameter' if where == 'query' else 'form field'} "
            f"'{name}'; this endpoint takes: {takes}.",
            "input": name,
        }
        for name in dict.fromkeys(sent)
        if name not in declared
    ]


async def reject_unknown_parameters(request: Request) -> None:
    """422 naming every query parameter or form field the route does not declare.

    A router-level dependency: FastAPI has parsed the form by the time dependencies run
    (and caches it on the request), so reading it here costs nothing more.
    """
    query, body = _declared(request)
    errors = _unknown_errors("query", request.query_params.keys(), query)
    content_type = request.headers.get("content-type", "")
    if body and content_type.startswith(("multipart/form-data", "application/x-www-form")):
        form: Mapping[str, Any] = await request.form()
        errors += _unknown_errors("body", form.keys(), body)
    if errors:
        raise RequestValidationError(errors)
