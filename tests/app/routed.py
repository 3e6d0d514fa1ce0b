"""The app with issue 14's routers (evaluate, push, archive) included, whether or not
`labelcut.app.main.create_app` includes them yet; in process and as a real server.

Once `create_app` includes them, `with_routers` changes nothing and the real server
is plain `labelcut serve`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from labelcut.app.config import Settings
from labelcut.app.main import create_app
from labelcut.app.routes import archive, evaluate, push

from ..support.inprocess import LOOPBACK
from ..support.server import REPO, Server, free_port


def _has(app: FastAPI, method: str, path: str) -> bool:
    return any(
        isinstance(r, APIRoute) and r.path == path and method in r.methods for r in app.routes
    )


def with_routers(app: FastAPI) -> FastAPI:
    if not _has(app, "POST", "/thresholds/{set_id}/evaluate"):
        app.include_router(evaluate.router)
    if not _has(app, "POST", "/thresholds"):
        app.include_router(push.router)
    if not _has(app, "POST", "/thresholds/{set_id}/archive"):
        app.include_router(archive.router)
    return app


def routed_client(data_dir: Path, client=LOOPBACK, **overrides: Any) -> TestClient:
    settings = Settings(data_dir=data_dir, device="cpu", **overrides)
    return TestClient(with_routers(create_app(settings)), client=client)


def main() -> int:  # python -m tests.app.routed serve ...: `labelcut serve` with the routers
    from labelcut.app import main as app_main
    from labelcut.app.cli import main as cli_main

    plain = app_main.create_app
    app_main.create_app = lambda *a, **kw: with_routers(plain(*a, **kw))
    return cli_main(sys.argv[1:])


class RoutedServer(Server):
    """`Server`, started through `main()` above (same flags, log and environment)."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"server-{self.port}.log"
        script = (
            f"import sys; sys.path.insert(0, {str(REPO)!r}); "
            "from tests.app.routed import main; raise SystemExit(main())"
        )
        cmd = [sys.executable, "-c", script, "serve", "--port", str(self.port)]
        cmd += ["--data-dir", str(data_dir), "--device", "cpu", "--log-level", "warning"]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LABELCUT_")}
        self.proc = subprocess.Popen(
            [*cmd, *extra],
            cwd=REPO,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env={**clean, **(env or {})},
        )
