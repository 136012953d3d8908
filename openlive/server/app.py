"""The transport: routes, auth, WebSocket framing and the REST side-doors. No conversation logic.

Every path the SDKs build is accepted: the Gemini API path with any version token, the Vertex
`LlmBidiService/BidiGenerateContent` path, Firebase AI Logic's two paths, leading `//` (the JS
SDK always sends one) and any prefix before `/ws/` (a reverse proxy's, or a base URL with a path).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import metrics
from ..config import Config
from ..engines.registry import Engines
from ..logs import session_id_var
from ..models import resolve_model, rest_model
from ..protocol import parse_client_frame
from ..protocol import server_messages as sm
from ..protocol.bounded_json import JSONLimitError, Limits, loads
from ..protocol.errors import CloseCode, ProtocolError, invalid_argument, model_not_found, unavailable
from ..protocol.messages import Setup
from ..redaction import fingerprint, redact, remember_secret
from ..session.end_of_turn import EndOfTurnPolicy
from ..session.live_session import LiveSession, Persistence
from ..session.resumption import Snapshot
from ..session.user_audio import wav_to_pcm16k
from ..store import Store, StoreError, open_store
from .auth import AuthError, KeyChecker, credential_from, owner_of
from .connection import Connection
from .ephemeral import TokenGrant, TokenRequestError, apply_constraints, check_usable, mint_token_name
from .limits import KeyLimits, server_full, store_needed
from .playground import playground_routes
from .rest_generate import GenerateAPI
from .speech_api import SpeechRequest, speak

log = logging.getLogger(__name__)

_LIVE_PATH = re.compile(
    r"/ws/google\.(?:"
    r"ai\.generativelanguage\.(?P<gemini_version>v\w+)\.GenerativeService\.(?P<method>BidiGenerateContent(?:Constrained)?)"
    r"|cloud\.aiplatform\.(?P<vertex_version>v\w+)\.LlmBidiService/BidiGenerateContent"
    # Firebase AI Logic (its Web SDK): the Google AI backend, and the Vertex ("Agent Platform")
    # backend, which names its location in the path.
    r"|firebase\.vertexai\.(?P<firebase_version>v\w+)\.(?:GenerativeService/BidiGenerateContent"
    r"|(?P<firebase_vertex>LlmBidiService)/BidiGenerateContent/locations/[\w-]+)"
    r")$"
)
_AUTH_TOKENS_PATH = re.compile(r"/(?P<version>v\d\w*)/auth_tokens$")
_MODELS_PATH = re.compile(r"/(?P<version>v\d\w*)/(?P<publisher>publishers/google/)?models(?:/(?P<model>[^/]+))?$")

SETUP_TIMEOUT_S = 30.0
TOKEN_PREFIX = "auth_tokens/"
DEADLINE_EXPIRED = "Deadline expired before operation could complete."
SESSION_NOT_FOUND = "BidiGenerateContent session not found"  # the service's words for a dead handle


@dataclass
class _Admission:
    """What admitting a session took, so that ending it gives back exactly that."""

    owner: str = ""
    lease: str = ""
    deadline: float | None = None  # monotonic time the connection must end
    seated: bool = False  # counted in the server's sessions (`[limits] max_sessions`)


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
    if m["firebase_version"]:
        return LiveRoute(m["firebase_version"], vertex=bool(m["firebase_vertex"]), constrained=False)
    return LiveRoute(m["gemini_version"], vertex=False, constrained=m["method"].endswith("Constrained"))


class OpenLiveApp:
    def __init__(self, config: Config, engines: Engines | None = None) -> None:
        self.config = config
        self.engines = engines or Engines(config)
        self.keys = KeyChecker(config.api_keys)
        turn = config.turn
        self._turn_policy = EndOfTurnPolicy(threshold=turn.threshold, text_threshold=turn.text_threshold,
                                            check_ms=turn.check_ms, quick_quiet_ms=turn.quick_quiet_ms,
                                            unsure_quiet_ms=turn.unsure_quiet_ms,
                                            max_wait_ms=turn.max_wait_ms, early_reply=turn.early_reply)
        self.active_sessions = 0
        self.seated_sessions = 0  # sessions past setup: what `[limits] max_sessions` bounds
        self.frame_limits = Limits(max_bytes=config.max_frame_bytes)
        self.store: Store | None = None
        self.limits: KeyLimits | None = None
        self._start_task: asyncio.Task[None] | None = None
        self.generate_api = GenerateAPI(config, self.engines, self.keys, limits=lambda: self.limits,
                                        frame_limits=self.frame_limits, read_body=self._body)
        self.asgi = Starlette(
            routes=[
                Route("/healthz", self.healthz),
                Route("/metrics", self.metrics),
                Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
                Route("/v1/audio/speech", self.speech, methods=["POST"]),
                *playground_routes(config),
                # models.countTokens, generateContent, streamGenerateContent (rest_generate.py)
                Route("/{path:path}:{method}", self.generate_api.handle, methods=["POST"]),
                Route("/{path:path}", self.rest, methods=["GET"]),
                Route("/{path:path}", self.rest_post, methods=["POST"]),
                WebSocketRoute("/{path:path}", self.live),
            ],
            lifespan=self._lifespan,
        )

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        # The store first: a node that cannot reach shared state must not take sessions.
        store_config = self.config.store
        self.store = await open_store(store_config.backend, path=self.config.store_path, url=store_config.url,
                                      prefix=store_config.prefix, max_mb=store_config.max_mb)
        # A Redis URL may carry a password: the line names the server, not the credential.
        log.info("state store: %s", redact(store_config.url or "") if store_config.backend == "redis"
                 else self.config.store_path)
        self.limits = KeyLimits(self.store, sessions_per_key=self.config.limits.sessions_per_key,
                                tokens_per_minute=self.config.limits.tokens_per_minute)
        self.limits.start()
        # Load models in the background: the port answers /healthz (503) while they load.
        self._start_task = asyncio.create_task(self.engines.start())
        lag = asyncio.create_task(metrics.watch_event_loop())
        try:
            yield
        finally:
            self._start_task.cancel()
            lag.cancel()
            await asyncio.gather(self._start_task, lag, return_exceptions=True)
            await self.engines.aclose()
            await self.limits.aclose()
            await self.store.aclose()

    # ------------------------------------------------------------------ REST

    async def healthz(self, _request: Request) -> Response:
        if self.engines.ready.is_set():
            return JSONResponse({"status": "ok", "sessions": self.active_sessions})
        if self.engines.error is not None:
            return JSONResponse({"status": "failed", "error": str(self.engines.error)}, status_code=500)
        return JSONResponse({"status": "loading"}, status_code=503)

    async def metrics(self, _request: Request) -> Response:
        """Prometheus metrics. Like /healthz, open to anyone who can reach the port: counts and
        latencies only, never a key, a session or a word of a conversation (a proxy can fence it)."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

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

    async def _refuse_audio_call(self, request: Request, engine: str) -> Response | None:
        """Why an OpenAI audio API call cannot be served (a bad key, or `engine` not ready); None: serve it."""
        try:
            self.keys.check(credential_from(request.headers, request.query_params))
        except AuthError as exc:
            return self._rest_error(exc.http_status, exc.status, exc.message)
        if not await self.engines.wait_ready(self.config.ready_timeout_s) or getattr(self.engines, engine) is None:
            return self._rest_error(503, "UNAVAILABLE", "The service is currently unavailable.")
        return None

    async def transcriptions(self, request: Request) -> Response:
        """The OpenAI audio API over this node's recognizer, so other nodes can share it."""
        if (refused := await self._refuse_audio_call(request, "asr")) is not None:
            return refused
        assert self.engines.asr is not None  # checked just above
        async with request.form(max_files=1, max_part_size=self.config.max_frame_bytes) as form:
            upload = form.get("file")
            language = form.get("language")
            if upload is None or isinstance(upload, str):
                return self._rest_error(400, "INVALID_ARGUMENT", "a 'file' part with a WAV is required")
            data = await upload.read()
        try:
            pcm = await asyncio.to_thread(wav_to_pcm16k, data)  # resampling minutes of audio is CPU work
        except ValueError as exc:
            return self._rest_error(400, "INVALID_ARGUMENT", str(exc))
        transcript = await self.engines.asr.transcribe(pcm, language if isinstance(language, str) else None)
        return JSONResponse({"text": transcript.text, "language": transcript.language,
                             "duration": transcript.duration_s})

    async def speech(self, request: Request) -> Response:
        """The OpenAI audio API over this node's voices (speech_api.py), streamed."""
        if (refused := await self._refuse_audio_call(request, "voices")) is not None:
            return refused
        voices = self.engines.voices
        assert voices is not None  # checked just above
        try:
            body = loads(await self._body(request) or b"{}", self.frame_limits)
            wanted = SpeechRequest.parse(body, voices)
        except JSONLimitError as exc:
            return self._rest_error(400, "INVALID_ARGUMENT", exc.message)
        except ValueError as exc:  # SpeechRequestError, or JSON that does not parse
            return self._rest_error(400, "INVALID_ARGUMENT", str(exc))
        return StreamingResponse(speak(wanted, voices), media_type=wanted.media_type)

    async def rest_post(self, request: Request) -> Response:
        path = re.sub(r"/+", "/", request.url.path)
        if not _AUTH_TOKENS_PATH.search(path):
            return self._rest_error(404, "NOT_FOUND", f"Method not found: {path}")
        return await self.create_auth_token(request)

    async def create_auth_token(self, request: Request) -> Response:
        """`client.auth_tokens.create`: an ephemeral token a browser can use instead of the real key."""
        credential = credential_from(request.headers, request.query_params)
        if credential and credential.startswith(TOKEN_PREFIX):
            return self._rest_error(403, "PERMISSION_DENIED", "An ephemeral token cannot create tokens.")
        try:
            self.keys.check(credential)
        except AuthError as exc:
            return self._rest_error(exc.http_status, exc.status, exc.message)
        try:
            body = loads(await self._body(request) or b"{}", self.frame_limits)
            if not isinstance(body, dict):
                raise TokenRequestError("the request body must be a JSON object")
            grant = TokenGrant.from_request(body, time.time())
        except JSONLimitError as exc:
            return self._rest_error(400, "INVALID_ARGUMENT", exc.message)
        except (ValueError, TokenRequestError) as exc:
            return self._rest_error(400, "INVALID_ARGUMENT", f"Invalid JSON payload or field: {exc}")
        assert self.store is not None
        name = mint_token_name()
        remember_secret(name)
        record = {**grant.to_record(), "owner": owner_of(credential)}
        try:
            await self.store.put_auth_token(name, record, grant.uses, grant.expire_at)
        except StoreError as exc:
            log.error("could not store an auth token: %s", exc)
            return self._rest_error(503, "UNAVAILABLE", "The service is currently unavailable.")
        log.info("issued an ephemeral token: %d use(s), expires in %.0f s", grant.uses, grant.expire_at - time.time())
        return JSONResponse(grant.response(name))

    async def _body(self, request: Request) -> bytes:
        """A REST body of at most one frame's size; JSONLimitError past it, before it is all in memory."""
        limit = self.frame_limits.max_bytes
        too_big = JSONLimitError(f"Request payload size exceeds the limit: {limit} bytes.", too_big=True)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and (len(declared) > 12 or int(declared) > limit):
            raise too_big
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_big
        return bytes(body)

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
        conn = Connection(ws, self.frame_limits, send_timeout_s=self.config.send_timeout_s,
                          max_frames_per_s=self.config.max_frames_per_s)
        await ws.accept()
        session: LiveSession | None = None
        admission = _Admission()
        self.active_sessions += 1
        metrics.session_opened()
        close_code: int = CloseCode.NORMAL
        try:
            session = await self._open_session(conn, route, session_id, ws, admission)
            await self._pump(conn, session, admission.deadline)
            await conn.close(CloseCode.NORMAL)
        except ProtocolError as exc:
            close_code = exc.code
            log.info("closing %d: %s", exc.code, exc.reason)
            await conn.close(exc.code, exc.reason)
        except WebSocketDisconnect as exc:
            close_code = exc.code
            log.info("client disconnected (%s)", exc.code)
        except Exception:
            close_code = CloseCode.INTERNAL
            log.exception("session failed")
            await conn.close(CloseCode.INTERNAL, "Internal error occurred.")
        finally:
            self.active_sessions -= 1
            if admission.seated:
                self.seated_sessions -= 1
            metrics.session_closed(close_code)
            if session is not None:
                await session.aclose()
            if self.limits is not None:
                await self.limits.close_session(admission.owner, admission.lease)
            log.info("session ended")

    async def _open_session(self, conn: Connection, route: LiveRoute, session_id: str, ws: WebSocket,
                            admission: _Admission) -> LiveSession:
        try:
            first = await asyncio.wait_for(conn.receive(), SETUP_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise invalid_argument("Request contains an invalid argument: no setup message was received.") from None
        assert self.store is not None and self.limits is not None
        # Refuse a bad key only once the client has sent setup: closing earlier makes the Python
        # SDK fail in its own send() with a raw error instead of an APIError carrying our code.
        credential = credential_from(ws.headers, ws.query_params)
        grant = await self._token_grant(credential, route) if credential and credential.startswith(TOKEN_PREFIX) \
            else None
        if grant is None:
            try:
                self.keys.check(credential)
            except AuthError as exc:
                raise ProtocolError(exc.close_code, exc.message) from None
            admission.owner = owner_of(credential)
        else:
            admission.owner = str(grant[1]["owner"])
        setup = parse_client_frame(first, conn.limits)
        if not isinstance(setup, Setup):
            raise invalid_argument("Request contains an invalid argument: the first message must be setup.")
        handle = setup.session_resumption.handle if setup.session_resumption else None
        remember_secret(handle)  # a handle is a bearer secret for the whole conversation
        if grant is not None:
            check_usable(grant[0], time.time(), resuming=bool(handle))
            setup = apply_constraints(setup, grant[0])
        entry = resolve_model(self.config, setup.model)
        if entry is None:
            raise model_not_found(setup.model, route.api_version)
        resumed = await self._snapshot_for(handle, admission.owner, entry.name) if handle else None
        if grant is not None and not handle and not await self._use_token(credential or ""):
            raise ProtocolError(CloseCode.POLICY, "The ephemeral token has no uses left.")
        self._seat(admission)
        admission.lease = await self.limits.open_session(admission.owner)
        if not await self.engines.wait_ready(self.config.ready_timeout_s):
            raise unavailable()
        admission.deadline = self._deadline(grant[0] if grant else None)
        persistence = Persistence(self.store, admission.owner, self.config.sessions.resumption_ttl_s)
        session = LiveSession(setup, llm=self.engines.llms[entry.llm], send=conn.send, session_id=session_id,
                              voices=self.engines.voices, speech=self.config.speech, asr=self.engines.asr,
                              vad_factory=self.engines.vad_factory, search=self.engines.search,
                              url_reader=self.engines.url_reader,
                              sandbox=self.engines.sandbox, context_window=self.config.context_window(entry),
                              persistence=persistence, budget=self.limits.budget(admission.owner), resumed=resumed,
                              turn_model=self.engines.turn_model, text_turn_model=self.engines.text_turn_model,
                              turn_policy=self._turn_policy, vision=self.engines.vision,
                              frame_limits=self.engines.frame_limits, generations=self.config.generations,
                              interim_every_s=self.config.asr.interim_every_s
                              if self.config.asr.interim_transcription else 0.0)
        # Which key, token or handle: by fingerprint only, never the secret itself.
        log.info("setup model=%s (%s) llm=%s api=%s%s credential=%s%s", setup.model,
                 session.options.generation.name, entry.llm, route.api_version,
                 " vertex" if route.vertex else "", ("token:" if grant else "") + fingerprint(credential),
                 f" resumed handle={fingerprint(handle)}" if resumed else "")
        await session.start()
        return session

    def _seat(self, admission: _Admission) -> None:
        """Admission control: a full server refuses a new session with the quota error, at once."""
        limit = self.config.limits.max_sessions
        if limit and self.seated_sessions >= limit:
            log.info("refused a session: this server holds %d already", limit)
            raise server_full(limit)
        self.seated_sessions += 1
        admission.seated = True

    async def _token_grant(self, token: str, route: LiveRoute) -> tuple[TokenGrant, dict[str, Any]]:
        if not route.constrained:
            # The SDKs send tokens to BidiGenerateContentConstrained only; elsewhere it is no key.
            raise ProtocolError(CloseCode.INVALID_ARGUMENT, "API key not valid. Please pass a valid API key.")
        assert self.store is not None
        with store_needed("token lookup"):
            record = await self.store.get_auth_token(token)
        if record is None:  # unknown, tampered with, or expired and gone
            raise ProtocolError(CloseCode.POLICY, "The ephemeral token is invalid or has expired.")
        return TokenGrant.from_record(record), record

    async def _use_token(self, token: str) -> bool:
        assert self.store is not None
        with store_needed("token use"):
            return await self.store.use_auth_token(token)

    async def _snapshot_for(self, handle: str, owner: str, model: str) -> Snapshot:
        """The conversation a handle resumes; only the key that opened it may, and only on its model."""
        assert self.store is not None
        with store_needed("snapshot lookup"):
            data = await self.store.get_snapshot(handle)
        snapshot = None
        if data is not None:
            try:
                snapshot = await asyncio.to_thread(Snapshot.from_bytes, data)  # megabytes, maybe: off the loop
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("unreadable snapshot: %s", exc)
        if snapshot is None or snapshot.owner != owner:
            raise ProtocolError(CloseCode.POLICY, SESSION_NOT_FOUND)
        original = resolve_model(self.config, snapshot.model)
        if original is None or original.name != model:
            raise invalid_argument("Request contains an invalid argument: a resumed session keeps its model "
                                   f"({snapshot.model}).")
        return snapshot

    def _deadline(self, grant: TokenGrant | None) -> float | None:
        """When this connection must end: its lifetime, or its ephemeral token's expiry if sooner."""
        ends = []
        if self.config.sessions.lifetime_s > 0:
            ends.append(time.monotonic() + self.config.sessions.lifetime_s)
        if grant is not None:
            ends.append(time.monotonic() + max(0.0, grant.expire_at - time.time()))
        return min(ends) if ends else None

    async def _pump(self, conn: Connection, session: LiveSession, deadline: float | None) -> None:
        """Feed client frames to the session in order until the client leaves, the session fails or time is up."""

        async def read() -> None:
            while True:
                frame = await conn.receive()
                await session.handle(parse_client_frame(frame, conn.limits))

        async def expire() -> None:
            assert deadline is not None
            # goAway first, so the client can finish a turn and resume on a fresh connection.
            warn_at = deadline - self.config.sessions.goaway_lead_s
            await asyncio.sleep(max(0.0, warn_at - time.monotonic()))
            await conn.send(sm.go_away(deadline - time.monotonic()))
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            log.info("connection lifetime is over")

        reader = asyncio.create_task(read())
        timer = asyncio.create_task(expire()) if deadline is not None else None
        waits: set[asyncio.Future[Any]] = {reader, session.failure, conn.lost, *([timer] if timer else [])}
        done: set[asyncio.Future[Any]] = set()
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, timer):
                if task is not None and not task.done():
                    task.cancel()
            await asyncio.gather(*(t for t in (reader, timer) if t is not None), return_exceptions=True)
        if conn.lost.done():  # the client went away, or stopped reading
            raise conn.lost.result()
        if session.failure.done():
            raise session.failure.result()
        if timer in done and reader not in done:
            raise ProtocolError(CloseCode.INTERNAL, DEADLINE_EXPIRED)
        reader.result()  # re-raises ProtocolError / WebSocketDisconnect
