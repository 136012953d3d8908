"""Text in a frame, read with RapidOCR (PP-OCRv4 detection and recognition, ONNX, in its wheel).

`rapidocr-onnxruntime` is installed with --no-deps (it declares the GUI build of OpenCV; the
headless one is used). Without it frames are still described, without their text.
"""

from __future__ import annotations

import threading

import numpy as np

MIN_SCORE = 0.6  # recognition confidence below which a reading is more likely noise than text
MAX_LINES = 8
MAX_CHARS = 200  # a page of small print is not a sign: the note stays short


def available() -> bool:
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class TextReader:
    def __init__(self, *, threads: int = 1) -> None:
        from rapidocr_onnxruntime import RapidOCR

        # A fixed, small thread count: OCR runs beside speech recognition and the LLM.
        self._ocr = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1, print_verbose=False)
        self._lock = threading.Lock()

    def read(self, pixels: np.ndarray) -> tuple[str, ...]:
        """The lines of text in the frame, top to bottom, left to right within a line."""
        bgr = np.ascontiguousarray(pixels[..., ::-1])  # RapidOCR takes OpenCV's channel order
        with self._lock:
            result, _ = self._ocr(bgr)
        boxes = [(np.asarray(box, dtype=float), str(text).strip(), float(score))
                 for box, text, score in (result or []) if float(score) >= MIN_SCORE and str(text).strip()]
        return _lines(boxes)


def _lines(boxes: list[tuple[np.ndarray, str, float]]) -> tuple[str, ...]:
    """Join word boxes that sit on one line; lines in reading order."""
    items = sorted(((box[:, 1].mean(), box[:, 0].min(), float(np.ptp(box[:, 1])) or 1.0, text) for box, text, _ in boxes))
    lines: list[list[tuple[float, str]]] = []
    centres: list[tuple[float, float]] = []  # (centre y, height) of each line
    for y, x, height, text in items:
        if lines and abs(y - centres[-1][0]) < 0.5 * max(height, centres[-1][1]):
            lines[-1].append((x, text))
        else:
            lines.append([(x, text)])
            centres.append((y, height))
    out: list[str] = []
    size = 0
    for line in lines[:MAX_LINES]:
        text = " ".join(t for _, t in sorted(line))
        if size + len(text) > MAX_CHARS:
            break
        out.append(text)
        size += len(text)
    return tuple(out)
