"""The web console at ``/`` and the offline API docs' assets: public static files, no network.

The pages are public; every API call they make still needs a token (the console keeps it in sessionStorage).
The console's own files live in ``api/console/``; Swagger UI's come from the ``swagger-ui-bundle-v2`` package
(only the files ``/schema/swagger`` loads are served).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import swagger_ui_bundle
from litestar import Response, get
from litestar.datastructures import CacheControlHeader
from litestar.enums import MediaType
from litestar.exceptions import NotFoundException
from litestar.response import File
from litestar.static_files import create_static_files_router

from api.auth import PUBLIC

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
CONSOLE_ASSETS = "/console"  # app.js, app.css and the view modules
SWAGGER_DIR = Path(str(swagger_ui_bundle.swagger_ui_path))
SWAGGER_ASSETS = "/static/swagger-ui"
SWAGGER_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
# the console loads nothing but its own files and talks to nothing but this server
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_NO_CACHE = CacheControlHeader(no_cache=True)  # revalidate (ETag), so an upgrade shows at once


@get("/", opt=PUBLIC, include_in_schema=False, sync_to_thread=False, cache_control=_NO_CACHE)
def console_page() -> Response[bytes]:
    """The console's single page (the views switch by the URL's #fragment)."""
    return Response(
        (CONSOLE_DIR / "index.html").read_bytes(),
        media_type=MediaType.HTML,
        headers={"Content-Security-Policy": CONSOLE_CSP, "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "no-referrer"},
    )  # fmt: skip


@get(f"{SWAGGER_ASSETS}/{{name:str}}", opt=PUBLIC, include_in_schema=False, sync_to_thread=False)
def swagger_asset(name: str) -> File:
    media_type = SWAGGER_FILES.get(name)
    if media_type is None:
        raise NotFoundException(f"no docs asset named {name!r}")
    return File(
        path=SWAGGER_DIR / name, media_type=media_type, content_disposition_type="inline",
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )  # fmt: skip


console_assets = create_static_files_router(
    path=CONSOLE_ASSETS, directories=[CONSOLE_DIR], name="console-assets", opt=PUBLIC, include_in_schema=False,
    cache_control=_NO_CACHE,
)  # fmt: skip

CONSOLE_HANDLERS: list[Any] = [console_page, swagger_asset, console_assets]

# what SwaggerRenderPlugin loads instead of its CDN defaults (api/app.py ``_openapi``)
SWAGGER_JS = f"{SWAGGER_ASSETS}/swagger-ui-bundle.js"
SWAGGER_CSS = f"{SWAGGER_ASSETS}/swagger-ui.css"
SWAGGER_PRESET_JS = f"{SWAGGER_ASSETS}/swagger-ui-standalone-preset.js"
SWAGGER_FAVICON = f"<link rel='icon' type='image/png' href='{SWAGGER_ASSETS}/favicon-32x32.png'>"
