"""A1111 "parameters" infotext: writing it, reading it back, and carrying it inside image files.

The format is AUTOMATIC1111's (``modules/processing.py`` ``create_infotext`` and
``modules/infotext_utils.py`` ``parse_generation_parameters``)::

    a lighthouse on a cliff
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512

The prompt may span several lines; the last line holds ``Label: value`` pairs. A value holding
a comma, colon, newline or double quote is written as a JSON string, so anything survives.
Other programs (A1111's "PNG Info", image browsers) read what is written here.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from collections.abc import Iterator
from typing import Any

from PIL import Image, UnidentifiedImageError

# API field name -> infotext label, in the order A1111 writes them. Fields not listed here are
# written after these with a generic label (see ``label_for``); "version" always comes last.
INFOTEXT_LABELS: dict[str, str] = {
    "steps": "Steps",
    "sampler_name": "Sampler",
    "scheduler": "Schedule type",
    "cfg_scale": "CFG scale",
    "image_cfg_scale": "Image CFG scale",
    "seed": "Seed",
    "sd_model_hash": "Model hash",
    "sd_model_checkpoint": "Model",
    "sd_vae": "VAE",
    "subseed": "Variation seed",
    "subseed_strength": "Variation seed strength",
    "denoising_strength": "Denoising strength",
    "clip_skip": "Clip skip",
    "eta_noise_seed_delta": "ENSD",
    "tiling": "Tiling",
    "hr_prompt": "Hires prompt",
    "hr_negative_prompt": "Hires negative prompt",
    "hr_scale": "Hires upscale",
    "hr_second_pass_steps": "Hires steps",
    "hr_upscaler": "Hires upscaler",
    "hr_checkpoint_name": "Hires checkpoint",
    "hr_sampler_name": "Hires sampler",
    "hr_scheduler": "Hires schedule type",
    "hr_cfg": "Hires CFG Scale",
    "refiner_checkpoint": "Refiner",
    "refiner_switch_at": "Refiner switch at",
    "batch_size": "Batch size",
    "n_iter": "Batch count",
    "version": "Version",
}

# Two fields written as one "WxH" value, and where A1111 puts them (after the field named).
INFOTEXT_PAIRS: dict[str, tuple[str, str]] = {
    "Size": ("width", "height"),
    "Seed resize from": ("seed_resize_from_w", "seed_resize_from_h"),
    "Hires resize": ("hr_resize_x", "hr_resize_y"),
}
_PAIR_AFTER = {"Size": "seed", "Seed resize from": "subseed_strength",
               "Hires resize": "hr_scale"}

# Fields A1111 only writes when another field is on: its txt2img form always carries the hires
# values, but they describe the image only when the hires pass ran. A field is left out when
# its switch is present among the values and off; without the switch (img2img), it is written.
INFOTEXT_REQUIRES: dict[str, str] = {
    **{key: "enable_hr" for key in (
        "denoising_strength", "hr_prompt", "hr_negative_prompt", "hr_scale", "hr_resize_x",
        "hr_resize_y", "hr_second_pass_steps", "hr_upscaler", "hr_checkpoint_name",
        "hr_sampler_name", "hr_scheduler", "hr_cfg")},
    "refiner_switch_at": "refiner_checkpoint",
}

# Never written as parameters: the prompts are the text's first lines; enable_hr is implied by
# the Hires fields (``infotext_to_fields`` turns it back on).
_NOT_WRITTEN = {"prompt", "negative_prompt", "enable_hr"}

# The longest parameters text read from an image or parsed, in characters. A1111's own are a few
# KB; the cap bounds what a dropped file costs (a compressed chunk is never inflated beyond it).
MAX_INFOTEXT = 64 * 1024


class InfotextError(ValueError):
    """A parameters text webui does not read (longer than MAX_INFOTEXT); says why."""


def _too_long(limit: int = MAX_INFOTEXT) -> InfotextError:
    return InfotextError(f"The generation parameters in this image are too long (more than "
                         f"{limit // 1024} KB): webui does not read them.")


# parameter_pairs reads what A1111's re_param_code reads, with findall, except that a label may
# be a single character (A1111 needs two); for every label A1111 writes the two match the same
# text. That regex is  \s*(\w[\w \-/]*):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)  : applied by findall
# at every position, it rescans a long run of label characters or spaces from each of its
# positions (quadratic: 18.6 s for 32 KB). Its pieces, each matched once per position reached:
_SPACES = re.compile(r"\s*")
_NO_START = re.compile(r"[^\w\s]*")  # characters no pair can start at
_LABEL = re.compile(r"\w[\w \-/]*")
_QUOTED = re.compile(r'"(?:\\.|[^\\"])+"')
_RE_SIZE = re.compile(r"^(-?\d+)x(-?\d+)$")
_LABEL_JUNK = re.compile(r"[^\w \-/]+")
_NEGATIVE = "Negative prompt:"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_KEYWORD = b"parameters"
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286


def quote(value: Any) -> str:
    """A value as A1111 writes it: as a JSON string when it would break the line's syntax.

    A1111 quotes on ``,``, ``:`` and newlines; a double quote and surrounding spaces are
    quoted here too, so that every value reads back exactly. A1111 reads either form.
    """
    text = str(value)
    if any(c in text for c in ',:\n"') or text != text.strip():
        return json.dumps(text, ensure_ascii=False)
    return text


def unquote(text: str) -> str:
    """Undo ``quote``: a value in double quotes is read as JSON, anything else is kept."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def label_for(key: str) -> str:
    """The infotext label of an API field: A1111's own, or ``some_key`` -> ``Some key``."""
    if key in INFOTEXT_LABELS:
        return INFOTEXT_LABELS[key]
    # A label may only hold word characters, spaces, '-' and '/' (A1111's regex).
    text = " ".join(_LABEL_JUNK.sub(" ", key.replace("_", " ")).split())
    return text[:1].upper() + text[1:]


def field_for(label: str) -> str:
    """The API field of an infotext label: A1111's own, or ``Some key`` -> ``some_key``."""
    return _FIELDS.get(label) or "_".join(re.findall(r"\w+", label.lower()))


_FIELDS = {label: key for key, label in INFOTEXT_LABELS.items()}


def _format(value: Any) -> str | None:
    """A parameter value as text; None for values that are not written."""
    if value is None or isinstance(value, (bytes, bytearray)) or hasattr(value, "data"):
        return None  # unset, or an uploaded image: not something a text can carry
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False)
    text = str(value)
    return text if text else None


def _is_off(value: Any) -> bool:
    return value is None or value is False or value in ("", 0, "false", "False")


def build_infotext(prompt: str, negative_prompt: str | None, params: dict[str, Any]) -> str:
    """Write an A1111 infotext from a prompt, a negative prompt and API field values.

    Fields are labelled with ``INFOTEXT_LABELS`` (others: ``label_for``), in A1111's order with
    the unknown ones in the order given, Version last. width/height become ``Size: WxH``.
    None, empty strings and uploads are left out; so are A1111's own flags when off (Tiling)
    and the fields ``INFOTEXT_REQUIRES`` ties to a switch that is off.
    """
    off = {key for key, switch in INFOTEXT_REQUIRES.items()
           if switch in params and _is_off(params[switch])}
    params = {k: v for k, v in params.items() if k not in _NOT_WRITTEN and k not in off}

    pairs: dict[str, str] = {}  # label -> "WxH"
    for label, (a, b) in INFOTEXT_PAIRS.items():
        x, y = params.get(a), params.get(b)
        if _format(x) is None or _format(y) is None:
            continue  # one half alone is written under its own label
        del params[a], params[b]
        try:
            if int(x) <= 0 and int(y) <= 0:
                continue  # A1111's "not set" for these (0x0, -1x-1)
        except (TypeError, ValueError):
            pass
        pairs[label] = f"{x}x{y}"

    entries: list[tuple[str, Any]] = []

    def add_pairs_after(key: str) -> None:
        for label, after in _PAIR_AFTER.items():
            if after == key and label in pairs:
                entries.append((label, pairs.pop(label)))

    for key, label in INFOTEXT_LABELS.items():
        if key == "version":
            continue
        if key in params:
            value = params.pop(key)
            # A1111 writes its flags only when on ("Tiling: True").
            if value is not False:
                entries.append((label, value))
        add_pairs_after(key)
    entries.extend(pairs.items())  # a pair whose anchor field was absent
    version = params.pop("version", None)
    entries.extend((label_for(key), value) for key, value in params.items())
    entries.append(("Version", version))

    written = []
    for label, value in entries:
        text = _format(value)
        if text is not None and label:
            written.append(f"{label}: {quote(text)}")
    negative = f"\n{_NEGATIVE} {negative_prompt}" if negative_prompt else ""
    return f"{prompt or ''}{negative}\n{', '.join(written)}".strip()


def parameter_pairs(line: str) -> list[tuple[str, str]]:
    """The ``(label, value)`` pairs of a parameters line, exactly as A1111's regex finds them
    (values still quoted), in time linear in the line's length."""
    pairs: list[tuple[str, str]] = []
    pos, n = 0, len(line)
    while pos < n:
        start = _SPACES.match(line, pos).end()  # type: ignore[union-attr]
        label = _LABEL.match(line, start)
        if label is None:  # `start` is the end, or a character no pair starts at
            pos = _NO_START.match(line, start).end()  # type: ignore[union-attr]
            continue
        colon = label.end()
        if colon == n or line[colon] != ":":
            # Every position up to `colon` reads this same run of label characters, not
            # followed by ':'; from `colon` on, a pair reads as it would have from before it.
            pos = colon
            continue
        value = _SPACES.match(line, colon + 1).end()  # type: ignore[union-attr]
        quoted = _QUOTED.match(line, value)
        end = quoted.end() if quoted else -1
        if not (quoted and (end == n or line[end] == "," or (end == n - 1 and line[end] == "\n"))):
            comma = line.find(",", value)  # unquoted, or a quote not closing the value
            end = n if comma < 0 else comma
        pairs.append((label.group(), line[value:end]))
        pos = end + 1 if end < n and line[end] == "," else end
    return pairs


def parse_infotext(text: str) -> tuple[str, str, dict[str, str]]:
    """Read an A1111 infotext into (prompt, negative prompt, {label: value}).

    As A1111 reads it: the last line holds the parameters when at least three ``Label: value``
    pairs are found on it; earlier lines are the prompt, then from a line starting with
    ``Negative prompt:`` the negative prompt. Quoted values are unquoted; Size stays "WxH"
    (``infotext_to_fields`` splits it). A text longer than MAX_INFOTEXT raises InfotextError.
    """
    if len(text) > MAX_INFOTEXT:
        raise _too_long()
    *lines, last = text.replace("\r\n", "\n").strip().split("\n")
    pairs = parameter_pairs(last.strip())
    if len(pairs) < 3:
        lines.append(last)
        pairs = []
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith(_NEGATIVE):
            in_negative = True
            line = line[len(_NEGATIVE):].strip()
        (negative if in_negative else prompt).append(line)
    params: dict[str, str] = {}
    for label, value in pairs:
        params[label.strip()] = unquote(value)
    return "\n".join(prompt), "\n".join(negative), params


def infotext_to_fields(params: dict[str, str]) -> dict[str, str]:
    """Map parsed labels back to API field names (Size -> width and height, ...).

    Values stay text, for the form to check and convert. Any Hires field sets ``enable_hr``.
    """
    fields: dict[str, str] = {}
    for label, value in params.items():
        pair = INFOTEXT_PAIRS.get(label)
        m = _RE_SIZE.match(value.strip()) if pair else None
        if pair and m:
            fields[pair[0]], fields[pair[1]] = m.group(1), m.group(2)
        else:
            fields[field_for(label)] = value
    if any(INFOTEXT_REQUIRES.get(key) == "enable_hr" and key.startswith("hr_") for key in fields):
        fields["enable_hr"] = "True"
    return fields


# --- Image files -----------------------------------------------------------------------------

def _chunks(data: bytes) -> list[tuple[bytes, bytes, bytes]] | None:
    """A PNG's chunks as (type, body, raw bytes); None if ``data`` is not a well-formed PNG."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    out = []
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            return None
        out.append((kind, data[pos + 8:pos + 8 + length], data[pos:end]))
        pos = end
        if kind == b"IEND":
            return out
    return None


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


def _text_chunks(data: bytes, keyword: str | None = None) -> Iterator[tuple[str, bytes, bytes]]:
    """(keyword, type, body after the keyword) of a PNG's text chunks — only those with
    ``keyword`` when one is given — as far as the chunks are well-formed; the keyword is
    checked before anything is copied or inflated."""
    pos = len(_PNG_SIGNATURE)
    head = keyword.encode("latin-1") + b"\0" if keyword is not None else None
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = pos + 8
        if body + length + 4 > len(data) or kind == b"IEND":
            return
        if kind in _TEXT_CHUNKS:
            if head is not None:
                if data.startswith(head, body, body + length):
                    yield keyword, kind, data[body + len(head):body + length]
            else:
                # A keyword is 1-79 Latin-1 characters (PNG spec 11.3.4.3).
                end = data.find(b"\0", body, min(body + length, body + 80))
                if end > body:
                    yield (data[body:end].decode("latin-1"), kind,
                           data[end + 1:body + length])
        pos = body + length + 4


def _parameters_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, body) of a PNG's text chunks with the keyword "parameters"."""
    for _keyword, kind, rest in _text_chunks(data, _KEYWORD.decode()):
        yield kind, rest


def _inflate(data: bytes, limit: int) -> bytes | None:
    """zlib data inflated, but never beyond ``limit`` bytes (InfotextError if it goes on);
    None if it is not valid zlib data."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        return None
    if len(out) > limit:
        raise _too_long(limit)
    return out if inflater.eof else None


def _text_of(kind: bytes, rest: bytes, limit: int = MAX_INFOTEXT) -> str | None:
    """The text of a tEXt, zTXt or iTXt chunk (``rest``: its body after the keyword); None if
    it cannot be decoded, InfotextError if it is longer than ``limit`` characters."""
    # Latin-1 has one byte per character, UTF-8 up to four.
    try:
        if kind == b"tEXt":
            if len(rest) > limit:
                raise _too_long(limit)
            return rest.decode("latin-1")
        if kind == b"zTXt":
            raw: bytes | None = _inflate(rest[1:], limit) if rest[:1] == b"\0" else None
            return raw.decode("latin-1") if raw is not None else None
        compressed, method, rest = rest[0], rest[1], rest[2:]  # iTXt
        _language, _, rest = rest.partition(b"\0")
        _translated, _, rest = rest.partition(b"\0")
        if compressed:
            raw = _inflate(rest, 4 * limit) if method == 0 else None
        elif len(rest) > 4 * limit:
            raise _too_long(limit)
        else:
            raw = rest
        text = raw.decode("utf-8") if raw is not None else None
    except (UnicodeDecodeError, IndexError):
        return None
    if text is not None and len(text) > limit:
        raise _too_long(limit)
    return text


def png_text(data: bytes, keyword: str, limit: int = MAX_INFOTEXT) -> str | None:
    """The text of a PNG's first readable text chunk with this keyword (a workflow graph,
    webui's own note); None if there is none, InfotextError if it is longer than ``limit``.
    Bounded like the parameters: only that keyword is ever inflated, and only up to the cap."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    for _keyword, kind, rest in _text_chunks(data, keyword):
        text = _text_of(kind, rest, limit)
        if text is not None:
            return text
    return None


def png_text_keywords(data: bytes, most: int = 50) -> list[tuple[str, int]]:
    """(keyword, stored size in bytes) of a PNG's first ``most`` text chunks: what a file
    carries, without reading any of it."""
    if not data.startswith(_PNG_SIGNATURE):
        return []
    found = []
    for keyword, _kind, rest in _text_chunks(data):
        found.append((keyword, len(rest)))
        if len(found) >= most:
            break
    return found


def write_png_infotext(data: bytes, text: str) -> bytes:
    """PNG bytes with ``text`` in a ``parameters`` text chunk, where A1111 puts it.

    Written as tEXt when the text is Latin-1, else as UTF-8 iTXt (as Pillow does for A1111);
    an earlier ``parameters`` chunk is replaced, the image data is not touched. Anything that is
    not a well-formed PNG (JPEG, WEBP, ...) is returned unchanged: re-encoding it would change
    the format, or lose quality, of an image that has already been shown and named.
    """
    return write_png_text(data, _KEYWORD.decode(), text)


def write_png_text(data: bytes, keyword: str, text: str) -> bytes:
    """PNG bytes with ``text`` in a text chunk of this keyword (see write_png_infotext)."""
    chunks = _chunks(data)
    if chunks is None or not any(kind == b"IDAT" for kind, _, _ in chunks):
        return data
    key = keyword.encode("latin-1")
    try:
        new = _chunk(b"tEXt", key + b"\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        new = _chunk(b"iTXt", key + b"\0\0\0\0\0" + text.encode("utf-8"))
    out = [_PNG_SIGNATURE]
    for kind, body, raw in chunks:
        if kind in _TEXT_CHUNKS and body.partition(b"\0")[0] == key:
            continue
        if kind == b"IDAT" and new:
            out.append(new)
            new = b""
        out.append(raw)
    return b"".join(out)


# The formats A1111 writes its text into EXIF of; no other is opened (nor decoded).
_EXIF_FORMATS = ["JPEG", "WEBP", "AVIF"]


def read_png_infotext(data: bytes) -> str | None:
    """The infotext in an image: a PNG's ``parameters`` chunk, or a JPEG/WEBP EXIF UserComment
    (where A1111 puts it in those formats); None if there is none, or if it is too long.
    """
    try:
        return image_infotext(data)
    except InfotextError:
        return None


def image_infotext(data: bytes) -> str | None:
    """As read_png_infotext, but a text longer than MAX_INFOTEXT raises InfotextError.

    Bounded cost whatever the file: a PNG's chunks are walked, not decoded, a compressed text
    is inflated only for the keyword "parameters" and only up to the cap; other files are
    opened with Pillow only as JPEG, WEBP or AVIF, whose EXIF is read without their pixels.
    """
    if data.startswith(_PNG_SIGNATURE):
        for kind, rest in _parameters_chunks(data):
            text = _text_of(kind, rest)
            if text is not None:
                return text
        return None
    Image.init()
    try:
        with Image.open(io.BytesIO(data),
                        formats=[f for f in _EXIF_FORMATS if f in Image.OPEN]) as img:
            comment = img.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError):
        return None
    return _user_comment(comment)


def _user_comment(value: Any) -> str | None:
    """Decode an EXIF UserComment: 8 bytes naming the charset, then the text."""
    if isinstance(value, str):
        if len(value) > MAX_INFOTEXT:
            raise _too_long()
        return value.strip("\0") or None
    if not isinstance(value, bytes) or len(value) < 8:
        return None
    if len(value) > 8 + 4 * MAX_INFOTEXT:
        raise _too_long()
    head, body = value[:8], value[8:]
    if head.startswith(b"UNICODE"):
        if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
            text = body.decode("utf-16")
        else:
            # The standard leaves the byte order to the file; A1111 (piexif) writes big-endian.
            # ASCII-range text has its zero bytes first in big-endian: use that to tell.
            big = body[0::2].count(0) >= body[1::2].count(0)
            text = body.decode("utf-16-be" if big else "utf-16-le", errors="replace")
    elif head.startswith(b"ASCII"):
        text = body.decode("ascii", errors="replace")
    else:
        text = body.decode("utf-8", errors="replace")
    if len(text) > MAX_INFOTEXT:
        raise _too_long()
    return text.strip("\0") or None
