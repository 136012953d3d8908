"""Turn-taking: the user's audio in, their turns out. What happens when the user stops talking.

Owns: the user's audio stream (`UserAudio`: resampling, VAD frames, the utterance being heard),
the recognition started early in a pause, and the activity signals of both modes (automatic
detection, or the client's `activityStart`/`activityEnd`). Touches: the recognizer, the wire
(`inputTranscription`), the consumed-message ledger, and its host, the session, for the three
things a turn does beyond this room: barge-in, running a user turn, and failing.

When the user stops talking (automatic mode):

1. The detector sees `pause_ms` of quiet inside speech (`Activity.PAUSE`): recognition starts
   on the utterance so far, speculatively, so the transcript is ready when the turn ends. If
   speech comes back (`Activity.RESUME`) that transcript is stale and is dropped.
2. At `silenceDurationMs` of quiet (`Activity.END`), or on `audioStreamEnd`, the turn ends:
   its audio is taken out of `UserAudio` and becomes a user-turn task beside the reader, so
   audio keeps flowing while it is recognized.
3. The task waits for the speculative transcript (or recognizes now), sends
   `inputTranscription` if asked for, and hands the text to the session, which appends it to the
   conversation and starts the reply. An empty transcript (a cough, a breath) is no turn.

The detector's state table is in `activity.py`; the audio buffer in `user_audio.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from ..engines.asr.service import Recognizer
from ..engines.asr.whisper import Transcript
from ..protocol import server_messages as sm
from ..protocol.errors import ProtocolError, internal_error, invalid_argument
from ..protocol.messages import RealtimeInput
from .activity import Activity
from .context import AUDIO_TOKENS_PER_SECOND
from .options import SessionOptions
from .user_audio import UserAudio, VoiceActivityModel

log = logging.getLogger(__name__)

BYTES_PER_SECOND = 32000  # 16 kHz, 16-bit


class TurnHost(Protocol):
    """What a user turn needs from the session around it."""

    async def on_speech_start(self) -> None:
        """The user started speaking (barge-in point)."""

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a user turn beside the reader."""

    async def take_user_turn(self, text: str, tokens: int | None = None) -> None:
        """Put the user's words in the conversation and reply to them."""

    def fail(self, error: ProtocolError) -> None:
        """End the session with this error."""


class AudioLedger(Protocol):
    """Which audio the session state already reflects (transparent resumption's consumed index)."""

    def heard_audio(self, seconds: float, *, in_utterance: bool) -> None: ...

    def utterance_taken(self) -> None: ...


class TurnTaking:
    def __init__(self, *, options: SessionOptions, host: TurnHost, ledger: AudioLedger, send: sm.Send,
                 asr: Recognizer | None, vad_factory: Callable[[], VoiceActivityModel] | None) -> None:
        self.options = options
        self.host = host
        self.ledger = ledger
        self._send = send
        self.asr = asr
        self.vad_factory = vad_factory
        self.user_audio: UserAudio | None = None
        self._speculative: asyncio.Task[Transcript] | None = None  # recognition started in a pause

    @property
    def manual(self) -> bool:
        return self.options.activity is None

    def check_signals(self, event: RealtimeInput) -> None:
        """Each mode has its own signals; the other mode's are refused, as on the Live API."""
        if (event.activity_start is not None or event.activity_end is not None) and not self.manual:
            raise invalid_argument("Request contains an invalid argument: activityStart and activityEnd need "
                                   "automaticActivityDetection.disabled = true.")
        if event.audio_stream_end and self.manual:
            raise invalid_argument("Request contains an invalid argument: audioStreamEnd is only allowed while "
                                   "automatic activity detection is on.")

    async def activity_start(self) -> None:
        """Manual mode: the client says the user started speaking."""
        await self.host.on_speech_start()
        (await self._audio_input()).start_capture()

    def activity_end(self) -> None:
        """Manual mode: the client says the user stopped speaking."""
        if self.user_audio is not None and self.user_audio.capturing:
            self._end_turn()

    def audio_stream_end(self) -> None:
        """The client's microphone closed: a turn in progress ends now, without waiting for silence."""
        if self.user_audio is not None and self.user_audio.speaking:
            self._end_turn()

    async def _audio_input(self) -> UserAudio:
        if self.user_audio is None:
            if self.asr is None:
                raise ProtocolError(1008, "Operation is not implemented, or supported, or enabled: audio input.")
            vad = None
            if self.options.activity is not None:
                if self.vad_factory is None:
                    raise ProtocolError(1008, "Operation is not implemented, or supported, or enabled: "
                                              "automatic activity detection.")
                vad = await asyncio.to_thread(self.vad_factory)  # loading the model takes ~40 ms
            self.user_audio = UserAudio(vad, self.options.activity, include_all_input=self.options.include_all_input)
        return self.user_audio

    async def audio(self, pcm: bytes, rate: int) -> None:
        """A blob of the user's audio; acts on what the voice activity did in it, in order."""
        audio = await self._audio_input()
        activities = audio.feed(pcm, rate)
        self.ledger.heard_audio(len(pcm) / (2 * rate), in_utterance=audio.speaking)
        for i, activity in enumerate(activities):
            if activity is Activity.START:
                await self.host.on_speech_start()
            elif activity is Activity.PAUSE:
                if Activity.END in activities[i + 1:]:
                    # The turn ends in this same message (a big chunk, or a replay): the utterance is
                    # already cut, so there is nothing to recognize early.
                    continue
                # Recognize during the silence window, so the transcript is ready when the turn ends.
                self._drop_speculation()
                self._speculative = asyncio.create_task(self._recognize(audio.utterance()))
            elif activity is Activity.RESUME:
                self._drop_speculation()  # the user went on: that transcript is already stale
            elif activity is Activity.END:
                self._end_turn()

    def _drop_speculation(self) -> None:
        if self._speculative is not None:
            self._speculative.cancel()
            self._speculative = None

    def _end_turn(self) -> None:
        assert self.user_audio is not None
        pcm = self.user_audio.finish_turn()
        # The utterance now lives in the user turn's task: until it is history, the session is busy.
        self.ledger.utterance_taken()
        speculative, self._speculative = self._speculative, None
        self.host.spawn(self._user_turn(pcm, speculative))

    async def _recognize(self, pcm: bytes) -> Transcript:
        assert self.asr is not None
        return await self.asr.transcribe(pcm, self.options.language)

    async def _user_turn(self, pcm: bytes, speculative: asyncio.Task[Transcript] | None) -> None:
        try:
            transcript = await (speculative if speculative is not None else self._recognize(pcm))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("speech recognition failed")
            self.host.fail(internal_error())
            return
        text = transcript.text.strip()
        log.info("user said %r (%.1f s of audio)", text, len(pcm) / BYTES_PER_SECOND)
        if not text:
            return  # noise, a cough, or a breath: no turn
        if self.options.input_transcription:
            await self._send(sm.input_transcription(text))
        # The service counts what was heard, not what was written down: speech by its length.
        await self.host.take_user_turn(text, tokens=round(len(pcm) / BYTES_PER_SECOND * AUDIO_TOKENS_PER_SECOND))

    async def aclose(self) -> None:
        task, self._speculative = self._speculative, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
