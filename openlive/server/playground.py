"""The web playground: a page at `/` that talks to this server the way a browser app would.

Static files only (HTML, ES modules, an AudioWorklet, CSS) from `openlive/playground/`, plus a small
`playground/config.json` describing what this server offers. Nothing is fetched from elsewhere:
the page sets a Content-Security-Policy that only allows this origin, so it works offline and
cannot leak a key to a third party. The page speaks the Live API wire protocol itself over
`/ws/…BidiGenerateContent?key=…`, exactly like any other client.

All URLs in the page are relative, so it also works behind a reverse proxy's path prefix.
"""

from __future__ import annotations

import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..config import Config
from ..session.languages import LIVE_LANGUAGES

STATIC_DIR = Path(__file__).resolve().parent.parent / "playground"
DEFAULT_MODEL = "gemini-live-2.5-flash-preview"
# The page connects here (relative to itself); the server accepts any version token.
LIVE_PATH = "ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
_NO_CACHE = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
_SAFE_HOST = re.compile(r"^[A-Za-z0-9.\-\[\]:]+$")


def _assets() -> dict[str, Path]:
    """The files the playground may serve, by name: whatever ships in the folder, nothing else."""
    if not STATIC_DIR.is_dir():
        return {}
    return {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in _MEDIA_TYPES}


def _content_security_policy(request: Request) -> str:
    # Same origin only. 'self' covers ws:/wss: to this host in CSP3 browsers; the explicit
    # entries are for browsers that read 'self' as http(s) only.
    host = request.headers.get("host", "")
    sockets = f" ws://{host} wss://{host}" if host and _SAFE_HOST.match(host) else ""
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'{sockets}; media-src 'self' blob:; worker-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def playground_config(config: Config) -> dict[str, object]:
    """What the page offers in its menus: this server's model names, voices and languages."""
    models = sorted(config.models)
    default_model = DEFAULT_MODEL if DEFAULT_MODEL in config.models else (models[0] if models else "")
    return {
        "models": [{"name": name, "displayName": config.models[name].display_name or name} for name in models],
        "defaultModel": default_model,
        "voices": [{"name": v.name, "gender": v.gender, "engine": v.engine}
                   for v in sorted(config.voices.values(), key=lambda v: v.name)],
        "defaultVoice": config.speech.default_voice,
        "languages": [{"code": code, "name": name} for code, name in LIVE_LANGUAGES.items()],
        "defaultLanguage": "en-US",
        "apiKeyRequired": bool(config.api_keys),
        "livePath": LIVE_PATH,
        "inputSampleRate": 16000,
        "outputSampleRate": 24000,
    }


def playground_routes(config: Config) -> list[BaseRoute]:
    """Routes for the playground; they go before the app's catch-all routes."""
    assets = _assets()
    settings = playground_config(config)

    async def page(request: Request) -> Response:
        index = assets.get("index.html")
        if index is None:
            return JSONResponse({"error": {"code": 404, "message": "the playground is not installed",
                                           "status": "NOT_FOUND"}}, status_code=404)
        return FileResponse(index, media_type=_MEDIA_TYPES[".html"],
                            headers={**_NO_CACHE, "Content-Security-Policy": _content_security_policy(request)})

    async def asset(request: Request) -> Response:
        path = assets.get(request.path_params["name"])
        if path is None:
            return JSONResponse({"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}},
                                status_code=404)
        return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_NO_CACHE)

    async def page_config(_request: Request) -> Response:
        return JSONResponse(settings, headers=_NO_CACHE)

    return [
        Route("/", page, methods=["GET"]),
        Route("/playground/config.json", page_config, methods=["GET"]),
        Route("/playground/{name:str}", asset, methods=["GET"]),
    ]
