"""The web page: GET /ui (and / redirecting to it), its script, style and plotly.js.

The page is plain HTML, one vanilla JS module and one stylesheet from ``app/ui/``;
it talks to the JSON API like any other client. plotly.js is served from the
installed ``plotly`` Python package, so the page needs nothing outside the app.
None of these routes are in the OpenAPI schema.
"""

from __future__ import annotations

import functools
import gzip
from importlib import metadata
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

router = APIRouter(include_in_schema=False)

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
# Files of app/ui/ the page loads, with their media types; nothing else is served.
# app.js is the page's one entry script; the other modules are its imports.
_JS = "text/javascript; charset=utf-8"
ASSETS = {
    "app.js": _JS,
    "api.js": _JS,
    "common.js": _JS,
    "cards.js": _JS,
    "panels.js": _JS,
    "tune.js": _JS,
    "style.css": "text/css; charset=utf-8",
}
# The page's own script and style change with the app: revalidate. plotly.js is
# addressed by version (?v=...), so browsers may keep it.
ASSET_CACHE = "no-cache"
PLOTLY_CACHE = "public, max-age=31536000, immutable"
# Plotly adds <style> elements and inline styles; everything else comes from here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@functools.cache
def plotly_js() -> tuple[bytes, bytes, str]:
    """plotly.min.js from the installed plotly package: (plain, gzipped, version)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    plain = path.read_bytes()
    return plain, gzip.compress(plain, compresslevel=6, mtime=0), metadata.version("plotly")


@router.api_route("/", methods=["GET", "HEAD"])
def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=status.HTTP_307_TEMPORARY_REDIRECT)


@router.api_route("/ui", methods=["GET", "HEAD"], response_class=HTMLResponse)
def page() -> HTMLResponse:
    html = (UI_DIR / "index.html").read_text(encoding="utf-8")
    html = html.replace("__PLOTLY_VERSION__", metadata.version("plotly"))
    return HTMLResponse(html, headers={**_HEADERS, "cache-control": ASSET_CACHE})


@router.get("/ui/static/plotly.min.js")
def plotly_script(request: Request) -> Response:
    plain, compressed, version = plotly_js()
    headers = {**_HEADERS, "cache-control": PLOTLY_CACHE, "vary": "accept-encoding"}
    headers["etag"] = f'"plotly-{version}"'
    if request.headers.get("if-none-match") == headers["etag"]:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    media_type = "text/javascript; charset=utf-8"
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        headers["content-encoding"] = "gzip"
        return Response(compressed, media_type=media_type, headers=headers)
    return Response(plain, media_type=media_type, headers=headers)


@router.get("/ui/static/{name}")
def asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No UI file named '{name}'.")
    body = (UI_DIR / name).read_bytes()
    return Response(body, media_type=media_type, headers={**_HEADERS, "cache-control": ASSET_CACHE})
