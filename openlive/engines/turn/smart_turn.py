"""Semantic end-of-turn detection with Pipecat's smart-turn v3.2 model (ONNX, on CPU).

Silence alone is a poor signal that the user has finished: people pause mid-sentence ("I would
like to know the ... "), and waiting long enough to be sure makes every reply feel slow. Smart
turn looks at the last 8 s of the user's audio (intonation and the words' shape, not a
transcript) and gives the probability that the turn is complete, so a short pause after a
finished question can end the turn while a pause after a dangling fragment does not.

Weights: ``smart-turn-v3.2-cpu.onnx`` (8.3 MB, an int8-quantized audio classifier built on a
Whisper-style encoder), shipped inside the ``pipecat-ai==1.14.0`` wheel, BSD-2-Clause (Daily).
The wheel is installed with ``--no-deps`` and never imported (its dependencies are not ours); the
file is found through the wheel's RECORD and sha256-verified once, like every packaged model (see
``engines/weights.py``). Users may point at their own ``.onnx`` instead.

Input preparation mirrors pipecat 1.14.0's ``LocalSmartTurnAnalyzerV3._predict_endpoint`` and
its vendored ``compute_whisper_log_mel_features``: int16 / 32768, keep the last 8 s or pad with
zeros at the *start* up to 8 s, zero-mean/unit-variance normalise that whole 8 s buffer, then a
Whisper log-mel (80 bins, 25 ms window, 10 ms hop) -> float32 ``[1, 80, 800]`` named
``input_features``. The output is already a sigmoid: P(turn complete), with 0.5 as pipecat's
threshold. We compute the log-mel with faster-whisper's numpy extractor (already a dependency
for ASR). It works in float32 where pipecat's works in float64: features differ by ~1e-5, which
the quantized model turns into probability differences of up to ~0.005.

What to feed it: the user's utterance up to now *including* the silence after it, as pipecat does
(it asks once its VAD has heard 0.2 s of silence; its pre-speech padding does not matter much).
The model has learned that trailing silence means "done": the same fragment scores higher after
0.3 s of silence than after 0.1 s, and pure silence scores ~0.99, so only ask after speech.

Cost: ~0.15 s to load, tens of MB of memory, and one core for ~45 ms per call on an idle 2-core
machine (~5-20 ms of it the log-mel); the encoder always sees 8 s, so the cost hardly depends on
the utterance's length. More threads did not help there.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..weights import ModelPreparationError, PackagedFile, prepare

if TYPE_CHECKING:
    import onnxruntime
    from faster_whisper.feature_extractor import FeatureExtractor

__all__ = [
    "DEFAULT_TURN_MODEL_ID",
    "PACKAGED_TURN_MODELS",
    "SMART_TURN_V3_2",
    "THRESHOLD",
    "ModelPreparationError",
    "SmartTurn",
    "resolve_turn_model",
]

SMART_TURN_V3_2 = PackagedFile(
    id="smart-turn-v3.2",
    filename="smart-turn-v3.2-cpu.onnx",
    packages=("pipecat-ai",),
    sha256="2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
    size=8_679_182,
    license="BSD-2-Clause",
    description="Pipecat smart-turn v3.2 (CPU build): semantic end-of-turn detection from audio",
    version="1.14.0",
    package_files=("pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",),
    in_place=True,
    # pipecat-ai declares a long list of dependencies (aiohttp, loguru, pydantic, ...) that we
    # neither need nor want: only the .onnx file inside the wheel is used.
    pip_flags=("--no-deps",),
)

PACKAGED_TURN_MODELS: dict[str, PackagedFile] = {SMART_TURN_V3_2.id: SMART_TURN_V3_2}
DEFAULT_TURN_MODEL_ID = SMART_TURN_V3_2.id

#: Pipecat's decision threshold: probability > THRESHOLD means "turn complete".
THRESHOLD = 0.5

_SAMPLE_RATE = 16000
_MAX_SECONDS = 8
_WINDOW_SAMPLES = _SAMPLE_RATE * _MAX_SECONDS  # 128000 samples -> 800 frames of 10 ms
# Whisper's log-mel parameters, which the model was trained on.
_N_MELS = 80
_N_FFT = 400
_HOP_LENGTH = 160
# Added to the variance before normalising (transformers' WhisperFeatureExtractor, and pipecat's
# copy of it, use the same value); it also keeps pure silence from dividing by zero.
_NORM_EPS = 1e-7


def resolve_turn_model(spec: str, data_dir: Path, progress: bool = True) -> Path:
    """Turn a user's end-of-turn model choice into the path of an ONNX file.

    ``spec`` is a packaged model id ("smart-turn-v3.2", verified once and then trusted through a
    marker under ``<data_dir>/models/<id>/``) or the path of the user's own smart-turn-compatible
    ``.onnx`` file (input ``[batch, 80, 800]`` log-mel, output P(complete)).
    """
    model = PACKAGED_TURN_MODELS.get(spec)
    if model is not None:
        return prepare(model, Path(data_dir).resolve() / "models" / model.id, progress=progress)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelPreparationError(
            f"end-of-turn model not found: {spec!r}; give a packaged model "
            f"({', '.join(sorted(PACKAGED_TURN_MODELS))}) or the path of a smart-turn .onnx file"
        )
    return path.resolve()


class SmartTurn:
    """A loaded smart-turn model: PCM of the user's utterance in, P(turn complete) out.

    ``probability`` is CPU-bound and synchronous; run it in a worker thread. One instance can be
    shared by all sessions: calls on it are serialised by a lock, which also keeps concurrent
    turns from oversubscribing the small CPU this runs on.
    """

    sample_rate = _SAMPLE_RATE
    max_seconds = float(_MAX_SECONDS)

    def __init__(self, model_path: Path, *, cpu_threads: int = 1) -> None:
        import onnxruntime
        from faster_whisper.feature_extractor import FeatureExtractor

        self.model_path = Path(model_path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = cpu_threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # With cpu_threads > 1, idle pool threads would otherwise spin and take CPU from ASR and
        # the LLM between calls (see engines/tts/piper_voice.py for the measurements).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session: onnxruntime.InferenceSession = onnxruntime.InferenceSession(
                str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelPreparationError(f"cannot load end-of-turn model {self.model_path}: {exc}") from exc
        # The input is named "input_features" in smart-turn v3; take the model's own name so a
        # compatible user model with another name works too.
        self._input_name: str = self._session.get_inputs()[0].name
        # Built once: it precomputes the mel filterbank. chunk_length only sets attributes we do
        # not use (we pad to 8 s ourselves), but keeps the object self-describing.
        self._extractor: FeatureExtractor = FeatureExtractor(
            feature_size=_N_MELS,
            sampling_rate=_SAMPLE_RATE,
            hop_length=_HOP_LENGTH,
            chunk_length=_MAX_SECONDS,
            n_fft=_N_FFT,
        )
        self._lock = threading.Lock()

    def features(self, pcm16: bytes) -> np.ndarray:
        """The model input for ``pcm16`` (16 kHz, 16-bit mono): float32 ``[1, 80, 800]``.

        Touches no shared state, so it needs no lock.
        """
        if len(pcm16) % 2:
            raise ValueError("PCM16 audio must have an even number of bytes")
        audio = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
        # The model was trained on windows that end where the user stopped: keep the last 8 s,
        # and pad a shorter utterance with silence in front so its end stays at the window's end.
        audio = audio[-_WINDOW_SAMPLES:]
        if audio.size < _WINDOW_SAMPLES:
            audio = np.pad(audio, (_WINDOW_SAMPLES - audio.size, 0))
        # Normalised over the whole padded window, padding included, as pipecat does (its copy of
        # transformers' WhisperFeatureExtractor with do_normalize=True); in float32, like it.
        audio = (audio - audio.mean()) / np.sqrt(audio.var() + _NORM_EPS)
        # padding=0: faster-whisper appends 160 zeros by default, which would add a 801st frame;
        # without it the centred STFT gives 801 frames and the extractor drops the last, as
        # Whisper does, leaving exactly 800.
        log_mel = self._extractor(audio, padding=0)
        return np.ascontiguousarray(log_mel[np.newaxis], dtype=np.float32)

    def probability(self, pcm16: bytes) -> float:
        """P(turn complete) in [0, 1] for the user's current utterance (the last 8 s of it)."""
        with self._lock:
            features = self.features(pcm16)
            outputs = self._session.run(None, {self._input_name: features})
        # The first output is [batch, 1] and already a sigmoid; clip only guards against rounding.
        return float(np.clip(np.asarray(outputs[0]).reshape(-1)[0], 0.0, 1.0))
