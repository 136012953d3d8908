"""Acceptance (issue 24, point 4): usageMetadata by modality, as Google's Live API counts it.

One session, the unmodified SDK against a real server process (scripted LLM, the embedded speech
recognizer and voice): a typed turn, a spoken turn (a synthesized question, 16 kHz PCM) and a
turn with a JPEG frame sent as realtimeInput.video, answered in speech. Each turnComplete's
usage says what the model read by modality (TEXT; AUDIO at 25 tokens a second of speech, the
user's and its own earlier replies; IMAGE at 258 tokens a frame), that it answered in AUDIO at 25
tokens a second of what it said, and each count is the sum of its details."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import types

from tests.e2e.test_speech_in import END_S, Collector, has, silence, stream
from tests.support.audio import speak_16k
from tests.support.images import encode, sign

pytestmark = pytest.mark.e2e

SCRIPT = """
token_delay_ms = 10

[[reply]]
match = "hello"
text = "Hello! What would you like to know?"

[[reply]]
match = "library"
text = "The library opens at nine in the morning."

[[reply]]
match = "sign"
text = "The sign says open all day."
"""
QUESTION = "What time does the library open tomorrow?"


@pytest.fixture(scope="module")
def server(start_server, tmp_path_factory):
    script = tmp_path_factory.mktemp("usage") / "replies.toml"
    script.write_text(SCRIPT)
    # No vision engine: frames are counted all the same (the service counts every frame it is sent).
    return start_server(f'[llm.default]\nengine = "scripted"\nscript = "{script}"\n\n[vision]\nengine = "none"\n')


def details(rows) -> dict[str, int]:
    return {row.modality.name: row.token_count for row in rows or ()}


def consistent(usage: types.UsageMetadata) -> tuple[dict[str, int], dict[str, int]]:
    """Each count is the sum of its details, and the total adds them up."""
    prompt, response = details(usage.prompt_tokens_details), details(usage.response_tokens_details)
    assert usage.prompt_token_count == sum(prompt.values())
    assert usage.response_token_count == sum(response.values())
    assert usage.total_token_count == usage.prompt_token_count + usage.response_token_count \
        + (usage.tool_use_prompt_token_count or 0)
    return prompt, response


async def test_one_session_with_text_speech_and_frames_reports_usage_by_modality(server):
    question = speak_16k(QUESTION)
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.base_url))
    config = types.LiveConnectConfig(response_modalities=["AUDIO"], input_audio_transcription={})
    async with client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=config) as session:
        heard = Collector(session)

        def turns():
            return [m for _, m in heard.messages if m.server_content and m.server_content.turn_complete]

        def spoken_since(start: int) -> float:
            """Seconds of 24 kHz speech the server sent after message `start`."""
            return sum(len(m.data) for _, m in heard.messages[start:] if m.data) / 48000

        # 1. Typed.
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="hello")]))
        await heard.wait(lambda m: len(turns()) >= 1)
        typed = turns()[0].usage_metadata
        prompt, response = consistent(typed)
        assert set(prompt) == {"TEXT"} and prompt["TEXT"] > 0
        reply1 = spoken_since(0)
        assert set(response) == {"AUDIO"} and response["AUDIO"] == round(reply1 * 25) > 0

        # 2. Spoken: a synthesized question, streamed like a microphone.
        mark = len(heard.messages)
        await stream(session, silence(0.5) + question + silence(END_S))
        await heard.wait(lambda m: len(turns()) >= 2, timeout=90)
        assert "library" in heard.input_text().lower()
        prompt, response = consistent(turns()[1].usage_metadata)
        assert set(prompt) == {"TEXT", "AUDIO"}
        # The question at 25 tokens a second (as the server cut it from the stream: a little
        # preroll and tail around the words), beside the first reply's speech.
        asked = prompt["AUDIO"] - round(reply1 * 25)
        assert 25 * len(question) / 32000 - 5 <= asked <= 25 * (len(question) / 32000 + 1.5), \
            (asked, len(question) / 32000)
        reply2 = spoken_since(mark)
        assert response == {"AUDIO": round(reply2 * 25)}

        # 3. A frame (realtimeInput.video, a JPEG), then the question about it.
        mark = len(heard.messages)
        await session.send_realtime_input(video=types.Blob(data=encode(sign("OPEN ALL DAY")), mime_type="image/jpeg"))
        await session.send_client_content(turns=types.Content(role="user", parts=[
            types.Part(text="What does the sign say?")]))
        await heard.wait(lambda m: len(turns()) >= 3, timeout=60)
        usage = turns()[2].usage_metadata
        await heard.close()
    prompt, response = consistent(usage)
    # Frames sent as realtimeInput.video are counted as IMAGE (258 tokens each at the default
    # mediaResolution), as the Live API reports them.
    assert prompt["IMAGE"] == 258
    assert prompt["AUDIO"] == asked + round(reply1 * 25) + round(reply2 * 25)
    assert prompt["TEXT"] > 0
    assert [row.modality for row in usage.prompt_tokens_details] == [
        types.MediaModality.TEXT, types.MediaModality.IMAGE, types.MediaModality.AUDIO]
    assert response == {"AUDIO": round(spoken_since(mark) * 25)} and response["AUDIO"] > 0
