"""A fake ComfyUI server for tests: a Flask app answering in the shapes of the real HTTP API.

The shapes follow ComfyUI's own code: ``server.py`` (the routes, the ``/prompt`` bodies, the
``/upload/image`` and ``/view`` rules, ``/system_stats``, ``/object_info``), ``execution.py``
(``validate_prompt``/``validate_inputs`` and their error dicts, ``PromptQueue.task_done``'s
history entry, ``PromptExecutor.add_message``'s timestamped status messages) and ``nodes.py``
(``INPUT_TYPES`` of the core nodes). Every route also answers under ``/api``, as the real one
does.

Routes
    GET  /system_stats, /prompt (queue info), /queue, /embeddings, /models, /models/<folder>
    GET  /object_info, /object_info/<class>   (unknown class -> ``{}``)
    POST /prompt           -> 200 ``{"prompt_id", "number", "node_errors"}`` or 400 errors
    GET  /history, /history/<prompt_id>
    GET  /view?filename=&subfolder=&type=    (type defaults to "output"; 404 if unknown)
    POST /upload/image     (multipart: ``image`` file, ``overwrite``, ``subfolder``, ``type``)
    POST /interrupt        (optional JSON ``{"prompt_id"}``), POST /queue (``clear``/``delete``)

Jobs run lazily, on polls, not in a thread: ``GET /history/<id>`` answers ``{}`` for the first
``polls_before_done`` polls of that id and then runs the job (nodes are evaluated with Pillow
standing in for the model) and answers its history entry. ``GET /history`` (all) and ``/queue``
only look. The oldest unfinished job is the "running" one, the others are "pending".

Images are deterministic: a seeded gradient per ``seed + batch index``, of EmptyLatentImage's
width x height (floored to a multiple of 8, as the VAE does), ``batch_size`` of them; for
img2img the LoadImage picture (its size, floored to 8) blended with the gradient by ``denoise``.
The server starts with ``example.png`` (512x512) in its input folder, as a real install does.

Failure triggers, written in a positive prompt (the CLIPTextEncode text linked to a KSampler's
``positive`` input):

``FAIL_EXECUTION``
    The job completes as a failure: ``status_str`` "error", ``completed`` false, no images, and
    an ``["execution_error", {...}]`` message naming the KSampler node with
    ``exception_type`` "torch.OutOfMemoryError" and ``exception_message``
    "CUDA out of memory. Tried to allocate 2.00 GiB".
``NEVER_FINISH``
    The job never completes: its history stays ``{}`` and it stays in ``queue_running``,
    until ``POST /interrupt`` ends it with an ``execution_interrupted`` message.

Deliberate differences from the real server:

- ``/upload/image`` answers 400 (empty body) for bytes Pillow cannot open; the real one stores
  any file and only answers 400 for a missing file or name, or a path leaving its folder.
- The OOM ``exception_message`` is the bare torch message; the real one appends a tips paragraph.
- A ``prompt`` that is not an object is a 400 ``invalid_prompt``; the real server fails (500).
- No websocket (``/ws``), no previews, no ``/view`` ``preview``/``channel`` conversions.

Every request is recorded in ``app.config["REQUESTS"]`` (dicts with ``method``, ``path``,
``args``, and ``json`` or ``form``/``files``); ``app.config["COMFYUI"]`` is the server state.
"""

from __future__ import annotations

import copy
import io
import json
import mimetypes
import random
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request
from PIL import Image, ImageDraw, ImageOps, PngImagePlugin

FAIL_EXECUTION = "FAIL_EXECUTION"
NEVER_FINISH = "NEVER_FINISH"
OOM_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB"
OOM_TYPE = "torch.OutOfMemoryError"

MAX_RESOLUTION = 16384
# A realistic subset of comfy.samplers.KSampler.SAMPLERS / SCHEDULERS, in the real order. More
# than 20 samplers on purpose: the real value_not_in_list error then shortens the list.
SAMPLERS = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "deis", "ddim", "uni_pc",
    "uni_pc_bh2",
)
SCHEDULERS = (
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
    "linear_quadratic", "kl_optimal",
)
UPLOAD_TYPES = ("input", "temp", "output")

SYSTEM_STATS: dict[str, Any] = {
    "system": {
        "os": "posix",
        "ram_total": 67_324_952_576,
        "ram_free": 51_018_313_728,
        "comfyui_version": "0.3.43",
        "required_frontend_version": "1.23.4",
        "installed_templates_version": "0.1.31",
        "required_templates_version": "0.1.31",
        "python_version": "3.11.9 (main, Apr 19 2024, 16:48:06) [GCC 11.2.0]",
        "pytorch_version": "2.7.1+cu126",
        "embedded_python": False,
        "argv": ["main.py", "--listen", "0.0.0.0", "--port", "8188"],
    },
    "devices": [
        {
            "name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync",
            "type": "cuda",
            "index": 0,
            "vram_total": 25_393_692_672,
            "vram_free": 23_978_557_440,
            "torch_vram_total": 0,
            "torch_vram_free": 0,
        }
    ],
}

# The frames a real KSampler OOM shows, shortened; only their shape matters to clients.
OOM_TRACEBACK = [
    '  File "/opt/ComfyUI/execution.py", line 361, in execute\n'
    "    output_data, output_ui, has_subgraph = get_output_data(obj, input_data_all)\n",
    '  File "/opt/ComfyUI/nodes.py", line 1542, in sample\n'
    "    return common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, "
    "negative, latent_image, denoise=denoise)\n",
    '  File "/opt/ComfyUI/comfy/ldm/modules/attention.py", line 447, in attention_pytorch\n'
    "    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)\n",
]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _type_name(ex: BaseException) -> str:
    """execution.full_type_name: builtins go bare, others with their module."""
    cls = type(ex)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _floor8(n: int) -> int:
    return max(8, n // 8 * 8)


# --- node catalogue ------------------------------------------------------------------------


def _node(
    name: str,
    display_name: str,
    category: str,
    description: str,
    required: dict[str, list[Any]],
    output: Iterable[str],
    *,
    output_tooltips: Iterable[str] | None = None,
    output_node: bool = False,
    hidden: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One /object_info entry, keys in the order server.node_info writes them."""
    inputs: dict[str, Any] = {"required": required}
    if hidden:
        inputs["hidden"] = hidden
    out = list(output)
    info: dict[str, Any] = {
        "input": inputs,
        "input_order": {key: list(value) for key, value in inputs.items()},
        "output": out,
        "output_is_list": [False] * len(out),
        "output_name": list(out),
        "name": name,
        "display_name": display_name,
        "description": description,
        "python_module": "nodes",
        "category": category,
        "output_node": output_node,
    }
    if output_tooltips is not None:
        info["output_tooltips"] = list(output_tooltips)
    return info


def _int(default: int, lo: int, hi: int, tooltip: str, step: int | None = None) -> list[Any]:
    extra: dict[str, Any] = {"default": default, "min": lo, "max": hi}
    if step is not None:
        extra["step"] = step
    extra["tooltip"] = tooltip
    return ["INT", extra]


def _object_info(state: FakeComfyUI) -> dict[str, dict[str, Any]]:
    """The node classes the fake knows, as /object_info shows them (choices are live)."""
    return {
        "CheckpointLoaderSimple": _node(
            "CheckpointLoaderSimple", "Load Checkpoint", "loaders",
            "Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
            {"ckpt_name": [list(state.checkpoints),
                           {"tooltip": "The name of the checkpoint (model) to load."}]},
            ["MODEL", "CLIP", "VAE"],
            output_tooltips=[
                "The model used for denoising latents.",
                "The CLIP model used for encoding text prompts.",
                "The VAE model used for encoding and decoding images to and from latent space.",
            ],
        ),
        "LoraLoader": _node(
            "LoraLoader", "Load LoRA", "loaders",
            "LoRAs are used to modify diffusion and CLIP models, altering the way in which "
            "latents are denoised such as applying styles. Multiple LoRA nodes can be linked "
            "together.",
            {
                "model": ["MODEL", {"tooltip": "The diffusion model the LoRA will be applied to."}],
                "clip": ["CLIP", {"tooltip": "The CLIP model the LoRA will be applied to."}],
                "lora_name": [list(state.loras), {"tooltip": "The name of the LoRA."}],
                "strength_model": ["FLOAT", {
                    "default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01,
                    "tooltip": "How strongly to modify the diffusion model. This value can be "
                               "negative."}],
                "strength_clip": ["FLOAT", {
                    "default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01,
                    "tooltip": "How strongly to modify the CLIP model. This value can be "
                               "negative."}],
            },
            ["MODEL", "CLIP"],
            output_tooltips=["The modified diffusion model.", "The modified CLIP model."],
        ),
        "CLIPTextEncode": _node(
            "CLIPTextEncode", "CLIP Text Encode (Prompt)", "conditioning",
            "Encodes a text prompt using a CLIP model into an embedding that can be used to "
            "guide the diffusion model towards generating specific images.",
            {
                "text": ["STRING", {"multiline": True, "dynamicPrompts": True,
                                    "tooltip": "The text to be encoded."}],
                "clip": ["CLIP", {"tooltip": "The CLIP model used for encoding the text."}],
            },
            ["CONDITIONING"],
            output_tooltips=["A conditioning containing the embedded text used to guide the "
                             "diffusion model."],
        ),
        "EmptyLatentImage": _node(
            "EmptyLatentImage", "Empty Latent Image", "latent",
            "Create a new batch of empty latent images to be denoised via sampling.",
            {
                "width": _int(512, 16, MAX_RESOLUTION,
                              "The width of the latent images in pixels.", step=8),
                "height": _int(512, 16, MAX_RESOLUTION,
                               "The height of the latent images in pixels.", step=8),
                "batch_size": _int(1, 1, 4096, "The number of latent images in the batch."),
            },
            ["LATENT"],
            output_tooltips=["The empty latent image batch."],
        ),
        "KSampler": _node(
            "KSampler", "KSampler", "sampling",
            "Uses the provided model, positive and negative conditioning to denoise the latent "
            "image.",
            {
                "model": ["MODEL", {"tooltip": "The model used for denoising the input latent."}],
                "seed": ["INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                 "control_after_generate": True,
                                 "tooltip": "The random seed used for creating the noise."}],
                "steps": _int(20, 1, 10000, "The number of steps used in the denoising process."),
                "cfg": ["FLOAT", {
                    "default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                    "tooltip": "The Classifier-Free Guidance scale balances creativity and "
                               "adherence to the prompt. Higher values result in images more "
                               "closely matching the prompt however too high values will "
                               "negatively impact quality."}],
                "sampler_name": [list(SAMPLERS), {
                    "tooltip": "The algorithm used when sampling, this can affect the quality, "
                               "speed, and style of the generated output."}],
                "scheduler": [list(SCHEDULERS), {
                    "tooltip": "The scheduler controls how noise is gradually removed to form "
                               "the image."}],
                "positive": ["CONDITIONING", {
                    "tooltip": "The conditioning describing the attributes you want to include "
                               "in the image."}],
                "negative": ["CONDITIONING", {
                    "tooltip": "The conditioning describing the attributes you want to exclude "
                               "from the image."}],
                "latent_image": ["LATENT", {"tooltip": "The latent image to denoise."}],
                "denoise": ["FLOAT", {
                    "default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "The amount of denoising applied, lower values will maintain the "
                               "structure of the initial image allowing for image to image "
                               "sampling."}],
            },
            ["LATENT"],
            output_tooltips=["The denoised latent."],
        ),
        "VAEDecode": _node(
            "VAEDecode", "VAE Decode", "latent",
            "Decodes latent images back into pixel space images.",
            {
                "samples": ["LATENT", {"tooltip": "The latent to be decoded."}],
                "vae": ["VAE", {"tooltip": "The VAE model used for decoding the latent."}],
            },
            ["IMAGE"],
            output_tooltips=["The decoded image."],
        ),
        "VAEEncode": _node(
            "VAEEncode", "VAE Encode", "latent", "",
            {"pixels": ["IMAGE"], "vae": ["VAE"]},
            ["LATENT"],
        ),
        "LoadImage": _node(
            "LoadImage", "Load Image", "image", "",
            {"image": [state.input_choices(), {"image_upload": True}]},
            ["IMAGE", "MASK"],
        ),
        "SaveImage": _node(
            "SaveImage", "Save Image", "image",
            "Saves the input images to your ComfyUI output directory.",
            {
                "images": ["IMAGE", {"tooltip": "The images to save."}],
                "filename_prefix": ["STRING", {
                    "default": "ComfyUI",
                    "tooltip": "The prefix for the file to save. This may include formatting "
                               "information such as %date:yyyy-MM-dd% or %Empty Latent "
                               "Image.width% to include values from nodes."}],
            },
            [],
            output_node=True,
            hidden={"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        ),
    }


# --- execution ------------------------------------------------------------------------------


class NodeFailure(Exception):
    """A node raised while running; carries what the execution_error message reports."""

    def __init__(self, message: str, exception_type: str):
        super().__init__(message)
        self.exception_type = exception_type


class NodeInterrupted(Exception):
    """POST /interrupt reached the node that was running."""


@dataclass
class Job:
    """One queued prompt: the queue item of the real PromptQueue, plus the fake's poll count."""

    number: int | float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs_to_execute: list[str]
    never_finish: bool = False
    polls: int = 0

    def queue_item(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data,
                self.outputs_to_execute]


@dataclass
class Run:
    """State of one execution: what ran, what each node returned, what the UI got."""

    job: Job
    interrupted: bool = False
    results: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    ui: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed_node: str = ""


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2


def _render(seed: int, width: int, height: int) -> Image.Image:
    """A seeded picture: a four-corner gradient and a disc, cheap at any size."""
    rng = random.Random(seed)
    corners = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(4)]
    base = Image.new("RGB", (2, 2))
    base.putdata(corners)
    img = base.resize((width, height), Image.Resampling.BILINEAR)
    r = min(width, height) // 4
    cx, cy = rng.randrange(width), rng.randrange(height)
    ImageDraw.Draw(img).ellipse((cx - r, cy - r, cx + r, cy + r),
                                fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


# --- the server state -----------------------------------------------------------------------


class FakeComfyUI:
    """Everything the fake server remembers; every public method takes the lock."""

    def __init__(self, checkpoints: Iterable[str], loras: Iterable[str], polls_before_done: int):
        self.checkpoints = list(checkpoints)
        self.loras = list(loras)
        self.polls_before_done = polls_before_done
        self.lock = threading.RLock()
        self.number = 0
        self.jobs: dict[str, Job] = {}
        self.history: dict[str, dict[str, Any]] = {}
        # (type, subfolder, filename) -> bytes, for inputs, temp files and outputs alike.
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.counters: dict[tuple[str, str], int] = {}
        buf = io.BytesIO()
        _render(0, 512, 512).save(buf, "PNG")
        self.files[("input", "", "example.png")] = buf.getvalue()
        self.runners: dict[str, Callable[[Run, str, dict[str, Any]], tuple[Any, ...]]] = {
            "CheckpointLoaderSimple": lambda run, nid, a: (("MODEL", a["ckpt_name"]),
                                                           ("CLIP", a["ckpt_name"]),
                                                           ("VAE", a["ckpt_name"])),
            "LoraLoader": lambda run, nid, a: (a["model"], a["clip"]),
            "CLIPTextEncode": lambda run, nid, a: ({"text": a["text"]},),
            "EmptyLatentImage": self._empty_latent,
            "LoadImage": self._load_image,
            "VAEEncode": self._vae_encode,
            "KSampler": self._ksampler,
            "VAEDecode": self._vae_decode,
            "SaveImage": self._save_image,
        }
        # VALIDATE_INPUTS of the real nodes: the inputs it covers skip the min/max/list checks.
        self.custom_validators: dict[str, dict[str, Callable[[Any], bool | str]]] = {
            "LoadImage": {"image": self._validate_image},
        }

    # -- files --

    def input_choices(self) -> list[str]:
        """LoadImage's list: the files at the top of the input folder, sorted."""
        return sorted(name for (kind, sub, name) in self.files if kind == "input" and not sub)

    def _input_path(self, value: str) -> tuple[str, str, str]:
        """folder_paths.get_annotated_filepath: "sub/name.png [output]" -> a files key."""
        kind = "input"
        for k in UPLOAD_TYPES:
            if value.endswith(f" [{k}]"):
                value, kind = value[: -len(k) - 3], k
        sub, _, name = value.rpartition("/")
        return kind, sub, name

    def _validate_image(self, value: Any) -> bool | str:
        if not isinstance(value, str) or self._input_path(value) not in self.files:
            return f"Invalid image file: {value}"
        return True

    def upload(self, data: bytes, filename: str, subfolder: str, kind: str,
               overwrite: bool) -> str:
        """Store an upload like server.image_upload and return the name it got."""
        with self.lock:
            base, dot, ext = filename.rpartition(".")
            if not dot:
                base, ext = filename, ""
            name, i = filename, 1
            if not overwrite:
                while (kind, subfolder, name) in self.files:
                    if self.files[(kind, subfolder, name)] == data:
                        return name  # the real server keeps one copy of an identical upload
                    name = f"{base} ({i}){dot}{ext}"
                    i += 1
            self.files[(kind, subfolder, name)] = data
            return name

    # -- prompts --

    def queue(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST /prompt: the status and body the real server answers."""
        with self.lock:
            if "number" in body:
                number: int | float = float(body["number"])
            else:
                number = -self.number if body.get("front") else self.number
                self.number += 1
            if "prompt" not in body:
                error = {"type": "no_prompt", "message": "No prompt provided",
                         "details": "No prompt provided", "extra_info": {}}
                return 400, {"error": error, "node_errors": {}}
            prompt = body["prompt"]
            prompt_id = str(body.get("prompt_id") or uuid.uuid4())
            if not isinstance(prompt, dict):
                error = {"type": "invalid_prompt", "message": "Prompt must be an object",
                         "details": type(prompt).__name__, "extra_info": {}}
                return 400, {"error": error, "node_errors": {}}
            ok, error, outputs, node_errors = self.validate_prompt(prompt)
            if not ok:
                return 400, {"error": error, "node_errors": node_errors}
            extra_data = dict(body.get("extra_data") or {})
            if "client_id" in body:
                extra_data["client_id"] = body["client_id"]
            extra_data["create_time"] = _now_ms()
            never = any(NEVER_FINISH in text for text in _positive_texts(prompt))
            self.jobs[prompt_id] = Job(number, prompt_id, prompt, extra_data, outputs, never)
            return 200, {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}

    def validate_prompt(self, prompt: dict[str, Any]) -> tuple[bool, Any, list[str], Any]:
        """execution.validate_prompt: (ok, error, outputs to run, node_errors)."""
        infos = _object_info(self)
        outputs: list[str] = []
        for x, node in prompt.items():
            node = node if isinstance(node, dict) else {}
            title = (node.get("_meta") or {}).get("title")
            if "class_type" not in node:
                return False, {
                    "type": "missing_node_type",
                    "message": f"Node '{title or f'ID #{x}'}' has no class_type. The workflow "
                               "may be corrupted or a custom node is missing.",
                    "details": f"Node ID '#{x}'",
                    "extra_info": {"node_id": x, "class_type": None, "node_title": title},
                }, [], {}
            class_type = node["class_type"]
            if class_type not in infos:
                title = title or class_type
                return False, {
                    "type": "missing_node_type",
                    "message": f"Node '{title}' not found. The custom node may not be installed.",
                    "details": f"Node ID '#{x}'",
                    "extra_info": {"node_id": x, "class_type": class_type, "node_title": title},
                }, [], {}
            if infos[class_type]["output_node"]:
                outputs.append(x)
        if not outputs:
            return False, {"type": "prompt_no_outputs", "message": "Prompt has no outputs",
                           "details": "", "extra_info": {}}, [], {}

        good: list[str] = []
        failures: list[tuple[str, list[dict[str, Any]]]] = []
        node_errors: dict[str, dict[str, Any]] = {}
        validated: dict[str, tuple[bool, list[dict[str, Any]], str]] = {}
        for o in outputs:
            try:
                valid, reasons, _ = self._validate_inputs(infos, prompt, o, validated)
            except Exception as ex:  # the real server reports a broken graph this way, too
                valid, reasons = False, [{
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": str(ex),
                    "extra_info": {"exception_type": _type_name(ex),
                                   "traceback": traceback.format_tb(ex.__traceback__)},
                }]
                validated[o] = (False, reasons, o)
            if valid:
                good.append(o)
                continue
            failures.append((o, reasons))
            # Nodes downstream of a bad one are invalid without reasons; only the bad ones show.
            for node_id, (ok, why, _) in validated.items():
                if not ok and why:
                    entry = node_errors.setdefault(node_id, {
                        "errors": why, "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"]})
                    entry["dependent_outputs"].append(o)
        if not good:
            details = "\n".join(f"{e['message']}: {e['details']}"
                                for _, reasons in failures for e in reasons)
            return False, {"type": "prompt_outputs_failed_validation",
                           "message": "Prompt outputs failed validation",
                           "details": details, "extra_info": {}}, [], node_errors
        return True, None, good, node_errors

    def _validate_inputs(
        self, infos: dict[str, Any], prompt: dict[str, Any], unique_id: str,
        validated: dict[str, tuple[bool, list[dict[str, Any]], str]],
    ) -> tuple[bool, list[dict[str, Any]], str]:
        """execution.validate_inputs, for the fake's nodes. Missing linked nodes raise KeyError
        on purpose: the real server reports them as exceptions during validation."""
        if unique_id in validated:
            return validated[unique_id]
        inputs = prompt[unique_id]["inputs"]
        class_type = prompt[unique_id]["class_type"]
        spec = infos[class_type]["input"]
        custom = self.custom_validators.get(class_type, {})
        errors: list[dict[str, Any]] = []
        valid = True
        for category in ("required", "optional"):
            for x, config in spec.get(category, {}).items():
                input_type = config[0]
                extra = config[1] if len(config) > 1 else {}
                info = [input_type, extra]
                if x not in inputs:
                    if category == "required":
                        errors.append({"type": "required_input_missing",
                                       "message": "Required input is missing",
                                       "details": x, "extra_info": {"input_name": x}})
                    continue
                val = inputs[x]
                if isinstance(val, list):
                    if len(val) != 2:
                        errors.append({
                            "type": "bad_linked_input",
                            "message": "Bad linked input, must be a length-2 list of "
                                       "[node_id, slot_index]",
                            "details": x,
                            "extra_info": {"input_name": x, "input_config": info,
                                           "received_value": val}})
                        continue
                    o_id = val[0]
                    received = infos[prompt[o_id]["class_type"]]["output"][val[1]]
                    if not _types_match(received, input_type):
                        errors.append({
                            "type": "return_type_mismatch",
                            "message": "Return type mismatch between linked nodes",
                            "details": f"{x}, received_type({received}) mismatch "
                                       f"input_type({input_type})",
                            "extra_info": {"input_name": x, "input_config": info,
                                           "received_type": received, "linked_node": val}})
                        continue
                    try:
                        if self._validate_inputs(infos, prompt, o_id, validated)[0] is False:
                            valid = False
                    except Exception as ex:
                        valid = False
                        validated[o_id] = (False, [{
                            "type": "exception_during_inner_validation",
                            "message": "Exception when validating inner node",
                            "details": str(ex),
                            "extra_info": {
                                "input_name": x, "input_config": info,
                                "exception_message": str(ex), "exception_type": _type_name(ex),
                                "traceback": traceback.format_tb(ex.__traceback__),
                                "linked_node": val}}], o_id)
                    continue
                try:
                    if isinstance(val, dict) and "__value__" in val:
                        val = val["__value__"]
                    convert = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
                    if isinstance(input_type, str) and input_type in convert:
                        val = convert[input_type](val)
                    inputs[x] = val  # the real server converts in place; history shows it
                except Exception as ex:
                    errors.append({
                        "type": "invalid_input_type",
                        "message": f"Failed to convert an input value to a {input_type} value",
                        "details": f"{x}, {val}, {ex}",
                        "extra_info": {"input_name": x, "input_config": info,
                                       "received_value": val, "exception_message": str(ex)}})
                    continue
                if x in custom:
                    continue
                error = _check_value(x, val, input_type, extra, info)
                if error:
                    errors.append(error)
        for x, check in custom.items():
            if x in inputs:
                result = check(inputs[x])
                if result is not True:
                    details = x if result is False else f"{x} - {result}"
                    errors.append({"type": "custom_validation_failed",
                                   "message": "Custom validation failed for node",
                                   "details": details, "extra_info": {"input_name": x}})
        ret = (False, errors, unique_id) if errors or not valid else (True, [], unique_id)
        validated[unique_id] = ret
        return ret

    # -- running --

    def running_job(self) -> Job | None:
        """The oldest job without a history entry: the one the real queue would be running."""
        return next((j for j in self.jobs.values() if j.prompt_id not in self.history), None)

    def poll(self, prompt_id: str) -> dict[str, Any]:
        """GET /history/<id>: count the poll, run the job when its time has come."""
        with self.lock:
            job = self.jobs.get(prompt_id)
            if job is not None and prompt_id not in self.history:
                job.polls += 1
                if not job.never_finish and job.polls > self.polls_before_done:
                    self.history[prompt_id] = self._execute(job)
            if prompt_id in self.history:
                return {prompt_id: copy.deepcopy(self.history[prompt_id])}
            return {}

    def interrupt(self, prompt_id: str | None) -> None:
        """POST /interrupt: end the running job (only if it is prompt_id, when given)."""
        with self.lock:
            job = self.running_job()
            if job is not None and (not prompt_id or prompt_id == job.prompt_id):
                self.history[job.prompt_id] = self._execute(job, interrupted=True)

    def drop_pending(self, clear: bool, delete: Iterable[str]) -> None:
        """POST /queue: forget pending jobs; the running one is not touched, as in the real."""
        with self.lock:
            running = self.running_job()
            wanted = set(delete)
            doomed = {j.prompt_id for j in self.jobs.values()
                      if j.prompt_id not in self.history and j is not running
                      and (clear or j.prompt_id in wanted)}
            for prompt_id in doomed:
                del self.jobs[prompt_id]

    def queue_info(self) -> dict[str, list[list[Any]]]:
        with self.lock:
            running = self.running_job()
            pending = [j for j in self.jobs.values()
                       if j.prompt_id not in self.history and j is not running]
            return {"queue_running": [running.queue_item()] if running else [],
                    "queue_pending": [j.queue_item() for j in pending]}

    def _execute(self, job: Job, interrupted: bool = False) -> dict[str, Any]:
        """PromptExecutor.execute + PromptQueue.task_done: the history entry of one run."""
        run = Run(job, interrupted)
        messages: list[list[Any]] = []

        def add(event: str, data: dict[str, Any]) -> None:
            messages.append([event, {**data, "timestamp": _now_ms()}])

        add("execution_start", {"prompt_id": job.prompt_id})
        add("execution_cached", {"nodes": [], "prompt_id": job.prompt_id})
        success = True
        try:
            for output in job.outputs_to_execute:
                self._evaluate(run, output)
        except NodeInterrupted:
            success = False
            node_id = run.failed_node
            add("execution_interrupted", {
                "prompt_id": job.prompt_id, "node_id": node_id,
                "node_type": job.prompt[node_id]["class_type"], "executed": run.executed})
        except NodeFailure as ex:
            success = False
            node_id = run.failed_node
            add("execution_error", {
                "prompt_id": job.prompt_id, "node_id": node_id,
                "node_type": job.prompt[node_id]["class_type"], "executed": run.executed,
                "exception_message": str(ex), "exception_type": ex.exception_type,
                "traceback": list(OOM_TRACEBACK),
                "current_inputs": _formatted_inputs(job.prompt[node_id]["inputs"]),
                "current_outputs": []})
        else:
            add("execution_success", {"prompt_id": job.prompt_id})
        meta = {nid: {"node_id": nid, "display_node": nid, "parent_node": None,
                      "real_node_id": nid} for nid in run.ui}
        return {
            "prompt": job.queue_item(),
            "outputs": run.ui,
            "status": {"status_str": "success" if success else "error",
                       "completed": success, "messages": messages},
            "meta": meta,
        }

    def _evaluate(self, run: Run, node_id: str) -> tuple[Any, ...]:
        """Run a node after the nodes it links to, once per run."""
        if node_id in run.results:
            return run.results[node_id]
        node = run.job.prompt[node_id]
        args = {}
        for name, value in node["inputs"].items():
            if _is_link(value):
                args[name] = self._evaluate(run, str(value[0]))[value[1]]
            else:
                args[name] = value
        try:
            result = self.runners[node["class_type"]](run, node_id, args)
        except (NodeFailure, NodeInterrupted):
            run.failed_node = node_id
            raise
        run.results[node_id] = result
        run.executed.append(node_id)
        return result

    # -- the nodes --

    def _empty_latent(self, run: Run, node_id: str, a: dict[str, Any]) -> tuple[Any, ...]:
        return ({"width": _floor8(a["width"]), "height": _floor8(a["height"]),
                 "batch": a["batch_size"], "pixels": None},)

    def _load_image(self, run: Run, node_id: str, a: dict[str, Any]) -> tuple[Any, ...]:
        with Image.open(io.BytesIO(self.files[self._input_path(a["image"])])) as img:
            picture = ImageOps.exif_transpose(img).convert("RGB")
        return (picture, None)

    def _vae_encode(self, run: Run, node_id: str, a: dict[str, Any]) -> tuple[Any, ...]:
        pixels: Image.Image = a["pixels"]
        w, h = _floor8(pixels.width), _floor8(pixels.height)
        # The VAE works in 8-pixel cells; the real one crops the rest, centred.
        left, top = (pixels.width - w) // 2, (pixels.height - h) // 2
        return ({"width": w, "height": h, "batch": 1,
                 "pixels": pixels.crop((left, top, left + w, top + h))},)

    def _ksampler(self, run: Run, node_id: str, a: dict[str, Any]) -> tuple[Any, ...]:
        if run.interrupted:
            raise NodeInterrupted()
        if FAIL_EXECUTION in a["positive"]["text"]:
            raise NodeFailure(OOM_MESSAGE, OOM_TYPE)
        return ({**a["latent_image"], "seed": a["seed"], "denoise": a["denoise"]},)

    def _vae_decode(self, run: Run, node_id: str, a: dict[str, Any]) -> tuple[Any, ...]:
        latent = a["samples"]
        images = []
        for i in range(latent["batch"]):
            img = _render(latent["seed"] + i, latent["width"], latent["height"])
            if latent["pixels"] is not None:
                img = Image.blend(latent["pixels"], img, max(0.0, min(1.0, latent["denoise"])))
            images.append(img)
        return (images,)

    def _save_image(self, run: Run, node_id: str, a: dict[str, Any]) -> tuple[Any, ...]:
        subfolder, _, prefix = str(a["filename_prefix"]).rpartition("/")
        info = PngImagePlugin.PngInfo()
        info.add_text("prompt", json.dumps(run.job.prompt))
        results = []
        for img in a["images"]:
            counter = self.counters.get((subfolder, prefix), 0) + 1
            self.counters[(subfolder, prefix)] = counter
            name = f"{prefix}_{counter:05}_.png"
            buf = io.BytesIO()
            img.save(buf, "PNG", pnginfo=info, compress_level=1)
            self.files[("output", subfolder, name)] = buf.getvalue()
            results.append({"filename": name, "subfolder": subfolder, "type": "output"})
        run.ui[node_id] = {"images": results}
        return ()


def _types_match(received: Any, expected: Any) -> bool:
    """comfy_execution.validation.validate_node_input, without the strict mode."""
    if received == expected or "*" in (received, expected):
        return True
    if isinstance(received, str) and isinstance(expected, str):
        return set(received.split(",")) <= set(expected.split(","))
    return False


def _check_value(x: str, val: Any, input_type: Any, extra: dict[str, Any],
                 info: list[Any]) -> dict[str, Any] | None:
    """The min, max and list checks of validate_inputs, in its order."""
    if "min" in extra and val < extra["min"]:
        return {"type": "value_smaller_than_min",
                "message": f"Value {val} smaller than min of {extra['min']}", "details": x,
                "extra_info": {"input_name": x, "input_config": info, "received_value": val}}
    if "max" in extra and val > extra["max"]:
        return {"type": "value_bigger_than_max",
                "message": f"Value {val} bigger than max of {extra['max']}", "details": x,
                "extra_info": {"input_name": x, "input_config": info, "received_value": val}}
    if isinstance(input_type, list) and val not in input_type:
        # The real server leaves long lists (scanned model folders) out of the answer.
        long = len(input_type) > 20
        listed = f"(list of length {len(input_type)})" if long else str(input_type)
        return {"type": "value_not_in_list", "message": "Value not in list",
                "details": f"{x}: '{val}' not in {listed}",
                "extra_info": {"input_name": x, "input_config": None if long else info,
                               "received_value": val}}
    return None


def _formatted_inputs(inputs: dict[str, Any]) -> dict[str, list[Any]]:
    """execution_error's current_inputs: one list per input, objects as their str()."""
    out: dict[str, list[Any]] = {}
    for name, value in inputs.items():
        if _is_link(value):
            out[name] = [f"<object from node {value[0]} output {value[1]}>"]
        else:
            out[name] = [value]
    return out


def _positive_texts(prompt: dict[str, Any]) -> list[str]:
    """The texts of the CLIPTextEncode nodes wired to a KSampler's positive input."""
    texts = []
    for node in prompt.values():
        if node.get("class_type") != "KSampler":
            continue
        link = node.get("inputs", {}).get("positive")
        source = prompt.get(str(link[0])) if _is_link(link) else None
        if isinstance(source, dict) and isinstance(source.get("inputs", {}).get("text"), str):
            texts.append(source["inputs"]["text"])
    return texts


# --- the Flask app --------------------------------------------------------------------------


def create_comfyui_app(
    *,
    checkpoints: Iterable[str] = ("sd15-demo.safetensors", "sdxl-demo.safetensors"),
    loras: Iterable[str] = ("detail.safetensors",),
    polls_before_done: int = 2,
) -> Flask:
    """A fake ComfyUI: the model files it lists, and how many history polls a job takes."""
    state = FakeComfyUI(checkpoints, loras, polls_before_done)
    app = Flask("fake_comfyui")
    app.config["REQUESTS"] = []
    app.config["COMFYUI"] = state

    def route(rule: str, methods: tuple[str, ...] = ("GET",)) -> Callable[[Callable], Callable]:
        """Register a view at RULE and at /api + RULE, as server.add_routes does."""
        def register(view: Callable) -> Callable:
            app.add_url_rule(rule, view.__name__, view, methods=list(methods))
            app.add_url_rule("/api" + rule, "api_" + view.__name__, view, methods=list(methods))
            return view
        return register

    def json_response(body: Any, status: int = 200) -> Response:
        # json.dumps keeps key order, as aiohttp's json_response does; Flask's would sort.
        return Response(json.dumps(body), status=status, mimetype="application/json")

    @app.before_request
    def record() -> None:
        entry: dict[str, Any] = {"method": request.method, "path": request.path,
                                 "args": request.args.to_dict()}
        if request.mimetype == "multipart/form-data":
            entry["form"] = sorted({*request.form, *request.files})
            entry["files"] = {k: f.filename for k, f in request.files.items()}
        elif request.method == "POST":
            # aiohttp's request.json() ignores the Content-Type, and so do clients.
            entry["json"] = request.get_json(force=True, silent=True)
        app.config["REQUESTS"].append(entry)

    @route("/system_stats")
    def system_stats() -> Response:
        return json_response(SYSTEM_STATS)

    @route("/embeddings")
    def embeddings() -> Response:
        return json_response([])

    @route("/models")
    def models() -> Response:
        return json_response(["checkpoints", "loras", "vae", "embeddings", "upscale_models"])

    @route("/models/<folder>")
    def models_in(folder: str) -> Response:
        lists = {"checkpoints": state.checkpoints, "loras": state.loras, "vae": [],
                 "embeddings": [], "upscale_models": []}
        if folder not in lists:
            return Response(status=404)
        return json_response(list(lists[folder]))

    @route("/object_info")
    def object_info_all() -> Response:
        with state.lock:
            return json_response(_object_info(state))

    @route("/object_info/<node_class>")
    def object_info(node_class: str) -> Response:
        with state.lock:
            infos = _object_info(state)
        return json_response({node_class: infos[node_class]} if node_class in infos else {})

    @route("/prompt", ("GET", "POST"))
    def prompt() -> Response:
        if request.method == "GET":
            queue = state.queue_info()
            remaining = len(queue["queue_running"]) + len(queue["queue_pending"])
            return json_response({"exec_info": {"queue_remaining": remaining}})
        body = request.get_json(force=True, silent=True)
        status, answer = state.queue(body if isinstance(body, dict) else {})
        return json_response(answer, status)

    @route("/history")
    def history_all() -> Response:
        with state.lock:
            items = list(state.history.items())
        max_items = request.args.get("max_items", type=int)
        if max_items is not None:
            items = items[-max_items:] if max_items > 0 else []
        return json_response(copy.deepcopy(dict(items)))

    @route("/history/<prompt_id>")
    def history(prompt_id: str) -> Response:
        return json_response(state.poll(prompt_id))

    @route("/queue", ("GET", "POST"))
    def queue() -> Response:
        if request.method == "GET":
            return json_response(state.queue_info())
        body = request.get_json(force=True, silent=True) or {}
        state.drop_pending(bool(body.get("clear")), body.get("delete") or [])
        return Response(status=200)

    @route("/interrupt", ("POST",))
    def interrupt() -> Response:
        body = request.get_json(force=True, silent=True)
        state.interrupt(body.get("prompt_id") if isinstance(body, dict) else None)
        return Response(status=200)

    @route("/view")
    def view() -> Response:
        filename = request.args.get("filename")
        if filename is None:
            return Response(status=404)
        if not filename or filename.startswith("/") or ".." in filename:
            return Response(status=400)
        kind = request.args.get("type", "output")
        if kind not in UPLOAD_TYPES:
            return Response(status=400)
        subfolder = request.args.get("subfolder", "")
        if ".." in subfolder.split("/"):
            return Response(status=403)  # the real server's answer to a subfolder escaping
        name = filename.rpartition("/")[2]
        with state.lock:
            data = state.files.get((kind, subfolder.strip("/"), name))
        if data is None:
            return Response(status=404)
        mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Response(data, mimetype=mimetype,
                        headers={"Content-Disposition": f'filename="{name}"'})

    @route("/upload/image", ("POST",))
    def upload_image() -> Response:
        image = request.files.get("image")
        if image is None or not image.filename:
            return Response(status=400)
        kind = request.form.get("type") or "input"
        subfolder = request.form.get("subfolder", "")
        parts = subfolder.split("/") + image.filename.split("/")
        if kind not in UPLOAD_TYPES or ".." in parts or subfolder.startswith("/"):
            return Response(status=400)
        data = image.read()
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.verify()
        except Exception:
            return Response(status=400)
        overwrite = request.form.get("overwrite") in ("true", "1")
        name = state.upload(data, image.filename, subfolder.strip("/"), kind, overwrite)
        return json_response({"name": name, "subfolder": subfolder, "type": kind})

    return app
