"""Every guard that runs before a route reads its body, and the HTTP server's own limits.

* `BodySizeLimitMiddleware`: a declared `Content-Length` over the limit is answered 413
  before a byte is read; a body without one (chunked) is counted as it arrives and cut
  off at the limit, so an oversized upload is never held in memory or on disk in full.
* `AdminGuardMiddleware`: admin routes (those that require the admin key in OpenAPI)
  check the admin key, or the loopback rule, before the body is received.
* `server_options` / `GuardedHttpToolsProtocol`: the request line plus headers are capped
  (431) and must arrive within a time limit (408), a request body may not stall between
  two pieces (408), and idle keep-alive connections are closed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from labelcut.app.budget import TuneRunner
from labelcut.app.deps import admin_bearer, admin_refusal

if TYPE_CHECKING:
    import asyncio

    from fastapi import FastAPI

    from labelcut.app.config import Settings

log = logging.getLogger("labelcut")

ADMIN_SCHEME = admin_bearer.scheme_name  # "AdminKey" in the OpenAPI security schemes


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a streamed body passes the limit.

    An HTTPException on purpose: FastAPI turns any other exception raised while it
    reads a JSON or multipart body into "400 There was an error parsing the body",
    but re-raises HTTPExceptions, so the route's exception handling answers 413.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail=detail, headers={"connection": "close"})


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return (
            f"The request body is larger than the limit of {self.max_bytes / 2**20:g} MB "
            "(LABELCUT_MAX_UPLOAD_MB)."
        )

    async def _reject(self, send: Send) -> None:
        body = json.dumps({"detail": self._detail()}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                if declared is not None and declared > self.max_bytes:
                    await self._reject(send)
                    return
        if declared is not None:
            # The HTTP parser delivers exactly the declared length, which fits the limit:
            # no need to count (the hot path of /predict skips two wrappers).
            await self.app(scope, receive, send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self._detail())
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send)


async def send_json(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    """A whole JSON `{"detail": ...}` response that closes the connection (the request's
    body, if any, is left unread)."""
    body = json.dumps({"detail": detail}).encode()
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _template_regex(path: str) -> re.Pattern[str]:
    """`/thresholds/{set_id}/activate` -> a regex matching `/thresholds/7/activate`."""
    parts = ("[^/]+" if p.startswith("{") else re.escape(p) for p in path.split("/"))
    return re.compile("^" + "/".join(parts) + "$")


class AdminGuardMiddleware:
    """Refuse (401/403) a request to an admin route before its body is received.

    An admin route is any operation whose OpenAPI entry requires the admin key (what
    `Depends(admin_bearer)` declares, beside `require_admin`), so a new admin route is
    covered without a list here. Reads (GET/HEAD/OPTIONS) pass untouched; the answer
    for each (method, path) is cached.
    """

    _CACHE_SIZE = 4096

    def __init__(
        self, app: ASGIApp, settings: Settings, openapi: Callable[[], dict[str, Any]]
    ) -> None:
        self.app = app
        self.settings = settings
        self.openapi = openapi
        self._routes: list[tuple[set[str], re.Pattern[str]]] | None = None
        self._is_admin: dict[tuple[str, str], bool] = {}

    def _admin_routes(self) -> list[tuple[set[str], re.Pattern[str]]]:
        if self._routes is None:
            found = []
            try:
                paths = self.openapi().get("paths", {})
            except Exception:
                # Never turn a schema problem into a 500 on every POST: the routes'
                # own require_admin still guards them (after the body is read).
                log.exception("Cannot read the OpenAPI schema to find the admin routes")
                paths = {}
            for path, operations in paths.items():
                methods = {
                    method.upper()
                    for method, operation in operations.items()
                    if isinstance(operation, dict)
                    and any(ADMIN_SCHEME in need for need in operation.get("security", []))
                }
                if methods:
                    found.append((methods, _template_regex(path)))
            self._routes = found
        return self._routes

    def _admin(self, scope: Scope) -> bool:
        path = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        key = (scope["method"], path)
        found = self._is_admin.get(key)
        if found is None:
            found = any(
                key[0] in methods and regex.match(path) for methods, regex in self._admin_routes()
            )
            if len(self._is_admin) < self._CACHE_SIZE:
                self._is_admin[key] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in ("GET", "HEAD", "OPTIONS")
            and self._admin(scope)
        ):
            client = scope.get("client")
            refusal = admin_refusal(
                self.settings.admin_key, client[0] if client else None, scope["headers"]
            )
            if refusal is not None:
                await send_json(send, refusal.status_code, refusal.detail, refusal.headers or {})
                return
        await self.app(scope, receive, send)


def install_limits(app: FastAPI, settings: Settings) -> None:
    """Add the request-limit middleware to `app` (called once by `create_app`), and the
    tunes' memory budget and thread pool (`app.state.tune_runner`).

    One place for every guard that must run before a route reads its body, so `main.py`
    does not change with them. Added last means outermost: these run before metrics and
    routing; the body limit runs first, then the admin check.
    """
    app.state.tune_runner = TuneRunner(settings)
    app.add_middleware(AdminGuardMiddleware, settings=settings, openapi=lambda: app.openapi())
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)


# --- the HTTP server ---------------------------------------------------------------------


def _raw_response(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits it lacks: httptools has no header size
    limit (a 256 MB header line is gathered with repeated bytes concatenation, blocking
    the event loop for over a minute), and uvicorn has no read timeouts.

    * the request line plus headers may take `max_head` bytes (431 past them), counted
      as they arrive, so at most one read (256 KB) more is ever handed to the parser;
    * they must arrive within `head_timeout` seconds of the connection or of their
      first byte (408);
    * once the headers are in, the body may not stall for `body_timeout` seconds
      between two reads (408), except while the server itself has paused reading.

    The clocks are timestamps checked by one watchdog timer per connection (a tick every
    quarter of the shorter timeout), so a request costs no timer of its own. Subclassed
    per settings by `server_options` (the limits are class attributes).
    """

    max_head = 64 * 1024
    head_timeout = 10.0
    body_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # the next bytes belong to a request line or headers
        self._head_bytes = 0
        self._heads_done = 0
        self._head_since: float | None = None  # when the current head began
        self._in_body = False
        self._body_since = 0.0  # the last piece of body (or the headers' end)
        self._watchdog: asyncio.TimerHandle | None = None
        self._tick = min(self.head_timeout, self.body_timeout) / 4

    # --- the watchdog ---

    def _watch(self) -> None:
        self._watchdog = None
        if self.transport is None or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:
            # The server is not reading (the app is busy): not the client's fault.
            self._body_since = now
            if self._head_since is not None:
                self._head_since = now
        elif self._in_body and now - self._body_since > self.body_timeout:
            self._refuse(
                408,
                "Request Timeout",
                f"The request body stalled for {self.body_timeout:g} s between two pieces "
                "(LABELCUT_BODY_TIMEOUT_S).",
            )
            return
        elif (
            self._in_head
            and self._head_since is not None
            and now - self._head_since > self.head_timeout
            and (self.cycle is None or self.cycle.response_complete)
        ):
            self._refuse(
                408,
                "Request Timeout",
                f"The request line and headers did not arrive within {self.head_timeout:g} s "
                "(LABELCUT_HEADER_TIMEOUT_S).",
            )
            return
        self._watchdog = self.loop.call_later(self._tick, self._watch)

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            self.transport.write(_raw_response(status, reason, detail))
        log.info("Refused a request from %s: %s %s", self.client, status, detail)
        self.transport.close()

    # --- protocol and parser callbacks ---

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_since = self.loop.time()  # a connection that sends nothing times out
        self._watchdog = self.loop.call_later(self._tick, self._watch)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_since = None
        self._in_body = True
        self._body_since = self.loop.time()
        self._heads_done += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._head_since is None:
                self._head_since = self.loop.time()
            room = self.max_head - self._head_bytes
            if len(data) > room:
                heads_before = self._heads_done
                if room > 0:
                    self._head_bytes += room
                    super().data_received(data[:room])
                if self.transport.is_closing():
                    return
                if self._in_head and self._heads_done == heads_before:
                    self._refuse(
                        431,
                        "Request Header Fields Too Large",
                        f"The request line and headers are over {self.max_head // 1024} KB "
                        "(LABELCUT_MAX_HEADER_KB).",
                    )
                    return
                self.data_received(data[max(room, 0) :])
                return
            self._head_bytes += len(data)
        elif self._in_body:
            self._body_since = self.loop.time()
        super().data_received(data)


def guarded_protocol(settings: Settings) -> type[GuardedHttpToolsProtocol]:
    """The protocol class with this service's limits."""
    return type(
        "LabelcutHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "max_head": int(settings.max_header_kb * 1024),
            "head_timeout": settings.header_timeout_s,
            "body_timeout": settings.body_timeout_s,
        },
    )


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` beyond app/host/port/log level: the header
    size and slow-client limits, beside the body limits.

    httptools (the fast parser /predict relies on) through `GuardedHttpToolsProtocol`;
    `h11_max_incomplete_event_size` bounds the same thing should h11 be chosen instead.
    """
    return {
        "http": guarded_protocol(settings),
        "h11_max_incomplete_event_size": int(settings.max_header_kb * 1024),
        "timeout_keep_alive": settings.keep_alive_s,
    }
