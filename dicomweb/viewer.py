"""A minimal web viewer: the studies, a study's series, and its frames rendered by WADO-RS, scrolled
with the mouse wheel, the arrow keys or a slider.

`/viewer?study=<StudyInstanceUID>#token=<access token>`: the page and its assets are static and hold
no data; the script reads everything through QIDO-RS and WADO-RS `/rendered` with the token (kept in
the tab's sessionStorage, removed from the address bar), so the usual scopes, patient-context
confinement and audit (110103 per study viewed) apply. A strict Content-Security-Policy allows only
this server's own scripts, styles, images (and blob: URLs of the rendered frames).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

STATIC = Path(__file__).parent / "static"
ASSETS = {"viewer.js": "text/javascript; charset=utf-8", "viewer.css": "text/css; charset=utf-8"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}


async def page(request: Request) -> Response:
    html = (STATIC / "viewer.html").read_text(encoding="utf-8")
    return Response(html, media_type="text/html; charset=utf-8", headers=HEADERS)


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response((STATIC / name).read_bytes(), media_type=ASSETS[name], headers=HEADERS)


def routes() -> list[Route]:
    return [Route("/viewer", page, methods=["GET"]), Route("/viewer/assets/{name}", asset, methods=["GET"])]
