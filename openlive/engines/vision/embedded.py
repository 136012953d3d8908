"""The embedded vision engine: offline, CPU, pip-only. Text, faces, colours, brightness, change."""

from __future__ import annotations

import logging

import numpy as np

from . import ocr, scene
from .base import Sight

log = logging.getLogger(__name__)


class EmbeddedVision:
    sees_images = False

    def __init__(self, *, read_text: bool = True, find_faces: bool = True, ocr_threads: int = 1) -> None:
        self.name = "embedded"
        self.read_text = read_text
        self.find_faces = find_faces
        self.ocr_threads = ocr_threads
        self._reader: ocr.TextReader | None = None
        self._faces: scene.FaceFinder | None = None

    def load(self) -> None:
        if self.read_text:
            if ocr.available():
                self._reader = ocr.TextReader(threads=self.ocr_threads)
            else:
                log.warning("rapidocr-onnxruntime is not installed: frames are described without their text "
                            "(pip install --no-deps rapidocr-onnxruntime==1.4.4)")
        if self.find_faces:
            self._faces = scene.FaceFinder()

    def look(self, image: np.ndarray, previous: np.ndarray | None) -> Sight:
        thumb = scene.thumbnail(image)
        change = scene.changed(thumb, previous)
        if change is False:
            # The view described last, again (a camera held on a sign): reading it again would take
            # ~0.3 s of CPU a frame from the voice path and say nothing new.
            return Sight(changed=False, thumbnail=previous)
        return Sight(
            text=self._reader.read(image) if self._reader is not None else (),
            faces=self._faces.count(image) if self._faces is not None else None,
            colours=scene.dominant_colours(image),
            brightness=scene.brightness(image),
            changed=change,
            thumbnail=thumb,
        )


class ImagesOnly:
    """For an LLM that sees images itself: frames are only prepared (decoded small, re-encoded)."""

    sees_images = True

    def __init__(self) -> None:
        self.name = "remote"

    def load(self) -> None:
        pass

    def look(self, image: np.ndarray, previous: np.ndarray | None) -> Sight:
        thumb = scene.thumbnail(image)
        return Sight(changed=scene.changed(thumb, previous), thumbnail=thumb)
