"""`LiveModel`: a Live API model on some server, and the sessions opened with it.

The top of the client: it builds the endpoint and setup (`wire`), and opens a `LiveSession`
(`session`), or a blocking `SyncLiveSession` (`sync`). Dependencies point one way:
model → sync → session → audio → wire.
"""

from __future__ import annotations

import os
import ssl as ssl_module
from collections.abc import Generator, Mapping
from typing import Any

from . import wire
from .session import LiveSession
from .sync import SyncLiveSession


class LiveModel:
    """A Live API model on some server, and the configuration of the sessions opened with it.

    ```python
    model = LiveModel("gemini-live-2.5-flash-preview", {"response_modalities": ["TEXT"]},
                      base_url="https://127.0.0.1:8443", api_key="anything")
    async with model.connect() as session:
        await session.send_text("Hello!")
        async for message in session.receive_turn():
            print(message.text or "", end="")
    ```

    `config` is a LiveConnectConfig as a plain dict (snake_case or camelCase). `base_url`
    defaults to `GOOGLE_GEMINI_BASE_URL` (Vertex: `GOOGLE_VERTEX_BASE_URL`), then Google's
    endpoint; `api_key` to `GOOGLE_API_KEY`, then `GEMINI_API_KEY`. `ssl` is an SSLContext, or
    False to skip certificate checks; by default the system trust and `SSL_CERT_FILE` apply.

    With `session_resumption` in the config and `auto_resume`, sessions reconnect by themselves
    (see the module docstring): each reconnection may take `resume_timeout_s` of retries, and
    after `max_resume_attempts` drops without a completed turn in between the session ends
    with the last error.
    """

    def __init__(
        self,
        model: str,
        config: Mapping[str, Any] | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_version: str | None = None,
        vertex: bool = False,
        ssl: ssl_module.SSLContext | bool | None = None,
        headers: Mapping[str, str] | None = None,
        auto_resume: bool = True,
        resume_timeout_s: float = 30.0,
        max_resume_attempts: int = 3,
        open_timeout_s: float = 10.0,
        max_message_bytes: int = 16 << 20,
        receive_queue_size: int = 10_000,
        replay_limit_bytes: int = 16 << 20,
    ) -> None:
        self.model = model
        self.config = dict(config or {})
        self.vertex = vertex
        if api_key is None:
            api_key = os.environ.get("GOOGLE_API_KEY") or os.environ.get("GEMINI_API_KEY")
        self.endpoint = wire.endpoint(base_url, api_key, api_version=api_version, vertex=vertex, headers=headers)
        self.setup = wire.setup_message(model, self.config, vertex=vertex)
        self.ssl = ssl
        self.auto_resume = auto_resume
        self.resume_timeout_s = resume_timeout_s
        self.max_resume_attempts = max_resume_attempts
        self.open_timeout_s = open_timeout_s
        self.max_message_bytes = max_message_bytes
        self.receive_queue_size = receive_queue_size
        self.replay_limit_bytes = replay_limit_bytes

    def connect(self) -> _Connecting:
        """Open a session: `session = await model.connect()` or `async with model.connect() as session`."""
        return _Connecting(self)

    def connect_sync(self, timeout: float | None = 30.0) -> SyncLiveSession:
        """Open a session driven from ordinary (non-async) code, on a background event loop thread."""
        return SyncLiveSession.open(self.connect, timeout=timeout)

    def ssl_argument(self) -> dict[str, Any]:
        if not self.endpoint.url.startswith("wss://"):
            return {}
        if isinstance(self.ssl, ssl_module.SSLContext):
            return {"ssl": self.ssl}
        if self.ssl is False:
            context = ssl_module.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl_module.CERT_NONE
            return {"ssl": context}
        return {}  # websockets' default context: system CAs, SSL_CERT_FILE / SSL_CERT_DIR


class _Connecting:
    """What `LiveModel.connect()` returns: awaitable, and an async context manager that closes."""

    def __init__(self, model: LiveModel) -> None:
        self._model = model
        self._session: LiveSession | None = None

    def __await__(self) -> Generator[Any, None, LiveSession]:
        return self._open().__await__()

    async def _open(self) -> LiveSession:
        session = LiveSession(self._model)
        await session._start()
        return session

    async def __aenter__(self) -> LiveSession:
        self._session = await self._open()
        return self._session

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
