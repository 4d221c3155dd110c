"""A fake ComfyUI server for tests: a Flask app answering in the shapes of the real HTTP API.

Source read (cited below as "v0.3.64"): repository comfyanonymous/ComfyUI (now Comfy-Org/ComfyUI),
commit 637221995f7424a561bd825de3e61ea117dfe1e3, "ComfyUI version 0.3.64" (2025-10-08):
``server.py`` (the routes), ``execution.py`` (``validate_prompt``/``validate_inputs``,
``PromptExecutor``, ``PromptQueue``), ``main.py`` (``prompt_worker``), ``nodes.py``
(``INPUT_TYPES`` of the core nodes, ``interrupt_processing``) and ``comfy/model_management.py``
(``interrupt_current_processing``); for the websocket also ``main.hijack_progress``,
``comfy_execution/progress.py`` (``WebUIProgressHandler``), ``comfy_api/feature_flags.py``,
``latent_preview.py`` and ``protocol.py``. Two shapes come from later versions and say so where
they are made: ``missing_node_type`` validation errors and ``extra_data["create_time"]``. Every
route also answers under ``/api``, as the real one does (``PromptServer.add_routes``).

Routes
    GET  /system_stats, /prompt (queue info), /queue, /embeddings, /models, /models/<folder>
    GET  /object_info, /object_info/<class>   (unknown class -> ``{}``)
    POST /prompt           -> 200 ``{"prompt_id", "number", "node_errors"}`` or 400 errors
    GET  /history (``max_items``, ``offset``), /history/<prompt_id>
    GET  /view?filename=&subfolder=&type=    (type defaults to "output"; 404 if unknown)
    POST /upload/image     (multipart: ``image`` file, ``overwrite``, ``subfolder``, ``type``)
    POST /interrupt        (optional JSON ``{"prompt_id"}``), POST /queue (``clear``/``delete``)
    GET  /ws?clientId=     a websocket (see "The websocket" below); a plain GET is a 400

The queue, as the real one runs it (v0.3.64 ``PromptQueue`` + ``main.prompt_worker``): one
worker, one prompt running at a time. ``POST /prompt`` pushes ``(number, prompt_id, prompt,
extra_data, outputs_to_execute)`` on a heap (``heapq``: lowest ``number`` first; ``front``
makes the number negative); when the worker is idle it pops the next one, which is then the
only entry of ``queue_running``; the others are ``queue_pending``, in the heap's list order.
``GET /queue`` shows each as that 5-item list (index 1 is the prompt_id). A prompt is in
exactly one place: the pending heap, the running slot, or the history (``task_done`` moves it
from running to history under the queue's lock), or nowhere (deleted from the queue, never
queued): ``GET /history/<id>`` answers ``{}`` for pending, running and unknown ids alike.

The fake's clock: the worker moves on only when asked. Every ``GET /history/<prompt_id>``
poll, whatever its id, is one step of the running prompt; it finishes on the step after
``polls_before_done`` steps (so a lone prompt answers ``{}`` to ``polls_before_done`` polls,
then its history entry), and the next queued prompt starts at once. ``GET /history``,
``GET /queue`` and ``GET /prompt`` only look. A prompt queued behind another client's waits,
however often its own history is polled, until that one has finished or been interrupted.
Within a run the nodes execute as the clock goes: when the prompt starts, every node up to the
KSampler runs and the KSampler starts; each of the ``polls_before_done`` steps then samples an
equal share of the KSampler's ``steps`` (all of them on the finishing step when
``polls_before_done`` is 0); the finishing step runs the rest (VAEDecode, SaveImage) and ends
the run. Each node runs after the nodes it links to, depth first (the real ``ExecutionList``
may order independent nodes otherwise).

``POST /interrupt`` (v0.3.64 ``server.post_interrupt``): no body, a body that is not JSON, or
a JSON object without a truthy ``prompt_id`` interrupts whatever prompt is running, whoever
queued it; ``{"prompt_id": X}`` interrupts only if X is the running prompt, and otherwise does
nothing (a pending X stays queued). A JSON body that is not an object is a 500, as there. The
interrupt is the global flag of ``model_management.interrupt_current_processing``; the fake's
running prompt sees it at once and ends with an ``execution_interrupted`` message.
``POST /queue {"delete": [ids]}`` removes pending prompts (``delete_queue_item``), never the
running one; ``{"clear": true}`` empties the pending heap (``wipe_queue``).

Images are deterministic: a seeded gradient per ``seed + batch index``, of EmptyLatentImage's
width x height (floored to a multiple of 8, as the VAE does), ``batch_size`` of them; for
img2img the LoadImage picture (its size, floored to 8) blended with the gradient by ``denoise``;
with a noise mask (LoadImageMask -> SetLatentNoiseMask, v0.3.64 nodes.py) only under the mask,
the rest kept as it was (comfy/samplers.py KSamplerX0Inpaint). VAEEncodeForInpaint is not
emulated.
The server starts with ``example.png`` (512x512) in its input folder, as a real install does.
For imported workflows (issue 15) it also has PreviewImage (the images go to the temp folder,
``type: temp``) and the upscale nodes of ``comfy_extras/nodes_upscale_model.py``: the model
``2x-demo.pth`` scales by the number before its "x".

Failure triggers, written in a positive prompt (the CLIPTextEncode text linked to a KSampler's
``positive`` input):

``FAIL_EXECUTION``
    The job completes as a failure: ``status_str`` "error", ``completed`` false, no images, and
    an ``["execution_error", {...}]`` message naming the KSampler node with
    ``exception_type`` "torch.OutOfMemoryError" and the ``exception_message`` the real
    ``execution.execute`` makes of a CUDA OOM: the torch message, a newline, and its tips.
``NEVER_FINISH``
    The job never completes: its history stays ``{}``, it stays in ``queue_running`` and every
    prompt queued after it stays pending, until ``POST /interrupt`` ends it with an
    ``execution_interrupted`` message. To stand for ANOTHER client's prompt, a test POSTs such
    a prompt itself (with its own ``client_id``) before the client under test queues one.

Deliberate differences from the real server:

- A ``prompt`` that is not an object is a 400 ``invalid_prompt``; the real server fails (500).
- ``POST /prompt`` with an explicit ``number`` equal to a queued one and the same prompt_id
  would make the real heap compare dicts (a 500); the fake orders by (number, prompt_id) only.
- No ``/view`` ``preview``/``channel`` conversions.
- The interrupt takes effect at once; the real worker notices it at its next check (the next
  node, or the next sampler step), usually well under a second later.
- The websocket message that ends a run (``execution_success``, ``execution_error``,
  ``execution_interrupted``) is sent on the step the run finishes, with its history entry; the
  real server sends an ``execution_error`` as the node fails and finishes the task right after.
- A prompt never comes out of the output cache: ``execution_cached`` always lists no nodes.
- Previews are the sampler's picture so far, of the latent's size (an eighth of the image's)
  scaled to fit ``preview_size``: 64 px here, the real ``--preview-size`` default is 512.

The websocket (v0.3.64 ``server.websocket_handler``, ``send_json``, ``send_bytes``,
``encode_bytes``, ``send_image``, ``send_image_with_metadata``): ``GET /ws?clientId=<id>``
(and ``/api/ws``) upgrades; without ``clientId`` the server names the socket
``uuid4().hex``. It first sends ``{"type": "status", "data": {"status": {"exec_info":
{"queue_remaining": N}}, "sid": "<id>"}}`` and, if the running prompt is this socket's, an
``executing`` ``{"node": <last node>}``. A first client message ``{"type": "feature_flags",
"data": {...}}`` is answered with the server's flags; ``supports_preview_metadata: true`` there
switches that socket's previews to type 4 frames. Text messages are ``{"type", "data"}`` JSON;
binary frames are a big-endian uint32 event type and its payload:

- type 1 PREVIEW_IMAGE: a big-endian uint32 image format (1 JPEG, 2 PNG), then the image;
- type 4 PREVIEW_IMAGE_WITH_METADATA: a big-endian uint32 length, that many bytes of JSON
  ``{"node_id", "prompt_id", "display_node_id", "parent_node_id", "real_node_id",
  "image_type"}``, then the image.

A message of a prompt goes to the socket whose clientId is the prompt's ``client_id`` (the
POST /prompt field) and to no other; a newer socket with the same clientId replaces the older
one, and when either closes the id is forgotten (``self.sockets.pop(sid)``), as there. For a
prompt without ``client_id``: ``progress``, ``progress_state``, previews and
``execution_interrupted`` go to every socket, and ``execution_start``, ``execution_cached``,
``executing``, ``executed``, ``execution_success`` and ``execution_error`` are not sent at all.
``status`` (without ``sid``) goes to every socket on every queue change (``queue_updated``:
put, get, task_done, wipe, delete). One prompt, with a socket of its client_id, sends:

    status (put); status (get: the prompt starts); execution_start; execution_cached;
    for each node, in execution order:
        progress_state (the node running); executing {node, display_node, prompt_id};
        the KSampler, per sampler step: progress_state; progress {value, max, prompt_id,
            node}; with previews on, a type 1 frame (a socket that declared
            supports_preview_metadata gets a type 4 frame, before progress, instead);
        SaveImage: executed {node, display_node, output: {images: [...]}, prompt_id};
        progress_state (the node finished);
    execution_success (or execution_error / execution_interrupted, after the failing node's
    executing); status (task_done); executing {node: null, prompt_id}.

Previews are off by default, as the real server's (``--preview-method`` defaults to ``none``):
``create_comfyui_app(previews=True)`` turns them on, as JPEG (the only format v0.3.64's
``latent_preview.prepare_callback`` makes) unless ``preview_format="PNG"``.

Every request is recorded in ``app.config["REQUESTS"]`` (dicts with ``method``, ``path``,
``args``, and ``json`` or ``form``/``files``); ``app.config["COMFYUI"]`` is the server state.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import io
import json
import mimetypes
import posixpath
import random
import struct
import threading
import time
import traceback
import types
import uuid
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any

import simple_websocket
from flask import Flask, Response, request
from PIL import Image, ImageDraw, ImageOps, PngImagePlugin

FAIL_EXECUTION = "FAIL_EXECUTION"
NEVER_FINISH = "NEVER_FINISH"
OOM_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB"
OOM_TYPE = "torch.OutOfMemoryError"
# v0.3.64 execution.execute: exception_message is "{}\n{}".format(ex, tips); tips is empty for
# anything but an OOM, so every real exception_message ends with a newline at least.
OOM_TIPS = ("This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked "
            "before you might have accidentally set the batch_size to a large number.")

# protocol.py BinaryEventTypes: the first 4 bytes (big-endian) of a binary websocket frame.
PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
# server.send_image: the next 4 bytes of a PREVIEW_IMAGE frame.
IMAGE_FORMATS = {"JPEG": 1, "PNG": 2}
# comfy_api/feature_flags.SERVER_FEATURE_FLAGS with the default --max-upload-size (a float, MB).
SERVER_FEATURE_FLAGS = {"supports_preview_metadata": True, "max_upload_size": 100.0 * 1024 * 1024}

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
        # v0.3.64 (requirements.txt there: comfyui-frontend-package 1.27.10, templates 0.1.95).
        # The targeted /interrupt the fake honours needs 0.3.57 or later.
        "comfyui_version": "0.3.64",
        "required_frontend_version": "1.27.10",
        "installed_templates_version": "0.1.95",
        "required_templates_version": "0.1.95",
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

# The frames a real KSampler OOM shows (v0.3.64 line numbers), shortened; only their shape
# matters to clients.
EXECUTE_FRAME = (
    '  File "/opt/ComfyUI/execution.py", line 496, in execute\n'
    "    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data("
    "prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, "
    "pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n"
)
OOM_TRACEBACK = [
    EXECUTE_FRAME,
    '  File "/opt/ComfyUI/nodes.py", line 1525, in sample\n'
    "    return common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, "
    "negative, latent_image, denoise=denoise)\n",
    '  File "/opt/ComfyUI/comfy/ldm/modules/attention.py", line 447, in attention_pytorch\n'
    "    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)\n",
]
LOAD_IMAGE_TRACEBACK = [
    EXECUTE_FRAME,
    '  File "/opt/ComfyUI/nodes.py", line 1647, in load_image\n'
    "    img = node_helpers.pillow(Image.open, image_path)\n",
]
# The FUNCTION of each node class (v0.3.64 nodes.py), named by a TypeError for a bad kwarg.
FUNCTIONS = {
    "CheckpointLoaderSimple": "load_checkpoint", "LoraLoader": "load_lora",
    "CLIPTextEncode": "encode", "EmptyLatentImage": "generate", "KSampler": "sample",
    "VAEDecode": "decode", "VAEEncode": "encode", "LoadImage": "load_image",
    "SaveImage": "save_images", "LoadImageMask": "load_image", "SetLatentNoiseMask": "set_mask",
    "PreviewImage": "save_images", "UpscaleModelLoader": "load_model",
    "ImageUpscaleWithModel": "upscale",
}


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
    python_module: str = "nodes",
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
        "python_module": python_module,
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
        # v0.3.64 nodes.py LoadImageMask: every file of the input folder (not only images),
        # sorted, and one of four channels.
        "LoadImageMask": _node(
            "LoadImageMask", "Load Image (as Mask)", "mask", "",
            {"image": [state.input_files(), {"image_upload": True}],
             "channel": [["alpha", "red", "green", "blue"]]},
            ["MASK"],
        ),
        # v0.3.64 nodes.py SetLatentNoiseMask: the latent with "noise_mask" set.
        "SetLatentNoiseMask": _node(
            "SetLatentNoiseMask", "Set Latent Noise Mask", "latent/inpaint", "",
            {"samples": ["LATENT"], "mask": ["MASK"]},
            ["LATENT"],
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
        # --- for imported workflows (issue 15) ---
        # v0.3.64 nodes.py PreviewImage(SaveImage): INPUT_TYPES {"required": {"images":
        # ("IMAGE",)}, "hidden": {...}}, DESCRIPTION and OUTPUT_NODE inherited from SaveImage;
        # it writes into the temp folder (type "temp") as "ComfyUI_temp_<5 letters>_".
        "PreviewImage": _node(
            "PreviewImage", "Preview Image", "image",
            "Saves the input images to your ComfyUI output directory.",
            {"images": ["IMAGE"]},
            [],
            output_node=True,
            hidden={"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        ),
        # v0.3.64 comfy_extras/nodes_upscale_model.py: UpscaleModelLoader {"model_name":
        # (get_filename_list("upscale_models"),)} -> UPSCALE_MODEL, category "loaders";
        # ImageUpscaleWithModel {"upscale_model": ("UPSCALE_MODEL",), "image": ("IMAGE",)} ->
        # IMAGE, category "image/upscaling". python_module is the RELATIVE_PYTHON_MODULE the
        # loader gives a comfy_extras module.
        "UpscaleModelLoader": _node(
            "UpscaleModelLoader", "Load Upscale Model", "loaders", "",
            {"model_name": [list(state.upscale_models)]},
            ["UPSCALE_MODEL"],
            python_module="comfy_extras.nodes_upscale_model",
        ),
        "ImageUpscaleWithModel": _node(
            "ImageUpscaleWithModel", "Upscale Image (using Model)", "image/upscaling", "",
            {"upscale_model": ["UPSCALE_MODEL"], "image": ["IMAGE"]},
            ["IMAGE"],
            python_module="comfy_extras.nodes_upscale_model",
        ),
    }


# --- execution ------------------------------------------------------------------------------


class NodeFailure(Exception):
    """A node raised while running; carries what the execution_error message reports."""

    def __init__(self, message: str, exception_type: str, tips: str = "",
                 frames: Iterable[str] = ()):
        super().__init__(message)
        self.exception_type = exception_type
        self.tips = tips
        self.frames = list(frames) or [EXECUTE_FRAME]


class NodeInterrupted(Exception):
    """POST /interrupt reached the node that was running."""


@dataclass
class Run:
    """State of one execution: what ran, what each node returned, what the UI got, the
    progress registry (comfy_execution/progress.ProgressRegistry.nodes, in start order) and the
    status messages of its history entry."""

    job: Job
    interrupted: bool = False
    results: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    ui: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed_node: str = ""
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: list[list[Any]] = field(default_factory=list)
    # The message that ends the run unless it succeeds: (event, data, broadcast).
    outcome: tuple[str, dict[str, Any], bool] | None = None


@dataclass(eq=False)
class Job:
    """One queued prompt: the queue item of the real PromptQueue, plus the fake's step count
    and, once it runs, its execution (a generator that runs the nodes up to its next pause)."""

    number: int | float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs_to_execute: list[str]
    never_finish: bool = False
    steps: int = 0  # worker steps (history polls) since it started running
    run: Run | None = None
    execution: Generator[None, None, None] | None = None

    def queue_item(self) -> list[Any]:
        """v0.3.64 server.post_prompt queues ``(number, prompt_id, prompt, extra_data,
        outputs_to_execute)``; GET /queue and the history's "prompt" show it as this list."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data,
                self.outputs_to_execute]

    def __lt__(self, other: Job) -> bool:
        # heapq compares the real queue's tuples: number first, then prompt_id.
        return (self.number, self.prompt_id) < (other.number, other.prompt_id)


@dataclass(eq=False)
class Socket:
    """One websocket connection: the messages waiting to go out on it, in order (its handler
    thread sends them), and the feature flags its client declared."""

    sid: str
    outbox: SimpleQueue[str | bytes] = field(default_factory=SimpleQueue)
    feature_flags: dict[str, Any] = field(default_factory=dict)


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

    def __init__(self, checkpoints: Iterable[str], loras: Iterable[str], polls_before_done: int,
                 previews: bool = False, preview_format: str = "JPEG", preview_size: int = 64,
                 upscale_models: Iterable[str] = ("2x-demo.pth",)):
        self.checkpoints = list(checkpoints)
        self.loras = list(loras)
        self.upscale_models = list(upscale_models)
        self.polls_before_done = polls_before_done
        self.previews = previews
        if preview_format not in IMAGE_FORMATS:
            raise ValueError(f"preview_format must be one of {sorted(IMAGE_FORMATS)}")
        self.preview_format = preview_format
        self.preview_size = preview_size
        self.lock = threading.RLock()
        # PromptServer.sockets (clientId -> connection), .client_id (the running prompt's, kept
        # after it ends) and .last_node_id (the node last reported "executing", None between
        # runs).
        self.sockets: dict[str, Socket] = {}
        self.client_id: Any = None
        self.last_node_id: str | None = None
        self.number = 0  # PromptServer.number
        # PromptQueue.queue (a heapq list), .currently_running (one worker: one slot), .history
        self.pending: list[Job] = []
        self.running: Job | None = None
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
            # nodes.py LoraLoader.load_lora: (MODEL, CLIP) with the LoRA applied; nodes may
            # be chained ("Multiple LoRA nodes can be linked together"), each fed by the one
            # before. A node id is any string: a link is [str id, int slot]
            # (comfy_execution/graph_utils.py is_link), so "10-1" is as good as "10".
            "LoraLoader": lambda run, nid, a: (a["model"], a["clip"]),
            "CLIPTextEncode": lambda run, nid, a: ({"text": a["text"]},),
            "EmptyLatentImage": self._empty_latent,
            "LoadImage": self._load_image,
            "LoadImageMask": self._load_image_mask,
            "SetLatentNoiseMask": lambda run, nid, a: ({**a["samples"], "noise_mask": a["mask"]},),
            "VAEEncode": self._vae_encode,
            "KSampler": self._ksampler,
            "VAEDecode": self._vae_decode,
            "SaveImage": self._save_image,
            "PreviewImage": self._preview_image,
            # The model is its file name; its scale the number before "x" ("2x-demo.pth").
            "UpscaleModelLoader": lambda run, nid, a: ({"upscale_model": a["model_name"]},),
            "ImageUpscaleWithModel": self._upscale,
        }
        # VALIDATE_INPUTS of the real nodes: the inputs it covers skip the min/max/list checks.
        self.custom_validators: dict[str, dict[str, Callable[[Any], bool | str]]] = {
            "LoadImage": {"image": self._validate_image},
            "LoadImageMask": {"image": self._validate_image},
        }

    # -- the websocket --

    def connect(self, sid: str) -> Socket:
        """v0.3.64 server.websocket_handler, once upgraded: the socket replaces any older one of
        the same clientId, gets ``status`` with its sid and, if the running prompt is its own and
        a node of it has started, ``executing`` with that node only."""
        with self.lock:
            sock = Socket(sid)
            self.sockets[sid] = sock
            self.send_json("status", {"status": self.queue_status(), "sid": sid}, sid)
            if self.client_id == sid and self.last_node_id is not None:
                self.send_json("executing", {"node": self.last_node_id}, sid)
            return sock

    def disconnect(self, sid: str) -> None:
        """websocket_handler's ``finally: self.sockets.pop(sid, None)``: by id, so an older
        socket closing after a newer one took its clientId cuts the newer one off too."""
        with self.lock:
            self.sockets.pop(sid, None)

    def client_message(self, sock: Socket, flags: dict[str, Any]) -> None:
        """A first client message ``{"type": "feature_flags", "data": flags}``: stored, and
        answered with the server's (websocket_handler, feature_flags.get_server_features)."""
        with self.lock:
            sock.feature_flags = flags
            self.send_json("feature_flags", dict(SERVER_FEATURE_FLAGS), sock.sid)

    def _targets(self, sid: Any) -> list[Socket]:
        """send_json/send_bytes: sid None -> every socket; a connected sid -> that one;
        another -> none."""
        if sid is None:
            return list(self.sockets.values())
        try:
            sock = self.sockets.get(sid)
        except TypeError:  # a client_id that is no string (a list, say) names no socket
            sock = None
        return [sock] if sock is not None else []

    def send_json(self, event: str, data: dict[str, Any], sid: Any) -> None:
        """server.send_json: ``{"type": event, "data": data}`` as text (aiohttp's
        ws.send_json is json.dumps)."""
        message = json.dumps({"type": event, "data": data})
        for sock in self._targets(sid):
            sock.outbox.put(message)

    def send_bytes(self, event: int, payload: bytes, sid: Any) -> None:
        """server.send_bytes + encode_bytes: the event type as a big-endian uint32, then the
        payload, as one binary frame."""
        message = struct.pack(">I", event) + payload
        for sock in self._targets(sid):
            sock.outbox.put(message)

    def queue_status(self) -> dict[str, Any]:
        """server.get_queue_info."""
        return {"exec_info": {"queue_remaining": self.tasks_remaining()}}

    def _queue_updated(self) -> None:
        """server.queue_updated, called by PromptQueue.put, get, task_done, wipe_queue and
        delete_queue_item: ``status`` without sid, to every socket."""
        self.send_json("status", {"status": self.queue_status()}, None)

    def _message(self, run: Run, event: str, data: dict[str, Any], broadcast: bool) -> None:
        """PromptExecutor.add_message: a status message of the history entry (with its
        timestamp), also sent to the prompt's socket, or to every socket when it has no
        client_id and ``broadcast`` (only execution_interrupted is)."""
        data = {**data, "timestamp": _now_ms()}
        run.messages.append([event, data])
        if self.client_id is not None or broadcast:
            self.send_json(event, data, self.client_id)

    def _progress_state(self, run: Run, node_id: str, state: str, value: float,
                        total: float) -> None:
        """ProgressRegistry.start_progress/update_progress/finish_progress ->
        WebUIProgressHandler._send_progress_state: every node not pending, to the prompt's
        socket (to every socket without a client_id)."""
        run.progress[node_id] = {"value": value, "max": total, "state": state}
        prompt_id = run.job.prompt_id
        nodes = {nid: {**entry, "node_id": nid, "prompt_id": prompt_id, "display_node_id": nid,
                       "parent_node_id": None, "real_node_id": nid}
                 for nid, entry in run.progress.items()}
        self.send_json("progress_state", {"prompt_id": prompt_id, "nodes": nodes}, self.client_id)

    def _sampler_step(self, run: Run, node_id: str, value: int, total: int,
                      preview: Image.Image | None) -> None:
        """One sampler step: main.hijack_progress's hook (comfy.utils.ProgressBar
        .update_absolute, called by latent_preview.prepare_callback's callback with step + 1).
        An interrupt is noticed here, before anything is sent. Then the registry's update
        (progress_state, and a type 4 preview for a socket that declared
        supports_preview_metadata), ``progress``, and a type 1 preview for the others."""
        if run.interrupted:
            raise NodeInterrupted()
        prompt_id = run.job.prompt_id
        sock = self._targets(self.client_id) if self.client_id is not None else []
        metadata = bool(sock) and sock[0].feature_flags.get("supports_preview_metadata") is True
        self._progress_state(run, node_id, "running", value, total)
        image = b""
        if preview is not None:
            # server.send_image / send_image_with_metadata: ImageOps.contain to the preview
            # size, saved with quality=95, compress_level=1.
            picture = ImageOps.contain(preview, (self.preview_size, self.preview_size),
                                       Image.Resampling.BILINEAR)
            buf = io.BytesIO()
            picture.save(buf, format=self.preview_format, quality=95, compress_level=1)
            image = buf.getvalue()
        if image and metadata:
            meta = json.dumps({"node_id": node_id, "prompt_id": prompt_id,
                               "display_node_id": node_id, "parent_node_id": None,
                               "real_node_id": node_id,
                               "image_type": f"image/{self.preview_format.lower()}"}).encode()
            self.send_bytes(PREVIEW_IMAGE_WITH_METADATA,
                            struct.pack(">I", len(meta)) + meta + image, self.client_id)
        self.send_json("progress", {"value": value, "max": total, "prompt_id": prompt_id,
                                    "node": node_id}, self.client_id)
        if image and not metadata:
            self.send_bytes(PREVIEW_IMAGE,
                            struct.pack(">I", IMAGE_FORMATS[self.preview_format]) + image,
                            self.client_id)

    # -- files --

    def input_choices(self) -> list[str]:
        """LoadImage's list (v0.3.64 nodes.LoadImage.INPUT_TYPES): the files at the top of the
        input folder whose extension guesses an image/* type
        (folder_paths.filter_files_content_types), sorted."""
        return sorted(name for (kind, sub, name) in self.files
                      if kind == "input" and not sub
                      and (mimetypes.guess_type(name, strict=False)[0] or "").startswith("image/"))

    def input_files(self) -> list[str]:
        """LoadImageMask's list (v0.3.64 nodes.LoadImageMask.INPUT_TYPES): every file at the
        top of the input folder, sorted."""
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
               overwrite: Any) -> str | None:
        """Store an upload as v0.3.64 server.image_upload does and return the name it answers
        (None: the path leaves the folder, a 400 there).

        - The path is ``join(upload_dir, normpath(subfolder), filename)``, made absolute; it
          must stay inside the folder (``os.path.commonpath``), so "a/../b" is fine.
        - ``overwrite`` exactly "true" or "1": the file is written over, under its own name.
        - Otherwise, while a file of that name exists: if its bytes are the same (a hash
          compare) the upload is not stored again and that name is answered; else the name
          becomes ``f"{root} ({i}){ext}"`` with ``root, ext = os.path.splitext(filename)``,
          for i = 1, 2, ... ("a.png" -> "a (1).png", "a.tar.gz" -> "a.tar (1).gz").
        - Any bytes are stored; nothing checks that they are an image.
        """
        root = f"/{kind}"
        folder = posixpath.join(root, posixpath.normpath(subfolder))
        filepath = posixpath.abspath(posixpath.join(folder, filename))
        if posixpath.commonpath((root, filepath)) != root:
            return None

        def key(path: str) -> tuple[str, str, str]:
            rel = posixpath.relpath(posixpath.normpath(path), root)
            sub, _, name = rel.rpartition("/")
            return kind, sub, name

        with self.lock:
            name_root, ext = posixpath.splitext(filename)
            if overwrite not in ("true", "1"):
                i = 1
                while key(filepath) in self.files:
                    if self.files[key(filepath)] == data:
                        return filename
                    filename = f"{name_root} ({i}){ext}"
                    filepath = posixpath.join(folder, filename)
                    i += 1
            self.files[key(filepath)] = data
            return filename

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
            # v0.3.64 accepts any client prompt_id (str() of it); later versions (server.py at
            # Comfy-Org/ComfyUI 5e14d797) demand a canonical UUID and refuse a duplicate (409).
            prompt_id = str(body.get("prompt_id", uuid.uuid4()))
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
            # Not in v0.3.64; later versions add it (server.py at Comfy-Org/ComfyUI 5e14d797).
            extra_data["create_time"] = _now_ms()
            never = any(NEVER_FINISH in text for text in _positive_texts(prompt))
            # PromptQueue.put: heapq.heappush, queue_updated; the idle worker takes it at once.
            heapq.heappush(self.pending,
                           Job(number, prompt_id, prompt, extra_data, outputs, never))
            self._queue_updated()
            self._start_next()
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

    def _start_next(self) -> None:
        """main.prompt_worker + PromptQueue.get: an idle worker pops the lowest queue item
        (queue_updated) and starts it: its nodes run up to the KSampler's start."""
        if self.running is None and self.pending:
            job = self.running = heapq.heappop(self.pending)
            job.steps = 0
            self._queue_updated()
            job.run = Run(job)
            job.execution = self._execute(job.run)
            self._advance(job)

    def _advance(self, job: Job) -> None:
        """Run JOB's execution up to its next pause (or its end)."""
        if job.execution is not None:
            try:
                next(job.execution)
            except StopIteration:
                job.execution = None

    def _finish(self, interrupted: bool = False) -> None:
        """The running prompt's last step: the rest of its nodes at once (an interrupt stops
        them at the next check), the message that ends it (PromptExecutor.execute_async), then
        PromptQueue.task_done (its history entry, queue_updated), main.prompt_worker's
        ``executing`` ``{"node": None}``, and the next prompt."""
        job = self.running
        assert job is not None and job.run is not None
        run = job.run
        run.interrupted = run.interrupted or interrupted
        while job.execution is not None:
            self._advance(job)
        if run.outcome is None:
            self._message(run, "execution_success", {"prompt_id": job.prompt_id}, False)
        else:
            self._message(run, *run.outcome)
        self.last_node_id = None
        meta = {nid: {"node_id": nid, "display_node": nid, "parent_node": None,
                      "real_node_id": nid} for nid in run.ui}
        success = run.outcome is None
        self.history[job.prompt_id] = {
            "prompt": job.queue_item(),
            "outputs": run.ui,
            "status": {"status_str": "success" if success else "error",
                       "completed": success, "messages": run.messages},
            "meta": meta,
        }
        self.running = None
        self._queue_updated()
        if self.client_id is not None:
            self.send_json("executing", {"node": None, "prompt_id": job.prompt_id},
                           self.client_id)
        self._start_next()

    def poll(self, prompt_id: str) -> dict[str, Any]:
        """GET /history/<id>: one step of the worker, then PromptQueue.get_history(prompt_id):
        ``{prompt_id: entry}`` once finished, ``{}`` otherwise (pending, running or unknown)."""
        with self.lock:
            job = self.running
            if job is not None and not job.never_finish:
                job.steps += 1
                if job.steps > self.polls_before_done:
                    self._finish()
                else:
                    self._advance(job)
            if prompt_id in self.history:
                return {prompt_id: copy.deepcopy(self.history[prompt_id])}
            return {}

    def interrupt(self, prompt_id: Any) -> None:
        """v0.3.64 server.post_interrupt: a truthy prompt_id interrupts only if it is the
        running prompt's (``item[1]`` of get_current_queue()[0]); none interrupts whatever
        runs. The flag (model_management.interrupt_current_processing) is reset when the next
        prompt starts (PromptExecutor.execute_async), so with nothing running it is lost."""
        with self.lock:
            job = self.running
            if job is None:
                return
            if not prompt_id or prompt_id == job.prompt_id:
                self._finish(interrupted=True)

    def drop_pending(self, clear: bool, delete: Iterable[Any]) -> None:
        """v0.3.64 server.post_queue: ``clear`` -> PromptQueue.wipe_queue, then for each id in
        ``delete`` -> delete_queue_item(lambda a: a[1] == id): the first pending item with that
        id is popped and the heap re-heapified. The running prompt is not in the queue, so
        neither touches it; an unknown id is ignored."""
        with self.lock:
            if clear:
                self.pending = []
                self._queue_updated()
            for prompt_id in delete:
                for x, job in enumerate(self.pending):
                    if job.prompt_id == prompt_id:
                        if len(self.pending) == 1:  # wipe_queue, with its own queue_updated
                            self.pending = []
                            self._queue_updated()
                        else:
                            self.pending.pop(x)
                            heapq.heapify(self.pending)
                        self._queue_updated()
                        break

    def queue_info(self) -> dict[str, list[list[Any]]]:
        """v0.3.64 server.get_queue: get_current_queue_volatile() -> running items, and the
        pending heap as its list stands (heap order, not sorted)."""
        with self.lock:
            running = [self.running.queue_item()] if self.running else []
            return {"queue_running": running,
                    "queue_pending": [j.queue_item() for j in self.pending]}

    def tasks_remaining(self) -> int:
        """PromptQueue.get_tasks_remaining, for GET /prompt and the websocket status."""
        with self.lock:
            return len(self.pending) + (1 if self.running else 0)

    def _execute(self, run: Run) -> Generator[None, None, None]:
        """PromptExecutor.execute_async, paused where the fake's clock says (see _ksampler): the
        server's client_id becomes the prompt's, ``execution_start`` and ``execution_cached``
        go out, then the outputs' nodes run. A failure or an interrupt is kept in
        ``run.outcome`` for _finish to report."""
        job = run.job
        self.client_id = job.extra_data.get("client_id")
        self._message(run, "execution_start", {"prompt_id": job.prompt_id}, False)
        self._message(run, "execution_cached", {"nodes": [], "prompt_id": job.prompt_id}, False)
        try:
            for output in job.outputs_to_execute:
                yield from self._evaluate(run, output)
        except NodeInterrupted:
            # handle_execution_error: add_message(..., broadcast=True)
            node_id = run.failed_node
            run.outcome = ("execution_interrupted", {
                "prompt_id": job.prompt_id, "node_id": node_id,
                "node_type": job.prompt[node_id]["class_type"],
                "executed": list(run.executed)}, True)
        except NodeFailure as ex:
            node_id = run.failed_node
            run.outcome = ("execution_error", {
                "prompt_id": job.prompt_id, "node_id": node_id,
                "node_type": job.prompt[node_id]["class_type"], "executed": list(run.executed),
                "exception_message": f"{ex}\n{ex.tips}", "exception_type": ex.exception_type,
                "traceback": ex.frames,
                "current_inputs": _formatted_inputs(job.prompt[node_id]["inputs"]),
                "current_outputs": []}, False)

    def _evaluate(self, run: Run, node_id: str) -> Generator[None, None, tuple[Any, ...]]:
        """Run a node after the nodes it links to, once per run (a generator: the KSampler
        pauses in it).

        Inputs are passed as v0.3.64 execution.get_input_data passes them: a literal under a
        name the node does not declare is dropped (validate_inputs never looked at it), but a
        LINK under such a name is still resolved (ExecutionList.add_node links every linked
        input) and handed to the node's function, which then fails with a TypeError.

        The node's messages are execution.execute's: progress_state (start_progress), then
        ``executing`` (with a client_id; it becomes server.last_node_id), then the interrupt
        check of nodes.before_node_execution; after it ran, ``executed`` if it has UI output,
        and progress_state (finish_progress)."""
        if node_id in run.results:
            return run.results[node_id]
        node = run.job.prompt[node_id]
        class_type = node["class_type"]
        spec = _object_info(self)[class_type]["input"]
        declared = {*spec.get("required", {}), *spec.get("optional", {})}
        args = {}
        for name, value in node["inputs"].items():
            if _is_link(value):
                args[name] = (yield from self._evaluate(run, str(value[0])))[value[1]]
            elif name in declared:
                args[name] = value
        prompt_id = run.job.prompt_id
        self._progress_state(run, node_id, "running", 0.0, 1.0)
        if self.client_id is not None:
            self.last_node_id = node_id
            self.send_json("executing", {"node": node_id, "display_node": node_id,
                                         "prompt_id": prompt_id}, self.client_id)
        try:
            if run.interrupted:
                raise NodeInterrupted()
            unexpected = sorted(set(args) - declared)
            if unexpected:
                raise NodeFailure(f"{class_type}.{FUNCTIONS[class_type]}() got an unexpected "
                                  f"keyword argument '{unexpected[0]}'", "TypeError")
            result = self.runners[class_type](run, node_id, args)
            if isinstance(result, types.GeneratorType):
                result = yield from result
        except (NodeFailure, NodeInterrupted):
            run.failed_node = node_id
            raise
        if node_id in run.ui and self.client_id is not None:
            self.send_json("executed", {"node": node_id, "display_node": node_id,
                                        "output": run.ui[node_id], "prompt_id": prompt_id},
                           self.client_id)
        run.results[node_id] = result
        total = run.progress[node_id]["max"]
        self._progress_state(run, node_id, "finished", total, total)
        run.executed.append(node_id)
        return result

    # -- the nodes --

    def _empty_latent(self, run: Run, node_id: str, a: dict[str, Any]) -> tuple[Any, ...]:
        return ({"width": _floor8(a["width"]), "height": _floor8(a["height"]),
                 "batch": a["batch_size"], "pixels": None},)

    def _load_image(self, run: Run, node_id: str, a: dict[str, Any]) -> tuple[Any, ...]:
        kind, sub, name = self._input_path(a["image"])
        try:
            with Image.open(io.BytesIO(self.files[(kind, sub, name)])) as img:
                picture = ImageOps.exif_transpose(img).convert("RGB")
        except Image.UnidentifiedImageError:
            # What nodes.LoadImage's Image.open raises for bytes that are no image.
            path = posixpath.join(f"/opt/ComfyUI/{kind}", sub, name)
            raise NodeFailure(f"cannot identify image file '{path}'", "PIL.UnidentifiedImageError",
                              frames=LOAD_IMAGE_TRACEBACK) from None
        return (picture, None)

    def _load_image_mask(self, run: Run, node_id: str, a: dict[str, Any]) -> tuple[Any, ...]:
        """v0.3.64 nodes.LoadImageMask.load_image: the image made RGBA unless it is, then the
        channel named by its first letter, 0..1 (here 0..255, an "L" picture); alpha inverted
        (transparent = 1, to be repainted); a channel the image lacks: a 64x64 zero mask."""
        kind, sub, name = self._input_path(a["image"])
        try:
            with Image.open(io.BytesIO(self.files[(kind, sub, name)])) as img:
                picture = ImageOps.exif_transpose(img)
                if picture.getbands() != ("R", "G", "B", "A"):
                    picture = picture.convert("RGBA")
                c = a["channel"][0].upper()
                if c not in picture.getbands():
                    return (Image.new("L", (64, 64), 0),)
                mask = picture.getchannel(c)
        except Image.UnidentifiedImageError:
            path = posixpath.join(f"/opt/ComfyUI/{kind}", sub, name)
            raise NodeFailure(f"cannot identify image file '{path}'", "PIL.UnidentifiedImageError",
                              frames=LOAD_IMAGE_TRACEBACK) from None
        return (ImageOps.invert(mask) if c == "A" else mask,)

    def _vae_encode(self, run: Run, node_id: str, a: dict[str, Any]) -> tuple[Any, ...]:
        pixels: Image.Image = a["pixels"]
        w, h = _floor8(pixels.width), _floor8(pixels.height)
        # The VAE works in 8-pixel cells; the real one crops the rest, centred.
        left, top = (pixels.width - w) // 2, (pixels.height - h) // 2
        return ({"width": w, "height": h, "batch": 1,
                 "pixels": pixels.crop((left, top, left + w, top + h))},)

    def _ksampler(self, run: Run, node_id: str,
                  a: dict[str, Any]) -> Generator[None, None, tuple[Any, ...]]:
        """The sampler, paced by the fake's clock: it pauses once when it has started, then
        samples ``steps`` in ``max(polls_before_done, 1)`` equal shares, pausing after each
        (the worker steps; _finish runs whatever is left at once). Each sampler step sends what
        main.hijack_progress sends (see _sampler_step), with a preview when previews are on:
        latent_preview's picture of the first image of the batch, here the gray (or, for
        img2img, the input) blended towards the final picture as the steps go."""
        if FAIL_EXECUTION in a["positive"]["text"]:
            raise NodeFailure(OOM_MESSAGE, OOM_TYPE, OOM_TIPS, OOM_TRACEBACK)
        latent = {**a["latent_image"], "seed": a["seed"], "denoise": a["denoise"]}
        steps = a["steps"]
        start = end = None
        if self.previews:
            # A Latent2RGB preview has the latent's size: an eighth of the image's.
            size = (max(1, latent["width"] // 8), max(1, latent["height"] // 8))
            start = Image.new("RGB", size, (128, 128, 128))
            end = _render(latent["seed"], *size)
            if latent["pixels"] is not None:
                start = latent["pixels"].resize(size, Image.Resampling.BILINEAR)
                end = Image.blend(start, end, max(0.0, min(1.0, latent["denoise"])))
        yield
        shares = max(self.polls_before_done, 1)
        for share in range(shares):
            for step in range(share * steps // shares + 1, (share + 1) * steps // shares + 1):
                preview = None
                if start is not None and end is not None:
                    preview = Image.blend(start, end, step / steps)
                self._sampler_step(run, node_id, step, steps, preview)
            yield
        return (latent,)

    def _vae_decode(self, run: Run, node_id: str, a: dict[str, Any]) -> tuple[Any, ...]:
        latent = a["samples"]
        images = []
        for i in range(latent["batch"]):
            img = _render(latent["seed"] + i, latent["width"], latent["height"])
            if latent["pixels"] is not None:
                img = Image.blend(latent["pixels"], img, max(0.0, min(1.0, latent["denoise"])))
                if latent.get("noise_mask") is not None:
                    # A noise mask (SetLatentNoiseMask): only the masked part is denoised
                    # (comfy/samplers.py KSamplerX0Inpaint keeps the rest of the latent).
                    mask = latent["noise_mask"].resize(img.size, Image.Resampling.BILINEAR)
                    img = Image.composite(img, latent["pixels"], mask)
            images.append(img)
        return (images,)

    def _preview_image(self, run: Run, node_id: str, a: dict[str, Any]) -> tuple[Any, ...]:
        """PreviewImage: SaveImage into the temp folder, prefix "ComfyUI_temp_xxxxx"."""
        return self._save_image(run, node_id, {"images": a["images"],
                                               "filename_prefix": "ComfyUI_temp_pvwxy"},
                                kind="temp")

    def _upscale(self, run: Run, node_id: str, a: dict[str, Any]) -> tuple[Any, ...]:
        name = a["upscale_model"]["upscale_model"]
        scale = int(name.split("x", 1)[0]) if name.split("x", 1)[0].isdigit() else 4
        return ([img.resize((img.width * scale, img.height * scale)) for img in a["image"]],)

    def _save_image(self, run: Run, node_id: str, a: dict[str, Any],
                    kind: str = "output") -> tuple[Any, ...]:
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
            self.files[(kind, subfolder, name)] = buf.getvalue()
            results.append({"filename": name, "subfolder": subfolder, "type": kind})
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
    previews: bool = False,
    preview_format: str = "JPEG",
    preview_size: int = 64,
    upscale_models: Iterable[str] = ("2x-demo.pth",),
) -> Flask:
    """A fake ComfyUI: the model files it lists, and how many worker steps (GET /history/<id>
    polls, of any id) a running prompt answers ``{}`` to before it finishes. ``previews``: send
    a preview frame with each sampler step (the real server does with ``--preview-method``),
    as ``preview_format`` ("JPEG", as v0.3.64 makes them, or "PNG") of at most
    ``preview_size`` pixels a side."""
    state = FakeComfyUI(checkpoints, loras, polls_before_done, previews, preview_format,
                        preview_size, upscale_models)
    app = Flask("fake_comfyui")
    app.config["REQUESTS"] = []
    app.config["COMFYUI"] = state

    def route(rule: str, methods: tuple[str, ...] = ("GET",),
              websocket: bool = False) -> Callable[[Callable], Callable]:
        """Register a view at RULE and at /api + RULE, as server.add_routes does."""
        def register(view: Callable) -> Callable:
            for prefix, name in (("", view.__name__), ("/api", "api_" + view.__name__)):
                app.add_url_rule(prefix + rule, name, view, methods=list(methods),
                                 websocket=websocket)
            return view
        return register

    def request_json() -> Any:
        """aiohttp's request.json(): json.loads of the body, whatever the Content-Type; an
        empty or broken body raises (json.JSONDecodeError is a ValueError)."""
        return json.loads(request.get_data(as_text=True))

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
                 "embeddings": [], "upscale_models": state.upscale_models}
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
            return json_response({"exec_info": {"queue_remaining": state.tasks_remaining()}})
        try:
            body = request_json()
        except ValueError:
            return Response(status=500)  # aiohttp's request.json() raised
        status, answer = state.queue(body if isinstance(body, dict) else {})
        return json_response(answer, status)

    @route("/history")
    def history_all() -> Response:
        """v0.3.64 server.get_history + PromptQueue.get_history(max_items, offset): oldest
        first; without offset, the last max_items; with one, max_items from there."""
        try:
            max_items = request.args.get("max_items")
            max_items = None if max_items is None else int(max_items)
            offset = int(request.args.get("offset", -1))
        except ValueError:
            return Response(status=500)
        with state.lock:
            items = list(state.history.items())
        if offset < 0 and max_items is not None:
            offset = len(items) - max_items
        out: dict[str, Any] = {}
        for i, (key, entry) in enumerate(items):
            if i >= offset:
                out[key] = entry
                if max_items is not None and len(out) >= max_items:
                    break
        return json_response(copy.deepcopy(out))

    @route("/history/<prompt_id>")
    def history(prompt_id: str) -> Response:
        return json_response(state.poll(prompt_id))

    @route("/queue", ("GET", "POST"))
    def queue() -> Response:
        if request.method == "GET":
            return json_response(state.queue_info())
        try:
            body = request_json()
        except ValueError:
            return Response(status=500)
        if not isinstance(body, dict):
            return Response(status=500)  # the real handler indexes it like a dict
        state.drop_pending(bool(body.get("clear")), body.get("delete") or [])
        return Response(status=200)

    @route("/interrupt", ("POST",))
    def interrupt() -> Response:
        """v0.3.64 server.post_interrupt: a body that is not JSON (none at all included) counts
        as {}; a JSON body that is not an object fails on .get (500)."""
        try:
            body = request_json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            return Response(status=500)
        state.interrupt(body.get("prompt_id"))
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
        """v0.3.64 server.image_upload: ``type`` None -> "input"; another value than input,
        temp or output leaves get_dir_by_type's folder unbound (a 500). No file or no file
        name is a 400, as is a path leaving the folder. The answer echoes ``subfolder`` as
        sent and ``name`` as stored (see FakeComfyUI.upload)."""
        kind = request.form.get("type")
        kind = "input" if kind is None else kind
        if kind not in UPLOAD_TYPES:
            return Response(status=500)
        image = request.files.get("image")
        if image is None or not image.filename:
            return Response(status=400)
        subfolder = request.form.get("subfolder", "")
        name = state.upload(image.read(), image.filename, subfolder, kind,
                            request.form.get("overwrite"))
        if name is None:
            return Response(status=400)
        return json_response({"name": name, "subfolder": subfolder, "type": kind})

    @route("/ws", websocket=True)
    def ws() -> Response:
        """v0.3.64 server.websocket_handler. Werkzeug matches a websocket rule only for an
        upgrade request (a plain GET is a 400, as aiohttp's ws.prepare answers one);
        simple_websocket completes the handshake on the dev server's socket. This thread then
        sends the socket's messages in order and reads the client's: a first
        ``feature_flags`` message is answered; the rest is ignored, as there."""
        conn = simple_websocket.Server(request.environ)
        sid = request.args.get("clientId", "") or uuid.uuid4().hex
        sock = state.connect(sid)
        first = True
        try:
            while True:
                try:
                    message = sock.outbox.get(timeout=0.01)
                    while True:
                        conn.send(message)
                        message = sock.outbox.get_nowait()
                except Empty:
                    pass
                incoming = conn.receive(timeout=0)
                if not isinstance(incoming, str):
                    continue  # nothing, or a binary message (ignored)
                try:
                    data = json.loads(incoming)
                    # A message that is no JSON object leaves the next one "first", as there
                    # (the handler's json.loads / data.get raise before first_message=False).
                    if first and data.get("type") == "feature_flags":
                        flags = data.get("data", {})
                        state.client_message(sock, flags if isinstance(flags, dict) else {})
                    first = False
                except (ValueError, AttributeError):
                    pass
        except (simple_websocket.ConnectionClosed, OSError):
            pass
        finally:
            state.disconnect(sid)
            with contextlib.suppress(simple_websocket.ConnectionClosed, OSError):
                conn.close()
        return _UpgradedResponse()

    return app


class _UpgradedResponse(Response):
    """What a websocket view returns once the connection is over: nothing more may be written
    on that socket, so this tells Werkzeug's dev server the connection is gone (a
    ConnectionError, which it drops quietly), as flask-sock does."""

    def __call__(self, environ: Any, start_response: Any) -> Any:
        raise ConnectionError("websocket closed")
