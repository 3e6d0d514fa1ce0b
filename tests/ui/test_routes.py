"""The page's routes in process: redirect, headers, assets, plotly.js, OpenAPI.

No browser and no model load: the client is used without its lifespan.
"""

from __future__ import annotations

import gzip
from importlib import metadata
from pathlib import Path

import plotly
import pytest
from fastapi.testclient import TestClient

from labelcut.app.config import Settings
from labelcut.app.main import create_app
from labelcut.app.routes import ui

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), device="cpu")
    return TestClient(create_app(settings))


def test_root_redirects_to_the_page(client):
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/ui"
    assert client.head("/ui").status_code == 200


def test_page_refers_only_to_its_own_files(client):
    response = client.get("/ui")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-eval" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    html = response.text
    assert f"/ui/static/plotly.min.js?v={metadata.version('plotly')}" in html
    assert '<script type="module" src="/ui/static/app.js">' in html
    assert "http://" not in html and "https://" not in html


@pytest.mark.parametrize(("name", "media_type"), [("app.js", "javascript"), ("style.css", "css")])
def test_assets(client, name, media_type):
    response = client.get(f"/ui/static/{name}")
    assert response.status_code == 200
    assert media_type in response.headers["content-type"]
    assert response.headers["cache-control"] == "no-cache"
    assert response.content == (ui.UI_DIR / name).read_bytes()


@pytest.mark.parametrize("name", ["index.html", "..%2Fmain.py", "nothing.js", "%2E%2E"])
def test_only_named_assets_are_served(client, name):
    assert client.get(f"/ui/static/{name}").status_code == 404


def test_plotly_comes_from_the_installed_package(client):
    plain = client.get("/ui/static/plotly.min.js", headers={"accept-encoding": "identity"})
    assert plain.status_code == 200
    assert plain.content == PLOTLY_JS.read_bytes()
    assert "immutable" in plain.headers["cache-control"]
    assert "javascript" in plain.headers["content-type"]

    # httpx inflates gzip itself; read the raw bytes to see what travelled.
    with client.stream(
        "GET", "/ui/static/plotly.min.js", headers={"accept-encoding": "gzip"}
    ) as zipped:
        raw = b"".join(zipped.iter_raw())
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.headers["vary"] == "accept-encoding"
    assert len(raw) < len(plain.content) / 2
    assert gzip.decompress(raw) == plain.content

    again = client.get("/ui/static/plotly.min.js", headers={"if-none-match": plain.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_page_routes_are_not_in_the_api_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/ui")]
