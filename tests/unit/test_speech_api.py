"""POST /v1/audio/speech without a server: what a request may ask, and the streaming WAV header."""

from __future__ import annotations

import io
import wave

import pytest

from openlive.engines.tts.base import VoiceInfo
from openlive.engines.tts.registry import VoiceRegistry
from openlive.server.speech_api import MAX_INPUT_CHARS, SpeechRequest, SpeechRequestError, wav_stream_header


class Silent:
    def __init__(self, name: str, languages=None) -> None:
        self.info = VoiceInfo(name, "female", languages, "test")
        self.sample_rate = 24000

    def load(self) -> None:
        pass

    def synthesize(self, text, language=None):
        yield b"\0\0" * 240


@pytest.fixture
def voices():
    registry = VoiceRegistry({"Kore": Silent("Kore", frozenset({"en"})), "Leda": Silent("Leda")}, "Kore")
    yield registry
    registry.close()


def test_a_request_names_a_voice_of_this_node_and_a_format(voices):
    wanted = SpeechRequest.parse({"model": "tts-1", "input": "Hello.", "voice": "kore", "response_format": "pcm",
                                  "speed": 1.2}, voices)
    assert wanted.voice.info.name == "Kore" and wanted.media_type == "audio/pcm"
    assert SpeechRequest.parse({"input": "Hello."}, voices).response_format == "wav"  # the default voice, as WAV
    # A language the voice does not speak: another voice that does, as in a Live session.
    assert SpeechRequest.parse({"input": "Hallo.", "voice": "Kore", "language": "de-DE"}, voices).voice.info.name == "Leda"


@pytest.mark.parametrize("body, why", [
    ([], "JSON object"),
    ({}, "non-empty string"),
    ({"input": "   "}, "non-empty string"),
    ({"input": 7}, "non-empty string"),
    ({"input": "x" * (MAX_INPUT_CHARS + 1)}, "at most 4096"),
    ({"input": "hi", "response_format": "mp3"}, "'mp3' is not supported"),
    ({"input": "hi", "voice": "alloy"}, "'alloy' is not available; use one of Kore, Leda"),
    ({"input": "hi", "voice": 3}, "'voice' must be a string"),
    ({"input": "hi", "language": ["de"]}, "BCP-47"),
])
def test_a_request_that_cannot_be_spoken_says_why(voices, body, why):
    with pytest.raises(SpeechRequestError, match=why):
        SpeechRequest.parse(body, voices)


def test_the_streaming_wav_header_describes_24k_16_bit_mono():
    header = wav_stream_header()
    assert len(header) == 44
    with wave.open(io.BytesIO(header + b"\0\0" * 10)) as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (24000, 2, 1)
