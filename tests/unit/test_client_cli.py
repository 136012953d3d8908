"""`openlive models` (with voices) and the pieces of `openlive talk` that need no server."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from openlive.cli import build_parser, main
from openlive.client import talk
from openlive.client.tls import client_ssl_context, is_loopback
from openlive.server.tls import ensure_self_signed


def test_models_lists_models_and_voices(tmp_path, capsys):
    config = tmp_path / "openlive.toml"
    config.write_text('[voices.Narrator]\nengine = "espeak"\ngender = "female"\n')
    assert main(["models", "--config", str(config), "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    models, voices = out.split("Voices:")
    assert "gemini-live-2.5-flash-preview" in models and "llm=default" in models
    rows = {line.split()[0]: line for line in voices.strip().splitlines()}
    assert set(rows) >= {"Puck", "Charon", "Kore", "Fenrir", "Aoede", "Leda", "Orus", "Zephyr", "Narrator"}
    assert rows["Puck"].split()[1:5] == ["(default)", "piper", "male", "en"]
    assert rows["Kore"].split()[1:3] == ["espeak", "female"] and "any" in rows["Kore"]


def test_talk_config_from_options():
    args = build_parser().parse_args(["talk", "--voice", "Kore", "--language", "de-DE", "--system", "Be brief.",
                                      "--code-execution", "--text"])
    assert args.func.__name__ == "cmd_talk"
    config = talk._config(args, "AUDIO")
    assert config["speech_config"] == {"voice_config": {"prebuilt_voice_config": {"voice_name": "Kore"}},
                                       "language_code": "de-DE"}
    assert config["system_instruction"] == "Be brief." and config["tools"] == [{"code_execution": {}}]
    assert config["session_resumption"] == {} and config["input_audio_transcription"] == {}
    assert "input_audio_transcription" not in talk._config(args, "TEXT")


def test_wav_in_any_rate_and_channels_becomes_16k_mono(tmp_path: Path):
    path = tmp_path / "stereo.wav"
    t = np.arange(48000) / 48000
    left = np.round(8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(48000)
        wav.writeframes(np.stack([left, left], axis=1).astype("<i2").tobytes())
    pcm = np.frombuffer(talk.read_wav(path), "<i2")
    assert abs(pcm.size - 16000) < 100 and np.abs(pcm).max() > 6000
    out = tmp_path / "out.wav"
    talk.write_wav(out, pcm.tobytes())
    with wave.open(str(out)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (24000, 1, 2)


def test_loopback_servers_trust_the_local_certificate(tmp_path):
    assert is_loopback("https://127.0.0.1:8443") and is_loopback("https://localhost") and is_loopback("wss://[::1]:1")
    assert not is_loopback("https://generativelanguage.googleapis.com")
    cert, _ = ensure_self_signed(tmp_path / "tls")
    before = client_ssl_context("https://example.com", tmp_path).cert_store_stats()["x509_ca"]
    after = client_ssl_context("https://127.0.0.1:8443", tmp_path).cert_store_stats()["x509_ca"]
    assert after == before + 1
