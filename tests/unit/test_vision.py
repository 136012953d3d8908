"""Vision without a server: frames checked, decoded small, described; the shared worker's queue."""

from __future__ import annotations

import asyncio
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from openlive import metrics
from openlive.engines.vision import ocr, scene
from openlive.engines.vision.base import Sight
from openlive.engines.vision.embedded import EmbeddedVision
from openlive.engines.vision.images import FrameError, FrameLimits, check_frame, decode_frame, side_for
from openlive.engines.vision.service import SharedVision
from tests.support.images import encode, face_photo, landscape, pixels, sign, solid
from tests.support.require import require


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width × height pixels: signature, IHDR, a tiny IDAT, IEND."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + \
        chunk(b"IEND", b"")


@pytest.fixture
def no_decoding(monkeypatch):
    """Checking a frame must not decode a single pixel."""
    def refuse(self):
        raise AssertionError("a frame was decoded while it was only being checked")
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


# ------------------------------------------------------------------ checking

def test_good_frames_pass_with_their_size(no_decoding):
    assert check_frame(encode(sign("EXIT"), "JPEG"), "image/jpeg") == (768, 432)
    assert check_frame(encode(solid((0, 0, 255)), "PNG"), "image/png") == (640, 480)
    assert check_frame(encode(solid((0, 0, 255)), "WEBP"), "image/webp;foo=bar") == (640, 480)


@pytest.mark.parametrize("data, mime, why", [
    (b"\x00\x01garbage that is no picture", "image/jpeg", "not a decodable image/jpeg image"),
    (b"", "image/png", "empty"),
    (encode(solid((1, 2, 3)), "PNG"), "image/gif", "image/gif is not supported"),
    (encode(solid((1, 2, 3)), "PNG"), "text/plain", "text/plain is not supported"),
    (encode(solid((1, 2, 3)), "GIF"), "image/png", "not a decodable image/png image"),  # GIF is no frame format
])
def test_bad_frames_are_refused_with_a_reason(no_decoding, data, mime, why):
    with pytest.raises(FrameError, match=why):
        check_frame(data, mime)


def test_a_30_mb_frame_is_refused_by_its_size_alone(no_decoding):
    data = encode(solid((9, 9, 9)), "JPEG") + b"\0" * (30 << 20)
    with pytest.raises(FrameError, match=rf"{len(data)} bytes; the limit is {8 << 20}"):
        check_frame(data, "image/jpeg")


def test_a_20000_by_20000_png_header_is_refused_before_any_pixel_exists(no_decoding):
    data = png_header(20000, 20000)
    assert len(data) < 200
    with pytest.raises(FrameError, match="more than|20000×20000"):
        check_frame(data, "image/png")


def test_a_decompression_bomb_is_refused(no_decoding):
    # 12000 × 12000 black pixels: 144 megapixels that compress to a few kilobytes.
    bomb = Image.new("1", (12000, 12000))
    data = encode(bomb, "PNG")
    assert len(data) < 100_000
    with pytest.raises(FrameError, match="pixels"):
        check_frame(data, "image/png")
    # And a smaller one against a tighter configured limit.
    with pytest.raises(FrameError, match="2000×2000 pixels; the limit is 1000000"):
        check_frame(encode(Image.new("1", (2000, 2000)), "PNG"), "image/png", FrameLimits(max_pixels=1_000_000))


def test_a_truncated_jpeg_passes_the_header_check_and_fails_decoding_cleanly():
    whole = encode(sign("HELLO"), "JPEG")
    data = whole[: len(whole) // 3]  # the headers, and a third of the picture
    assert check_frame(data, "image/jpeg") == (768, 432)
    with pytest.raises(FrameError, match="cannot be decoded"):
        decode_frame(data)


# ------------------------------------------------------------------ decoding small

@pytest.mark.parametrize("resolution, shape", [
    (None, (432, 768, 3)), ("MEDIA_RESOLUTION_MEDIUM", (432, 768, 3)), ("MEDIA_RESOLUTION_LOW", (216, 384, 3)),
    ("MEDIA_RESOLUTION_HIGH", (864, 1536, 3)), ("MEDIA_RESOLUTION_UNSPECIFIED", (432, 768, 3)),
])
def test_frames_are_decoded_at_the_size_media_resolution_asks(resolution, shape):
    big = encode(sign("PLATFORM 9", size=(3200, 1800)), "JPEG")
    assert decode_frame(big, side_for(resolution)).shape == shape


def test_small_frames_are_not_enlarged():
    assert decode_frame(encode(solid((0, 255, 0), (320, 240)), "PNG"), 1536).shape == (240, 320, 3)


# ------------------------------------------------------------------ scene facts

@pytest.mark.parametrize("rgb, name", [
    ((220, 30, 30), "red"), ((0, 150, 40), "green"), ((20, 60, 220), "blue"), ((250, 230, 40), "yellow"),
    ((255, 140, 0), "orange"), ((130, 40, 170), "purple"), ((255, 170, 200), "pink"), ((120, 70, 30), "brown"),
    ((5, 5, 5), "black"), ((250, 250, 250), "white"), ((128, 128, 128), "grey"), ((40, 200, 190), "turquoise"),
])
def test_solid_colours_are_named_in_plain_english(rgb, name):
    assert scene.dominant_colours(pixels(solid(rgb))) == (name,)


def test_a_picture_of_two_colours_names_the_larger_first():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, :70] = (20, 60, 220)
    image[:, 70:] = (250, 250, 250)
    assert scene.dominant_colours(image) == ("blue", "white")


def test_brightness_is_said_only_when_dark():
    assert scene.brightness(pixels(solid((10, 10, 10)))) == "very dark"
    assert scene.brightness(pixels(solid((60, 60, 60)))) == "dark"
    assert scene.brightness(pixels(landscape())) == ""


def test_change_since_the_last_frame():
    first = scene.thumbnail(pixels(sign("EXIT 12")))
    assert scene.changed(first, None) is None
    assert scene.changed(scene.thumbnail(pixels(sign("EXIT 12"))), first) is False
    assert scene.changed(scene.thumbnail(pixels(landscape())), first) is True
    light = pixels(sign("EXIT 12")).astype(np.float32)
    # A camera's exposure drifting a few percent is the same view; the light going out is not.
    for gain, seen in ((1.04, False), (0.96, False), (0.3, True)):
        assert scene.changed(scene.thumbnail(np.clip(light * gain, 0, 255).astype(np.uint8)), first) is seen, gain


def test_the_description_is_short_and_plain():
    sight = Sight(text=("EXIT 12",), faces=1, colours=("blue", "white"))
    assert sight.describe() == ("The frame shows the text: 'EXIT 12'. One person's face is in view. "
                                "Mostly blue, with some white.")
    assert Sight(faces=0, colours=("black",), brightness="very dark").describe() == \
        "No person or face is in view. Mostly black. The picture is very dark."
    assert Sight().describe() == "Nothing recognisable is in view."


# ------------------------------------------------------------------ the real models

@pytest.fixture(scope="module")
def reader():
    require(ocr.available(), "rapidocr-onnxruntime is not installed (pip install --no-deps rapidocr-onnxruntime==1.4.4)")
    return ocr.TextReader()


def words(lines: tuple[str, ...]) -> str:
    return " ".join(lines).upper()


def test_ocr_reads_dark_text_on_a_light_sign(reader):
    assert "OPEN 24 HOURS" in words(reader.read(decode_frame(encode(sign("OPEN 24 HOURS")))))


def test_ocr_reads_light_text_on_a_coloured_panel(reader):
    image = sign("PLATFORM 9", fg=(255, 255, 255), bg=(200, 200, 200), panel=(20, 70, 160))
    assert "PLATFORM 9" in words(reader.read(decode_frame(encode(image))))


def test_ocr_reads_nothing_in_a_plain_scene(reader):
    assert reader.read(decode_frame(encode(solid((20, 60, 220))))) == ()


@pytest.fixture(scope="module")
def faces():
    return scene.FaceFinder()


def test_a_face_is_found_in_a_photograph_of_a_person(faces):
    assert faces.count(decode_frame(encode(face_photo()))) == 1


@pytest.mark.parametrize("make", [landscape, lambda: sign("OPEN 24 HOURS"), lambda: solid((200, 30, 30))])
def test_no_face_is_found_where_there_is_none(faces, make):
    assert faces.count(decode_frame(encode(make()))) == 0


def test_the_embedded_engine_describes_a_sign_frame(reader):
    engine = EmbeddedVision()
    engine.load()
    sight = engine.look(decode_frame(encode(sign("EXIT 12", fg=(255, 255, 255), bg=(30, 60, 200)))), None)
    assert sight.text == ("EXIT 12",) and sight.faces == 0 and sight.colours[0] == "blue"
    assert sight.describe().startswith("The frame shows the text: 'EXIT 12'. No person or face is in view. Mostly blue")


def test_the_same_view_again_is_not_read_again_and_a_new_view_is():
    class CountingReader:
        calls = 0

        def read(self, image):
            self.calls += 1
            return ("WORDS",)

    engine = EmbeddedVision(find_faces=False)
    engine._reader = reader = CountingReader()
    first = engine.look(decode_frame(encode(sign("GATE 7"))), None)
    again = engine.look(decode_frame(encode(sign("GATE 7"))), first.thumbnail)
    assert reader.calls == 1 and again.changed is False and again.text == ()
    assert again.thumbnail is first.thumbnail  # the reference stays the view described
    other = engine.look(decode_frame(encode(landscape())), again.thumbnail)
    assert reader.calls == 2 and other.changed is True and other.text == ("WORDS",)


# ------------------------------------------------------------------ the shared worker

class Slow:
    """An engine that holds each frame until told to go on, to fill the queue."""

    name, sees_images = "slow", False

    def __init__(self):
        self.go = threading.Event()
        self.started = threading.Event()
        self.seen = []

    def load(self):
        pass

    def look(self, image, previous):
        self.started.set()
        self.go.wait(10)
        self.seen.append(int(image[0, 0, 0]))
        return Sight(colours=("red",))


def frame_of(value: int) -> bytes:
    return encode(solid((value, 0, 0), (32, 32)), "PNG")


def dropped_count() -> float:
    return metrics.FRAMES_DROPPED.labels("video")._value.get()


async def test_frames_faster_than_the_worker_are_dropped_oldest_first_and_counted():
    engine = Slow()
    vision = SharedVision(engine, max_waiting=2)
    await vision.load()
    before = dropped_count()
    try:
        busy = vision.submit("a", frame_of(1), side=64)
        await asyncio.to_thread(engine.started.wait, 5)  # the worker holds frame 1
        a2 = vision.submit("a", frame_of(2), side=64)
        a3 = vision.submit("a", frame_of(3), side=64)  # replaces a2: one frame waiting per session
        b4 = vision.submit("b", frame_of(4), side=64)
        c5 = vision.submit("c", frame_of(5), side=64)  # three sessions waiting, bound 2: a3 goes
        engine.go.set()
        results = await asyncio.wait_for(asyncio.gather(busy, a2, a3, b4, c5), 10)
    finally:
        vision.close()
    assert [r is not None for r in results] == [True, False, False, True, True]
    assert engine.seen == [1, 4, 5]
    assert vision.dropped == 2 and dropped_count() - before == 2


async def test_a_broken_frame_comes_back_as_an_error_and_the_worker_goes_on():
    vision = SharedVision(Slow(), max_waiting=4)
    vision.engine.go.set()
    await vision.load()
    try:
        whole = encode(sign("HELLO"), "JPEG")
        broken = vision.submit("a", whole[: len(whole) // 3], side=64)
        with pytest.raises(FrameError):
            await asyncio.wait_for(broken, 10)
        assert await asyncio.wait_for(vision.submit("a", frame_of(7), side=64), 10) is not None
    finally:
        vision.close()


# ------------------------------------------------------------------ openlive talk --image

def test_talk_image_reads_one_picture_or_a_folder_of_frames_in_name_order(tmp_path):
    from openlive.client.talk import read_frames

    (tmp_path / "b.png").write_bytes(b"png")
    (tmp_path / "a.JPG").write_bytes(b"jpeg")
    (tmp_path / "notes.txt").write_text("not a frame")
    assert read_frames(tmp_path) == [(b"jpeg", "image/jpeg"), (b"png", "image/png")]
    assert read_frames(tmp_path / "b.png") == [(b"png", "image/png")]
    assert read_frames(None) == []
    with pytest.raises(ValueError, match="must be a .jpg, .png or .webp"):
        read_frames(tmp_path / "notes.txt")
