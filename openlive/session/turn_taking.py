"""Turn-taking: the user's audio in, their turns out. What happens when the user stops talking.

Owns: the user's audio stream (`UserAudio`: resampling, VAD frames, the utterance being heard),
the recognition started early in a pause, and the activity signals of both modes (automatic
detection, or the client's `activityStart`/`activityEnd`). Touches: the recognizer, the wire
(`inputTranscription`), the consumed-message ledger, and its host, the session, for the three
things a turn does beyond this room: barge-in, running a user turn, and failing.

When the user stops talking (automatic mode):

1. The detector sees a short quiet inside speech (`Activity.PAUSE`): recognition starts on the
   utterance so far, speculatively, so the transcript is ready when the turn ends; and, unless
   the client set `silenceDurationMs`, the end-of-turn models are asked whether the utterance is
   complete: the audio model on the sound, the text model on that speculative transcript. Once
   the text model has read the transcript (without one: once it is ready) the session may start
   the reply's LLM request early, output held (`early_reply.py`). If speech comes back
   (`Activity.RESUME`) all of it is stale and is dropped.
2. The turn ends after the quiet the models call for (`end_of_turn.py`: about 0.2 s after the
   user stopped when both say complete, longer when they disagree), or at the detector's
   `Activity.END` (`silenceDurationMs` of quiet, or the longest
   wait the policy gives an unfinished sentence), or on `audioStreamEnd`. Its audio is taken out
   of `UserAudio` and becomes a user-turn task beside the reader, so audio keeps flowing.
3. The task waits for the speculative transcript (or recognizes now), sends
   `inputTranscription` if asked for, and hands the text to the session, which appends it to the
   conversation and starts the reply. An empty transcript (a cough, a breath) is no turn.

While the user speaks, sessions on a model whose generation streams captions (2.x) get the words
that have settled as interim `inputTranscription` pieces; the turn's transcript then completes
them (`input_transcription.py`: cadence, cost, and how the pieces add up to the final text).

With `explicitVadSignal`, `voiceActivity` and `voiceActivityDetectionSignal` tell the client
where the start and the end of each activity fell in its audio stream.

The detector's state table is in `activity.py`; the audio buffer in `user_audio.py`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from .. import metrics
from ..engines.asr.service import Recognizer
from ..engines.asr.whisper import Transcript
from ..protocol import server_messages as sm
from ..protocol.errors import ProtocolError, internal_error, invalid_argument
from ..protocol.messages import RealtimeInput
from .activity import Activity
from .context import AUDIO_TOKENS_PER_SECOND
from .end_of_turn import EndOfTurnPolicy, TextTurnModel, TurnModel
from .input_transcription import InterimTranscription, Stabilizer
from .options import SessionOptions
from .turn_timing import TurnTiming
from .user_audio import UserAudio, VoiceActivityModel

log = logging.getLogger(__name__)

BYTES_PER_SECOND = 32000  # 16 kHz, 16-bit


class TurnHost(Protocol):
    """What a user turn needs from the session around it."""

    async def on_speech_start(self) -> None:
        """The user started speaking (barge-in point)."""

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a user turn beside the reader."""

    def words_heard(self, text: str) -> None:
        """In a pause that may end the turn, recognition heard `text` so far (the reply may start early)."""

    def words_withdrawn(self) -> None:
        """The user went on: the words last heard are not the turn."""

    async def take_user_turn(self, text: str, tokens: int | None = None, *, ended_at: float | None = None,
                             spoken: bool = False, timing: TurnTiming | None = None) -> None:
        """Put the user's words in the conversation and reply to them; the turn ended at `ended_at`
        (monotonic), which the reply's latency is measured from; `timing`: a spoken turn's waterfall so far."""

    def fail(self, error: ProtocolError) -> None:
        """End the session with this error."""


class AudioLedger(Protocol):
    """Which audio the session state already reflects (transparent resumption's consumed index)."""

    def heard_audio(self, seconds: float, *, in_utterance: bool) -> None: ...

    def utterance_taken(self) -> None: ...


class TurnTaking:
    def __init__(self, *, options: SessionOptions, host: TurnHost, ledger: AudioLedger, send: sm.Send,
                 asr: Recognizer | None, vad_factory: Callable[[], VoiceActivityModel] | None,
                 turn_model: TurnModel | None = None, text_model: TextTurnModel | None = None,
                 policy: EndOfTurnPolicy | None = None, interim_every_s: float = 0.0) -> None:
        self.options = options
        self.host = host
        self.ledger = ledger
        self._send = send
        self.asr = asr
        self.vad_factory = vad_factory
        activity = options.activity
        # The semantic models decide only where the client left the silence to the server.
        semantic = activity is not None and not activity.silence_given
        self.turn_model = turn_model if semantic else None
        self.text_model = text_model if semantic else None
        self.policy = policy or EndOfTurnPolicy()
        judged = self.turn_model is not None or self.text_model is not None
        self.params = self.policy.activity_params(activity) if judged and activity else activity
        self.user_audio: UserAudio | None = None
        self._speculative: asyncio.Task[Transcript] | None = None  # recognition started in a pause
        self._verdict: asyncio.Task[None] | None = None  # the end-of-turn models, asked in a pause
        # Where in the stream (its clock, `UserAudio.heard_s`) the models said this pause ends the
        # turn: audio time, not wall time, so a client streaming faster than real time is judged alike.
        self._end_at: float | None = None
        # The waterfall of the turn a pause may end (turn_timing.py), and when the blob holding the
        # last voiced audio arrived (monotonic): the end of speech that it is measured from.
        self._timing: TurnTiming | None = None
        self._voiced_at: float | None = None
        # Live captions (`interim_every_s` of new speech between readings; 0: off), where the
        # client asked for inputTranscription and the model's generation streams it.
        self.interim: InterimTranscription | None = None
        self._finishing: asyncio.Task[Transcript] | None = None  # a pause's reading, kept for captions
        if interim_every_s > 0 and options.input_transcription and options.generation.interim_input_transcription:
            self.interim = InterimTranscription(every_s=interim_every_s, recognize=self._interim_text,
                                                send=self._send_interim, idle=self._idle)

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
        if self.interim is not None:
            self.interim.started()

    def activity_end(self) -> None:
        """Manual mode: the client says the user stopped speaking."""
        if self.user_audio is not None and self.user_audio.capturing:
            self._end_turn()

    def audio_stream_end(self) -> None:
        """The client's microphone closed: a turn in progress ends now, without waiting for silence."""
        if self.user_audio is not None and self.user_audio.speaking:
            self._end_turn(self.user_audio.heard_s)

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
            self.user_audio = UserAudio(vad, self.params, include_all_input=self.options.include_all_input)
        return self.user_audio

    async def audio(self, pcm: bytes, rate: int) -> None:
        """A blob of the user's audio; acts on what the voice activity did in it, in order."""
        audio = await self._audio_input()
        arrived, voiced = time.monotonic(), audio.voiced_s
        activities = audio.feed(pcm, rate)
        if audio.voiced_s != voiced:
            self._voiced_at = arrived
        self.ledger.heard_audio(len(pcm) / (2 * rate), in_utterance=audio.speaking)
        for i, (activity, offset) in enumerate(zip(activities, audio.event_offsets)):
            if activity is Activity.START:
                await self._signal("ACTIVITY_START", "VAD_SIGNAL_TYPE_SOS", offset)
                await self.host.on_speech_start()
                if self.interim is not None:
                    self.interim.started()
            elif activity is Activity.PAUSE:
                if Activity.END in activities[i + 1:]:
                    # The turn ends in this same message (a big chunk, or a replay): the utterance is
                    # already cut, so there is nothing to recognize early.
                    continue
                self._drop_speculation()
                utterance = audio.utterance()
                timing = self._timing = TurnTiming(speech_end=self._voiced_at or arrived)
                # Recognize during the silence window, so the transcript is ready when the turn ends.
                self._speculative = asyncio.create_task(self._recognize(utterance, timing))
                if self.policy.early_reply and self.text_model is None:
                    # With a text model the reply starts once it has read the words (`_read`).
                    self._speculative.add_done_callback(self._heard)
                if self.interim is not None:  # a reading of the utterance so far: captions use it too
                    self.interim.counted(audio.utterance_s)
                    current = self.interim.current
                    self._speculative.add_done_callback(lambda task: self._offer(task, current))
                if self.turn_model is not None or self.text_model is not None:
                    quiet_since = offset - self.policy.check_ms / 1000
                    self._verdict = asyncio.create_task(self._judge_pause(utterance, self._speculative, quiet_since,
                                                                          timing))
            elif activity is Activity.RESUME:
                self._drop_speculation()  # the user went on: that transcript is already stale
            elif activity is Activity.END:
                self._end_turn(offset)
        if self._end_at is not None and audio.speaking and audio.heard_s >= self._end_at:
            self._end_turn(audio.heard_s)  # the quiet the models called for has passed
        interim = self.interim
        # A caption reading only mid-speech: not in a pause (its speculative reading is under way,
        # or may start in a frame or two, and must not queue behind this one).
        if (interim is not None and audio.speaking and self._speculative is None and not audio.quiet
                and interim.due(audio.utterance_s)):
            interim.read(audio.utterance(), audio.utterance_s)

    async def _judge_pause(self, utterance: bytes, transcript: asyncio.Task[Transcript], quiet_since: float,
                           timing: TurnTiming | None = None) -> None:
        """Ask the end-of-turn models about this pause; the turn ends after the quiet they call for."""
        asked = asyncio.get_running_loop().time()
        audio_p, (text_p, logprob, words) = await asyncio.gather(self._hear(utterance), self._read(transcript))
        if timing is not None:
            timing.mark("eot_judged")
        quiet_ms = self.policy.quiet_needed_ms(audio_p, text_p, logprob, words)
        # The words are the user's, as in "user said" below: the verdict is what bench/conversation.py reads.
        log.info("end of turn: P(complete) audio %s, text %s (words' logprob %s) after %.1f s of speech "
                 "(%.0f ms to judge), words %r: %s", _p(audio_p), _p(text_p), _p(logprob),
                 len(utterance) / BYTES_PER_SECOND, (asyncio.get_running_loop().time() - asked) * 1000, words,
                 "the detector decides" if quiet_ms is None else f"ends after {quiet_ms} ms of quiet")
        if quiet_ms is None or quiet_ms >= self.policy.max_wait_ms:
            return  # the detector's END at the longest wait
        self._end_at = quiet_since + quiet_ms / 1000
        audio = self.user_audio
        if audio is not None and audio.speaking and audio.heard_s >= self._end_at:
            self._verdict = None  # this task is ending the turn: it must not cancel itself
            self._end_turn(audio.heard_s)
        # else the audio that brings the stream to `_end_at` ends it (`audio`), or speech resumes

    async def _hear(self, utterance: bytes) -> float | None:
        if self.turn_model is None:
            return None
        try:
            with metrics.in_flight("turn"):
                return await self.turn_model.probability(self.policy.with_quiet(utterance))
        except asyncio.CancelledError:
            raise
        except Exception:
            # The other model, or the detector at the longest wait, still ends the turn: slower, never stuck.
            log.exception("end-of-turn audio model failed")
            return None

    async def _read(self, transcript: asyncio.Task[Transcript]) -> tuple[float | None, float | None, str | None]:
        """The text model's P(the message ends here), how sure recognition was of the words, and the words."""
        if self.text_model is None:
            return None, None, None
        try:
            # Shielded: the user turn takes this same transcript when the turn ends.
            heard = await asyncio.shield(transcript)
            try:
                with metrics.in_flight("turn"):
                    probability = await self.text_model.probability(heard.text)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._start_early_reply(transcript)
                raise
            self._start_early_reply(transcript)
            # Speech the recognizer made no words of (soft or mumbled) is no sign that a thought is
            # finished: read as not finished, so the audio model alone never ends the turn on it.
            # Else the turn ends on a first half no one can read, which then counts as noise.
            return (0.0 if probability is None else probability), heard.avg_logprob, heard.text
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("end-of-turn text model failed")
            return None, None, None

    def _start_early_reply(self, transcript: asyncio.Task[Transcript]) -> None:
        # The reply's LLM starts on the pause's words only once the text model has read them: the
        # two at once on 2 cores held that reading up by ~0.2 s, and the turn's end with it
        # (bench/conversation.py: the verdict 0.2-0.4 s after the transcript, against ~0.07 s alone).
        if self.policy.early_reply:
            self._heard(transcript)

    def _heard(self, transcript: asyncio.Task[Transcript]) -> None:
        # Only while the turn is still undecided: once it has ended, its reply starts anyway.
        if transcript is self._speculative and not transcript.cancelled() and transcript.exception() is None:
            text = transcript.result().text.strip()
            captions = self.interim.current if self.interim is not None else None
            # The text the turn will record if it ends now (with live captions, their words as sent).
            self.host.words_heard(captions.text_for(text) if captions is not None else text)

    def _offer(self, transcript: asyncio.Task[Transcript], stabilizer: Stabilizer | None) -> None:
        if self.interim is not None and not transcript.cancelled() and transcript.exception() is None:
            self.interim.offer(stabilizer, transcript.result().text.strip())

    def _idle(self) -> bool:
        """Nothing else wants the CPU now: no recognition queued or running (any session's), no
        LLM, speech or end-of-turn model at work. Captions wait; replies must not."""
        return not getattr(self.asr, "busy", False) and not metrics.busy("llm", "tts", "turn")

    async def _interim_text(self, pcm: bytes) -> str:
        return (await self._recognize(pcm)).text.strip()

    async def _send_interim(self, piece: str) -> None:
        await self._send(sm.input_transcription(piece, finished=False))

    def _drop_speculation(self) -> None:
        speculative = self._speculative
        if speculative is not None:
            self.host.words_withdrawn()
            if self.interim is not None and not speculative.done():
                # Stale for the turn, not for captions: a reading of the utterance so far. It runs
                # to its end (the worker would finish it anyway) and captions take it (`_offer`);
                # only the newest such reading is kept.
                if self._finishing is not None:
                    self._finishing.cancel()
                self._finishing, speculative = speculative, None
        for task in (speculative, self._verdict):
            if task is not None:
                task.cancel()
        self._speculative = self._verdict = None
        self._end_at = None
        self._timing = None

    def _end_turn(self, offset: float | None = None) -> None:
        """The user's turn is over (at `offset` into the stream; None: the client said so, manually)."""
        assert self.user_audio is not None
        self._end_at = None
        if self._verdict is not None:
            self._verdict.cancel()
            self._verdict = None
        pcm = self.user_audio.finish_turn()
        # The utterance now lives in the user turn's task: until it is history, the session is busy.
        self.ledger.utterance_taken()
        speculative, self._speculative = self._speculative, None
        captions = self.interim.take() if self.interim is not None else None
        now = time.monotonic()
        # Measured from the end of speech; the client's activityEnd (manual mode) is its end.
        timing, self._timing = self._timing, None
        if timing is None or speculative is None:
            timing = TurnTiming(speech_end=self._voiced_at if offset is not None and self._voiced_at else now)
        timing.mark("eot_decided", now)
        self.host.spawn(self._user_turn(pcm, speculative, offset, now, captions, timing))

    async def _signal(self, activity: str, vad_signal: str, offset: float) -> None:
        if self.options.vad_signals:
            await self._send(sm.voice_activity(activity, offset))
            await self._send(sm.vad_signal(vad_signal))

    async def _recognize(self, pcm: bytes, timing: TurnTiming | None = None) -> Transcript:
        assert self.asr is not None
        with metrics.in_flight("asr"):
            transcript = await self.asr.transcribe(pcm, self.options.language)
        if timing is not None:
            timing.mark("asr_final")
        return transcript

    async def _user_turn(self, pcm: bytes, speculative: asyncio.Task[Transcript] | None,
                         end_offset: float | None, ended_at: float, captions: Stabilizer | None = None,
                         timing: TurnTiming | None = None) -> None:
        if end_offset is not None:
            # First, so the client hears of the end before the transcription and the reply.
            await self._signal("ACTIVITY_END", "VAD_SIGNAL_TYPE_EOS", end_offset)
        try:
            transcript = await (speculative if speculative is not None else self._recognize(pcm, timing))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("speech recognition failed")
            self.host.fail(internal_error())
            return
        text = transcript.text.strip()
        if captions is not None:  # live captions were sent: the last piece completes them into `text`
            text = captions.text_for(text)
        log.info("user said %r (%.1f s of audio)", text, len(pcm) / BYTES_PER_SECOND)
        last_piece = captions.finish(text) if captions is not None else None
        if not text:
            if last_piece is not None and self.options.input_transcription:
                await self._send(sm.input_transcription(last_piece))  # the captions end here
            return  # noise, a cough, or a breath: no turn
        if self.options.input_transcription:
            await self._send(sm.input_transcription(text if last_piece is None else last_piece))
        # The service counts what was heard, not what was written down: speech by its length.
        await self.host.take_user_turn(text, tokens=round(len(pcm) / BYTES_PER_SECOND * AUDIO_TOKENS_PER_SECOND),
                                       ended_at=ended_at, spoken=True, timing=timing)

    async def aclose(self) -> None:
        tasks = [t for t in (self._speculative, self._verdict, self._finishing) if t is not None]
        self._speculative = self._verdict = self._finishing = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.interim is not None:
            await self.interim.aclose()


def _p(probability: float | None) -> str:
    return "-" if probability is None else f"{probability:.2f}"
