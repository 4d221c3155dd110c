"""A1111 infotext: written like A1111, read like A1111, carried in PNG/JPEG/WEBP files."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import struct
import zlib
from typing import Any

import pytest
from PIL import Image

from webui.images import UploadedImage
from webui.infotext import (
    INFOTEXT_LABELS,
    build_infotext,
    field_for,
    infotext_to_fields,
    label_for,
    parse_infotext,
    quote,
    read_png_infotext,
    unquote,
    write_png_infotext,
)

from .helpers import a1111_response, image_bytes

FIXTURES = ["txt2img-200", "img2img-200", "txt2img-200-after-interrupt"]

# A1111 1.10's own reader (modules/infotext_utils.py), reduced to the parsing itself, to check
# that what build_infotext writes reads the same in A1111.
A1111_RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def a1111_parse(x: str) -> tuple[str, str, dict[str, str]]:
    prompt, negative, done = "", "", False
    *lines, lastline = x.strip().split("\n")
    if len(A1111_RE_PARAM.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done = True
            line = line[16:].strip()
        if done:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res = {}
    for k, v in A1111_RE_PARAM.findall(lastline):
        if v[0] == '"' and v[-1] == '"':
            with contextlib.suppress(ValueError):
                v = json.loads(v)
        res[k] = v
    return prompt, negative, res


def infotexts(name: str) -> list[str]:
    return json.loads(a1111_response(name)["info"])["infotexts"]


def chunk_types(data: bytes) -> list[bytes]:
    out, pos = [], 8
    while pos < len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        out.append(data[pos + 4:pos + 8])
        pos += 12 + length
    return out


# --- Real A1111 material ---------------------------------------------------------------------

def test_parses_a_real_a1111_infotext() -> None:
    prompt, negative, params = parse_infotext(infotexts("txt2img-200")[0])
    assert (prompt, negative) == ("a cat", "")
    assert params == {"Steps": "1", "Sampler": "Euler", "Schedule type": "Automatic",
                      "CFG scale": "7.0", "Seed": "1", "Size": "64x64",
                      "Model hash": "1c2e8cbb84", "Model": "random-sd15", "Version": "1.10.1"}
    assert infotext_to_fields(params) == {
        "steps": "1", "sampler_name": "Euler", "scheduler": "Automatic", "cfg_scale": "7.0",
        "seed": "1", "width": "64", "height": "64", "sd_model_hash": "1c2e8cbb84",
        "sd_model_checkpoint": "random-sd15", "version": "1.10.1"}


def test_writes_exactly_what_a1111_wrote_from_api_fields() -> None:
    fields = {"prompt": "a cat", "negative_prompt": "", "steps": 1, "sampler_name": "Euler",
              "scheduler": "Automatic", "cfg_scale": 7.0, "seed": 1, "width": 64, "height": 64,
              "sd_model_hash": "1c2e8cbb84", "sd_model_checkpoint": "random-sd15",
              "version": "1.10.1", "batch_size": None, "enable_hr": False, "hr_scale": 2,
              "hr_upscaler": "Latent", "denoising_strength": 0.7, "tiling": False}
    assert build_infotext("a cat", "", fields) == infotexts("txt2img-200")[0]


@pytest.mark.parametrize("name", FIXTURES)
def test_real_infotexts_survive_parse_and_build(name: str) -> None:
    for text in infotexts(name):
        prompt, negative, params = parse_infotext(text)
        assert build_infotext(prompt, negative, infotext_to_fields(params)) == text


def test_reads_the_parameters_chunk_of_a_real_a1111_png() -> None:
    body = a1111_response("txt2img-200")
    data = base64.b64decode(body["images"][0])
    text = read_png_infotext(data)
    assert text == infotexts("txt2img-200")[0]
    assert parse_infotext(text)[2]["Seed"] == "1"


# --- Quoting ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["plain", "Euler a", "7.0", "DPM++ 2M Karras", "ünïcødé 🐱"])
def test_values_without_special_characters_are_written_as_they_are(value: str) -> None:
    assert quote(value) == value
    assert unquote(value) == value


@pytest.mark.parametrize("value", ["a, b", "a: b", "line\nbreak", 'say "hi"', " padded ",
                                   'back\\slash, "x"', "ünï, cødé"])
def test_values_with_special_characters_are_json_strings(value: str) -> None:
    quoted = quote(value)
    assert quoted.startswith('"') and quoted.endswith('"')
    assert json.loads(quoted) == value
    assert unquote(quoted) == value


def test_unquote_keeps_what_is_not_a_json_string() -> None:
    assert unquote('"unterminated') == '"unterminated'
    assert unquote('"bad \\q escape"') == '"bad \\q escape"'
    assert unquote('"') == '"'
    assert unquote("") == ""


# --- Round trips -----------------------------------------------------------------------------

TRICKY = {
    "sampler_name": 'DPM++ 2M, "SDE"',
    "sd_model_checkpoint": "models/sd: v1.5 [abc123]",
    "hr_upscaler": "Latent (nearest-exact)",
    "custom_text": "line one\nline two, three: four",
    "emoji_value": "🐱 café",
    "backslashes": "C:\\models\\x.safetensors",
    "padded": "  spaced  ",
    "lora_hashes": "add_detail: 7c6bad76eb54, more_details: 3b8aa1d351ef",
    "a_list": ["x", 1, {"y": "z, w"}],
}


@pytest.mark.parametrize("prompt, negative", [
    ("a cat", None),
    ("a cat, sitting: on a mat", "blurry, low quality: 2"),
    ('first line\nsecond line with "quotes"\nthird: line, with comma', "neg line 1\nneg line 2"),
    ("ünïcødé 日本語 🐱, (masterpiece:1.2)", "ugly, (worst quality:1.4)"),
    ("", "only a negative"),
    ("<lora:add_detail:0.8> a [cat|dog] ((detailed))", ""),
])
def test_round_trip(prompt: str, negative: str | None) -> None:
    params: dict[str, Any] = {"steps": 20, "cfg_scale": 7.5, "seed": 2**64 - 1, "width": 512,
                              "height": 768, **TRICKY}
    text = build_infotext(prompt, negative, params)
    got_prompt, got_negative, labels = parse_infotext(text)
    assert got_prompt == prompt
    assert got_negative == (negative or "")
    fields = infotext_to_fields(labels)
    expected = {k: (json.dumps(v) if isinstance(v, list) else str(v)) for k, v in params.items()}
    expected["enable_hr"] = "True"  # implied by the Hires upscaler
    assert fields == expected
    # A1111's own reader sees the same.
    assert a1111_parse(text) == (got_prompt, got_negative, labels)


def test_a_prompt_line_that_looks_like_parameters_stays_in_the_prompt() -> None:
    prompt = "Steps: 3, Sampler: x, Seed: 4\nreal prompt"
    text = build_infotext(prompt, None, {"steps": 20, "seed": 1, "cfg_scale": 7})
    got_prompt, _, labels = parse_infotext(text)
    assert got_prompt == prompt
    assert labels == {"Steps": "20", "CFG scale": "7", "Seed": "1"}


def test_fewer_than_three_parameters_read_as_prompt_like_a1111() -> None:
    # A1111's rule: a last line with fewer than three pairs is part of the prompt.
    assert parse_infotext("a cat\nSteps: 20, Seed: 1") == ("a cat\nSteps: 20, Seed: 1", "", {})
    assert parse_infotext("just a prompt") == ("just a prompt", "", {})


def test_windows_line_ends_and_padding() -> None:
    text = "  a cat\r\nNegative prompt: dog\r\nSteps: 2, Sampler: Euler, Seed: 3\r\n"
    assert parse_infotext(text) == ("a cat", "dog",
                                    {"Steps": "2", "Sampler": "Euler", "Seed": "3"})


def test_parameters_only() -> None:
    text = build_infotext("", None, {"steps": 2, "seed": 3, "sampler_name": "Euler"})
    assert text == "Steps: 2, Sampler: Euler, Seed: 3"
    assert parse_infotext(text) == ("", "", {"Steps": "2", "Sampler": "Euler", "Seed": "3"})


# --- Labels, order and what is left out ------------------------------------------------------

def test_a1111_order_with_unknown_fields_after_and_version_last() -> None:
    text = build_infotext("p", None, {
        "version": "v1", "my_option": "x", "seed": 5, "height": 64, "steps": 3, "width": 32,
        "cfg_scale": 7, "scheduler": "Karras", "sampler_name": "Euler a", "clip_skip": 2,
        "sd_model_checkpoint": "m", "sd_model_hash": "h", "n_iter": 2, "batch_size": 1})
    assert text.splitlines()[-1] == (
        "Steps: 3, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 5, Size: 32x64, "
        "Model hash: h, Model: m, Clip skip: 2, Batch size: 1, Batch count: 2, My option: x, "
        "Version: v1")


def test_hires_fields_only_when_hires_is_on() -> None:
    values = {"steps": 20, "seed": 1, "cfg_scale": 7, "hr_scale": 2, "hr_upscaler": "Latent",
              "hr_second_pass_steps": 10, "denoising_strength": 0.7}
    off = build_infotext("p", None, {**values, "enable_hr": False})
    assert "Hires" not in off and "Denoising" not in off
    on = build_infotext("p", None, {**values, "enable_hr": True})
    assert on.endswith("Denoising strength: 0.7, Hires upscale: 2, Hires steps: 10, "
                       "Hires upscaler: Latent")
    assert "Enable hr" not in on
    assert infotext_to_fields(parse_infotext(on)[2])["enable_hr"] == "True"
    # img2img has no hires switch: its denoising strength is always written.
    assert "Denoising strength: 0.75" in build_infotext("p", None, {**values,
                                                                     "denoising_strength": 0.75})


def test_refiner_switch_only_with_a_refiner() -> None:
    base = {"steps": 20, "seed": 1, "cfg_scale": 7, "refiner_switch_at": 0.8}
    assert "Refiner" not in build_infotext("p", None, {**base, "refiner_checkpoint": ""})
    text = build_infotext("p", None, {**base, "refiner_checkpoint": "sdxl_refiner"})
    assert "Refiner: sdxl_refiner, Refiner switch at: 0.8" in text


def test_flags_none_empty_and_uploads() -> None:
    upload = UploadedImage(data=b"\x89PNG...", mime="image/png", filename="in.png",
                           width=8, height=8)
    text = build_infotext("p", None, {
        "steps": 1, "seed": 2, "cfg_scale": 3, "tiling": False, "init_image": upload,
        "mask": b"raw", "style": None, "note": "", "watermark": False, "upscale": True})
    last = text.splitlines()[-1]
    assert last == "Steps: 1, CFG scale: 3, Seed: 2, Watermark: False, Upscale: True"
    assert "Tiling: True" in build_infotext("p", None, {"steps": 1, "seed": 2, "cfg_scale": 3,
                                                        "tiling": True})


def test_pairs() -> None:
    only_width = build_infotext("p", None, {"steps": 1, "seed": 2, "cfg_scale": 3, "width": 64})
    assert only_width.endswith("Width: 64")
    no_resize = build_infotext("p", None, {"steps": 1, "seed": 2, "cfg_scale": 3,
                                           "seed_resize_from_w": -1, "seed_resize_from_h": -1,
                                           "enable_hr": True, "hr_resize_x": 0,
                                           "hr_resize_y": 0, "hr_scale": 2})
    assert "resize" not in no_resize
    resized = build_infotext("p", None, {"steps": 1, "seed": 2, "cfg_scale": 3,
                                         "hr_resize_x": 1024, "hr_resize_y": 0})
    assert "Hires resize: 1024x0" in resized
    assert infotext_to_fields({"Hires resize": "1024x0", "Size": "big"}) == {
        "hr_resize_x": "1024", "hr_resize_y": "0", "enable_hr": "True", "size": "big"}


def test_generic_labels() -> None:
    assert label_for("my_custom_key") == "My custom key"
    assert label_for("guidance.scale[0]") == "Guidance scale 0"
    assert label_for("cfg_scale") == "CFG scale"
    assert field_for("My custom key") == "my_custom_key"
    assert field_for("ADetailer model") == "adetailer_model"
    assert field_for("Hires upscale") == "hr_scale"
    for key, label in INFOTEXT_LABELS.items():
        assert field_for(label) == key
        assert A1111_RE_PARAM.fullmatch(f"{label}: 1")


def test_single_character_labels_still_read_back() -> None:
    text = build_infotext("p", None, {"steps": 1, "seed": 2, "x": 3})
    assert infotext_to_fields(parse_infotext(text)[2]) == {"steps": "1", "seed": "2", "x": "3"}


# --- Image files -----------------------------------------------------------------------------

def test_png_chunk_written_read_and_seen_by_pillow() -> None:
    text = 'a cat, "quoted"\nNegative prompt: dog\nSteps: 1, Sampler: Euler, Seed: 1'
    data = write_png_infotext(image_bytes(), text)
    assert read_png_infotext(data) == text
    with Image.open(io.BytesIO(data)) as img:
        assert img.info["parameters"] == text
        img.load()  # the image itself is intact
    assert b"tEXt" in chunk_types(data)


def test_non_latin1_text_goes_in_an_itxt_chunk() -> None:
    text = "日本語の猫 🐱\nSteps: 1, Sampler: Euler, Seed: 1"
    data = write_png_infotext(image_bytes(), text)
    assert b"iTXt" in chunk_types(data) and b"tEXt" not in chunk_types(data)
    assert read_png_infotext(data) == text
    with Image.open(io.BytesIO(data)) as img:
        assert img.info["parameters"] == text


def test_an_existing_parameters_chunk_is_replaced_and_pixels_kept() -> None:
    original = base64.b64decode(a1111_response("txt2img-200")["images"][0])
    data = write_png_infotext(original, "new text\nSteps: 1, Sampler: x, Seed: 2")
    assert read_png_infotext(data) == "new text\nSteps: 1, Sampler: x, Seed: 2"
    assert chunk_types(data) == [b"IHDR", b"tEXt", b"IDAT", b"IEND"]
    with Image.open(io.BytesIO(original)) as a, Image.open(io.BytesIO(data)) as b:
        assert a.tobytes() == b.tobytes()


def test_other_data_is_returned_unchanged() -> None:
    jpeg = image_bytes((8, 8), 0, format="JPEG")
    assert write_png_infotext(jpeg, "x") is jpeg
    assert write_png_infotext(b"not an image", "x") == b"not an image"
    truncated = image_bytes()[:40]
    assert write_png_infotext(truncated, "x") == truncated


def test_read_nothing() -> None:
    assert read_png_infotext(image_bytes()) is None
    assert read_png_infotext(b"") is None
    assert read_png_infotext(b"garbage" * 10) is None
    assert read_png_infotext(image_bytes()[:30]) is None


def test_reads_a_compressed_ztxt_chunk() -> None:
    text = "zipped, prompt\nSteps: 1, Sampler: Euler, Seed: 1"
    body = b"parameters\0\0" + zlib.compress(text.encode("latin-1"))
    ztxt = struct.pack(">I", len(body)) + b"zTXt" + body + struct.pack(
        ">I", zlib.crc32(b"zTXt" + body))
    data = image_bytes()
    assert read_png_infotext(data[:33] + ztxt + data[33:]) == text


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize("encoding", ["utf-16-be", "utf-16-le"])
def test_reads_exif_user_comment_like_a1111_writes_for_jpeg_and_webp(fmt: str,
                                                                      encoding: str) -> None:
    text = "a cat, ünï\nSteps: 1, Sampler: Euler, Seed: 1"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + text.encode(encoding)
    data = image_bytes((8, 8), 0, format=fmt, exif=exif.tobytes())
    assert read_png_infotext(data) == text
