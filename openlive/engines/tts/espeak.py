"""eSpeak NG voices, through the libespeak-ng that the `espeakng-loader` wheel bundles.

Robotic but tiny, instant (RTF ~0.002) and multilingual, so it backs every Live API voice for
languages the natural voices do not speak. We call the C library through ctypes rather than
spawning `espeak-ng` processes: no Debian package is needed and there is no per-call fork.

libespeak-ng keeps all its state in globals (current voice, parameters, the synth callback) and
is not thread-safe, so one module-level lock guards every call, the library is initialised once
per process, and each synthesis sets its own voice and parameters under that lock. Piper's own
`espeakbridge` extension links a separate, static copy of eSpeak with its own globals, so the two
do not interfere.
"""

from __future__ import annotations

import ctypes
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openlive.engines.tts.base import TTSError, VoiceInfo

# Live API language codes (BCP-47) -> eSpeak NG voice (a file under espeak-ng-data/lang).
# Where eSpeak has no voice for the region we pick the nearest one it has: en-AU and en-IN get
# British English (eSpeak's "en" voice), fr-CA gets France French.
ESPEAK_LANGUAGES: dict[str, str] = {
    "ar-XA": "ar",
    "bn-IN": "bn",
    "cmn-CN": "cmn",
    "de-DE": "de",
    "en-AU": "en",
    "en-GB": "en",
    "en-IN": "en",
    "en-US": "en-us",
    "es-ES": "es",
    "es-US": "es-419",
    "fr-CA": "fr",
    "fr-FR": "fr",
    "gu-IN": "gu",
    "hi-IN": "hi",
    "id-ID": "id",
    "it-IT": "it",
    "ja-JP": "ja",
    "kn-IN": "kn",
    "ko-KR": "ko",
    "ml-IN": "ml",
    "mr-IN": "mr",
    "nl-NL": "nl",
    "pl-PL": "pl",
    "pt-BR": "pt-br",
    "ru-RU": "ru",
    "ta-IN": "ta",
    "te-IN": "te",
    "th-TH": "th",
    "tr-TR": "tr",
    "vi-VN": "vi",
}

# Bare primary subtags ("de", "pt", "zh") for clients that send no region.
_PRIMARY: dict[str, str] = {code.split("-")[0].lower(): v for code, v in ESPEAK_LANGUAGES.items()}
_PRIMARY.update({"en": "en-us", "es": "es", "fr": "fr", "pt": "pt-br", "zh": "cmn"})
_BY_LOWER: dict[str, str] = {code.lower(): v for code, v in ESPEAK_LANGUAGES.items()}

DEFAULT_LANGUAGE = "en-us"


def espeak_language(code: str | None) -> str | None:
    """The eSpeak voice for a BCP-47 code ("de-DE" -> "de"), or None when we have no mapping."""
    if not code:
        return None
    lowered = code.replace("_", "-").lower()
    return _BY_LOWER.get(lowered) or _PRIMARY.get(lowered.split("-")[0])


# --- the C API (speak_lib.h) ---------------------------------------------------------------

_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_Synth returns when done; audio comes via the callback
_INITIALIZE_DONT_EXIT = 0x8000  # otherwise the library calls exit() if its data is missing
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0
_RATE, _PITCH, _RANGE = 1, 3, 4
_CALLBACK_BUFFER_MS = 100  # the callback hands over audio in pieces of about this length

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_rate: int = 0
_current_voice: str | None = None  # skip SetVoiceByName (which reloads a dictionary) if unchanged
_sink: list[bytes] = []  # where the callback puts audio of the synthesis now running


@_SynthCallback
def _on_audio(wav: Any, numsamples: int, _events: int | None) -> int:
    # Called inside espeak_Synth on the calling thread, with our lock held.
    if wav and numsamples > 0:
        _sink.append(ctypes.string_at(wav, numsamples * 2))
    return 0  # 0: go on


def _library() -> tuple[ctypes.CDLL, int]:
    """Load and initialise libespeak-ng once per process. Call with `_lock` held."""
    global _lib, _rate
    if _lib is not None:
        return _lib, _rate
    try:
        import espeakng_loader
    except ImportError as exc:
        raise TTSError(
            "eSpeak voices need the 'espeakng-loader' package (pip install espeakng-loader)"
        ) from exc
    try:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path()
    except (OSError, RuntimeError) as exc:
        raise TTSError(f"cannot load libespeak-ng from espeakng-loader: {exc}") from exc
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
        ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]  # fmt: skip
    lib.espeak_Synth.restype = ctypes.c_int
    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, _CALLBACK_BUFFER_MS, data.encode(), _INITIALIZE_DONT_EXIT
    )
    if rate <= 0:
        raise TTSError(f"espeak_Initialize failed ({rate}) with data at {data}")
    lib.espeak_SetSynthCallback(_on_audio)
    _lib, _rate = lib, rate
    return lib, rate


def espeak_sample_rate() -> int:
    """The library's output rate (22050 Hz), initialising it if need be."""
    with _lock:
        return _library()[1]


# Sentence ends: synthesising sentence by sentence holds the lock only briefly and lets an
# interrupted consumer stop before the rest of a long text is rendered.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")
_MAX_CHUNK_SECONDS = 0.5


class EspeakVoice:
    """One eSpeak NG voice: a variant (f1..f5, m1..m8, ...) plus pitch, pitch range and rate."""

    def __init__(
        self,
        info: VoiceInfo,
        variant: str = "m1",
        pitch: int = 50,
        rate: int = 175,
        pitch_range: int | None = None,
    ) -> None:
        self.info = info
        self.variant = variant
        self.pitch = pitch  # 0..100, 50 = the variant's own base pitch
        self.rate = rate  # words per minute, 80..450
        self.pitch_range = pitch_range  # 0..100, 50 = normal; None keeps eSpeak's default
        self.sample_rate = 22050  # replaced by what espeak_Initialize reports, in load()

    def load(self) -> None:
        self.sample_rate = espeak_sample_rate()
        # espeak_SetVoiceByName silently ignores an unknown "+variant", so check it here.
        import espeakng_loader  # importable: espeak_sample_rate() succeeded

        if not (Path(espeakng_loader.get_data_path()) / "voices" / "!v" / self.variant).is_file():
            raise TTSError(f"eSpeak has no voice variant {self.variant!r}")

    def synthesize(self, text: str, language: str | None = None) -> Iterator[bytes]:
        voice = f"{espeak_language(language) or DEFAULT_LANGUAGE}+{self.variant}"
        max_bytes = int(self.sample_rate * _MAX_CHUNK_SECONDS) * 2
        for sentence in _SENTENCE_END.split(text):
            if not sentence.strip():
                continue
            pcm = self._render(voice, sentence)
            # The lock is released before yielding, so a slow consumer blocks nobody.
            for start in range(0, len(pcm), max_bytes):
                yield pcm[start : start + max_bytes]

    def _render(self, voice: str, text: str) -> bytes:
        global _current_voice
        data = text.encode("utf-8") + b"\0"
        with _lock:
            lib, rate = _library()
            self.sample_rate = rate
            if voice != _current_voice:
                if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                    _current_voice = None
                    raise TTSError(f"eSpeak has no voice {voice!r}")
                _current_voice = voice
            # Parameters are global too and other voices change them: set ours on every call.
            lib.espeak_SetParameter(_RATE, self.rate, 0)
            lib.espeak_SetParameter(_PITCH, self.pitch, 0)
            pitch_range = 50 if self.pitch_range is None else self.pitch_range
            lib.espeak_SetParameter(_RANGE, pitch_range, 0)
            _sink.clear()
            try:
                err = lib.espeak_Synth(
                    data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
                )
                pcm = b"".join(_sink)
            finally:
                _sink.clear()
        if err != _EE_OK:
            raise TTSError(f"espeak_Synth failed ({err}) for voice {voice!r}")
        return pcm
