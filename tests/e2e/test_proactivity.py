"""Acceptance (issue 24, item 6): proactivity.proactiveAudio, with the unmodified SDK against a real
server on the embedded default models (LLM, speech recognition).

One session: a typed question (realtimeInput.text) is answered; a sentence said to someone else in
the room, spoken into the microphone, is transcribed but gets no reply, only the turnComplete
that closes it with turnCompleteReason RESPONSE_REJECTED; the next question is answered again.
Deadlines are generous (a busy 2-core machine), and nothing is timed."""

from __future__ import annotations

import asyncio

import pytest
from google import genai
from google.genai import types

from tests.e2e.test_speech_in import END_S, Collector, silence, stream
from tests.support.audio import speak_16k

pytestmark = pytest.mark.e2e

SIDE_TALK = "Honey, did you remember to feed the cat?"
QUIET_AFTER_S = 8.0  # how long nothing more may arrive after the side talk's turn was closed


def turn_ends(heard: Collector) -> list[types.LiveServerMessage]:
    return [m for _, m in heard.messages if m.server_content and m.server_content.turn_complete]


def reply_text(messages) -> str:
    return "".join(p.text or "" for m in messages if m.server_content and m.server_content.model_turn
                   for p in m.server_content.model_turn.parts or ())


async def test_side_talk_is_heard_but_not_answered_while_questions_are(embedded_server):
    side_talk = speak_16k(SIDE_TALK)
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=embedded_server.base_url))
    config = types.LiveConnectConfig(response_modalities=["TEXT"], input_audio_transcription={},
                                     proactivity=types.ProactivityConfig(proactive_audio=True))
    async with client.aio.live.connect(model="gemini-3.1-flash-live-preview", config=config) as session:
        heard = Collector(session)
        try:
            # 1. A question to the assistant: answered.
            await session.send_realtime_input(text="What is the capital of Italy?")
            await heard.wait(lambda m: len(turn_ends(heard)) >= 1, timeout=180)
            first = [m for _, m in heard.messages]
            assert "rome" in reply_text(first).lower(), reply_text(first)
            assert turn_ends(heard)[0].server_content.turn_complete_reason is None

            # 2. Said to someone else in the room: heard and transcribed, not answered.
            mark = len(heard.messages)
            await stream(session, silence(0.5) + side_talk + silence(END_S))
            await heard.wait(lambda m: len(turn_ends(heard)) >= 2, timeout=180)
            await asyncio.sleep(QUIET_AFTER_S)
            second = [m for _, m in heard.messages[mark:]]
            assert "cat" in heard.input_text().lower(), heard.input_text()
            assert reply_text(second) == ""
            assert not any(m.server_content and (m.server_content.model_turn or m.server_content.generation_complete)
                           for m in second)
            closed = turn_ends(heard)[1]
            assert closed.server_content.turn_complete_reason == types.TurnCompleteReason.RESPONSE_REJECTED
            assert closed.usage_metadata.prompt_token_count > 0 and not closed.usage_metadata.response_token_count
            assert len(turn_ends(heard)) == 2  # nothing else came in the wait

            # 3. The next question is answered again.
            mark = len(heard.messages)
            await session.send_realtime_input(text="And what is the capital of Spain?")
            await heard.wait(lambda m: len(turn_ends(heard)) >= 3, timeout=180)
            assert "madrid" in reply_text([m for _, m in heard.messages[mark:]]).lower()
        finally:
            await heard.close()
