"""The transport: routes, auth, WebSocket framing and the REST side-doors. No conversation logic.

Every path the SDKs build is accepted: the Gemini API path with any version token, the Vertex
`LlmBidiService/BidiGenerateContent` path, leading `//` (the JS SDK always sends one) and any
prefix before `/ws/` (a reverse proxy's, or a base URL with a path).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..config import Config
from ..engines.registry import Engines
from ..logs import session_id_var
from ..models import resolve_model, rest_model
from ..protocol import encode_server_message, parse_client_frame
from ..protocol.errors import CloseCode, ProtocolError, invalid_argument, model_not_found, unavailable
from ..protocol.messages import Setup
from ..session.live_session import LiveSession
from ..session.user_audio import wav_to_pcm16k
from .auth import AuthError, KeyChecker, credential_from

log = logging.getLogger(__name__)

_LIVE_PATH = re.compile(
    r"/ws/google\.(?:"
    r"ai\.generativelanguage\.(?P<gemini_version>v\w+)\.GenerativeService\.(?P<method>BidiGenerateContent(?:Constrained)?)"
    r"|cloud\.aiplatform\.(?P<vertex_version>v\w+)\.LlmBidiService/BidiGenerateContent"
    r")$"
)
_MODELS_PATH = re.compile(r"/(?P<version>v\d\w*)/(?P<publisher>publishers/google/)?models(?:/(?P<model>[^/]+))?$")

SETUP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LiveRoute:
    api_version: str
    vertex: bool
    constrained: bool


def match_live_path(path: str) -> LiveRoute | None:
    m = _LIVE_PATH.search(re.sub(r"/+", "/", path))
    if not m:
        return None
    if m["vertex_version"]:
        return LiveRoute(m["vertex_version"], vertex=True, constrained=False)
    return LiveRoute(m["gemini_version"], vertex=False, constrained=m["method"].endswith("Constrained"))


class _Connection:
    """One client socket: serialized sends, close with a code and reason at most once."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self._lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        frames = encode_server_message(message)
        async with self._lock:
            for frame in frames:
                await self.ws.send_text(frame)

    async def receive(self) -> str | bytes:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
        text = message.get("text")
        return text if text is not None else message.get("bytes") or b""

    async def close(self, code: int, reason: str = "") -> None:
        if self.ws.application_state == WebSocketState.DISCONNECTED or self.ws.client_state == WebSocketState.DISCONNECTED:
            return
        try:
            await self.ws.close(code=code, reason=reason)
        except (RuntimeError, OSError):
            pass  # the client went away first


class OpenLiveApp:
    def __init__(self, config: Config, engines: Engines | None = None) -> None:
        self.config = config
        self.engines = engines or Engines(config)
        self.keys = KeyChecker(config.api_keys)
        self.active_sessions = 0
        self._start_task: asyncio.Task[None] | None = None
        self.asgi = Starlette(
            routes=[
                Route("/healthz", self.healthz),
                Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
                Route("/{path:path}", self.rest, methods=["GET"]),
                WebSocketRoute("/{path:path}", self.live),
            ],
            lifespan=self._lifespan,
        )

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        # Load models in the background: the port answers /healthz (503) while they load.
        self._start_task = asyncio.create_task(self.engines.start())
        try:
            yield
        finally:
            self._start_task.cancel()
            await asyncio.gather(self._start_task, return_exceptions=True)
            await self.engines.aclose()

    # ------------------------------------------------------------------ REST

    async def healthz(self, _request: Request) -> Response:
        if self.engines.ready.is_set():
            return JSONResponse({"status": "ok", "sessions": self.active_sessions})
        if self.engines.error is not None:
            return JSONResponse({"status": "failed", "error": str(self.engines.error)}, status_code=500)
        return JSONResponse({"status": "loading"}, status_code=503)

    @staticmethod
    def _rest_error(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"error": {"code": status, "message": message, "status": code}}, status_code=status)

    async def rest(self, request: Request) -> Response:
        path = re.sub(r"/+", "/", request.url.path)
        m = _MODELS_PATH.search(path)
        if not m:
            return self._rest_error(404, "NOT_FOUND", f"Method not found: {path}")
        try:
            self.keys.check(credential_from(request.headers, request.query_params))
        except AuthError as exc:
            return self._rest_error(exc.http_status, exc.status, exc.message)
        vertex = bool(m["publisher"])
        if m["model"]:
            entry = resolve_model(self.config, m["model"])
            if entry is None:
                return self._rest_error(404, "NOT_FOUND", f"models/{m['model']} is not found for API version {m['version']}")
            return JSONResponse(rest_model(entry, vertex=vertex))
        return JSONResponse(self._model_page(request, vertex))

    async def transcriptions(self, request: Request) -> Response:
        """The OpenAI audio API over this node's recognizer, so other nodes can share it."""
        try:
            self.keys.check(credential_from(request.headers, request.query_params))
        except AuthError as exc:
            return self._rest_error(exc.http_status, exc.status, exc.message)
        if not await self.engines.wait_ready(self.config.ready_timeout_s) or self.engines.asr is None:
            return self._rest_error(503, "UNAVAILABLE", "The service is currently unavailable.")
        async with request.form(max_files=1, max_part_size=self.config.max_frame_bytes) as form:
            upload = form.get("file")
            language = form.get("language")
            if upload is None or isinstance(upload, str):
                return self._rest_error(400, "INVALID_ARGUMENT", "a 'file' part with a WAV is required")
            data = await upload.read()
        try:
            pcm = wav_to_pcm16k(data)
        except ValueError as exc:
            return self._rest_error(400, "INVALID_ARGUMENT", str(exc))
        transcript = await self.engines.asr.transcribe(pcm, language if isinstance(language, str) else None)
        return JSONResponse({"text": transcript.text, "language": transcript.language,
                             "duration": transcript.duration_s})

    def _model_page(self, request: Request, vertex: bool) -> dict[str, Any]:
        entries = sorted(self.config.models.values(), key=lambda e: e.name)
        try:
            size = max(1, min(1000, int(request.query_params.get("pageSize", 50))))
            start = int(request.query_params.get("pageToken") or 0)
        except ValueError:
            size, start = 50, 0
        page = entries[start:start + size]
        body: dict[str, Any] = {("publisherModels" if vertex else "models"): [rest_model(e, vertex=vertex) for e in page]}
        if start + size < len(entries):
            body["nextPageToken"] = str(start + size)
        return body

    # ------------------------------------------------------------------ Live WebSocket

    async def live(self, ws: WebSocket) -> None:
        route = match_live_path(ws.url.path)
        if route is None:
            await ws.close(code=CloseCode.POLICY)  # before accept: the handshake is refused (403)
            return
        session_id = uuid.uuid4().hex[:16]
        session_id_var.set(session_id)
        conn = _Connection(ws)
        await ws.accept()
        session: LiveSession | None = None
        self.active_sessions += 1
        try:
            session = await self._open_session(conn, route, session_id, ws)
            await self._pump(conn, session)
            await conn.close(CloseCode.NORMAL)
        except ProtocolError as exc:
            log.info("closing %d: %s", exc.code, exc.reason)
            await conn.close(exc.code, exc.reason)
        except WebSocketDisconnect as exc:
            log.info("client disconnected (%s)", exc.code)
        except Exception:
            log.exception("session failed")
            await conn.close(CloseCode.INTERNAL, "Internal error occurred.")
        finally:
            self.active_sessions -= 1
            if session is not None:
                await session.aclose()
            log.info("session ended")

    async def _open_session(self, conn: _Connection, route: LiveRoute, session_id: str, ws: WebSocket) -> LiveSession:
        try:
            first = await asyncio.wait_for(conn.receive(), SETUP_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise invalid_argument("Request contains an invalid argument: no setup message was received.") from None
        # Refuse a bad key only once the client has sent setup: closing earlier makes the Python
        # SDK fail in its own send() with a raw error instead of an APIError carrying our code.
        try:
            self.keys.check(credential_from(ws.headers, ws.query_params))
        except AuthError as exc:
            raise ProtocolError(exc.close_code, exc.message) from None
        setup = parse_client_frame(first)
        if not isinstance(setup, Setup):
            raise invalid_argument("Request contains an invalid argument: the first message must be setup.")
        entry = resolve_model(self.config, setup.model)
        if entry is None:
            raise model_not_found(setup.model, route.api_version)
        if not await self.engines.wait_ready(self.config.ready_timeout_s):
            raise unavailable()
        log.info("setup model=%s llm=%s api=%s%s", setup.model, entry.llm, route.api_version,
                 " vertex" if route.vertex else "")
        session = LiveSession(setup, llm=self.engines.llms[entry.llm], send=conn.send, session_id=session_id,
                              voices=self.engines.voices, speech=self.config.speech, asr=self.engines.asr,
                              vad_factory=self.engines.vad_factory, search=self.engines.search,
                              sandbox=self.engines.sandbox)
        await session.start()
        return session

    async def _pump(self, conn: _Connection, session: LiveSession) -> None:
        """Feed client frames to the session in order until the client leaves or the session fails."""

        async def read() -> None:
            while True:
                frame = await conn.receive()
                await session.handle(parse_client_frame(frame))

        reader = asyncio.create_task(read())
        try:
            await asyncio.wait({reader, session.failure}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not reader.done():
                reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if session.failure.done():
            raise session.failure.result()
        reader.result()  # re-raises ProtocolError / WebSocketDisconnect
