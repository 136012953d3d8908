"""Scene facts a small classical pipeline gets reliably: colours, brightness, change, faces.

Pure numpy except faces (OpenCV's bundled Haar cascade). Each function takes RGB pixels
(height × width × 3, uint8) and is cheap at frame sizes: the colours and the change are computed
on a small copy, so they cost the same for a 384 px and a 1536 px frame.
"""

from __future__ import annotations

import threading

import numpy as np

SAMPLE_SIDE = 64  # colours are named on a copy this size: plenty for "mostly blue"
THUMB_SIDE = 32  # the picture compared between frames
CHANGE_THRESHOLD = 12.0  # mean absolute difference (0-255) of the thumbnails that counts as a change
# A camera's exposure drifts a few percent frame to frame (±3% is ±7 on a light sign): that much
# is the same view; a light switched off (or on) is not.
BRIGHTNESS_CHANGE = 30.0
MIN_COLOUR_SHARE = 0.15  # a colour named must cover this much of the picture
MAX_COLOURS = 3

# Hue ranges (degrees) of the colour names, for saturated pixels. Brown and pink are told apart
# from orange and red by brightness and saturation, below.
_HUES = ((15, "red"), (45, "orange"), (70, "yellow"), (160, "green"), (195, "turquoise"), (260, "blue"),
         (310, "purple"), (345, "pink"), (360, "red"))


def _shrink(pixels: np.ndarray, side: int) -> np.ndarray:
    """A nearest-neighbour copy at most `side` pixels a side (cheap and good enough to count colours)."""
    height, width = pixels.shape[:2]
    rows = np.linspace(0, height - 1, min(side, height)).astype(int)
    cols = np.linspace(0, width - 1, min(side, width)).astype(int)
    return pixels[rows][:, cols]


def colour_names(pixels: np.ndarray) -> np.ndarray:
    """The plain English colour name of each pixel (an array of str, the shape of the image)."""
    rgb = pixels.astype(np.float32) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = rgb.max(axis=-1)
    low = rgb.min(axis=-1)
    chroma = value - low
    saturation = np.where(value > 0, chroma / np.maximum(value, 1e-6), 0.0)
    # Hue in degrees, as in HSV.
    safe = np.maximum(chroma, 1e-6)
    hue = np.where(value == r, ((g - b) / safe) % 6,
                   np.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60.0
    names = np.empty(pixels.shape[:2], dtype=object)
    edges = [0.0] + [edge for edge, _ in _HUES]
    for (low_edge, high_edge), (_, name) in zip(zip(edges, edges[1:]), _HUES):
        names[(hue >= low_edge) & (hue < high_edge)] = name
    warm = (hue < 45) | (hue >= 345)
    names[warm & (hue >= 10) & (value < 0.65)] = "brown"  # a dark orange is brown
    names[warm & (saturation < 0.5) & (value > 0.75)] = "pink"  # a pale red is pink
    grey = saturation < 0.2
    names[grey] = "grey"
    names[grey & (value > 0.85)] = "white"
    names[value < 0.2] = "black"
    return names


def dominant_colours(pixels: np.ndarray) -> tuple[str, ...]:
    """The colours covering most of the picture, most first (each at least MIN_COLOUR_SHARE)."""
    names = colour_names(_shrink(pixels, SAMPLE_SIDE)).ravel()
    labels, counts = np.unique(names.astype(str), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    total = counts.sum()
    return tuple(str(labels[i]) for i in order[:MAX_COLOURS] if counts[i] / total >= MIN_COLOUR_SHARE)


def luma(pixels: np.ndarray) -> np.ndarray:
    rgb = pixels.astype(np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def brightness(pixels: np.ndarray) -> str:
    """Only what is worth saying: a covered lens or a dark room."""
    mean = float(luma(_shrink(pixels, SAMPLE_SIDE)).mean())
    return "very dark" if mean < 35 else "dark" if mean < 70 else ""


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """A small grey copy, kept to tell whether the next frame shows something else."""
    return luma(_shrink(pixels, THUMB_SIDE))


def changed(current: np.ndarray, previous: np.ndarray | None) -> bool | None:
    if previous is None:
        return None
    if current.shape != previous.shape:
        return True  # a new camera or a rotated phone
    shift = float(current.mean() - previous.mean())
    # The picture's structure is compared with its overall brightness taken out, then the brightness.
    structure = float(np.abs(current - previous - shift).mean())
    return structure > CHANGE_THRESHOLD or abs(shift) > BRIGHTNESS_CHANGE


class FaceFinder:
    """Frontal faces with OpenCV's bundled Haar cascade (loaded once; one detection at a time)."""

    def __init__(self) -> None:
        import cv2  # the headless build: no GUI libraries on a server

        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV's face cascade is missing ({path})")
        self._cv2 = cv2
        self._lock = threading.Lock()  # a CascadeClassifier is not safe to share between threads

    def count(self, pixels: np.ndarray) -> int:
        cv2 = self._cv2
        grey = cv2.equalizeHist(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY))
        smallest = max(24, min(grey.shape) // 10)  # a face in a frame, not a knot in the wood
        with self._lock:
            faces = self._cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=6,
                                                   minSize=(smallest, smallest))
        return len(faces)
