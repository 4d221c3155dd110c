"""ComfyUI workflows as services: a workflow file becomes an ordinary definition file.

A workflow in the API format (``{"3": {"class_type", "inputs"}}``) or in the save format the
ComfyUI frontend writes (``nodes``, ``links``, ``widgets_values``) is read with the server's
node definitions (``GET /object_info``): the save format is converted to the API format (as
the frontend's "Export (API)" does), every node type is checked to exist on the server, and the
inputs people expect (or, with App mode metadata, exactly the ones the author chose) become
parameters bound to node inputs. The result is a YAML definition that ``extends`` the base
ComfyUI definition (its queue, polling, interrupt and progress), with the API-format workflow
beside it in a folder of its own: the user reads and edits both; nothing is hidden here.

Sources: the conversion follows the ComfyUI frontend (Comfy-Org/ComfyUI_frontend):
``src/utils/executionUtil.ts`` ``graphToPrompt`` (virtual nodes, mode 2 "never" and mode 4
"bypass" left out, a list value wrapped as ``{"__value__": [...]}``, a link to a removed node
dropped) and ``src/lib/litegraph/src/subgraph/ExecutableNodeDTO.ts`` ``resolveOutput`` (a
bypassed node passes on the input of the same slot if its type matches, else the first of the
type; a Reroute its input). A saved node's ``widgets_values`` are its widgets' values in input
order, with the unserialized "control after generate" value after a seed. App mode is
``extra.linearData = {inputs: [[node or widget id, widget name, {description?}], ...],
outputs: [node id, ...]}``
(src/platform/workflow/management/stores/comfyWorkflow.ts ``LinearData``; WidgetId is
``graphId:nodeId:name``, src/types/widgetId.ts). Node definitions: ComfyUI server.py
``node_info`` (``input``, ``input_order``, ``output``, ``output_node``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

# Node types that exist only in the frontend: never sent to the server.
VIRTUAL = {"Reroute", "PrimitiveNode", "Note", "MarkdownNote"}
MUTED, BYPASSED = 2, 4
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# The largest workflow file read (workflows with embedded notes can be big).
MAX_WORKFLOW_BYTES = 8 * 1024 * 1024

# Custom-node packages of some well-known node types, for the "not installed" message when the
# workflow itself does not say (a save-format node's properties.cnr_id / aux_id do).
KNOWN_PACKAGES = {
    "UltimateSDUpscale": "ComfyUI_UltimateSDUpscale",
    "FaceDetailer": "ComfyUI-Impact-Pack",
    "IPAdapterAdvanced": "ComfyUI_IPAdapter_plus",
    "IPAdapterUnifiedLoader": "ComfyUI_IPAdapter_plus",
    "ControlNetApplyAdvanced": "ComfyUI (core)",
    "CR Apply LoRA Stack": "ComfyUI_Comfyroll_CustomNodes",
    "CR LoRA Stack": "ComfyUI_Comfyroll_CustomNodes",
    "Efficient Loader": "efficiency-nodes-comfyui",
    "KSampler (Efficient)": "efficiency-nodes-comfyui",
    "VHS_VideoCombine": "ComfyUI-VideoHelperSuite",
    "easy fullLoader": "ComfyUI-Easy-Use",
    "Image Save": "was-node-suite-comfyui",
    "SDXLPromptStyler": "sdxl_prompt_styler",
}

# The inputs people expect on a form when the workflow has no App mode metadata, per node
# type, with the key, label, group and role of the first such input in the workflow.
EXPECTED: dict[str, list[str]] = {
    "CheckpointLoaderSimple": ["ckpt_name"],
    "LoraLoader": ["lora_name", "strength_model", "strength_clip"],
    "LoraLoaderModelOnly": ["lora_name", "strength_model"],
    "KSampler": ["seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"],
    "KSamplerAdvanced": ["noise_seed", "steps", "cfg", "sampler_name", "scheduler"],
    "EmptyLatentImage": ["width", "height", "batch_size"],
    "LoadImage": ["image"],
    "UpscaleModelLoader": ["model_name"],
}
# (key, label, group, role) by (node type, input); the prompts are told apart by the sampler.
KNOWN_INPUTS: dict[tuple[str, str], tuple[str, str, str, str | None]] = {
    ("CheckpointLoaderSimple", "ckpt_name"): ("ckpt_name", "Checkpoint", "Model", "model"),
    ("LoraLoader", "lora_name"): ("lora_name", "LoRA", "Model", None),
    ("LoraLoader", "strength_model"): ("strength_model", "LoRA model strength", "Model", None),
    ("LoraLoader", "strength_clip"): ("strength_clip", "LoRA CLIP strength", "Model", None),
    ("LoraLoaderModelOnly", "lora_name"): ("lora_name", "LoRA", "Model", None),
    ("LoraLoaderModelOnly", "strength_model"): ("strength_model", "LoRA strength", "Model",
                                                None),
    ("KSampler", "seed"): ("seed", "Seed", "Seed", "seed"),
    ("KSamplerAdvanced", "noise_seed"): ("seed", "Seed", "Seed", "seed"),
    ("KSampler", "steps"): ("steps", "Steps", "Sampling", None),
    ("KSamplerAdvanced", "steps"): ("steps", "Steps", "Sampling", None),
    ("KSampler", "cfg"): ("cfg", "CFG scale", "Sampling", None),
    ("KSamplerAdvanced", "cfg"): ("cfg", "CFG scale", "Sampling", None),
    ("KSampler", "sampler_name"): ("sampler_name", "Sampler", "Sampling", None),
    ("KSamplerAdvanced", "sampler_name"): ("sampler_name", "Sampler", "Sampling", None),
    ("KSampler", "scheduler"): ("scheduler", "Scheduler", "Sampling", None),
    ("KSamplerAdvanced", "scheduler"): ("scheduler", "Scheduler", "Sampling", None),
    ("KSampler", "denoise"): ("denoise", "Denoise", "Sampling", None),
    ("EmptyLatentImage", "width"): ("width", "Width", "Size", "width"),
    ("EmptyLatentImage", "height"): ("height", "Height", "Size", "height"),
    ("EmptyLatentImage", "batch_size"): ("batch_size", "Batch size", "Size", "batch"),
    ("LoadImage", "image"): ("image", "Image", "Prompt", "init_image"),
    ("UpscaleModelLoader", "model_name"): ("upscale_model", "Upscale model", "Upscale", None),
}
PROMPT = ("prompt", "Prompt", "Prompt", "prompt")
NEGATIVE = ("negative_prompt", "Negative prompt", "Prompt", "negative")
# Order of the form without App mode: by group, then by node.
GROUP_ORDER = ["Prompt", "Model", "Sampling", "Size", "Upscale", "Seed"]


class WorkflowError(Exception):
    """A workflow that cannot become a service; the message says why, for the user."""


# The service a workflow runs on unless told otherwise, and its endpoint that lists the node
# types (GET /object_info).
BASE_SERVICE = "comfyui"
NODE_TYPES_ENDPOINT = "getNodeTypes"

# What the command line, the home page and the catalog say (the words are ComfyUI's; the
# modules that show them stay free of service names).
CLI_HELP = "turn a ComfyUI workflow (.json, API or save format) into a service"
CLI_DESCRIPTION = ("Derive a definition file from a ComfyUI workflow and write it, with the "
                   "workflow, into the data folder's definitions: it appears on / at once. "
                   "Dropping the .json into that folder does the same.")
CLI_SERVICE_HELP = f"the ComfyUI service whose server runs it (default {BASE_SERVICE})"
CLI_URL_HELP = "ComfyUI's address (default: the service's)"
UPLOAD_EMPTY = "Choose a ComfyUI workflow file (.json) first."
UPLOAD_NOT_JSON = "This file is not JSON: a ComfyUI workflow is a .json file."
UPLOAD_NOT_WORKFLOW = ("This file is not a ComfyUI workflow (neither \"Export (API)\" nor the "
                       "editor's \"Save\" format).")


def no_base(service_id: str) -> str:
    """The message for a missing base service."""
    return f"no service {service_id!r} (a ComfyUI definition) to run the workflow on"


def not_imported(reason: str) -> str:
    """The line the home page shows for a dropped workflow that did not become a service."""
    return f"this ComfyUI workflow was not imported: {reason}"


def node_types_failure(service_id: str, detail: str | None) -> WorkflowError:
    """The node types could not be read: no endpoint (``detail`` None), or the request
    failed."""
    if detail is None:
        return WorkflowError(f"the service {service_id!r} has no {NODE_TYPES_ENDPOINT} endpoint "
                             "(ComfyUI's GET /object_info) to read the node types from")
    return WorkflowError(f"could not read ComfyUI's node types: {detail}")


# --- reading -------------------------------------------------------------------------------


def is_api_format(data: Any) -> bool:
    """``{"<id>": {"class_type": ..., "inputs": {...}}, ...}``."""
    return (isinstance(data, dict) and bool(data)
            and all(isinstance(n, dict) and "class_type" in n for n in data.values()))


def is_save_format(data: Any) -> bool:
    """The frontend's file: ``nodes`` (each with ``type``) and ``links``."""
    return (isinstance(data, dict) and isinstance(data.get("nodes"), list)
            and isinstance(data.get("links"), list)
            and all(isinstance(n, dict) and "type" in n for n in data["nodes"]))


def is_workflow(data: Any) -> bool:
    """A ComfyUI workflow in either format (a definition has an ``id``, a workflow never)."""
    return is_api_format(data) or is_save_format(data)


def read_workflow(path: Path) -> Any:
    """The JSON of a workflow file."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_WORKFLOW_BYTES + 1)
    except OSError as exc:
        raise WorkflowError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    if len(data) > MAX_WORKFLOW_BYTES:
        raise WorkflowError(f"{path.name} is larger than {MAX_WORKFLOW_BYTES // 2**20} MiB")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WorkflowError(f"{path.name} is not JSON: {exc}") from None


# --- node definitions ----------------------------------------------------------------------


def _declared(info: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, spec) of a node type's required then optional inputs, in the server's order."""
    out = []
    inputs = info.get("input") or {}
    order = info.get("input_order") or {}
    for section in ("required", "optional"):
        specs = inputs.get(section) or {}
        for name in order.get(section) or list(specs):
            if name in specs:
                out.append((name, specs[name]))
    return out


def _spec_type(spec: Any) -> Any:
    return spec[0] if isinstance(spec, list) and spec else spec


def _spec_extra(spec: Any) -> dict[str, Any]:
    if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1]
    return {}


def _is_widget(spec: Any) -> bool:
    """A value typed in on the node (not a socket): a combo list or a scalar type."""
    kind = _spec_type(spec)
    if _spec_extra(spec).get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _has_control(name: str, spec: Any) -> bool:
    """The frontend puts a "control after generate" value after this widget's own."""
    extra = _spec_extra(spec)
    if "control_after_generate" in extra:
        return bool(extra["control_after_generate"])
    return _spec_type(spec) == "INT" and name in ("seed", "noise_seed")


def _missing(missing: list[tuple[str, str, str, str | None]]) -> WorkflowError:
    """One message naming every node type the server lacks (and its package, if known)."""
    parts = []
    for node_id, kind, title, package in missing:
        package = package or KNOWN_PACKAGES.get(kind)
        where = f"node {node_id}" + (f" ({title!r})" if title and title != kind else "")
        parts.append(f"{where} is a {kind!r}" + (f" from the custom-node package {package!r}"
                                                  if package else ""))
    return WorkflowError("this ComfyUI does not have the node type"
                         f"{'s' if len(missing) > 1 else ''} the workflow needs: "
                         + "; ".join(parts) + ". Install the custom nodes, restart ComfyUI, "
                         "then import the workflow again.")


# --- save format -> API format ---------------------------------------------------------------


class Converted:
    """A workflow in the API format, with what the save format said besides."""

    def __init__(self, prompt: dict[str, Any]):
        self.prompt = prompt
        # (node, input) -> the "control after generate" choice (fixed, randomize, ...)
        self.controls: dict[tuple[str, str], str] = {}
        # A PrimitiveNode's id -> the (node, input) its value went into.
        self.primitives: dict[str, list[tuple[str, str]]] = {}
        self.linear: dict[str, Any] | None = None
        self.graph_id: str | None = None


def to_api(save: dict[str, Any], object_info: dict[str, Any]) -> Converted:
    """Convert the frontend's save format to the API format, as its "Export (API)" does."""
    nodes = {str(n.get("id")): n for n in save["nodes"] if isinstance(n, dict)}
    links: dict[Any, tuple[str, int, str, int, Any]] = {}
    for link in save["links"]:
        if isinstance(link, list) and len(link) >= 5:
            links[link[0]] = (str(link[1]), int(link[2]), str(link[3]), int(link[4]),
                              link[5] if len(link) > 5 else None)
        elif isinstance(link, dict):
            links[link.get("id")] = (str(link.get("origin_id")), int(link.get("origin_slot", 0)),
                                     str(link.get("target_id")), int(link.get("target_slot", 0)),
                                     link.get("type"))
    missing = []
    for node_id, node in nodes.items():
        kind = node.get("type")
        if kind in VIRTUAL or node.get("mode") == MUTED or kind in object_info:
            continue
        props = node.get("properties") or {}
        package = props.get("cnr_id") or props.get("aux_id")
        if kind in (sub.get("id") for sub in (save.get("definitions") or {}).get("subgraphs", [])
                    if isinstance(sub, dict)):
            raise WorkflowError(f"node {node_id} is a subgraph; subgraphs are not supported "
                                "yet: unpack it in ComfyUI (right click, Unpack Subgraph)")
        missing.append((node_id, str(kind), node.get("title"), package))
    if missing:
        raise _missing(missing)

    def source(link_id: Any, seen: frozenset[str] = frozenset()) -> Any:
        """What a link delivers: [node, slot], a PrimitiveNode's value, or None (muted)."""
        link = links.get(link_id)
        if link is None:
            return None
        origin_id, slot, _target, _tslot, kind = link
        origin = nodes.get(origin_id)
        if origin is None or origin_id in seen:
            return None
        seen = seen | {origin_id}
        mode = origin.get("mode")
        if origin.get("type") == "Reroute" or mode == BYPASSED:
            inputs = origin.get("inputs") or []
            index = slot if origin.get("type") == "Reroute" else _bypass_slot(inputs, slot, kind)
            pick = inputs[index] if 0 <= index < len(inputs) else None
            return source(pick.get("link"), seen) if pick else None
        if origin.get("type") == "PrimitiveNode":
            values = origin.get("widgets_values") or []
            control = values[1] if len(values) > 1 and isinstance(values[1], str) else None
            return ("value", values[0] if values else None, origin_id, control)
        if mode == MUTED:
            return None
        return [origin_id, slot]

    converted = Converted({})
    for node_id, node in sorted(nodes.items(), key=lambda kv: _order(kv[0])):
        kind = node.get("type")
        if kind in VIRTUAL or node.get("mode") in (MUTED, BYPASSED):
            continue
        info = object_info[kind]
        values = node.get("widgets_values")
        inputs: dict[str, Any] = {}
        index = 0
        for name, spec in _declared(info):
            if not _is_widget(spec):
                continue
            if isinstance(values, dict):
                if name in values:
                    inputs[name] = _literal(values[name])
                continue
            if isinstance(values, list) and index < len(values):
                inputs[name] = _literal(values[index])
            index += 1
            if _has_control(name, spec):
                if isinstance(values, list) and index < len(values) and isinstance(
                        values[index], str):
                    converted.controls[(node_id, name)] = values[index]
                index += 1
        for slot in node.get("inputs") or []:
            name, link_id = slot.get("name"), slot.get("link")
            if name is None:
                continue
            if (slot.get("widget") or {}).get("name"):
                name = slot["widget"]["name"]
            if link_id is None:
                continue
            delivered = source(link_id)
            if delivered is None:
                inputs.pop(name, None)
            elif isinstance(delivered, tuple):
                inputs[name] = _literal(delivered[1])
                converted.primitives.setdefault(delivered[2], []).append((node_id, name))
                if delivered[3]:
                    converted.controls[(node_id, name)] = delivered[3]
            else:
                inputs[name] = delivered
        title = node.get("title") or info.get("display_name") or kind
        converted.prompt[node_id] = {"inputs": inputs, "class_type": kind,
                                     "_meta": {"title": title}}
    # As in graphToPrompt, an input whose source was muted is left out: ComfyUI then names the
    # required input that is missing when the prompt is queued.
    extra = save.get("extra") if isinstance(save.get("extra"), dict) else {}
    if isinstance(extra.get("linearData"), dict):
        converted.linear = extra["linearData"]
    converted.graph_id = save.get("id") if isinstance(save.get("id"), str) else None
    return converted


def _literal(value: Any) -> Any:
    """A widget's value as graphToPrompt sends it: a list is wrapped (a bare list would be a
    link), ComfyUI unwraps it."""
    return {"__value__": value} if isinstance(value, list) else value


def _bypass_slot(inputs: list[dict[str, Any]], slot: int, kind: Any) -> int:
    """The input a bypassed node passes to its output ``slot`` (of type ``kind``): the same
    slot if its type matches, else the first input of that type; -1 if none does
    (ExecutableNodeDTO #getBypassSlotIndex)."""
    if kind in (None, "*", ""):
        return slot if len(inputs) > slot else 0
    if slot < len(inputs) and inputs[slot].get("type") in (kind, "*"):
        return slot
    return next((i for i, slot_ in enumerate(inputs) if slot_.get("type") == kind), -1)


def _order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


def check_api(prompt: dict[str, Any], object_info: dict[str, Any]) -> None:
    """Every node's type must exist on the server."""
    missing = [(node_id, str(node.get("class_type")), (node.get("_meta") or {}).get("title"),
                None)
               for node_id, node in prompt.items() if node.get("class_type") not in object_info]
    if missing:
        raise _missing(missing)


# --- parameters ----------------------------------------------------------------------------


def _is_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int))


def _upstream(prompt: dict[str, Any], start: Any) -> list[str]:
    """The nodes a link leads back to, nearest first."""
    found, todo, seen = [], [start], set()
    while todo:
        link = todo.pop(0)
        if not _is_link(link) or link[0] in seen or link[0] not in prompt:
            continue
        seen.add(link[0])
        found.append(link[0])
        todo.extend(v for v in prompt[link[0]]["inputs"].values() if _is_link(v))
    return found


def _prompt_sides(prompt: dict[str, Any]) -> dict[str, str]:
    """Text encoder node -> "positive" or "negative", by the sampler input it feeds."""
    sides: dict[str, str] = {}
    samplers = [n for _, n in sorted(prompt.items(), key=lambda kv: _order(kv[0]))
                if _is_link(n["inputs"].get("positive")) and _is_link(n["inputs"].get("negative"))]
    for sampler in samplers:
        for side in ("positive", "negative"):
            for node_id in _upstream(prompt, sampler["inputs"][side]):
                if "text" in prompt[node_id]["inputs"] and isinstance(
                        prompt[node_id]["inputs"]["text"], str):
                    sides.setdefault(node_id, side)
    return sides


def _spec_of(object_info: dict[str, Any], kind: str, name: str) -> Any:
    return dict(_declared(object_info.get(kind) or {})).get(name)


def _key_safe(text: str) -> str:
    key = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_") or "x"
    return key if re.match(r"[A-Za-z_]", key) else "_" + key


def _node_part(node_id: str) -> str:
    """A node id as part of a step or variable name."""
    return re.sub(r"[^A-Za-z0-9_]", "_", node_id)


def _ident(name: str) -> str:
    """A name in a JMESPath: quoted unless it is a plain identifier."""
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else json.dumps(name)


def _pretty(name: str) -> str:
    return name.replace("_", " ").strip().capitalize() or name


class _Builder:
    """Builds the parameters one (node, input) at a time; keys and roles stay unique."""

    def __init__(self, converted: Converted, object_info: dict[str, Any]):
        self.converted = converted
        self.prompt = converted.prompt
        self.object_info = object_info
        self.sides = _prompt_sides(self.prompt)
        self.keys: set[str] = set()
        self.roles: set[str] = set()
        self.params: list[dict[str, Any]] = []
        self.images: list[str] = []  # LoadImage-like nodes, uploaded before the submit
        self.endpoints: dict[str, Any] = {}  # the option lists' endpoints (/object_info/X)
        titles = [self._title(n) for n in self.prompt]
        self.unique_titles = {t for t in titles if titles.count(t) == 1}

    def _title(self, node_id: str) -> str:
        node = self.prompt[node_id]
        return (node.get("_meta") or {}).get("title") or node["class_type"]

    def _where(self, node_id: str) -> str:
        title = self._title(node_id)
        return title if title in self.unique_titles else f"{title} #{node_id}"

    def known(self, node_id: str, name: str) -> tuple[str, str, str, str | None] | None:
        kind = self.prompt[node_id]["class_type"]
        if name == "text" and self.sides.get(node_id) == "positive":
            return PROMPT
        if name == "text" and self.sides.get(node_id) == "negative":
            return NEGATIVE
        return KNOWN_INPUTS.get((kind, name))

    def add(self, node_id: str, name: str, description: str | None = None,
            targets: list[tuple[str, str]] | None = None) -> dict[str, Any] | None:
        """The parameter for one node input (None if it is linked, not a value)."""
        node = self.prompt[node_id]
        value = node["inputs"].get(name)
        if _is_link(value):
            return None
        kind = node["class_type"]
        spec = _spec_of(self.object_info, kind, name)
        if spec is None:
            raise WorkflowError(f"node {node_id} ({kind}) has no input {name!r}")
        known = self.known(node_id, name)
        key, label, group, role = known or (
            _key_safe(name), _pretty(name), self._where(node_id), None)
        if key in self.keys:
            key = _key_safe(f"{key}_{node_id}")
            label = f"{label} ({self._where(node_id)})"
        if role in self.roles:
            role = None
        self.keys.add(key)
        if role:
            self.roles.add(role)
        targets = targets or [(node_id, name)]
        param: dict[str, Any] = {"key": key, "label": label}
        extra = _spec_extra(spec)
        spec_type = _spec_type(spec)
        if extra.get("image_upload"):
            param.update(type="image", required=True)
            step = f"upload_{_node_part(node_id)}"
            self.images.append(node_id)
            param["target"] = f"{step}:image"
        else:
            param.update(self._typed(kind, name, spec_type, extra, value, role, node_id))
            where = [f"submit:prompt.{n}.inputs.{i}" for n, i in targets]
            param["target"] = where[0] if len(where) == 1 else where
            if param["type"] in ("text", "textarea") and not param.get("required"):
                # A text cleared is empty, not the workflow's own text (an empty field is not
                # sent, which would leave the workflow's value in place).
                param["ifEmpty"] = {"set": {t: "" for t in where}}
        if role and param.get("type") != "seed":
            param["role"] = role
        param["group"] = group
        # The node's tooltip helps an input webui has no label for; a known one is clear.
        tip = description or (None if known else extra.get("tooltip"))
        if tip:
            param["description"] = str(tip)
        self.params.append(param)
        return param

    def _typed(self, kind: str, name: str, spec_type: Any, extra: dict[str, Any], value: Any,
               role: str | None, node_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if isinstance(spec_type, list) or spec_type == "COMBO":
            path = "required" if name in ((self.object_info[kind].get("input") or {})
                                          .get("required") or {}) else "optional"
            endpoint = f"nodeInfo{_key_safe(kind).replace('_', '')}"
            self.endpoints[endpoint] = {"path": f"/object_info/{kind}"}
            options = f"{_ident(kind)}.input.{path}.{_ident(name)}"
            out.update(type="select", required=True, optionsEndpoint=endpoint,
                       optionsPath=options + ("[0]" if isinstance(spec_type, list)
                                              else "[1].options"))
            if isinstance(value, str):
                out["defaultValue"] = value
            return out
        if spec_type == "INT" and (role == "seed" or _has_control(name, [spec_type, extra])):
            control = self.converted.controls.get((node_id, name), "randomize")
            lo, hi = extra.get("min", 0), extra.get("max", 0xFFFFFFFFFFFFFFFF)
            out.update(type="seed", range=[max(0, lo), hi])
            # ComfyUI's "fixed" keeps the workflow's seed; otherwise webui picks one (-1).
            out["defaultValue"] = value if control == "fixed" and isinstance(value, int) else -1
            return out
        if spec_type in ("INT", "FLOAT"):
            out["type"] = "integer" if spec_type == "INT" else "number"
            if "min" in extra and "max" in extra:
                out["range"] = [extra["min"], extra["max"]]
            step = extra.get("step")
            if step and (spec_type == "FLOAT" or step != 1):
                out["step"] = step
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out["defaultValue"] = int(value) if spec_type == "INT" else value
            return out
        if spec_type == "BOOLEAN":
            out["type"] = "boolean"
            if isinstance(value, bool):
                out["defaultValue"] = value
            return out
        out["type"] = "textarea" if extra.get("multiline") else "text"
        if isinstance(value, str) and value:
            out["defaultValue"] = value
        if role == "prompt":
            out["required"] = True
        return out



def _linear_inputs(converted: Converted) -> list[tuple[str, str, str | None]]:
    """App mode's chosen inputs as (node id, widget name, description), in its order."""
    linear = converted.linear or {}
    out = []
    for entry in linear.get("inputs") or []:
        if not isinstance(entry, list) or len(entry) < 2:
            continue
        ident, widget = entry[0], str(entry[1])
        config = entry[2] if len(entry) > 2 and isinstance(entry[2], dict) else {}
        if isinstance(ident, str) and ident.count(":") == 2:  # WidgetId graph:node:name
            graph, node, _name = ident.split(":")
            if converted.graph_id and graph != converted.graph_id:
                raise WorkflowError(f"App mode input {widget!r} is inside a subgraph; "
                                    "subgraphs are not supported yet")
            node_id = unquote(node)
        elif isinstance(ident, str) and ":" in ident:
            raise WorkflowError(f"App mode input {widget!r} ({ident}) is inside a subgraph; "
                                "subgraphs are not supported yet")
        else:
            node_id = str(ident)
        out.append((node_id, widget, config.get("description")))
    return out


def derive_parameters(converted: Converted, object_info: dict[str, Any]
                      ) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """The parameters, the image-input nodes (uploaded first) and the option endpoints."""
    builder = _Builder(converted, object_info)
    prompt = converted.prompt
    if converted.linear and converted.linear.get("inputs"):
        for node_id, widget, description in _linear_inputs(converted):
            if node_id in converted.primitives:
                targets = converted.primitives[node_id]
                builder.add(targets[0][0], targets[0][1], description, targets)
            elif node_id in prompt:
                if widget not in prompt[node_id]["inputs"]:
                    raise WorkflowError(f"App mode input {widget!r} of node {node_id} is not "
                                        "an input the workflow sends")
                builder.add(node_id, widget, description)
            else:
                raise WorkflowError(f"App mode input {widget!r} names node {node_id}, which "
                                    "the workflow does not run (missing, muted or bypassed)")
        return builder.params, builder.images, builder.endpoints
    wanted: list[tuple[int, tuple[int, str], str, str]] = []
    sides = builder.sides
    for node_id, node in prompt.items():
        names = list(EXPECTED.get(node["class_type"], []))
        if node_id in sides:
            names.insert(0, "text")
        for name in names:
            if name not in node["inputs"] or _is_link(node["inputs"][name]):
                continue
            known = builder.known(node_id, name)
            group = known[2] if known else "Other"
            rank = GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)
            # Within the prompt group: the prompt, the negative prompt, then the images.
            sub = {"positive": 0, "negative": 1}.get(sides.get(node_id, ""), 2)
            wanted.append((rank, (sub, ) + _order(node_id), node_id, name))
    for _rank, _sub, node_id, name in sorted(wanted, key=lambda w: (w[0], w[1])):
        builder.add(node_id, name)
    return builder.params, builder.images, builder.endpoints


def image_outputs(converted: Converted, object_info: dict[str, Any]) -> list[str]:
    """The nodes whose images are the result: App mode's outputs, else every output node
    that takes images (SaveImage, PreviewImage, custom ones)."""
    prompt = converted.prompt

    def takes_images(node_id: str) -> bool:
        info = object_info.get(prompt[node_id]["class_type"]) or {}
        return bool(info.get("output_node")) and any(
            _spec_type(spec) == "IMAGE" for _name, spec in _declared(info))

    chosen = [str(n) for n in (converted.linear or {}).get("outputs") or []]
    chosen = [n for n in chosen if n in prompt and takes_images(n)]
    outputs = chosen or [n for n in sorted(prompt, key=_order) if takes_images(n)]
    if not outputs:
        raise WorkflowError("the workflow has no node that saves or previews images "
                            "(SaveImage, PreviewImage)")
    return outputs


# --- the definition ------------------------------------------------------------------------


def slug(text: str) -> str:
    """A file name and id part from a workflow's name."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out[:48].strip("-") or "workflow"


def _base_generation(base: dict[str, Any]) -> dict[str, Any]:
    """The base definition's image generation capability."""
    caps = [c for c in base.get("capabilities") or []
            if isinstance(c, dict) and c.get("capability") == "image_generation"]
    return caps[0] if caps else {}


def _base_steps(base: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]],
                                               dict[str, Any]]:
    """The base definition's submit step, the steps after it, and its upload step."""
    endpoints = _base_generation(base).get("endpoints") or {}
    steps = ((endpoints.get("txt2img") or {}).get("steps")) or []
    submit = next((i for i, s in enumerate(steps)
                   if isinstance(s.get("body"), dict) and "prompt" in s["body"]), None)
    upload = next((s for s in ((endpoints.get("img2img") or {}).get("steps") or [])
                   if s.get("as") == "multipart"), None)
    if submit is None or upload is None:
        raise WorkflowError(f"the service {base.get('id')!r} is not a ComfyUI definition (its "
                            "txt2img has no step posting a prompt, or its img2img no upload)")
    return steps[submit], steps[submit + 1:], upload


def build_definition(converted: Converted, object_info: dict[str, Any], base: dict[str, Any],
                     *, service_id: str, name: str, folder: str, url: str,
                     source: str) -> dict[str, Any]:
    """The definition of a workflow service, extending ``base`` (a ComfyUI definition)."""
    params, images, endpoints = derive_parameters(converted, object_info)
    outputs = image_outputs(converted, object_info)
    submit, after, upload = _base_steps(base)
    mode = "img2img" if images else "txt2img"
    # The base's other modes (its own workflows) are not this service's.
    others = {m: None for m in (_base_generation(base).get("parameters") or {}) if m != mode}
    steps: list[dict[str, Any]] = []
    sets: dict[str, str] = {}
    for node_id in images:
        part = _node_part(node_id)
        steps.append({**upload, "name": f"upload_{part}", "save": {f"image_{part}": "name"}})
        sets[f"prompt.{node_id}.inputs.image"] = f"{{image_{part}}}"
    body = {**submit["body"], "prompt": {"$file": f"{folder}/workflow.json"}}
    new_submit = {k: v for k, v in submit.items() if k != "set"}
    new_submit.update(name="submit", body=body)
    if sets:
        new_submit["set"] = sets
    steps.append(new_submit)
    # Only the chosen output nodes' images are the result.
    picked = ", ".join(f"values(@)[0].outputs.{_ident(n)}.images" for n in outputs)
    for step in after:
        step = dict(step)
        if isinstance(step.get("save"), dict) and "files" in step["save"]:
            step["save"] = {**step["save"], "files": f"[{picked}][]"}
        steps.append(step)
    description = (f"The ComfyUI workflow {source}, imported by webui; the graph it runs is "
                   f"{folder}/workflow.json in the definitions folder.")
    all_endpoints: dict[str, Any] = {mode: {"steps": steps, "result": {"as": "bytes"}},
                                     **others}
    all_endpoints.update(endpoints)
    definition: dict[str, Any] = {
        "id": service_id,
        "name": name,
        "extends": base["id"],
        "description": description,
        "url": url,
    }
    # The base reads its parameters' values back from ComfyUI PNGs; those this form lacks go.
    read_back = ((base.get("images") or {}).get("prompt") or {})
    keys = {p["key"] for p in params}
    dropped = {k: None for k in read_back if k not in keys}
    if dropped:
        definition["images"] = {"prompt": dropped}
    return {
        **definition,
        "capabilities": [{
            "capability": "image_generation",
            "endpoints": all_endpoints,
            "parameters": {mode: params, **others},
        }],
    }


def convert(data: Any, object_info: dict[str, Any]) -> Converted:
    """Either format, as the API format, every node type checked against the server."""
    if is_save_format(data):
        return to_api(data, object_info)
    if is_api_format(data):
        check_api(data, object_info)
        prompt = {str(k): {**v, "inputs": dict(v.get("inputs") or {})} for k, v in data.items()}
        return Converted(prompt)
    raise WorkflowError("this is not a ComfyUI workflow: neither the API format "
                        "({\"<id>\": {\"class_type\", \"inputs\"}}) nor the save format "
                        "(nodes, links)")


class _Flow(dict):
    """A parameter: one ``{key: …, …}`` block, as the bundled definitions write them."""


class _Dumper(yaml.SafeDumper):
    """YAML with each parameter in flow style."""


_Dumper.add_representer(_Flow, lambda dumper, data: dumper.represent_mapping(
    "tag:yaml.org,2002:map", data.items(), flow_style=True))


def write_service(data: Any, object_info: dict[str, Any], base: dict[str, Any],
                  folder: Path, *, name: str, url: str, source: str,
                  original: Path | None = None) -> Path:
    """Write ``<slug>.yaml`` and ``<slug>/workflow.json`` (the API format) into ``folder``;
    ``original`` (the dropped file) is moved to ``<slug>/<its name>``. Returns the YAML."""
    converted = convert(data, object_info)
    base_id = str(base.get("id"))
    stem = slug(name)
    folder.mkdir(parents=True, exist_ok=True)
    existing = {p.stem for p in folder.glob("*.y*ml")} | {p.name for p in folder.iterdir()
                                                          if p.is_dir()}
    n = 1
    while (stem if n == 1 else f"{stem}-{n}") in existing:
        n += 1
    stem = stem if n == 1 else f"{stem}-{n}"
    definition = build_definition(converted, object_info, base, service_id=f"{base_id}-{stem}",
                                  name=name, folder=stem, url=url, source=source)
    # A JSON round trip: the base's steps share objects (YAML anchors), written out plainly.
    definition = json.loads(json.dumps(definition))
    for cap in definition["capabilities"]:
        for params in (cap.get("parameters") or {}).values():
            if params:
                params[:] = [_Flow(p) for p in params]
    header = (f"# {name}: a ComfyUI workflow as a service, written by webui from {source}.\n"
              f"# The graph webui submits is {stem}/workflow.json (API format); each parameter's\n"
              "# target is a node input in it. Edit either file: webui reloads them.\n")
    text = header + yaml.dump(definition, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                              width=96)
    # Everything is made before anything is written; the YAML last, so the catalog never sees
    # a definition without its workflow.
    sub = folder / stem
    sub.mkdir()
    (sub / "workflow.json").write_text(json.dumps(converted.prompt, indent=2) + "\n",
                                       encoding="utf-8")
    if original is not None:
        original.replace(sub / original.name)
    target = folder / f"{stem}.yaml"
    tmp = target.with_name("." + target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target
