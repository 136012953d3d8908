"""Acceptance (issue 12): frames the model can actually see. Real server, the embedded default
(Qwen2.5-Coder-1.5B reading the vision engine's notes: RapidOCR, OpenCV), the unmodified SDK."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from http.server import ThreadingHTTPServer

import pytest
from google import genai
from google.genai import errors, types

from tests.e2e.test_speech_in import Collector, has, silence, stream
from tests.support.audio import speak_16k
from tests.support.images import encode, face_photo, landscape, sign, solid
from tests.unit.test_vision_session import ChatServer

pytestmark = pytest.mark.e2e

MODEL = "gemini-live-2.5-flash-preview"
SIGNS = {
    "dark on light": (sign("OPEN 24 HOURS"), "open 24 hours"),
    "light on a panel": (sign("PLATFORM 9", fg=(255, 255, 255), bg=(225, 225, 220), panel=(20, 70, 160)), "platform 9"),
}


def client(server) -> genai.Client:
    return genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.base_url))


def text_config(**extra) -> types.LiveConnectConfig:
    return types.LiveConnectConfig(response_modalities=["TEXT"], temperature=0, max_output_tokens=60, **extra)


async def show(session, image, frames: int = 3) -> None:
    """The camera held on one view: a JPEG a second, as the Live API expects."""
    data = encode(image)
    for i in range(frames):
        await session.send_realtime_input(video=types.Blob(data=data, mime_type="image/jpeg"))
        if i < frames - 1:
            await asyncio.sleep(1.0)


async def ask(session, text: str) -> str:
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]))
    reply = ""
    async for message in session.receive():
        reply += message.text or ""
    return reply


def squeeze(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


@pytest.mark.parametrize("kind", list(SIGNS))
async def test_a_sign_shown_to_the_camera_is_read_back_when_asked(embedded_server, kind):
    image, words = SIGNS[kind]
    async with client(embedded_server).aio.live.connect(model=MODEL, config=text_config()) as session:
        await show(session, image)
        reply = await asyncio.wait_for(ask(session, "What does the sign say?"), 120)
    print(f"{kind}: {reply!r}")
    assert words in squeeze(reply), reply


async def test_a_spoken_question_about_the_sign_is_answered_with_its_words(embedded_server):
    image, words = SIGNS["dark on light"]
    config = text_config(input_audio_transcription={})
    async with client(embedded_server).aio.live.connect(model=MODEL, config=config) as session:
        collector = Collector(session)
        await show(session, image)
        await stream(session, silence(0.3) + speak_16k("What does the sign say?") + silence(2.0))
        await collector.wait(has("turn_complete"), timeout=120)
        await collector.close()
    reply = "".join(m.text or "" for _, m in collector.messages)
    print(f"heard {collector.input_text()!r}, said {reply!r}")
    assert "sign" in collector.input_text().lower(), collector.input_text()
    assert words in squeeze(reply), reply


@pytest.mark.parametrize("rgb, colour", [((20, 60, 220), "blue"), ((220, 30, 30), "red")])
async def test_a_solid_colour_frame_is_named_by_its_colour(embedded_server, rgb, colour):
    async with client(embedded_server).aio.live.connect(model=MODEL, config=text_config()) as session:
        await show(session, solid(rgb), frames=1)
        reply = await asyncio.wait_for(ask(session, "What colour do you see?"), 120)
    print(f"{colour}: {reply!r}")
    assert colour in reply.lower(), reply


async def is_anyone_there(server, image) -> str:
    async with client(server).aio.live.connect(model=MODEL, config=text_config()) as session:
        await show(session, image, frames=2)
        return await asyncio.wait_for(ask(session, "Is anyone there?"), 120)


async def test_is_anyone_there_is_answered_by_whether_a_face_is_in_view(embedded_server):
    with_face = await is_anyone_there(embedded_server, face_photo())
    without = await is_anyone_there(embedded_server, landscape())
    print(f"face: {with_face!r}; no face: {without!r}")
    yes = re.compile(r"\b(yes|someone|somebody|a person|one person)\b", re.IGNORECASE)
    no = re.compile(r"\b(no|nobody|no one|not anyone|empty)\b", re.IGNORECASE)
    assert yes.search(with_face) and not no.search(with_face.split(".")[0]), with_face
    assert no.search(without) and not yes.search(without.split(".")[0]), without


async def test_a_resumed_session_answers_about_a_frame_sent_before_the_disconnect(embedded_server):
    image, words = SIGNS["light on a panel"]
    config = text_config(session_resumption=types.SessionResumptionConfig())
    async with client(embedded_server).aio.live.connect(model=MODEL, config=config) as session:
        collector = Collector(session)
        await collector.wait(lambda m: bool(handles(collector)))
        await show(session, image, frames=1)
        # Once the frame is seen the conversation has changed: a new handle holds it.
        await collector.wait(lambda m: len(handles(collector)) >= 2, timeout=60)
        handle = handles(collector)[-1]
        await collector.close()
    config = text_config(session_resumption=types.SessionResumptionConfig(handle=handle))
    async with client(embedded_server).aio.live.connect(model=MODEL, config=config) as session:
        reply = await asyncio.wait_for(ask(session, "What does the sign say?"), 120)
    print(f"resumed: {reply!r}")
    assert words in squeeze(reply), reply


def handles(collector) -> list[str]:
    return [m.session_resumption_update.new_handle for _, m in collector.messages
            if m.session_resumption_update and m.session_resumption_update.new_handle]


# ------------------------------------------------------------------ bad frames


BAD_FRAMES = {
    "undecodable": (b"\xff\xd8\xff\xe0 this is not really a jpeg", "image/jpeg"),
    "wrong mime type": (encode(solid((1, 2, 3))), "image/gif"),
    "20000x20000 header": (None, "image/png"),
    # Past the 8 MiB a frame may have, within the 16 MiB a message may have (past that the
    # transport refuses the message itself, with 1009).
    "9 MB frame": (encode(solid((1, 2, 3))) + b"\0" * (9 << 20), "image/jpeg"),
}


@pytest.mark.parametrize("kind", list(BAD_FRAMES))
async def test_a_bad_frame_ends_its_session_with_1007_and_the_server_carries_on(scripted_server, kind):
    from tests.unit.test_vision import png_header

    data, mime = BAD_FRAMES[kind]
    data = data if data is not None else png_header(20000, 20000)
    rss_before = rss_kib(scripted_server)
    good = genai.Client(api_key="good-key", http_options=types.HttpOptions(base_url=scripted_server.base_url))
    async with good.aio.live.connect(model=MODEL, config=types.LiveConnectConfig(response_modalities=["TEXT"])) \
            as healthy:
        bad = genai.Client(api_key="good-key", http_options=types.HttpOptions(base_url=scripted_server.base_url))
        with pytest.raises(errors.APIError) as info:
            async with bad.aio.live.connect(model=MODEL, config=types.LiveConnectConfig(
                    response_modalities=["TEXT"])) as session:
                await session.send_realtime_input(video=types.Blob(data=data, mime_type=mime))
                async for _ in session.receive():
                    pass
        assert info.value.code == 1007
        assert "Request contains an invalid argument" in info.value.details
        # The other session on the same server is untouched.
        reply = await asyncio.wait_for(ask(healthy, "hello"), 60)
        assert reply
    # Nothing of the bad frame stays behind (a decoded 20000×20000 frame alone would be 1.2 GB).
    assert rss_kib(scripted_server) - rss_before < 100 * 1024
    assert "Traceback" not in scripted_server.log()


def rss_kib(server) -> int:
    status = open(f"/proc/{server.process.pid}/status").read()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))


# ------------------------------------------------------------------ an LLM that sees


@pytest.fixture
def chat_server():
    ChatServer.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


async def test_a_remote_vision_llm_gets_the_frames_in_the_openai_image_format(start_server, chat_server):
    server = start_server(f"""
[llm.default]
engine = "openai"
base_url = "{chat_server}"
model = "some-vision-model"

[vision]
engine = "remote"
""")
    async with client(server).aio.live.connect(model=MODEL, config=text_config()) as session:
        await show(session, sign("EXIT 12"), frames=1)
        reply = await asyncio.wait_for(ask(session, "What does the sign say?"), 60)
    assert reply == "I see a red frame."
    body = ChatServer.bodies[-1]
    assert body["model"] == "some-vision-model"
    message = body["messages"][-1]
    assert message["role"] == "user"
    kinds = [part["type"] for part in message["content"]]
    assert kinds == ["text", "image_url"], json.dumps(body)[:400]
    assert message["content"][0]["text"].endswith("What does the sign say?")
    assert message["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,/9j/")


async def test_frames_faster_than_they_can_be_seen_are_dropped_and_memory_stays_bounded(scripted_server):
    """Two sessions flood the server with 60 different 1536 px frames each, as fast as they can send,
    twice: the worker looks at what it can, drops the rest oldest first (counted), the sessions
    still answer, and the second flood leaves memory where the first did (the first one pays for
    the OCR models' working memory, once)."""
    from tests.e2e.test_metrics import sample, scrape

    pictures = [encode(sign(f"GATE {n}", size=(1536, 864))) for n in range(60)]
    good = genai.Client(api_key="good-key", http_options=types.HttpOptions(base_url=scripted_server.base_url))
    config = types.LiveConnectConfig(response_modalities=["TEXT"])

    async def flood() -> float:
        before = scrape(scripted_server)
        async with good.aio.live.connect(model=MODEL, config=config) as first, \
                good.aio.live.connect(model=MODEL, config=config) as second:
            for picture in pictures:
                for session in (first, second):
                    await session.send_realtime_input(video=types.Blob(data=picture, mime_type="image/jpeg"))
            reply = await asyncio.wait_for(ask(first, "hello"), 60)  # the session still answers
            assert reply.startswith("You said:")
        return sample(scrape(scripted_server), "openlive_frames_dropped_total", kind="video") - \
            sample(before, "openlive_frames_dropped_total", kind="video")

    first_dropped = await flood()
    await asyncio.sleep(1.0)
    rss_after_first = rss_kib(scripted_server)
    second_dropped = await flood()
    await asyncio.sleep(1.0)
    grown_mib = (rss_kib(scripted_server) - rss_after_first) / 1024
    print(f"dropped {first_dropped:.0f} and {second_dropped:.0f} of 120 frames; the second flood grew RSS by "
          f"{grown_mib:.1f} MiB (to {rss_kib(scripted_server) / 1024:.0f} MiB)")
    assert first_dropped >= 60 and second_dropped >= 60  # far more came than one worker could look at
    assert grown_mib < 50
