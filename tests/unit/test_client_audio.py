"""The audio conversation's logic with in-memory devices: resampling, playback, flush, echo gate."""

from __future__ import annotations

import asyncio
import sys
import types

import numpy as np
import pytest

from openlive.client import audio
from openlive.client.audio import AudioConversation, EchoGate, MemoryAudioDevice, Player, Resampler
from openlive.client.wire import LiveMessage


def tone(freq: float, seconds: float, rate: int, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.round(level * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[np.argmax(spectrum)])


class FakeSession:
    """What AudioConversation needs of a LiveSession."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, int]] = []
        self.listeners: list = []
        self.closed = False

    def add_listener(self, listener) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener) -> None:
        self.listeners.remove(listener)

    async def send_audio(self, pcm: bytes, rate: int = 16000) -> None:
        self.sent.append((pcm, rate))

    def deliver(self, message: LiveMessage) -> None:
        for listener in self.listeners:
            listener(message)

    def sent_samples(self) -> np.ndarray:
        return np.frombuffer(b"".join(pcm for pcm, _ in self.sent), "<i2")


def test_player_reads_in_order_pads_with_silence_and_flushes():
    player = Player(rate=24000)
    player.write(np.arange(1, 6, dtype=np.int16))
    player.write(np.arange(6, 9, dtype=np.int16))
    assert player.queued == 8
    assert player.read(3).tolist() == [1, 2, 3]
    assert player.read(7).tolist() == [4, 5, 6, 7, 8, 0, 0]
    assert not player.playing and player.played_samples == 8
    player.write(np.ones(100, np.int16))
    assert player.flush() == 100 and player.queued == 0 and player.flushes == 1
    assert player.read(4).tolist() == [0, 0, 0, 0]


def test_player_is_bounded():
    player = Player(rate=100, max_seconds=1)
    for _ in range(5):
        player.write(np.ones(60, np.int16))
    assert player.queued <= 120


def test_resampler_streams_and_keeps_pitch():
    resampler = Resampler(24000, 48000)
    source = tone(440, 1.0, 24000)
    out = np.concatenate([resampler.process(source[i:i + 480]) for i in range(0, source.size, 480)]
                         + [resampler.process(np.zeros(0, np.int16), last=True)])
    assert abs(out.size - 48000) < 200
    assert abs(dominant_frequency(out, 48000) - 440) < 5
    assert Resampler(16000, 16000).process(source).tolist() == source.tolist()  # same rate: untouched


def test_echo_gate_silences_echo_but_not_a_louder_voice():
    now = [0.0]
    gate = EchoGate(echo_gain=0.5, margin=2.0, tail_s=0.3, clock=lambda: now[0])
    speech = tone(200, 0.02, 16000, level=0.1)
    assert gate.filter(speech) is speech  # nothing playing: everything passes
    played = tone(300, 0.02, 24000, level=0.4)
    gate.played(played)
    echo = tone(300, 0.02, 16000, level=0.2)  # the room returns half of it
    assert not gate.filter(echo).any()
    loud = tone(200, 0.02, 16000, level=0.9)  # someone talks over the reply
    assert gate.filter(loud) is loud
    now[0] = 0.5  # the speaker has been quiet for longer than the tail
    assert gate.filter(echo) is echo
    gate.played(np.zeros(480, np.int16))  # silence played does not close the gate
    assert gate.filter(echo) is echo
    assert (gate.gated_blocks, gate.passed_blocks) == (1, 4)


async def test_conversation_sends_mic_at_16k_and_plays_replies_at_the_device_rate():
    session = FakeSession()
    device = MemoryAudioDevice(input_rate=48000, output_rate=44100)
    conversation = AudioConversation(session, device, echo_gate=False)  # type: ignore[arg-type]
    await conversation.start()
    assert device.started and session.listeners == [conversation.on_message]
    device.speak(tone(250, 0.5, 48000), block=960)
    await asyncio.sleep(0.05)
    sent = session.sent_samples()
    assert {rate for _, rate in session.sent} == {16000}
    assert abs(sent.size - 8000) < 400 and abs(dominant_frequency(sent, 16000) - 250) < 10
    assert conversation.last_speech_at is not None
    reply = tone(500, 1.0, 24000)
    for i in range(0, reply.size, 4800):  # 200 ms messages, as the server sends them
        session.deliver(LiveMessage(audio=reply[i:i + 4800].tobytes(), audio_rate=24000))
    played = np.concatenate([device.play(4410) for _ in range(8)])
    assert abs(dominant_frequency(played[4410:], 44100) - 500) < 10
    assert conversation.player.queued > 0
    await conversation.stop()
    assert not device.started and session.listeners == [] and conversation.player.queued == 0


async def test_interrupted_flushes_playback_and_calls_back():
    session = FakeSession()
    device = MemoryAudioDevice()
    calls = []
    conversation = AudioConversation(session, device, on_interrupted=lambda: calls.append(  # type: ignore[arg-type]
        conversation.player.queued))
    await conversation.start()
    session.deliver(LiveMessage(audio=tone(400, 2.0, 24000).tobytes(), audio_rate=24000))
    device.play(2400)
    assert conversation.player.queued > 40000
    session.deliver(LiveMessage(raw={"serverContent": {"interrupted": True}}, interrupted=True))
    assert calls == [0] and conversation.flushes == 1
    assert not device.play(2400).any()  # the speaker goes quiet at once
    # The next reply plays from its own start, not from the interrupted one's leftovers.
    session.deliver(LiveMessage(audio=tone(400, 0.2, 24000).tobytes(), audio_rate=24000))
    assert device.play(4800).any()
    await conversation.stop()


async def test_the_model_does_not_hear_itself():
    session = FakeSession()
    device = MemoryAudioDevice(input_rate=16000, output_rate=16000)
    conversation = AudioConversation(session, device, echo_gate=EchoGate(echo_gain=0.5))  # type: ignore[arg-type]
    await conversation.start()
    session.deliver(LiveMessage(audio=tone(300, 1.0, 24000, level=0.5).tobytes(), audio_rate=24000))
    for _ in range(10):  # the speaker plays 20 ms while the mic hears the room: its echo at 40 %
        played = device.play(320)
        device.speak((played * 0.4).astype(np.int16), block=320)
    await asyncio.sleep(0.02)
    assert session.sent_samples().size > 0 and not session.sent_samples().any()
    session.sent.clear()
    device.play(320)
    device.speak(tone(200, 0.02, 16000, level=0.95), block=320)  # a barge-in, clearly louder
    await asyncio.sleep(0.02)
    assert np.abs(session.sent_samples()).max() > 10000
    await conversation.stop()


def test_sounddevice_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as if not installed
    with pytest.raises(audio.AudioUnavailable, match=r"pip install 'openlive\[audio\]'"):
        audio.SoundDeviceAudio()


def test_sounddevice_backend_opens_streams_at_the_devices_rates(monkeypatch):
    opened = []

    class Stream:
        def __init__(self, **kwargs) -> None:
            self.kwargs = kwargs
            self.state = "new"
            opened.append(self)

        def start(self) -> None:
            self.state = "started"

        def stop(self) -> None:
            self.state = "stopped"

        def close(self) -> None:
            pass

    def query_devices(device, kind):
        return {"index": 3 if kind == "input" else 4, "default_samplerate": 44100.0 if kind == "input" else 48000.0}

    fake = types.SimpleNamespace(InputStream=Stream, OutputStream=Stream, query_devices=query_devices,
                                 PortAudioError=RuntimeError)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    device = audio.SoundDeviceAudio()
    assert (device.input_rate, device.output_rate) == (44100, 48000)
    heard = []
    device.start(heard.append, lambda n: np.full(n, 7, np.int16))
    mic, speaker = opened
    assert mic.kwargs["samplerate"] == 44100 and mic.kwargs["device"] == 3 and mic.kwargs["dtype"] == "int16"
    assert speaker.kwargs["samplerate"] == 48000 and speaker.state == "started"
    mic.kwargs["callback"](np.ones((882, 1), np.int16), 882, None, None)
    assert heard[0].shape == (882,)
    out = np.zeros((960, 1), np.int16)
    speaker.kwargs["callback"](out, 960, None, None)
    assert (out == 7).all()
    device.stop()
    assert mic.state == speaker.state == "stopped"
