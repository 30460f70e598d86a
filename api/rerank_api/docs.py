"""``/docs`` (Swagger UI) and ``/redoc`` with their scripts and styles served by the API itself, not a CDN.

FastAPI's own pages load them from jsDelivr (and ReDoc its fonts from Google), so they are blank on a
private network without internet. The same pages are built here from FastAPI's HTML helpers, pointed at
the copies that the ``fastapi-offline`` package installs, served under :data:`STATIC_PATH`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

#: Where the documentation assets are served.
STATIC_PATH = "/static/docs"
#: ReDoc's script, served with its one outside URL (the Redocly logo in its "API docs by Redocly" link) made local.
REDOC_JS_PATH = "/docs/redoc.standalone.js"
_REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
_BLANK_SVG = "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/>"


def assets_folder() -> Path:
    """The installed Swagger UI and ReDoc files (swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js)."""
    return Path(str(files("fastapi_offline") / "static"))


def install(app: FastAPI) -> None:
    """Serve the docs pages and their assets; ``app`` must be built with ``docs_url=None, redoc_url=None``."""
    app.mount(STATIC_PATH, StaticFiles(directory=assets_folder()), name="docs-assets")

    def static(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{STATIC_PATH}/{name}"

    def openapi_url(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{app.openapi_url}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url(request),
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{request.scope.get('root_path', '')}/docs/oauth2-redirect",
            swagger_js_url=static(request, "swagger-ui-bundle.js"),
            swagger_css_url=static(request, "swagger-ui.css"),
            swagger_favicon_url=static(request, "favicon.png"),
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    redoc_js: list[bytes] = []  # read on first use

    @app.get(REDOC_JS_PATH, include_in_schema=False)
    async def redoc_script() -> Response:
        if not redoc_js:
            text = (assets_folder() / "redoc.standalone.js").read_text(encoding="utf-8")
            redoc_js.append(text.replace(_REDOC_LOGO, _BLANK_SVG).encode())
        return Response(redoc_js[0], media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url(request),
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{request.scope.get('root_path', '')}{REDOC_JS_PATH}",
            redoc_favicon_url=static(request, "favicon.png"),
            with_google_fonts=False,
        )
