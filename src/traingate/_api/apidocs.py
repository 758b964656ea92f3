"""The API's documentation pages, Swagger UI at ``/docs`` and ReDoc at ``/redoc``, served from
assets installed with traingate (the ``fastapi-offline`` package ships Swagger UI 5, ReDoc 2 and
a favicon): the pages load nothing from another host, so they work on networks that reach no
CDN. FastAPI's own pages are switched off (``docs_url=None``, ``redoc_url=None``); these use
FastAPI's documented way of self-hosting the assets (``get_swagger_ui_html``,
``get_redoc_html`` with local URLs)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

__all__ = ["ASSETS_PATH", "DOCS_URL", "REDOC_URL", "assets_dir", "install_api_docs"]

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_PATH = "/docs-assets"  # not under /static, which the pages mount
_OAUTH2_REDIRECT = "/docs/oauth2-redirect"

# The browser enforces "nothing from another host" too: ReDoc's footer links an image on its
# vendor's CDN, which this policy keeps from loading (the inline scripts are FastAPI's
# page set-up; ReDoc runs its search in a blob: worker).
_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:;"
    " connect-src 'self'; frame-ancestors 'none'"
)


# ReDoc's side menu shows its vendor's logo from that vendor's CDN (always, no option turns it
# off): before ReDoc runs, an image source on another host becomes the installed favicon.
_OWN_IMAGES = """<script>
(() => {
  const own = (value) =>
    new URL(String(value), location.href).origin === location.origin ? value : "FAVICON";
  const setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    const image = this instanceof HTMLImageElement && name.toLowerCase() === "src";
    return setAttribute.call(this, name, image ? own(value) : value);
  };
  const src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
  Object.defineProperty(HTMLImageElement.prototype, "src", {
    ...src,
    set(value) { src.set.call(this, own(value)); },
  });
})();
</script>"""


def _own_host_only(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = _CSP
    return response


def assets_dir() -> Path:
    """Where the installed Swagger UI and ReDoc assets are."""
    return Path(str(files("fastapi_offline") / "static"))


def install_api_docs(app: FastAPI, *, openapi_url: str) -> None:
    """Add ``/docs``, ``/redoc`` and their assets to ``app``."""
    app.mount(ASSETS_PATH, StaticFiles(directory=assets_dir()), name="apidocs")

    def _root(request: Request) -> str:
        return str(request.scope.get("root_path", ""))

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return _own_host_only(
            get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} API",
                swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
                oauth2_redirect_url=f"{root}{_OAUTH2_REDIRECT}",
            )
        )

    @app.get(_OAUTH2_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        page = get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} API",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )
        html = bytes(page.body).decode()
        guard = _OWN_IMAGES.replace("FAVICON", f"{root}{ASSETS_PATH}/favicon.png")
        return _own_host_only(HTMLResponse(html.replace("<body>", f"<body>\n{guard}", 1)))
