"""The one import name, as installed: a wheel of the checkout holds only `labelcut`, every
module of app/, tuning/ and models/ lands under it, and the public names import from
outside the repository. Also the image's health check (it must be readiness)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FOLDERS = {"app": "labelcut/app", "tuning": "labelcut/tuning", "models": "labelcut/models"}


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: the build backend (setuptools) is already in the venv; no network.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("labelcut-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_has_only_labelcut_at_the_top(wheel_names):
    tops = {name.split("/", 1)[0] for name in wheel_names}
    dist_info = {top for top in tops if top.endswith(".dist-info")}
    assert len(dist_info) == 1 and re.fullmatch(r"labelcut-[^-]+\.dist-info", dist_info.pop())
    assert tops - {t for t in tops if t.endswith(".dist-info")} == {"labelcut"}


def test_every_module_of_the_repository_folders_is_in_the_wheel(wheel_names):
    # A subpackage missing from pyproject's package list would silently be left out.
    names = set(wheel_names)
    missing = [
        f"{folder}/{path.relative_to(REPO / folder)}"
        for folder, target in FOLDERS.items()
        for path in (REPO / folder).rglob("*.py")
        if "__pycache__" not in path.parts
        and f"{target}/{path.relative_to(REPO / folder).as_posix()}" not in names
    ]
    assert missing == []
    for data in (
        "labelcut/app/ui/index.html",
        "labelcut/app/ui/app.js",
        "labelcut/models/default/manifest.json",
    ):
        assert data in names


def test_public_names_import_from_outside_the_checkout(tmp_path):
    code = (
        "import importlib.util, labelcut\n"
        "from labelcut import Client, AsyncClient, LabelcutError, tune_thresholds, load_model\n"
        "assert callable(tune_thresholds) and callable(load_model)\n"
        "assert issubclass(LabelcutError, Exception) and Client and AsyncClient\n"
        "print([n for n in ('app', 'tuning', 'models') if importlib.util.find_spec(n)])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # no generic top-level names importable


def test_client_import_loads_neither_torch_nor_fastapi(tmp_path):
    code = (
        "import sys\nfrom labelcut import Client\n"
        "print(sorted(m for m in ('torch', 'fastapi') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _health_check() -> tuple[str, list[str]]:
    """The Dockerfile's HEALTHCHECK options and its CMD (exec form, a JSON array)."""
    text = (REPO / "Dockerfile").read_text()
    (found,) = re.findall(r"^HEALTHCHECK (.+?)\\\n\s+CMD (\[.+\])$", text, flags=re.M)
    return found[0], json.loads(found[1])


class _Readiness(BaseHTTPRequestHandler):
    status = 200  # what /readyz answers; every other path is 404

    def do_GET(self) -> None:  # the stdlib calls it by this name
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_image_health_check_is_readiness(status, healthy):
    options, command = _health_check()
    start = re.search(r"--start-period=(\d+)s", options)
    assert start is not None and int(start.group(1)) >= 60  # room for a model load
    handler = type("Handler", (_Readiness,), {"status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # The image's own command, pointed at this stand-in instead of port 8000.
        port = str(server.server_address[1])
        argv = [sys.executable, *[part.replace(":8000/", f":{port}/") for part in command[1:]]]
        assert command[0] == "python" and any(":8000/readyz" in part for part in command)
        done = subprocess.run(argv, capture_output=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert (done.returncode == 0) is healthy, done.stderr
