"""ASGI middleware that caps the size of any request body while it streams in.

A declared `Content-Length` over the limit is answered 413 before a byte is
read; a body without one (chunked) is counted as it arrives and cut off at the
limit, so an oversized upload is never held in memory or on disk in full.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from fastapi import FastAPI

    from labelcut.app.config import Settings


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


def install_limits(app: FastAPI, settings: Settings) -> None:
    """Add the request-limit middleware to `app` (called once by `create_app`).

    One place for every guard that must run before a route reads its body (size,
    and what the hardening work adds), so `main.py` does not change with them.
    Added last means outermost: these run before metrics and routing.
    """
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` beyond app/host/port/log level (header and
    slow-client limits live here, beside the body limits)."""
    return {}
