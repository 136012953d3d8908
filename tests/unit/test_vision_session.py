"""Frames in the session layer, with no sockets: where camera notes land in the conversation, bad
frames, turn coverage, the sliding window, resumption, and frames for an LLM that sees."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from openlive.engines.llm.base import SamplingParams
from openlive.engines.llm.openai_compat import OpenAICompatEngine
from openlive.engines.llm.scripted import ScriptedEngine
from openlive.engines.vision.base import Sight
from openlive.engines.vision.embedded import ImagesOnly
from openlive.engines.vision.service import SharedVision
from openlive.protocol import ProtocolError, parse_client_frame
from openlive.session.context import ContextPolicy, Conversation
from openlive.session.live_session import LiveSession, Persistence
from openlive.session.resumption import Snapshot
from openlive.store import open_store
from tests.support.images import encode, solid

from .test_session import Recorder, ev


class Labeller:
    """A fast, exact vision engine: the frame's red value is the 'text' it reads."""

    name, sees_images = "labeller", False

    def load(self):
        pass

    def look(self, image, previous):
        return Sight(text=(f"SIGN {int(image[0, 0, 0])}",), faces=0)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def frame(value: int) -> bytes:
    return encode(solid((value, 0, 0), (64, 48)), "PNG")


def video(data: bytes, mime: str = "image/png"):
    return ev({"realtimeInput": {"video": {"mimeType": mime, "data": b64(data)}}})


def user(text):
    return ev({"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": True}})


@pytest.fixture
async def vision():
    shared = SharedVision(Labeller())
    await shared.load()
    yield shared
    shared.close()


async def open_session(vision, engine=None, store=None, resumed=None, window=32768, **setup_extra):
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    setup = ev({"setup": {"model": "models/x", "generationConfig": {"responseModalities": ["TEXT"]}, **setup_extra}})
    engine = Recorder(engine or ScriptedEngine("s"))
    session = LiveSession(setup, llm=engine, send=send, session_id="abc", vision=vision, context_window=window,
                          persistence=Persistence(store, "owner") if store is not None else None, resumed=resumed)
    await session.start()
    return session, sent, engine


async def settle(session):
    for _ in range(400):
        await asyncio.sleep(0.005)
        if not session.busy and not session.camera._looking and (
                session.checkpoints.task is None or session.checkpoints.task.done()):
            return


def last_user(engine) -> str:
    return [m for m in engine.requests[-1].messages if m.role == "user"][-1].content


async def test_a_frame_shown_before_a_question_is_a_camera_note_just_before_it(vision):
    session, _, engine = await open_session(vision)
    await session.handle(video(frame(12)))
    await session.handle(user("What does the sign say?"))  # asked before the frame was looked at
    await settle(session)
    assert last_user(engine) == "[camera] The frame shows the text: 'SIGN 12'. No person or face is in view.\n" \
                                "What does the sign say?"
    assert session.conversation.history[0].media_tokens == 258
    assert "[camera]" in engine.requests[-1].messages[0].content  # the system prompt says what notes are


async def test_the_same_view_again_is_not_repeated_and_a_new_one_is_noted_in_its_turn(vision):
    session, _, engine = await open_session(vision)
    for _ in range(3):
        await session.handle(video(frame(12)))
        await settle(session)
    await session.handle(user("first"))
    await settle(session)
    await session.handle(video(frame(12)))
    await settle(session)
    await session.handle(user("second"))
    await settle(session)
    await session.handle(video(frame(40)))
    await settle(session)
    await session.handle(user("third"))
    await settle(session)
    texts = [t.text for t in session.conversation.history if t.role == "user"]
    assert texts[0].count("[camera]") == 1 and "SIGN 12" in texts[0]
    assert texts[1] == "second"  # still showing the same sign: nothing new to say
    assert texts[2].startswith("[camera] The frame shows the text: 'SIGN 40'.")
    # Every frame is counted, each in the turn it came with.
    assert [t.media_tokens for t in session.conversation.history if t.role == "user"] == [3 * 258, 258, 258]


async def test_an_inline_image_in_client_content_is_seen_before_its_words(vision):
    session, _, engine = await open_session(vision)
    await session.handle(ev({"clientContent": {"turns": [{"role": "user", "parts": [
        {"inlineData": {"mimeType": "image/png", "data": b64(frame(77))}}, {"text": "What is this?"}]}],
        "turnComplete": True}}))
    await settle(session)
    assert last_user(engine).startswith("[camera] The frame shows the text: 'SIGN 77'.")
    assert last_user(engine).endswith("What is this?")


@pytest.mark.parametrize("data, mime", [
    (b"not an image at all", "image/jpeg"), (frame(1), "text/plain"), (frame(1), "image/gif"),
])
async def test_a_frame_that_is_no_image_ends_the_session_with_1007(vision, data, mime):
    session, _, _ = await open_session(vision)
    with pytest.raises(ProtocolError) as error:
        await session.handle(video(data, mime))
    assert error.value.code == 1007 and error.value.reason.startswith("Request contains an invalid argument")


async def test_an_image_in_media_chunks_is_a_frame_too(vision):
    session, _, engine = await open_session(vision)
    await session.handle(ev({"realtimeInput": {"mediaChunks": [{"mimeType": "image/png", "data": b64(frame(5))}]}}))
    await session.handle(user("Look"))
    await settle(session)
    assert "SIGN 5" in last_user(engine)


@pytest.mark.parametrize("coverage, expected", [
    (None, ["SIGN 30"]),
    ("TURN_INCLUDES_ONLY_ACTIVITY", ["SIGN 30"]),
    ("TURN_INCLUDES_ALL_INPUT", ["SIGN 10", "SIGN 20", "SIGN 30"]),
    ("TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO", ["SIGN 10", "SIGN 20", "SIGN 30"]),
])
async def test_turn_coverage_decides_which_views_of_the_quiet_belong_to_the_turn(vision, coverage, expected):
    extra = {"realtimeInputConfig": {"turnCoverage": coverage}} if coverage else {}
    session, _, engine = await open_session(vision, **extra)
    for value in (10, 20, 30):
        await session.handle(video(frame(value)))
        await settle(session)
    await session.handle(user("What changed?"))
    await settle(session)
    seen = [line.split("'")[1] for line in last_user(engine).splitlines() if line.startswith("[camera]")]
    assert seen == expected


def test_the_sliding_window_drops_old_frames_before_old_words():
    conversation = Conversation(system_instruction="", tools=None, modality="TEXT", language=None,
                                policy=ContextPolicy.from_setup(
                                    parse_client_frame(json.dumps({"setup": {"model": "m", "contextWindowCompression": {
                                        "triggerTokens": 1000, "slidingWindow": {"targetTokens": 600}}}})
                                    ).context_window_compression, 32768))
    for i in range(3):
        for _ in range(2):
            conversation.add_media_tokens(258)
        conversation.append("user", f"question {i}", tokens=10)
        conversation.append("model", f"answer {i}", tokens=10)
    conversation.add_media_tokens(258)
    conversation.append("user", "last question", tokens=10)
    assert conversation.tokens == 0 + 7 * 258 + 70

    class Engine:
        name = "e"

    asyncio.run(conversation.fit(Engine()))
    # All the words are still there; the frames of the older turns are gone, the last turn's kept.
    assert [t.text for t in conversation.history] == ["question 0", "answer 0", "question 1", "answer 1",
                                                      "question 2", "answer 2", "last question"]
    assert [t.media_tokens for t in conversation.history] == [0, 0, 0, 0, 0, 0, 258]
    assert conversation.tokens <= 1000


@pytest.fixture
async def store(tmp_path):
    s = await open_store("sqlite", path=tmp_path / "state.sqlite3")
    yield s
    await s.aclose()


async def test_a_resumed_session_knows_what_the_camera_showed_before_the_disconnect(vision, store):
    session, sent, _ = await open_session(vision, store=store, sessionResumption={})
    await session.handle(user("Hello"))
    await settle(session)
    await session.handle(video(frame(88)))  # seen after the last turn: not in any turn yet
    await settle(session)
    handle = [m["sessionResumptionUpdate"] for m in sent if "sessionResumptionUpdate" in m][-1]["newHandle"]
    await session.aclose()
    snapshot = Snapshot.from_bytes(await store.get_snapshot(handle))
    assert snapshot.camera == ["[camera] The frame shows the text: 'SIGN 88'. No person or face is in view."]
    resumed, _, engine = await open_session(vision, store=store, resumed=snapshot,
                                            sessionResumption={"handle": handle})
    await resumed.handle(user("What does the sign say?"))
    await settle(resumed)
    assert "SIGN 88" in last_user(engine)


# ------------------------------------------------------------------ an LLM that sees

class ChatServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat server on loopback that records what it is sent."""

    bodies: list[dict] = []

    def do_GET(self):  # /v1/models
        self._reply(200, b'{"data": []}', "application/json")

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/tokenize"):
            self._reply(404, b"{}", "application/json")
            return
        ChatServer.bodies.append(body)
        chunks = [{"choices": [{"delta": {"content": "I see a red frame."}}]},
                  {"choices": [{"delta": {}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 300, "completion_tokens": 5}}]
        stream = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        self._reply(200, stream.encode(), "text/event-stream")

    def _reply(self, status, data, kind):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    ChatServer.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


async def test_an_llm_that_sees_gets_the_latest_frames_as_image_url_data_urls(chat_server):
    vision = SharedVision(ImagesOnly())
    await vision.load()
    llm = OpenAICompatEngine("remote", chat_server, model="vision-model")
    try:
        session, sent, _ = await open_session(vision, engine=llm,
                                              realtimeInputConfig={"turnCoverage": "TURN_INCLUDES_ALL_INPUT"})
        for value in (250, 10, 130):  # three views in the turn: only the latest two are sent
            await session.handle(video(encode(solid((value, 0, 0), (1600, 1200)), "PNG")))
            await settle(session)
        await session.handle(user("What colour is it?"))
        await settle(session)
    finally:
        vision.close()
        await llm.aclose()
    body = ChatServer.bodies[-1]
    content = body["messages"][-1]["content"]
    assert body["messages"][-1]["role"] == "user" and isinstance(content, list)
    assert content[0]["type"] == "text" and content[0]["text"].endswith("What colour is it?")
    urls = [part["image_url"]["url"] for part in content if part["type"] == "image_url"]
    assert len(urls) == 2 and all(u.startswith("data:image/jpeg;base64,") for u in urls)
    images = [Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))) for u in urls]
    assert [im.format for im in images] == ["JPEG", "JPEG"]
    assert all(max(im.size) == 768 for im in images)  # downscaled to MEDIUM before sending
    assert [im.getpixel((5, 5))[0] // 20 for im in images] == [10 // 20, 130 // 20]  # the latest two, in order


def test_only_the_latest_frames_are_kept_for_an_llm_that_sees():
    conversation = Conversation(system_instruction="", tools=None, modality="TEXT", language=None,
                                policy=ContextPolicy(32768, None, 32768))
    for turn in range(50):
        conversation.append("user", f"q{turn}")
        conversation.add_camera_notes(["[camera] A camera frame is attached."] * 3, [f"data:{turn}-{i}" for i in range(3)])
        conversation.append("model", f"a{turn}")
    kept = [url for t in conversation.history for url in t.images]
    assert kept == ["data:49-1", "data:49-2"]
    request = conversation.chat_request(SamplingParams())
    assert [m.images for m in request.messages if m.images] == [("data:49-1", "data:49-2")]


async def test_the_view_is_said_again_when_the_sliding_window_dropped_the_turn_that_said_it(vision):
    session, _, engine = await open_session(
        vision, contextWindowCompression={"triggerTokens": 600, "slidingWindow": {"targetTokens": 300}})
    await session.handle(video(frame(61)))
    await session.handle(user("What does the sign say?"))
    await settle(session)
    assert "SIGN 61" in last_user(engine)
    for n in range(6):  # long turns while the camera stays on the same sign
        await session.handle(video(frame(61)))
        await session.handle(user(f"Tell me about topic {n}. " + "words " * 60))
        await settle(session)
    assert not any("What does the sign say?" in t.text for t in session.conversation.history)  # its turn is gone
    assert "SIGN 61" in last_user(engine)  # but the last question still comes with the view


@pytest.mark.parametrize("coverage, expected", [
    (None, ["SIGN 30", "SIGN 40"]),
    ("TURN_INCLUDES_ALL_INPUT", ["SIGN 10", "SIGN 20", "SIGN 30", "SIGN 40"]),
])
async def test_a_view_changing_every_frame_while_the_user_speaks_adds_at_most_two_notes(vision, coverage, expected):
    # Each note is text the LLM reads after the turn ends: a camera whose view changes every frame
    # must not make the reply wait for a page of notes.
    extra = {"realtimeInputConfig": {"turnCoverage": coverage}} if coverage else {}
    session, _, engine = await open_session(vision, **extra)
    session.camera._speaking = lambda: True  # every frame arrives while the user is speaking
    for value in (10, 20, 30, 40):
        await session.handle(video(frame(value)))
        await settle(session)
    await session.handle(user("What do you see?"))
    await settle(session)
    seen = [line.split("'")[1] for line in last_user(engine).splitlines() if line.startswith("[camera]")]
    assert seen == expected


class Warming(Recorder):
    """A recording engine that can read ahead (`warm`), remembering what it was given."""

    def __init__(self, inner, delay: float = 0.0):
        super().__init__(inner)
        self.warmed: list = []
        self.delay = delay

    async def warm(self, request):
        await asyncio.sleep(self.delay)
        self.warmed.append(request)


async def test_a_camera_note_is_read_ahead_as_the_start_of_the_next_turn(vision):
    session, _, engine = await open_session(vision)
    warming = Warming(engine.inner)
    session.replies.llm = warming
    session.read_ahead._warm = warming.warm
    await session.handle(video(frame(12)))
    await settle(session)
    for _ in range(200):
        if warming.warmed:
            break
        await asyncio.sleep(0.01)
    assert len(warming.warmed) == 1
    read = warming.warmed[0].messages
    assert read[-1].role == "user" and read[-1].content.startswith("[camera] The frame shows the text: 'SIGN 12'.")
    await session.handle(user("What does the sign say?"))
    await settle(session)
    asked = warming.requests[-1].messages
    # The reply's request begins exactly as the one read ahead: the server's cache holds that much.
    assert asked[:-1] == read[:-1]
    assert asked[-1].content == read[-1].content + "\nWhat does the sign say?"


async def test_reading_ahead_waits_for_the_reply_and_takes_only_the_latest_view(vision):
    session, _, engine = await open_session(vision)
    warming = Warming(engine.inner, delay=0.05)
    session.read_ahead._warm = warming.warm
    session.read_ahead.min_gap_s = 0.3
    busy = True
    session.read_ahead._busy = lambda: busy
    await session.handle(video(frame(12)))
    await settle(session)
    await asyncio.sleep(0.1)
    assert warming.warmed == []  # the reply in progress has the LLM
    busy = False
    for value in (20, 30, 40):  # three views within one gap: only the last is read
        await session.handle(video(frame(value)))
        await settle(session)
    for _ in range(200):
        if warming.warmed and "SIGN 40" in warming.warmed[-1].messages[-1].content:
            break
        await asyncio.sleep(0.01)
    assert len(warming.warmed) <= 2 and "SIGN 40" in warming.warmed[-1].messages[-1].content
