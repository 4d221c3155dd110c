"""Helpers the test modules share, each in one place: contract material on disk, test images,
a real HTTP server in a thread, polling, and the A1111, services and job helpers. Fixtures live
in conftest.py, which builds them from these; test modules import from here, never from each
other."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import responses
from PIL import Image
from werkzeug.serving import make_server

from webui.catalog import ExtraService
from webui.demo import create_demo_app

# --- Contract material ----------------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures"
A1111 = FIXTURES / "a1111"


def fixture_json(*parts: str) -> Any:
    """A JSON file of tests/fixtures (e.g. ``fixture_json("forge", "samplers.json")``)."""
    return json.loads(FIXTURES.joinpath(*parts).read_text(encoding="utf-8"))


def a1111_response(name: str) -> Any:
    """A body a real A1111 1.10.1 returned (tests/fixtures/a1111/responses/NAME.json)."""
    return fixture_json("a1111", "responses", f"{name}.json")


# --- Images ---------------------------------------------------------------------------------

RED = (200, 30, 30)


def encode(image: Image.Image, format: str = "PNG", **options: Any) -> bytes:
    """IMAGE as the bytes of a FORMAT file; OPTIONS go to Pillow's save (``exif=…``)."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def image_bytes(size: tuple[int, int] = (64, 64), colour: Any = RED, *, mode: str = "RGB",
                format: str = "PNG", **options: Any) -> bytes:
    """A one-colour image file: a PNG of 64 × 64 red RGB pixels unless told otherwise (64 is
    the smallest side every fake backend accepts). COLOUR is anything ``Image.new`` takes for
    MODE (an int for "L" or "P"); FORMAT and OPTIONS as for :func:`encode`."""
    return encode(Image.new(mode, size, colour), format, **options)


def b64(data: bytes) -> str:
    """DATA in base64, as JSON APIs carry images."""
    return base64.b64encode(data).decode("ascii")


def decoded(data: str) -> Image.Image:
    """The image of a base64 string (an API's answer), read in full."""
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


# --- Real servers and waiting ---------------------------------------------------------------


class ServerThread:
    """A WSGI app on a real port of 127.0.0.1, in a thread; ``stop()`` it, or use it as a
    context manager (``with ServerThread(app) as server: … server.url …``)."""

    def __init__(self, app: Any):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll interval: stopping the server then takes milliseconds, not 0.5 s.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serving(url: str, proc: Any = None) -> bool:
    """Whether a webui started as a process answers at URL yet (for wait_for). A busy machine
    may take longer than the 1 s asked to answer its first request: not yet, not a failure.
    PROC (a Popen), if given, must still run."""
    if proc is not None and proc.poll() is not None:
        raise AssertionError(f"webui exited with {proc.returncode}")
    try:
        return requests.get(url, timeout=1).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float = 20, what: str = "condition",
             interval: float = 0.01) -> Any:
    """Poll CONDITION until it returns something truthy, and return that (no fixed sleeps in
    tests). It is asked at least once; after TIMEOUT seconds the test fails."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (after {timeout} s)")
        time.sleep(interval)


# --- A1111 answered by `responses` ----------------------------------------------------------

BASE = "http://a1111.test:7860"  # where the `app` fixture's a1111 service points
SDAPI = "/sdapi/v1"  # the path of A1111's API (and of the demo's and the forks')
API = f"{BASE}{SDAPI}"
HX = {"HX-Request": "true"}  # what htmx sends with its requests


def a1111_flags() -> Any:
    """What a real A1111 1.10.1 answers at /sdapi/v1/cmd-flags (its health check)."""
    return fixture_json("identify", "a1111-cmd-flags.json")


def mock_lists() -> None:
    """The choices lists of the a1111 form, and its health check, as a real A1111 answers."""
    for name in ("samplers", "schedulers", "sd-models", "loras", "upscalers",
                 "latent-upscale-modes"):
        responses.get(f"{API}/{name}", json=a1111_response(name))
    responses.get(f"{API}/cmd-flags", json=a1111_flags())


def form(**extra):
    """A valid a1111 txt2img form; EXTRA overrides fields (None leaves one out)."""
    data = {"prompt": "a cat", "steps": "20", "cfg_scale": "7", "width": "512", "height": "512",
            "batch_size": "1", "n_iter": "1", "seed": "-1", "sampler_name": "Euler a",
            "scheduler": "automatic", "lora_weight": "0.8", "hr_upscaler": "Latent",
            "hr_scale": "2", "hr_second_pass_steps": "0", "denoising_strength": "0.7",
            "refiner_switch_at": "0.8"}
    data.update(extra)
    return {k: v for k, v in data.items() if v is not None}


def field_errors(html: str) -> dict[str, str]:
    """The non-empty error message of each field in a form's answer."""
    return {m[0]: m[1] for m in re.findall(
        r'id="err-\w+?-(\w+)" hx-swap-oob="true">([^<]*)</p>', html) if m[1]}


# --- A large LoRA collection ----------------------------------------------------------------

_WORDS = ("detail", "anime", "sketch", "pastel", "neon", "film", "grain", "portrait", "castle",
          "forest", "armor", "dress", "hair", "eyes", "light", "shadow", "ink", "oil", "pixel",
          "chibi", "retro", "cyber", "steampunk", "gothic", "studio", "ghibli", "noir", "glow")


def lora_collection(count: int, extra: tuple[tuple[str, str], ...] = ()) -> list[dict]:
    """COUNT LoRAs as A1111 1.10.1 lists them at /sdapi/v1/loras (extensions-builtin/Lora/
    scripts/lora_script.py create_lora_json: name, alias, path, metadata), with metadata of a
    realistic size (kohya's ss_* keys, about 700 bytes). Three of them are Miku LoRAs whose
    alias says more than the name; EXTRA adds (name, alias) pairs at the end."""
    special = [("hatsune_miku_v2", "Hatsune Miku (v2)"), ("mk_outfit_pack", "Miku outfits"),
               ("vocaloid_miku_nendo", "vocaloid_miku_nendo")]
    items = []
    for i in range(count - len(special)):
        a, b = _WORDS[i % len(_WORDS)], _WORDS[(i * 7 + 3) % len(_WORDS)]
        items.append((f"{a}_{b}_{i:05d}", f"{a.capitalize()} {b} {i}"))
    # The Miku ones are spread over the list, not at its start.
    for n, pair in enumerate(special):
        items.insert(len(items) * (n + 1) // 4, pair)
    items.extend(extra)
    return [{
        "name": name, "alias": alias, "path": f"/models/Lora/{name}.safetensors",
        "metadata": {
            "ss_output_name": name, "ss_network_module": "networks.lora",
            "ss_network_dim": "32", "ss_network_alpha": "16", "ss_base_model_version": "sd_v1",
            "ss_resolution": "(512, 512)", "ss_num_train_images": "120", "ss_epoch": "10",
            "ss_learning_rate": "0.0001", "ss_optimizer": "bitsandbytes.optim.adamw.AdamW8bit",
            "ss_tag_frequency": json.dumps({"img": {w: 40 - k for k, w in enumerate(_WORDS[:12])}}),
            "sshs_model_hash": f"{zlib.crc32(name.encode()):016x}",
        }} for name, alias in items]


# --- Definitions ----------------------------------------------------------------------------


def minimal() -> dict[str, Any]:
    """The smallest definition with both modes, a health check and a choices endpoint."""
    return {
        "id": "tiny",
        "name": "Tiny",
        "url": "http://127.0.0.1:9999",
        "capabilities": [
            {"capability": "health", "endpoints": {"ping": {"path": "/ping"}}},
            {
                "capability": "image_generation",
                "endpoints": {
                    "txt2img": {"method": "POST", "path": "/gen", "result": {"images": "images"}},
                    "img2img": {"method": "POST", "path": "/edit", "result": {"images": "images"}},
                    "getModels": {"path": "/models"},
                },
                "parameters": {
                    "txt2img": [
                        {"key": "prompt", "type": "textarea", "required": True},
                        {"key": "steps", "type": "integer", "range": [1, 50],
                         "defaultValue": 20},
                        {"key": "model", "type": "select", "optionsEndpoint": "getModels",
                         "target": "settings.model"},
                    ],
                    "img2img": {
                        "extends": "txt2img",
                        "exclude": ["steps"],
                        "add": [{"key": "image", "type": "image", "target": "images[0]",
                                 "before": "prompt"}],
                    },
                },
            },
        ],
    }


# --- Jobs -----------------------------------------------------------------------------------


def demo_extra(url: str) -> ExtraService:
    """The demo service (the a1111 definition) at URL, a pool when URL lists several."""
    return ExtraService(id="demo", definition="a1111", name="A1111 demo", url=url,
                        note="demo backend", demo=True)


class Counted:
    """The demo, with the requests it was asked ("GET /sdapi/v1/cmd-flags", …) in order."""

    def __init__(self, step_delay: float = 0.005) -> None:
        self.app = create_demo_app(step_delay=step_delay)
        self.asked: list[str] = []

    def __call__(self, environ, start_response):
        self.asked.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
        return self.app(environ, start_response)


def wrap_event(client, name, before):
    """Have BEFORE(job, *args) run before the history records the event NAME of a job."""
    recorder = client.application.extensions["webui"].jobs.events
    was = getattr(recorder, name)

    def first_before(job, *args):
        before(job, *args)
        return was(job, *args)
    setattr(recorder, name, first_before)


def job_in(client, html: str):
    """The job a generate request started, found by its id in the answer's HTML."""
    job_id = re.search(r'id="job-([0-9a-f]{32})"', html).group(1)
    return client.application.extensions["webui"].jobs.get(job_id)


@dataclass
class Finished:
    """What the result area shows once a generation job has ended (or the direct answer of a
    request that never became a job: bad input, a backend that could not be asked)."""

    status_code: int
    html: str
    job: Any = None

    def get_data(self, as_text: bool = False) -> Any:
        return self.html if as_text else self.html.encode()


def last_post() -> dict:
    """The JSON body of the last POST that ``responses`` answered: not simply the last call,
    which may be a progress poll the job made while (or just after) it was sent."""
    post = next(c for c in reversed(responses.calls) if c.request.method == "POST")
    return json.loads(post.request.body)


def submit(client, url: str, timeout: float = 30, **kwargs: Any) -> Finished:
    """POST a generation form; if it became a job, wait for the job to end and return its
    final panel (200 when done or interrupted, 502 when failed)."""
    # As htmx sends it (a plain POST, without JavaScript, is answered with a redirect).
    kwargs.setdefault("headers", HX)
    response = client.post(url, **kwargs)
    html = response.get_data(as_text=True)
    if response.status_code != 202:
        return Finished(response.status_code, html)
    job = job_in(client, html)
    assert job.done.wait(timeout), f"job still {job.status} after {timeout} s"
    panel = client.get(f"/jobs/{job.id}/panel").get_data(as_text=True)
    return Finished(200 if job.status in ("done", "interrupted") else 502, panel, job)


# --- Services on their fake backends (the `fakes` and `services_app` fixtures) --------------


def sent(fakes, name: str, path: str) -> list[dict]:
    """The requests the fake backend NAME received at PATH."""
    return [r for r in fakes[name].server.app.config["REQUESTS"] if r["path"] == path]


def images_in(html: str) -> list[str]:
    """The stored paths of the images a result panel shows."""
    return re.findall(r'<img src="/images/([^"]+)"', html)


def defaults(app, service: str, mode: str) -> dict:
    """The form of SERVICE's MODE at its definition's defaults (booleans left unticked)."""
    catalog = app.extensions["webui"].folders.catalog()
    m = catalog.get(service).definition.modes[mode]
    return {p.key: str(p.defaultValue) for p in m.parameters
            if p.defaultValue is not None and p.type != "boolean"}


def generate(app, service: str, mode: str, data: dict, files: dict | None = None):
    """Submit a form (FILES: field → image bytes) and wait for the job: (Finished, html)."""
    client = app.test_client()
    payload = dict(data)
    for key, blob in (files or {}).items():
        payload[key] = (io.BytesIO(blob), f"{key}.png")
    r = submit(client, f"/services/{service}/{mode}/generate", data=payload,
               content_type="multipart/form-data")
    return r, r.get_data(as_text=True)


# --- Browser tests ----------------------------------------------------------------------------

SHOTS = Path(__file__).parent.parent / "test-artifacts"


def natural_size(image: Any) -> list[int]:
    """The size of the picture an <img> shows, once the browser has it: visible is not yet
    loaded (the element has its width and height before its bytes arrive). A picture that
    cannot load fails here (decode() rejects)."""
    return image.evaluate("i => i.decode().then(() => [i.naturalWidth, i.naturalHeight])")


def shot(page: Any, name: str, full_page: bool = True) -> None:
    """A screenshot of a browser test (the whole page, or what the window shows: a dialog),
    in test-artifacts/NAME.png."""
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


# --- Images as other programs write them (PNG Info) -------------------------------------------

# A graph as ComfyUI's editor queues it (API format), with the node ids an edited workflow has
# (not those of webui's bundled workflow) and the negative prompt's node listed first.
COMFYUI_GRAPH = {
    "12": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl-demo.safetensors"},
           "_meta": {"title": "Load Checkpoint"}},
    "20": {"class_type": "CLIPTextEncode",
           "inputs": {"text": "blurry, watermark", "clip": ["12", 1]},
           "_meta": {"title": "CLIP Text Encode (Negative)"}},
    "21": {"class_type": "CLIPTextEncode",
           "inputs": {"text": "a red fox in the snow, golden hour", "clip": ["12", 1]},
           "_meta": {"title": "CLIP Text Encode (Positive)"}},
    "30": {"class_type": "EmptyLatentImage",
           "inputs": {"width": 832, "height": 1216, "batch_size": 1},
           "_meta": {"title": "Empty Latent Image"}},
    "40": {"class_type": "KSampler",
           "inputs": {"seed": 987654321, "steps": 28, "cfg": 6.5, "sampler_name": "dpmpp_2m",
                      "scheduler": "karras", "denoise": 1.0, "model": ["12", 0],
                      "positive": ["21", 0], "negative": ["20", 0], "latent_image": ["30", 0]},
           "_meta": {"title": "KSampler"}},
    "50": {"class_type": "VAEDecode", "inputs": {"samples": ["40", 0], "vae": ["12", 2]},
           "_meta": {"title": "VAE Decode"}},
    "60": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["50", 0]},
           "_meta": {"title": "Save Image"}},
}


def comfyui_png(graph: dict | None = None, size: tuple[int, int] = (64, 96)) -> bytes:
    """A PNG as ComfyUI 0.3.64's SaveImage writes it (nodes.py SaveImage.save_images): the
    graph it ran as the text chunk "prompt", then each extra_pnginfo entry — the editor's
    graph, "workflow" — each json.dumps'ed through PngInfo.add_text."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(graph or COMFYUI_GRAPH))
    workflow = {"last_node_id": 60, "last_link_id": 9, "version": 0.4, "links": [],
                "nodes": [{"id": int(k), "type": v["class_type"]}
                          for k, v in (graph or COMFYUI_GRAPH).items()]}
    info.add_text("workflow", json.dumps(workflow))
    return encode(Image.new("RGB", size, (30, 90, 160)), "PNG", pnginfo=info)


# --- A big gallery ----------------------------------------------------------------------------

GALLERY_SERVICES = ["a1111", "comfyui", "forge", "openai"]
GALLERY_MODES = ["txt2img", "img2img"]
GALLERY_WORDS = ["lighthouse", "forest", "portrait", "city", "dragon", "ocean", "robot", "castle",
                 "flower", "mountain", "desert", "river", "sunset", "knight", "garden", "harbor"]
GALLERY_RARE = "zeppelin"  # in about 1 prompt of 200


def gallery_jobs(images: int, rng: Any) -> list[Any]:
    """Finished jobs of 1–4 images each, ``images`` in all, 30 s apart, across four services
    and both modes, their prompts four words of GALLERY_WORDS (and now and then GALLERY_RARE);
    image N-P of job N at ``2024-01-01/N-P.png``, 512×512."""
    from webui.history import ImageRecord, JobRecord

    jobs: list[JobRecord] = []
    total = n = 0
    t0 = time.time() - images * 30
    while total < images:
        count = min(rng.choice([1, 1, 2, 4]), images - total)
        words = rng.sample(GALLERY_WORDS, 4) + ([GALLERY_RARE] if rng.random() < 0.005 else [])
        jid = f"{n:032x}"
        created = t0 + n * 30 + rng.random()
        jobs.append(JobRecord(
            id=jid, service_id=rng.choice(GALLERY_SERVICES), service_name="x",
            mode=rng.choice(GALLERY_MODES), status="done", prompt=", ".join(words),
            negative_prompt="blurry, low quality",
            parameters={"steps": 20, "cfg_scale": 7, "seed": n}, seeds=[n], created=created,
            finished=created + 5, images=[
                ImageRecord(job_id=jid, position=p, path=f"2024-01-01/{n}-{p}.png", width=512,
                            height=512, seed=n + p, infotext="x",
                            created=created + 5 - p * 1e-6)  # as the recorder: batch order
                for p in range(count)]))
        total += count
        n += 1
    return jobs


def fill_gallery(history: Any, jobs: list[Any], pictures: list[Path], images_dir: Path,
                 thumbs_dir: Path) -> None:
    """Record ``jobs`` (gallery_jobs) with real files: image i of the history is a hard link to
    ``pictures[i % len(pictures)]`` in ``images_dir``, with its thumbnails (made once per
    picture, as the recorder makes them) linked in ``thumbs_dir``: every file the gallery
    serves is there, without writing thousands of images."""
    import os

    from webui.images import make_thumbnails, small_thumb_name

    made = []
    for picture in pictures:
        make_thumbnails(picture, picture.parent, f"{picture.name}.webp")
        with Image.open(picture) as im:
            made.append((picture, picture.parent / f"{picture.name}.webp", im.size))
    index = 0
    for job in jobs:
        for image in job.images:
            picture, thumb, (image.width, image.height) = made[index % len(made)]
            index += 1
            image.thumb_path = f"{image.path}.webp"
            for src, dst in ((picture, images_dir / image.path),
                             (thumb, thumbs_dir / image.thumb_path),
                             (thumb.with_name(small_thumb_name(thumb.name)),
                              thumbs_dir / small_thumb_name(image.thumb_path))):
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dst)
    history.record_jobs(jobs)
