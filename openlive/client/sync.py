"""A blocking wrapper: the async client on a private event loop in a background thread.

```python
with LiveModel("gemini-live-2.5-flash-preview", {"response_modalities": ["TEXT"]}).connect_sync() as session:
    session.send_text("Hello!")
    for message in session.receive_turn():
        print(message.text or "", end="")
```
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from .audio import AudioConversation, AudioDevice
from .session import LiveSession
from .wire import ContentLike, LiveMessage

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread, until stopped."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="openlive-client-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class SyncLiveSession:
    """`LiveSession` for ordinary code: the same methods, blocking. Close it (or use `with`)."""

    def __init__(self, session: LiveSession, runner: _LoopThread) -> None:
        self.session = session
        self._runner = runner

    @classmethod
    def open(cls, connect: Callable[[], Awaitable[LiveSession]], timeout: float | None = 30.0) -> SyncLiveSession:
        """Run `connect()` (`LiveModel.connect`) on a new background loop and wrap the session it opens."""
        runner = _LoopThread()
        try:
            session = runner.call(_connect(connect), timeout)
        except BaseException:
            runner.stop()
            raise
        return cls(session, runner)

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._runner.call(coroutine, timeout)

    # The async API, blocking.
    def send_text(self, text: str, turn_complete: bool = True) -> None:
        self._call(self.session.send_text(text, turn_complete))

    def send_turns(self, turns: ContentLike | Sequence[ContentLike], turn_complete: bool = True) -> None:
        self._call(self.session.send_turns(turns, turn_complete))

    def send_realtime_text(self, text: str) -> None:
        self._call(self.session.send_realtime_text(text))

    def send_audio(self, pcm: bytes, rate: int = 16000) -> None:
        self._call(self.session.send_audio(pcm, rate))

    def send_audio_stream_end(self) -> None:
        self._call(self.session.send_audio_stream_end())

    def send_activity_start(self) -> None:
        self._call(self.session.send_activity_start())

    def send_activity_end(self) -> None:
        self._call(self.session.send_activity_end())

    def send_video_frame(self, image: bytes, mime_type: str = "image/jpeg") -> None:
        self._call(self.session.send_video_frame(image, mime_type))

    def send_tool_response(self, responses: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> None:
        self._call(self.session.send_tool_response(responses))

    def send_context_update(self, system_instruction: ContentLike | None = None, tools: Any = None) -> None:
        self._call(self.session.send_context_update(system_instruction, tools))

    def next_message(self, timeout: float | None = None) -> LiveMessage | None:
        return self._call(self.session.next_message(timeout))

    def receive(self, timeout: float | None = None) -> Iterator[LiveMessage]:
        """Messages until the session ends; `timeout` bounds the wait for each one (TimeoutError)."""
        while (message := self.next_message(timeout)) is not None:
            yield message

    def receive_turn(self, timeout: float | None = None) -> Iterator[LiveMessage]:
        """Messages up to and including the next turnComplete."""
        while (message := self.next_message(timeout)) is not None:
            yield message
            if message.turn_complete:
                return

    def start_audio_conversation(self, device: AudioDevice | None = None, **options: Any) -> AudioConversation:
        return self._call(self.session.start_audio_conversation(device, **options))

    def stop_audio_conversation(self) -> None:
        self._call(self.session.stop_audio_conversation())

    @property
    def handle(self) -> str | None:
        return self.session.handle

    @property
    def resume_count(self) -> int:
        return self.session.resume_count

    def close(self) -> None:
        try:
            if not self._runner.loop.is_closed():
                self._call(self.session.close(), 15)
        finally:
            self._runner.stop()

    def __enter__(self) -> SyncLiveSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def _connect(connect: Callable[[], Awaitable[LiveSession]]) -> LiveSession:
    return await connect()
