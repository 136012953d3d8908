"""Frames for the vision tests, made on the spot: signs, solid colours, a scene, a real face."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tests.support.require import require


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled TrueType font (>= 10.1): the same glyphs on every machine.
    return ImageFont.load_default(size=size)


def sign(words: str, *, fg: tuple[int, int, int] = (20, 20, 20), bg: tuple[int, int, int] = (245, 245, 240),
         panel: tuple[int, int, int] | None = None, size: tuple[int, int] = (768, 432)) -> Image.Image:
    """A printed sign: `words` centred, dark on light, or (panel) light text on a coloured panel."""
    image = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(image)
    face = font(size[1] // 6)
    left, top, right, bottom = draw.textbbox((0, 0), words, font=face)
    x, y = (size[0] - (right - left)) // 2 - left, (size[1] - (bottom - top)) // 2 - top
    if panel is not None:
        draw.rounded_rectangle((x - 40, y - 40, x + right - left + 40, y + bottom - top + 40), 20, fill=panel)
    draw.text((x, y), words, font=face, fill=fg)
    return image


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (640, 480)) -> Image.Image:
    return Image.new("RGB", size, colour)


def landscape(size: tuple[int, int] = (768, 432)) -> Image.Image:
    """Sky, a sun, green hills: a scene with no one in it."""
    width, height = size
    sky = np.linspace([120, 170, 235], [200, 225, 250], height // 2).astype(np.uint8)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[: height // 2] = sky[:, None, :]
    pixels[height // 2:] = (70, 140, 60)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width - 160, 40, width - 80, 120), fill=(250, 220, 90))
    draw.polygon([(0, height // 2), (width // 3, height // 3), (2 * width // 3, height // 2)], fill=(60, 120, 50))
    return image


def face_photo() -> Image.Image:
    """A real photograph of a person (scikit-image's astronaut, Eileen Collins; public domain)."""
    try:
        from skimage import data
    except ImportError:
        require(False, "scikit-image is not installed (pip install -e '.[test]')")
    return Image.fromarray(data.astronaut())


def encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))
