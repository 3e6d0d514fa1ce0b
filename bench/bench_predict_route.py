"""Event-loop CPU per /predict request: the route's direct handler against FastAPI's solver.

`PredictRoute` (labelcut.app.routes.predict) calls its one dependency directly while the
app overrides nothing, and takes FastAPI's own handler (the dependency solver) as soon as
`app.dependency_overrides` holds anything. This drives the ASGI app in process with 64
concurrent requests of one yeast row each and prints the event-loop thread's CPU time per
request in both modes, alternating, in one run (the solver mode is the baseline).

    python bench/bench_predict_route.py [--requests 6400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from typing import Any

import numpy as np

from labelcut.app.config import Settings
from labelcut.app.main import create_app
from labelcut.models import YEAST_TEST

CLIENTS = 64


async def _lifespan_start(app: Any) -> tuple[asyncio.Queue, asyncio.Queue, asyncio.Task]:
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await outbox.get()
    while not app.state.service.ready.is_set():
        await asyncio.sleep(0.05)
    return inbox, outbox, task


async def main(requests: int) -> None:
    app = create_app(Settings(data_dir=tempfile.mkdtemp(), device="cpu"))
    with np.load(YEAST_TEST) as z:
        body = json.dumps({"inputs": z["X"][:1].tolist()}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]

    async def call() -> int:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/predict", "raw_path": b"/predict",
            "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 5), "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        sent = False
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        return status[0]

    inbox, outbox, lifespan = await _lifespan_start(app)

    async def run(mode: str) -> float:
        app.dependency_overrides.clear()
        if mode == "solver":  # any override sends every request through FastAPI's handler
            app.dependency_overrides[object] = object
        for _ in range(200):  # warm-up
            await call()
        started = time.thread_time()

        async def client(n: int) -> None:
            for _ in range(n):
                assert await call() == 200

        await asyncio.gather(*(client(requests // CLIENTS) for _ in range(CLIENTS)))
        return (time.thread_time() - started) / requests * 1e6

    figures: dict[str, list[float]] = {"direct": [], "solver": []}
    for mode in ("direct", "solver", "direct", "solver"):
        figures[mode].append(await run(mode))
    app.dependency_overrides.clear()
    await inbox.put({"type": "lifespan.shutdown"})
    await outbox.get()
    await lifespan
    direct, solver = min(figures["direct"]), min(figures["solver"])
    print(f"event-loop CPU per request ({CLIENTS} concurrent, best of two runs each):")
    print(f"  direct handler (no overrides): {direct:6.1f} us")
    print(f"  FastAPI's solver (baseline):   {solver:6.1f} us")
    print(f"  direct / solver: {direct / solver:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6400)
    asyncio.run(main(parser.parse_args().requests))
