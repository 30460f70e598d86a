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
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the documentation assets are served.
STATIC_PATH = "/static/docs"


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

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url(request),
            title=f"{app.title} - ReDoc",
            redoc_js_url=static(request, "redoc.standalone.js"),
            redoc_favicon_url=static(request, "favicon.png"),
            with_google_fonts=False,
        )
