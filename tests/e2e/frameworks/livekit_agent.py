"""A LiveKit Agents voice agent driven headless against a Live API server; prints what it saw as JSON.

Runs under the LiveKit venv (.venv-livekit, livekit-agents with its own google-genai 3.x), not the
test venv: the test starts the server, runs this script and asserts on its last line.

    python livekit_agent.py BASE_URL QUESTION.pcm BARGE_IN.pcm

The agent is LiveKit's own recipe, unmodified apart from the base URL: an AgentSession around
google.realtime.RealtimeModel with its default model, an Agent with a function tool. Audio in and
out are headless, as LiveKit's own tests do it: an AudioInput that yields 16 kHz frames in real
time (silence, or the speech a step asks for), an AudioOutput that "plays" what it is given in
real time and reports playback finished or interrupted.

Steps: a text turn (generate_reply with user input); a spoken question whose reply is interrupted
by more speech (barge-in); a question answered by the function tool.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback

from google.genai import types
from livekit import rtc
from livekit.agents import Agent, AgentSession, RunContext, function_tool
from livekit.agents.voice.io import AudioInput, AudioOutput, AudioOutputCapabilities
from livekit.plugins import google

from driver_support import wait_for as wait_until

RATE_IN = 16000
SAMPLES = RATE_IN // 50  # 20 ms frames
STEP_TIMEOUT_S = 120.0


class Microphone(AudioInput):
    """16 kHz frames in real time, 20 ms each: silence unless told to speak."""

    def __init__(self) -> None:
        super().__init__(label="headless-mic")
        self.pending = bytearray()
        self.start = time.monotonic()
        self.sent = 0

    def say(self, pcm: bytes) -> None:
        self.pending.extend(pcm)

    async def __anext__(self) -> rtc.AudioFrame:
        self.sent += 1
        await asyncio.sleep(max(0.0, self.start + self.sent * 0.02 - time.monotonic()))
        chunk = bytes(self.pending[:SAMPLES * 2]).ljust(SAMPLES * 2, b"\0")
        del self.pending[:SAMPLES * 2]
        return rtc.AudioFrame(data=chunk, sample_rate=RATE_IN, num_channels=1, samples_per_channel=SAMPLES)


class Speaker(AudioOutput):
    """Plays nothing, in real time: playback starts with the first frame of a segment and ends
    when its duration has passed (or at once, interrupted, when the buffer is cleared)."""

    def __init__(self) -> None:
        super().__init__(label="headless-speaker", capabilities=AudioOutputCapabilities(pause=False))
        self.segments: list[dict] = [self._new()]
        self.started_at = 0.0
        self.pushed_s = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.sounding = asyncio.Event()

    @staticmethod
    def _new() -> dict:
        return {"audio_bytes": 0, "sample_rates": [], "interrupted": None}

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        segment = self.segments[-1]
        if not self.pushed_s:
            self.started_at = time.time()
            self.on_playback_started(created_at=self.started_at)
        self.pushed_s += frame.duration
        segment["audio_bytes"] += len(frame.data.tobytes())
        if frame.sample_rate not in segment["sample_rates"]:
            segment["sample_rates"].append(frame.sample_rate)
        self.sounding.set()

    def flush(self) -> None:
        super().flush()
        if not self.pushed_s:
            return
        if self.timer:
            self.timer.cancel()
        remaining = self.pushed_s - (time.time() - self.started_at)
        self.timer = asyncio.get_running_loop().call_later(max(0.0, remaining), self._finished, False)

    def clear_buffer(self) -> None:
        if not self.pushed_s:
            return
        if self.timer:
            self.timer.cancel()
        self._finished(True)

    def _finished(self, interrupted: bool) -> None:
        self.timer = None
        position = min(self.pushed_s, time.time() - self.started_at)
        self.pushed_s = 0.0
        self.segments[-1]["interrupted"] = interrupted
        self.segments.append(self._new())
        self.sounding.clear()
        self.on_playback_finished(playback_position=position, interrupted=interrupted)


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a helpful voice assistant.")
        self.calls: list[dict] = []

    @function_tool
    async def get_current_weather(self, context: RunContext, location: str) -> dict:
        """Get the current weather for a place.

        Args:
            location: The city
        """
        self.calls.append({"location": location})
        return {"location": location, "forecast": "sunny and 22 degrees"}


async def wait_for(predicate, what: str) -> None:
    await wait_until(predicate, what, STEP_TIMEOUT_S)


async def main(base_url: str, question_path: str, barge_in_path: str) -> dict:
    result: dict = {"steps": []}
    model = google.realtime.RealtimeModel(api_key="livekit-key", http_options=types.HttpOptions(base_url=base_url))
    result["model"] = model.model  # the default, reported, not set
    session = AgentSession(llm=model)
    mic, speaker, agent = Microphone(), Speaker(), Assistant()
    session.input.audio = mic
    session.output.audio = speaker

    transcripts: list[dict] = []
    replies: list[str] = []
    handles: list = []
    tools_executed: list[dict] = []
    errors: list[str] = []
    session.on("user_input_transcribed",
               lambda ev: transcripts.append({"text": ev.transcript, "final": ev.is_final}))
    session.on("conversation_item_added", lambda ev: replies.append(ev.item.text_content or "")
               if getattr(ev.item, "role", None) == "assistant" else None)
    session.on("speech_created", lambda ev: handles.append(ev.speech_handle))
    session.on("function_tools_executed", lambda ev: tools_executed.append(
        {"calls": [c.name for c in ev.function_calls], "outputs": [o.output for o in ev.function_call_outputs]}))
    session.on("error", lambda ev: errors.append(repr(ev.error)))

    def step(name: str, first_segment: int, **extra) -> None:
        segments = speaker.segments[first_segment:-1] or speaker.segments[first_segment:]
        result["steps"].append({"step": name, "audio_bytes": sum(s["audio_bytes"] for s in segments),
                                "sample_rates": sorted({r for s in segments for r in s["sample_rates"]}),
                                "interrupted": any(s["interrupted"] for s in segments), **extra})

    try:
        await session.start(agent)

        # 1. A text turn.
        first = len(speaker.segments)
        began = time.monotonic()
        handle = session.generate_reply(user_input="Say hello.")
        await asyncio.wait_for(handle.wait_for_playout(), STEP_TIMEOUT_S)
        step("text", first - 1, text=replies[-1] if replies else "", seconds=round(time.monotonic() - began, 2))

        # 2. A spoken question; once its reply sounds, the user talks over it.
        first, replies_before = len(speaker.segments), len(replies)
        with open(question_path, "rb") as f:
            mic.say(f.read())
        speaker.sounding.clear()
        await asyncio.wait_for(speaker.sounding.wait(), STEP_TIMEOUT_S)
        interrupted_handle = handles[-1]
        with open(barge_in_path, "rb") as f:
            mic.say(f.read())
        await wait_for(lambda: interrupted_handle.interrupted, "interruption of the spoken reply")
        # LiveKit marks the handle first and clears the audio output a moment later: wait for the
        # playback to end too, or on a busy machine the step is read before the speaker knows.
        await wait_for(lambda: any(s["interrupted"] for s in speaker.segments[first - 1:]),
                       "the interrupted playback to end")
        step("spoken", first - 1, handle_interrupted=interrupted_handle.interrupted)
        # The barge-in is a turn of its own, answered in full.
        first = len(speaker.segments)
        await wait_for(lambda: handles[-1] is not interrupted_handle, "reply to the barge-in")
        await asyncio.wait_for(handles[-1].wait_for_playout(), STEP_TIMEOUT_S)
        step("barge_in", first - 1, replies=replies[replies_before:])

        # 3. A question the function tool answers.
        first, replies_before = len(speaker.segments), len(replies)
        handle = session.generate_reply(user_input="What is the weather in Paris?")
        await asyncio.wait_for(handle.wait_for_playout(), STEP_TIMEOUT_S)
        await wait_for(lambda: any("sunny" in r for r in replies[replies_before:]), "reply using the tool's result")
        await asyncio.wait_for(handles[-1].wait_for_playout(), STEP_TIMEOUT_S)
        step("tool", first - 1, replies=replies[replies_before:])
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        result.update(transcripts=transcripts, replies=replies, calls=agent.calls, tools_executed=tools_executed,
                      errors=errors)
        try:
            await asyncio.wait_for(session.aclose(), 15)
        except Exception:
            pass
    return result


if __name__ == "__main__":
    from importlib.metadata import version

    out = asyncio.run(main(*sys.argv[1:4]))
    out["versions"] = {"livekit-agents": version("livekit-agents"), "google-genai": version("google-genai")}
    print(json.dumps(out, default=str))
