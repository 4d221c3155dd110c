"""Hostile image files dropped on the form: A1111's "parameters" text is read from them with a
bounded cost. A compressed text chunk is inflated only when its keyword is "parameters", and
never beyond the length cap; the text is parsed in linear time.

Linear time is tested without asserting on time: every adversarial text is as long as the cap
allows (64 KB), where a quadratic parser needs minutes (the old regex took 18.6 s for 32 KB),
and is parsed under a deadline of 10 s raised by SIGALRM (the regex engine checks signals, so
the deadline interrupts even one long regex call). A linear parser needs milliseconds.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
import signal
import struct
import threading
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
from PIL import Image

from webui import infotext
from webui.infotext import parse_infotext, read_png_infotext

from .helpers import image_bytes

MB = 1024 * 1024
CAP = 64 * 1024  # characters: the longest parameters text read (MAX_INFOTEXT)
REAL_TEXT = ("a lighthouse\nNegative prompt: blurry\n"
             "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512")
FORM = "/services/a1111/txt2img/read-image"


# --- Crafted PNGs ------------------------------------------------------------------------------

def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def zeros_compressed(size: int) -> bytes:
    """``size`` zero bytes, deflated, without ever holding them all in memory."""
    packer = zlib.compressobj(9)
    block = b"\0" * MB
    out = [packer.compress(block) for _ in range(size // MB)]
    return b"".join(out) + packer.flush()


def png_with(*extra: bytes) -> bytes:
    """A small real PNG with ``extra`` chunks between its header and its pixels."""
    png = image_bytes((8, 8))
    header_end = 8 + 25  # signature, IHDR
    return png[:header_end] + b"".join(extra) + png[header_end:]


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """200 MB of zeros, deflated (~200 KB)."""
    return zeros_compressed(200 * MB)


@contextlib.contextmanager
def peak_memory() -> Iterator[list[int]]:
    """The peak of memory allocated by Python inside the block, in bytes (``[peak]``)."""
    found = [0]
    tracemalloc.start()
    try:
        yield found
    finally:
        found[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def test_compressed_chunks_are_inflated_only_for_parameters_and_never_beyond_the_cap(bomb):
    data = png_with(
        chunk(b"zTXt", b"Comment\0\0" + bomb),
        chunk(b"iTXt", b"XML:com.adobe.xmp\0\1\0\0\0" + bomb),
        chunk(b"zTXt", b"parameters\0\0" + bomb),
        chunk(b"iTXt", b"parameters\0\1\0en\0\0" + bomb),
    )
    assert len(data) < MB
    with peak_memory() as peak:
        assert read_png_infotext(data) is None
    assert peak[0] < 50 * MB
    with peak_memory() as peak, pytest.raises(infotext.InfotextError, match="64 KB"):
        infotext.image_infotext(data)
    assert peak[0] < 50 * MB


def test_a_real_text_after_bombs_with_other_keywords_is_read(bomb):
    data = png_with(
        chunk(b"zTXt", b"Comment\0\0" + bomb),
        chunk(b"iTXt", b"prompt\0\1\0\0\0" + bomb),
        chunk(b"zTXt", b"parameters\0\0" + zlib.compress(REAL_TEXT.encode("latin-1"))),
    )
    with peak_memory() as peak:
        assert read_png_infotext(data) == REAL_TEXT
    assert peak[0] < 50 * MB


@pytest.mark.parametrize("kind, head, encode", [
    (b"tEXt", b"parameters\0", lambda t: t.encode("latin-1")),
    (b"zTXt", b"parameters\0\0", lambda t: zlib.compress(t.encode("latin-1"))),
    (b"iTXt", b"parameters\0\0\0\0\0", lambda t: t.encode("utf-8")),
    (b"iTXt", b"parameters\0\1\0\0\0", lambda t: zlib.compress(t.encode("utf-8"))),
])
def test_texts_up_to_the_cap_are_read_longer_ones_refused(kind, head, encode):
    fits = "p" * (CAP - len(REAL_TEXT) - 1) + "\n" + REAL_TEXT
    assert len(fits) == CAP
    assert read_png_infotext(png_with(chunk(kind, head + encode(fits)))) == fits
    longer = "p" + fits
    data = png_with(chunk(kind, head + encode(longer)))
    assert read_png_infotext(data) is None
    with pytest.raises(infotext.InfotextError, match="64 KB"):
        infotext.image_infotext(data)


def test_a_truncated_png_is_never_decoded_as_pixels(monkeypatch):
    """A PNG cut before its end (no IEND) was handed to Pillow, which decoded its pixels to
    find EXIF: 6000 x 6000 RGBA pixels of zeros (140 KB) took 140 MB (outside tracemalloc's
    sight). Its chunks are read as far as they go; Pillow never sees a PNG."""
    width = height = 6000
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    idat = zeros_compressed((1 + 4 * width) * height)  # each row: filter 0, then pixels
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"tEXt", b"parameters\0" + REAL_TEXT.encode()) + chunk(b"IDAT", idat))

    def never(*args, **kwargs):
        raise AssertionError("a PNG was opened with Pillow")

    monkeypatch.setattr(Image, "open", never)
    assert read_png_infotext(data) == REAL_TEXT
    assert read_png_infotext(data[:-4]) == REAL_TEXT  # cut inside the pixels
    assert read_png_infotext(data[:60]) is None  # cut inside the text


def test_a_long_exif_user_comment_is_refused():
    exif = Image.Exif()
    text = "p" * CAP + "\n" + REAL_TEXT
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + text.encode("utf-16-be")
    data = image_bytes((8, 8), format="WEBP", exif=exif.tobytes())
    assert read_png_infotext(data) is None
    with pytest.raises(infotext.InfotextError, match="64 KB"):
        infotext.image_infotext(data)


def test_only_jpeg_and_webp_are_opened_with_pillow():
    """A1111 writes EXIF only in JPEG and WEBP; other formats are not decoded at all."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0" + REAL_TEXT.encode()
    assert read_png_infotext(image_bytes((8, 8), format="JPEG", exif=exif.tobytes())) == REAL_TEXT
    assert read_png_infotext(image_bytes((8, 8), format="TIFF", exif=exif.tobytes())) is None
    # An image Pillow refuses to open (a decompression bomb by its size) is no error here.
    huge = image_bytes((8, 8), format="GIF")
    huge = huge[:6] + struct.pack("<HH", 65535, 65535) + huge[10:]
    assert read_png_infotext(huge) is None


def test_the_form_says_why_a_dropped_image_is_not_read(client, bomb):
    data = png_with(chunk(b"zTXt", b"parameters\0\0" + bomb))
    r = client.post(FORM, data={"image": (io.BytesIO(data), "bomb.png")},
                    content_type="multipart/form-data")
    assert r.status_code == 200
    assert "64 KB" in r.get_json()["error"]
    ok = png_with(chunk(b"zTXt", b"Comment\0\0" + bomb),
                  chunk(b"tEXt", b"parameters\0" + REAL_TEXT.encode()))
    r = client.post(FORM, data={"image": (io.BytesIO(ok), "ok.png")},
                    content_type="multipart/form-data")
    assert r.get_json()["values"]["steps"] == 20


# --- Parsing in linear time ---------------------------------------------------------------------

class Deadline(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise Deadline in the block after ``seconds`` (SIGALRM: the main thread only)."""
    assert threading.current_thread() is threading.main_thread()

    def expire(signum, frame):
        raise Deadline(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def cap_sized(unit: str, prefix: str = "Steps: 20, Seed: 1, CFG scale: 7, ",
              suffix: str = "") -> str:
    room = CAP - len(prefix) - len(suffix)
    return prefix + unit * (room // len(unit)) + suffix


ADVERSARIAL = {
    "spaces then a comma": cap_sized(" ", suffix=","),   # the old regex: 18.6 s for 32 KB
    "one long word": cap_sized("a"),
    "words and spaces": cap_sized("a "),
    "words and dashes": cap_sized("a-"),
    "words and slashes": cap_sized("a/"),
    "tabs and words": cap_sized("\ta"),
    "commas and spaces": cap_sized(", "),
    "colons": cap_sized(":"),
    "labels only": cap_sized("a:"),
    "empty values": cap_sized("a: ,"),
    "open quotes": cap_sized('a:"'),
    "quotes": cap_sized('"'),
    "escaped quotes": cap_sized('\\"', prefix='Steps: 20, Seed: 1, Prompt: "'),
    "backslashes": cap_sized("\\", prefix='Steps: 20, Seed: 1, Prompt: "'),
    "unclosed quote": cap_sized("x", prefix='Steps: 20, Seed: 1, Prompt: "'),
    "quote not followed by a comma": cap_sized('a: "x" y, '),
    "quoted values": cap_sized('a: "x,y", '),
    "prompt lines": cap_sized("a b c\n", prefix=""),
    "negative prompt lines": cap_sized("Negative prompt: a\n", prefix=""),
}


@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_adversarial_texts_parse_in_linear_time(text):
    assert len(text) <= CAP
    with deadline(10):
        prompt, negative, params = parse_infotext(text)
        parse_infotext(text[:-2] + "\nx")  # the same text, as a prompt line
    assert params or prompt or negative


def test_a_text_longer_than_the_cap_is_refused():
    assert infotext.MAX_INFOTEXT == CAP
    text = "p" * CAP + "\n" + REAL_TEXT
    with pytest.raises(infotext.InfotextError, match="64 KB"):
        parse_infotext(text)


# The regex the parser used to apply (A1111's ``re_param_code`` with one-character labels): the
# linear parser must find exactly what its ``findall`` found, only without the quadratic cost.
OLD_RE_PARAM = re.compile(r'\s*(\w[\w \-/]*):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def test_the_linear_parser_reads_exactly_what_the_regex_read():
    rng = random.Random(1111)
    alphabet = ['a', 'b', 'é', '1', '_', ' ', ' ', '\t', '\n', '\r', '-', '/', ':', ':', ',',
                ',', '"', '"', '\\', 'x', '.', '\u00a0', 'Steps', 'Seed: 1, ']
    for _ in range(20000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 25)))
        assert infotext.parameter_pairs(line) == OLD_RE_PARAM.findall(line), repr(line)
    for text in ADVERSARIAL.values():
        sample = text[:2000]
        assert infotext.parameter_pairs(sample) == OLD_RE_PARAM.findall(sample)
