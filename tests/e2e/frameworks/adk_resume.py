"""A Google ADK agent (`Runner.run_live` with session resumption on) whose connection goes away
mid-conversation; prints what it saw as JSON.

Runs under the ADK venv (.venv-adk), like adk_agent.py, and is as unmodified: it reaches the
server through GOOGLE_GEMINI_BASE_URL, here pointed at a TCP proxy in this process that forwards
to the server (TLS passes through it untouched) and counts the connections ADK makes:

    python adk_resume.py MODEL drop|goaway

ADK keeps the latest handle from sessionResumptionUpdate and, when its connection ends with
1000, 1006 or 1011 or the server sends goAway, connects again with that handle and does not
replay the history. Steps, in one run_live stream: the user says their name; once the turn is
over and a resumable handle has come, the connection goes away (`drop`: the proxy cuts both TCP
connections, so ADK sees 1006; `goaway`: the server, started with a short connection lifetime,
sends goAway); ADK reconnects; the user asks their name, which only the resumed conversation knows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import traceback
from urllib.parse import urlsplit

from google.adk.agents import Agent
from google.adk.agents.live_request_queue import LiveRequestQueue
from google.adk.agents.run_config import RunConfig
from google.adk.runners import InMemoryRunner
from google.genai import types

from driver_support import wait_for as wait_until

STEP_TIMEOUT_S = 180.0


class Proxy:
    """TCP in, TCP out, byte for byte; `drop` aborts every connection (no close frame, no FIN)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.accepted = 0
        self.pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.pairs.append((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def drop(self) -> None:
        for client, upstream in self.pairs:
            client.transport.abort()
            upstream.transport.abort()


class Notes(logging.Handler):
    """ADK's own account of the connection (reconnects, goAway, closes)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(word in message.lower() for word in ("reconnect", "go away", "connection", "closed")):
            self.lines.append(message[:300])


async def wait_for(predicate, what: str) -> None:
    await wait_until(predicate, what, STEP_TIMEOUT_S)


async def main(model: str, mode: str) -> dict:
    result: dict = {"model": model, "mode": mode, "steps": [], "handles": 0}
    notes = Notes()
    adk_log = logging.getLogger("google_adk")
    adk_log.setLevel(logging.INFO)
    adk_log.addHandler(notes)

    server = urlsplit(os.environ["GOOGLE_GEMINI_BASE_URL"])
    proxy = Proxy(server.hostname, server.port)
    await proxy.start()
    os.environ["GOOGLE_GEMINI_BASE_URL"] = f"https://{server.hostname}:{proxy.port}"

    agent = Agent(name="helper", model=model, instruction="You are a helpful assistant.")
    runner = InMemoryRunner(agent=agent, app_name="openlive-resumption")
    session = await runner.session_service.create_session(app_name="openlive-resumption", user_id="u")
    queue = LiveRequestQueue()
    config = RunConfig(response_modalities=[types.Modality.TEXT], session_resumption=types.SessionResumptionConfig())
    events = runner.run_live(user_id="u", session_id=session.id, live_request_queue=queue, run_config=config)

    inbox: asyncio.Queue = asyncio.Queue()
    resumable: list[bool] = []  # one per sessionResumptionUpdate: did it carry a handle to resume with?

    async def read() -> None:
        try:
            async for event in events:
                update = event.live_session_resumption_update
                if update is not None:
                    resumable.append(bool(update.resumable and update.new_handle))
                    continue
                await inbox.put(event)
        except BaseException as exc:  # noqa: BLE001 - handed to the step that waits
            await inbox.put(exc)
            raise

    async def turn(prompt: str) -> dict:
        step: dict = {"prompt": prompt, "text": ""}
        queue.send_content(types.Content(role="user", parts=[types.Part(text=prompt)]))
        async with asyncio.timeout(STEP_TIMEOUT_S):
            while True:
                event = await inbox.get()
                if isinstance(event, BaseException):
                    raise event
                content = event.content
                for part in (content.parts or []) if content else []:
                    if part.text and not event.partial and content.role == "model":
                        step["text"] += part.text
                if event.turn_complete and step["text"]:
                    return step

    reader = asyncio.create_task(read())
    try:
        result["steps"].append(await turn("My name is Alice. Say hello to me."))
        # The turn is over: wait for the handle that resumes after it.
        await wait_for(lambda: resumable and resumable[-1], "resumable handle after the first turn")
        result["handles"] = len(resumable)
        if mode == "drop":
            proxy.drop()
        # ADK connects again by itself (after the drop at once; after goAway when it comes).
        await wait_for(lambda: proxy.accepted >= 2, "second connection")
        result["steps"].append(await turn("What is my name?"))
        result["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - reported as JSON for the test to assert on
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["trace"] = traceback.format_exc()[-2000:]
    finally:
        result["connections"] = proxy.accepted
        result["adk_log"] = notes.lines
        queue.close()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await events.aclose()
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:3]))), flush=True)
