"""Frames as they arrive: checked before anything is decoded, then decoded small.

A frame is untrusted bytes. `check_frame` reads only the image header (Pillow's `Image.open` is
lazy), so a 20000×20000 PNG of a few hundred bytes is refused before a pixel is allocated;
`decode_frame` then decodes at most the size the session's `mediaResolution` asks for (JPEG
decodes straight to a reduced scale), in the vision worker thread, never on the event loop.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The image formats the Live API takes for video frames and inline image parts.
MIME_FORMATS = {"image/jpeg": "JPEG", "image/jpg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
FORMATS = tuple(sorted(set(MIME_FORMATS.values())))

# Longest side a frame is decoded to, by generationConfig.mediaResolution. MEDIUM (the default)
# is the 768 px the Live API recommends for frames; LOW still leaves signs readable.
RESOLUTION_SIDE = {"MEDIA_RESOLUTION_LOW": 384, "MEDIA_RESOLUTION_MEDIUM": 768, "MEDIA_RESOLUTION_HIGH": 1536}
DEFAULT_SIDE = RESOLUTION_SIDE["MEDIA_RESOLUTION_MEDIUM"]

DEFAULT_MAX_PIXELS = 8192 * 8192
# Pillow's own guard, for any image opened anywhere in the process: with our header check in
# front it never fires for frames, but a bomb must never decode even if a path skips the check.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS


class FrameError(ValueError):
    """A frame that cannot be used; the message says why, in words for the client."""


@dataclass(frozen=True)
class FrameLimits:
    max_bytes: int = 8 << 20  # one frame, encoded
    max_pixels: int = DEFAULT_MAX_PIXELS  # width × height, read from the header before decoding


def side_for(media_resolution: str | None) -> int:
    """The longest side to decode a frame to, for generationConfig.mediaResolution."""
    return RESOLUTION_SIDE.get((media_resolution or "").upper(), DEFAULT_SIDE)


def mime_of(mime_type: str) -> str:
    return mime_type.split(";", 1)[0].strip().lower()


def is_image(mime_type: str) -> bool:
    return mime_of(mime_type).startswith("image/")


def check_frame(data: bytes, mime_type: str, limits: FrameLimits = FrameLimits()) -> tuple[int, int]:
    """The frame's (width, height) if it is one we can look at; FrameError if not. Decodes nothing."""
    mime = mime_of(mime_type)
    if mime not in MIME_FORMATS:
        raise FrameError(f"image mime type {mime or '(none)'} is not supported; use image/jpeg, image/png or "
                         "image/webp")
    if not data:
        raise FrameError("the image is empty")
    if len(data) > limits.max_bytes:
        raise FrameError(f"the image is {len(data)} bytes; the limit is {limits.max_bytes}")
    try:
        with warnings.catch_warnings():
            # Pillow warns past its own limit; ours is checked below, from the same header.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # The format is sniffed from the bytes (a PNG sent as image/jpeg is still a PNG), but
            # only among the formats frames may have.
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise FrameError(f"the image has more than {limits.max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise FrameError(f"the data is not a decodable {mime} image") from None
    if width < 1 or height < 1:
        raise FrameError("the image has no pixels")
    if width * height > limits.max_pixels:
        raise FrameError(f"the image is {width}×{height} pixels; the limit is {limits.max_pixels} pixels")
    return width, height


def decode_frame(data: bytes, side: int = DEFAULT_SIDE) -> np.ndarray:
    """A checked frame as RGB pixels (height × width × 3, uint8), its longest side at most `side`.

    Raises FrameError when the data behind a good header is broken (a truncated JPEG)."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            image.draft("RGB", (side, side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale directly
            image = ImageOps.exif_transpose(image)  # a phone's portrait photo the way it was held
            image = image.convert("RGB")
            if max(image.size) > side:
                image.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
            return np.asarray(image)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise FrameError(f"the image cannot be decoded: {exc}") from None


def to_jpeg(pixels: np.ndarray, quality: int = 85) -> bytes:
    """RGB pixels as a JPEG, for an LLM that reads the frames themselves."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=quality)
    return out.getvalue()
