"""A Python client for any Live API server (openlive or Google's), speaking the wire protocol itself.

```python
import asyncio
from openlive.client import LiveModel

async def main() -> None:
    model = LiveModel("gemini-live-2.5-flash-preview", {"response_modalities": ["TEXT"]},
                      base_url="https://127.0.0.1:8443", api_key="anything")
    async with model.connect() as session:
        await session.send_text("Hello!")
        async for message in session.receive_turn():
            print(message.text or "", end="", flush=True)

asyncio.run(main())
```

Modules, each depending only on those after it: `model` (`LiveModel`), `sync` (a blocking
wrapper), `session` (`LiveSession`, automatic resumption), `audio` (microphone and speaker), `wire`
(URLs, headers, client messages, server-message parsing; no I/O); beside them `tls` (trusting a
local server's certificate) and `talk` (`openlive talk`, which uses them all).
"""

from .audio import AudioConversation, AudioDevice, AudioUnavailable, EchoGate, MemoryAudioDevice, Player
from .errors import LiveError
from .model import LiveModel
from .session import LiveSession
from .sync import SyncLiveSession
from .tls import client_ssl_context
from .wire import FunctionCall, LiveMessage, ResumptionUpdate

__all__ = [
    "AudioConversation", "AudioDevice", "AudioUnavailable", "EchoGate", "FunctionCall", "LiveError", "LiveMessage",
    "LiveModel", "LiveSession", "MemoryAudioDevice", "Player", "ResumptionUpdate", "SyncLiveSession",
    "client_ssl_context",
]
