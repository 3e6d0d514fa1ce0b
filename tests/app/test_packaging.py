"""The one import name, as installed: a wheel of the checkout holds only `labelcut`, every
module of app/, tuning/ and models/ lands under it, and the public names import from
outside the repository. Also the image's health check (it must be readiness)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
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


# --- installed, not editable: a fresh venv drives a real server through the client -------

DRIVE = """
import json, sys
import numpy as np
import labelcut
from labelcut import Client, LabelcutError
from labelcut.models import YEAST_TEST

url = sys.argv[1]
with np.load(YEAST_TEST) as z:
    X, Y = z["X"], z["Y"]
with Client(url) as lc:
    report = lc.tune((X, Y), n_bootstrap=0, activate=False)
    set_id = report["threshold_set"]["id"]
    lc.activate(set_id)
    result = lc.predict(X[:4])
    out = {"file": labelcut.__file__, "set": set_id, "used": result.threshold_set_id,
           "shape": list(result.proba.shape), "history": [i["id"] for i in lc.history()]}
    found = lc.evaluate(set_id, (X, Y))
    out["f1"] = [row["at_threshold"]["f1"] for row in found["per_label"]]
    out["tuned_f1"] = [row["f1"] for row in report["per_label"]]
    try:
        lc.get(10**6)
    except LabelcutError as exc:
        out["error"] = exc.status_code
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv with the checkout installed from a wheel (not editable), borrowing the
    project venv's third-party packages through a path entry (its .pth files, the
    editable finder among them, are not run)."""
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    borrowed = next(Path(p) for p in sys.path if p.endswith("site-packages") and "venv" in p)
    (site / "borrowed.pth").write_text(f"{borrowed}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
         "--target", str(site), str(REPO)],
        check=True, capture_output=True, timeout=300, cwd=root,
    )  # fmt: skip
    return venv / "bin" / "python"


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_the_installed_package_drives_a_real_server(installed, tmp_path):
    from ..support.server import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABELCUT_", "PYTHON"))}
    server = subprocess.Popen(
        [str(installed), "-m", "labelcut", "serve", "--port", str(port), "--device", "cpu",
         "--data-dir", str(tmp_path / "data"), "--log-level", "warning"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_ready(url, server)
        done = subprocess.run(
            [str(installed), "-c", DRIVE, url],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert str(installed.parent.parent) in out["file"]  # the installed copy, not the checkout
    assert out["used"] == out["set"] and out["shape"] == [4, 14] and out["error"] == 404
    assert out["history"] == [out["set"]]
    assert out["f1"] == pytest.approx(out["tuned_f1"], abs=1e-6)


def _wait_ready(url: str, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited: {server.stderr.read().decode()}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the installed server did not get ready")
