"""The definition file's model: one pydantic class per object of the format.

Unknown fields are errors (a typo must not be silently ignored). Cross-references between
objects are checked by :mod:`webui.format.check`; this module only describes shapes.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

ParamType = Literal["text", "textarea", "integer", "number", "boolean", "select", "image", "seed"]


Scalar = str | int | float | bool


GENERATION_CAPABILITY = "image_generation"


HEALTH_CAPABILITY = "health"


# A seed of -1 asks for a random one; 2**32 - 1 is the largest seed torch generators accept.
DEFAULT_SEED_RANGE = (-1, 2**32 - 1)


class _Model(BaseModel):
    # Unknown fields are errors: a typo in a definition must not be silently ignored.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Argument(_Model):
    """A launch argument the service needs (shown as setup help when it is offline)."""

    flag: str
    description: str = ""
    required: bool = False


class Configuration(_Model):
    """How the service must be started for this UI to talk to it."""

    arguments: list[Argument] = []
    help: str = ""


class Authentication(_Model):
    """How requests authenticate. Secrets are named by environment variable, never written
    in the file; they are read when a request is made and never sent to the browser."""

    type: Literal["none", "basic", "bearer", "header"] = "none"
    usernameEnv: str | None = None
    passwordEnv: str | None = None
    tokenEnv: str | None = None
    header: str | None = Field(None, description="Header name for type 'header', e.g. x-api-key")
    required: bool = Field(
        False, description="A missing secret is a setup problem (true) or means 'no auth' (false)"
    )

    @model_validator(mode="after")
    def _check(self) -> Authentication:
        if self.type == "basic" and not (self.usernameEnv and self.passwordEnv):
            raise ValueError("basic authentication needs usernameEnv and passwordEnv")
        if self.type in ("bearer", "header") and not self.tokenEnv:
            raise ValueError(f"{self.type} authentication needs tokenEnv")
        if self.type == "header" and not self.header:
            raise ValueError("header authentication needs header (the header's name)")
        return self


# How an image travels as text or bytes: one vocabulary for results, previews and inputs.
ImageAs = Literal["base64", "data_url", "url", "bytes", "auto"]


class Result(_Model):
    """Where the images and their metadata are in the answer(s) (JMESPath expressions; the
    functions ``json(text)`` and ``header(name)`` read JSON text and response headers)."""

    images: str | None = Field(
        None, description="JMESPath to the image, or list of images (not used with bytes)"
    )
    as_: ImageAs = Field(
        "base64", alias="as",
        description="How each image is given: base64 text, a data: URL, a URL to fetch, "
        "the raw answer itself (bytes), or auto (decided per value)",
    )
    seeds: str | None = Field(None, description="JMESPath to the seed(s), one per image or one")
    infotexts: str | None = Field(None, description="JMESPath to per-image generation info text")
    info: str | None = Field(None, description="JMESPath to further info shown with the result")
    fetchFrom: list[str] = Field(
        [], description="Where image URLs may be fetched from besides the service's own "
        "address: host names (https on port 443) or origins (http(s)://host[:port]), e.g. "
        "the CDN an API hands out links to. Any other URL is refused"
    )

    @model_validator(mode="after")
    def _check(self) -> Result:
        if self.as_ != "bytes" and not self.images:
            raise ValueError("images (a JMESPath) is required unless as is bytes")
        for entry in self.fetchFrom:
            if "://" in entry:
                parts = urlsplit(entry)
                if (parts.scheme not in ("http", "https") or not parts.hostname
                        or parts.path not in ("", "/") or parts.query or parts.fragment
                        or "@" in parts.netloc):
                    raise ValueError(f"fetchFrom: {entry!r} is not an origin "
                                     "(http(s)://host[:port])")
            elif not _HOST_NAME.fullmatch(entry):
                raise ValueError(f"fetchFrom: {entry!r} is not a host name")
        return self


_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*"
                        r"[A-Za-z0-9])?)*")


class Source(_Model):
    """A value read from a helper endpoint's answer: ``path`` (JMESPath) applied to it."""

    endpoint: str
    path: str = Field(description="JMESPath into the endpoint's answer")


class Poll(_Model):
    """Repeat a GET until the job it watches is done (or failed, or too slow). The answer may
    be JSON, or not (an image once it is ready): ``header()`` and ``status()`` read it then."""

    until: str = Field(description="JMESPath; a truthy value means done")
    every: float = Field(1.0, gt=0, description="Seconds between polls")
    timeout: float = Field(600, gt=0, description="Seconds before giving up")
    failWhen: str | None = Field(
        None, description="JMESPath; a truthy value means the job failed, and a text value "
        "is the reason shown")
    backendQueue: Source | None = Field(
        None, description="The service's own queue, asked while the job is not done: path "
        "gives {running, waiting, ahead} (var('name') reads the job's saved values)")


Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "websocket"]


class Endpoint(_Model):
    """A request to the service; a generation endpoint may instead list ``steps``, each of
    them a request too (upload, submit, poll, fetch). Strings in path, query, headers and body
    may hold ``{placeholders}``: ``{client_id}``, values saved by earlier steps, ``{item}``."""

    name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="A step's name (steps only)")
    method: Method = "GET"
    path: str | None = Field(None, pattern=r"^/")
    query: dict[str, Scalar] = {}
    headers: dict[str, str] = {}
    body: dict[str, Any] | None = Field(
        None, description="Fixed part of the body; parameters are written into it. A value "
        "{$file: name.json} is replaced by that file's JSON (relative to the definition)"
    )
    as_: Literal["json", "multipart", "form"] = Field(
        "json", alias="as", description="How the body is sent: JSON, multipart/form-data "
        "(images as file parts) or application/x-www-form-urlencoded"
    )
    timeout: float = Field(30, gt=0, description="Seconds to wait for the whole answer (a "
                           "total: a backend that trickles it is given up on at that time); "
                           "for a websocket, for its handshake")
    maxResponseMB: float | None = Field(
        None, gt=0, description="The largest answer read, in MB; a larger one is an error. "
        "Default: 200 for generation endpoints and their steps, 20 for the others"
    )
    when: str | None = Field(
        None, description="Health endpoint only: JMESPath, truthy only on this service (tells "
        "it from others answering alike; a 404 means another service)")
    save: dict[str, str] = Field({}, description="Steps: values for later steps and calls: "
                                 "name -> JMESPath")
    set: dict[str, Any] = Field(
        {}, description="Steps: written into this step's body after the parameters: path -> "
        "value (strings may hold placeholders)"
    )
    poll: Poll | None = Field(None, description="Steps: repeat this GET until done")
    forEach: str | None = Field(
        None, description="Steps: repeat the step for each item of this saved list ({item})"
    )
    steps: list[Endpoint] | None = None
    result: Result | None = Field(None, description="Present on generation endpoints; read "
                                  "from the (last step's) response(s)")

    @model_validator(mode="after")
    def _check(self) -> Endpoint:
        if self.steps is None and self.path is None:
            raise ValueError("an endpoint needs a path, or steps")
        if self.steps is not None:
            own = self.model_fields_set & (_REQUEST_FIELDS | _STEP_FIELDS)
            if own:
                raise ValueError(f"an endpoint with steps has no {', '.join(sorted(own))} of "
                                 "its own (put them on its steps)")
            if not self.steps:
                raise ValueError("steps is empty")
            for i, step in enumerate(self.steps):
                if step.name is None:
                    raise ValueError(f"steps[{i}] needs a name")
                inner = step.model_fields_set & {"steps", "result", "when"}
                if inner:
                    raise ValueError(f"steps[{i}] is a step: it has no "
                                     f"{', '.join(sorted(inner))}")
        return self

    @property
    def step_fields(self) -> list[str]:
        """The fields only a step has that this request sets (an error on an endpoint)."""
        return sorted(self.model_fields_set & _STEP_FIELDS)

    @property
    def step_list(self) -> list[Endpoint]:
        """The steps; a one-request endpoint is a single step named 'request'."""
        if self.steps is not None:
            return self.steps
        return [self.model_copy(update={"name": "request", "result": None})]

    @property
    def encoding(self) -> str:
        return self.as_


_REQUEST_FIELDS = {"method", "path", "query", "headers", "body", "as_", "maxResponseMB"}
_STEP_FIELDS = {"name", "save", "set", "poll", "forEach"}
# Code that reads a step says Step; it is the same object.
Step = Endpoint
Request = Endpoint


class OptionsSource:
    """One place a select's choices come from (from a parameter's options… fields)."""

    __slots__ = ("aliases", "endpoint", "labelKey", "path", "valueKey")

    def __init__(self, endpoint: str, path: str = "", valueKey: str | None = None,
                 labelKey: str | None = None, aliases: list[str] | None = None):
        self.endpoint = endpoint
        self.path = path
        self.valueKey = valueKey
        self.labelKey = labelKey
        self.aliases = list(aliases or [])


# A value a condition wants: a scalar, or "/regex/" (a family of models: "/^gpt-image/").
When = dict[str, Scalar | list[Scalar]]


class Option(_Model):
    value: Scalar
    label: str | None = None
    when: When | None = Field(None, description="Offered only while these parameters have "
                              "these values (a list: any of them; \"/regex/\": a match)")


class Append(_Model):
    """Instead of its own field, the value is formatted and appended to another parameter's
    value (a LoRA tag added to the prompt). Empty values append nothing."""

    to: str
    format: str = Field(description="Python format string; {value} and {other_key} allowed")


class IfEmpty(_Model):
    """Body edits applied when an optional parameter is left empty. Paths are targets."""

    set: dict[str, Any] = {}
    remove: list[str] = []


# Which fields each parameter type takes besides the common ones: any other is a load error
# naming it (an 'as' on a text field, 'required' on a boolean, 'placeholder' on a number).
_COMMON = {"key", "label", "type", "description", "defaultValue", "target", "when",
           "together", "role", "group", "advanced", "before", "appendTo", "ifEmpty"}
_BY_TYPE = {
    "text": {"placeholder", "required", "range", "refuse"},
    "textarea": {"placeholder", "required", "range", "refuse"},
    "integer": {"required", "range", "step"},
    "number": {"required", "range", "step"},
    "seed": {"required", "range", "step"},
    "boolean": set(),
    "select": {"required", "options", "optionsEndpoint", "optionsPath", "optionsValueKey",
               "optionsLabelKey", "optionsAliases", "defaultFrom", "multiple", "weight",
               "refuse", "repeat", "chain"},
    "image": {"required", "as_", "maskTransparent"},
}
# The roles webui understands; a parameter without one gets it from its key or type.
ROLES = ("prompt", "negative", "seed", "width", "height", "batch", "batch_count", "init_image",
         "mask", "model")
_ROLE_OF_KEY = {"prompt": "prompt", "negative_prompt": "negative", "width": "width",
                "height": "height", "batch_size": "batch", "model": "model"}


class Parameter(_Model):
    """One form field and where its value goes in the request."""

    key: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    label: str | None = None
    type: ParamType
    description: str = ""
    placeholder: str = ""
    defaultValue: Any = None
    required: bool = False
    range: tuple[int | float, int | float] | None = Field(
        None, description="[min, max], inclusive; for text, its length (default [0, 20000])")
    step: float | None = Field(None, gt=0)
    options: list[Option] | None = Field(None, description="Static choices of a select")
    optionsEndpoint: str | list[str] | None = Field(
        None, description="Endpoint(s) listing the choices (several: concatenated)")
    optionsPath: str = ""
    optionsValueKey: str | None = None
    optionsLabelKey: str | None = None
    optionsAliases: list[str] = Field(
        [], description="JMESPaths giving other keys each listed item is known by: a value "
        "saved earlier that shares one selects the item, whose value may have changed since")
    defaultFrom: Source | None = Field(
        None, description="select: take the selected value from the service (e.g. the model "
        "its settings load) instead of a fixed defaultValue")
    multiple: bool = Field(
        False, description="select only: several values, sent as a list. Shown as a picker: "
        "the list is searched on the server as you type (label, value, aliases), the chosen "
        "values are chips")
    weight: str | None = Field(
        None, description="select: the key of a number parameter each chosen value gets a "
        "value of (a LoRA's weight), shown in its chip; the value is then a list of {value, "
        "weight}, and the number parameter's key in appendTo's format, or its targets inside "
        "the repeated object, take each value's weight")
    refuse: dict[str, str] = Field(
        {}, description="Values refused at the field: regular expression -> the message "
        "shown when a value (each chosen value of a select) holds a match, e.g. characters "
        "the service's syntax cannot carry")
    repeat: str | None = Field(
        None, description="select: a target naming an object of a file-loaded body (a "
        "workflow node), copied for each chosen value in its place (keys <key>-1, <key>-2, …, "
        "the last one keeps the key, so what referred to the object gets the last copy); this "
        "parameter's targets inside it, and its weight's, are written into each copy")
    chain: dict[str, Any] = Field(
        {}, description="With repeat: written into each copy but the first, path inside the "
        "copy -> value; {previous} is the key of the copy before (a link: "
        "[\"{previous}\", 0])")
    target: str | list[str] | None = Field(
        None, description="Where the value goes (default: the key): a path in the body "
        "(override_settings.sd_model_checkpoint, init_images[0]), query:NAME, path:NAME or "
        "header:NAME, each after 'step:' in a multi-step endpoint; a list writes it to each, "
        "[] nowhere (a value only used in other parameters' formats)"
    )
    when: When | None = Field(
        None, description="Shown, checked and sent only while these parameters have these "
        "values (a list: any of them; \"/regex/\": a match), e.g. {enable_hr: true}"
    )
    together: list[str] = Field(
        [], description="Parameters given with this one or not at all (a {w, h} object)")
    role: str | None = Field(
        None, description="What the value is to webui: prompt, negative, seed, width, height, "
        "batch (images made at once), batch_count (batches made one after another: the "
        "images asked for are batch x batch_count), init_image, mask (an image parameter: the "
        "form paints it over the init_image, see maskTransparent), model (the checkpoint: "
        "Compare offers each of its choices) (default: from the key or type). Number "
        "parameters with the roles width and height get a swap button and aspect presets in "
        "the form")
    appendTo: Append | None = None
    as_: Literal["base64", "data_url"] = Field(
        "base64", alias="as", description="image: how it is put into a JSON body")
    maskTransparent: bool = Field(
        False, description="image with the role mask (painted in the form's mask editor, "
        "over the mode's init_image, and sent as a PNG of that image's size): the area to "
        "repaint is sent fully transparent, the rest opaque black, instead of white on black")
    group: str | None = None
    advanced: bool = False
    before: str | None = Field(None, description="In 'add': insert before this key")
    ifEmpty: IfEmpty | None = Field(
        None, description="Edits of the request body when the value is empty (e.g. take a "
        "LoRA node out of a workflow)"
    )

    @model_validator(mode="before")
    @classmethod
    def _static_options(cls, data: Any) -> Any:
        # Static options may be written as plain values: [1, 2, 3] or ["a", "b"].
        if isinstance(data, dict) and isinstance(data.get("options"), list):
            data = dict(data)
            data["options"] = [
                o if isinstance(o, dict) else {"value": o} for o in data["options"]
            ]
        return data

    @model_validator(mode="after")
    def _fits_its_type(self) -> Parameter:
        wrong = sorted(self.model_fields_set - _COMMON - _BY_TYPE.get(self.type, set()))
        if wrong:
            names = ", ".join("as" if w == "as_" else w for w in wrong)
            article = "an" if self.type[0] in "aeiou" else "a"
            raise ValueError(f"{article} {self.type} parameter has no {names}")
        return self

    @property
    def title(self) -> str:
        return self.label or self.key.replace("_", " ").capitalize()

    @property
    def encode(self) -> str:
        return self.as_

    @property
    def kind(self) -> str | None:
        """The parameter's role: given, or from its key or type."""
        if self.role:
            return self.role
        if self.type == "seed":
            return "seed"
        if self.type == "image":
            return "init_image"
        return _ROLE_OF_KEY.get(self.key)

    @property
    def sources(self) -> list[OptionsSource]:
        endpoints = ([self.optionsEndpoint] if isinstance(self.optionsEndpoint, str)
                     else self.optionsEndpoint or [])
        return [OptionsSource(e, self.optionsPath, self.optionsValueKey, self.optionsLabelKey,
                              self.optionsAliases) for e in endpoints]

    @property
    def picker(self) -> bool:
        """Shown as a picker searched on the server, with chips, rather than a dropdown."""
        return self.type == "select" and (self.multiple or self.weight is not None)

    @property
    def targets(self) -> list[str]:
        """The places the value is written to (none for one that only appends)."""
        if self.appendTo:
            return []
        if isinstance(self.target, list):
            return self.target
        return [self.target or self.key]

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        if self.range:
            return self.range
        if self.type == "seed":
            return DEFAULT_SEED_RANGE
        return (None, None)

    @property
    def picks_seed(self) -> bool:
        """A seed whose range has no "random" value (it starts at 0 or more): for -1, webui
        picks the seed itself and reports it."""
        return self.type == "seed" and self.range is not None and self.range[0] >= 0


class ParameterSet(_Model):
    """A parameter set built from another one."""

    extends: str
    exclude: list[str] = []
    override: dict[str, dict[str, Any]] = {}
    add: list[Parameter] = []


# A set is a list, or a mapping that extends another set. The tags make pydantic report errors
# for the branch that was written, not for both.
_LIST, _SET = "_list_", "_set_"
ParameterSetSpec = Annotated[
    Annotated[list[Parameter], Tag(_LIST)] | Annotated[ParameterSet, Tag(_SET)],
    Discriminator(lambda v: _LIST if isinstance(v, list) else _SET),
]


class Progress(_Model):
    """How to follow a running generation: an endpoint polled while it runs (its path may use
    the job's saved values), or a websocket endpoint whose messages are read; and where each
    answer holds the progress (JMESPath expressions, all optional but the endpoint)."""

    endpoint: str
    every: float = Field(1.0, gt=0, description="Seconds between progress requests (polled)")
    when: str | None = Field(
        None, description="JMESPath; an answer (a message) where it is falsy is not about this "
        "job (what is left of the previous one, another client's) and is ignored")
    value: str | None = Field(
        None, description="JMESPath: the part done, 0..1, or a pair [done, total] (steps "
        "12 of 20; 30 of 100 for a percentage)")
    eta: str | None = Field(None, description="Seconds left")
    images: str | None = Field(
        None, description="JMESPath: which batch of the job's images is being made, [index, "
        "count] from 0 (A1111: [state.job_no, state.job_count]; a count that is a multiple of "
        "the batch count, as with A1111's hires passes, is scaled); the images Skip or "
        "Interrupt cut short are marked so")
    preview: str | None = Field(
        None, description="JMESPath to the in-progress image; a binary message is read as "
        "{binary: base64}, and bytes_after(binary, n) skips a header")
    as_: Literal["base64", "data_url", "auto"] = Field(
        "base64", alias="as", description="How the preview is given")


class Jobs(_Model):
    """How generations run as jobs on this service."""

    concurrency: int = Field(1, ge=1, le=64, description="Jobs one instance runs at once")
    progress: Progress | None = None
    interrupt: str | list[str] | None = Field(
        None, description="Endpoint(s) that stop this job, sent in order; they may use values "
        "saved by the job's steps ({prompt_id}), and are sent as soon as those exist")
    skip: str | list[str] | None = Field(
        None, description="Endpoint(s) that skip the current image of a batch")

    @property
    def interrupt_calls(self) -> list[str]:
        return _names(self.interrupt)

    @property
    def skip_calls(self) -> list[str]:
        return _names(self.skip)


def _names(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class Capability(_Model):
    capability: Literal["image_generation", "health"]
    endpoints: dict[str, Endpoint]
    parameters: dict[str, ParameterSetSpec] = {}
    jobs: Jobs | None = Field(None, description="image_generation only")
    styles: Source | None = Field(
        None, description="image_generation only: the service's own saved styles (prompt "
        "snippets), offered on its forms next to webui's: path gives a list of {name, "
        "prompt, negative}; {prompt} in a style's prompt stands for the user's")


class Definition(_Model):
    """One service definition file."""

    schema_: str | None = Field(None, alias="$schema")
    extends: str | None = Field(
        None, description="id of a definition this one builds on: its fields are merged in "
        "(null deletes), its parameter sets are available as '<id>:<set>'"
    )
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str
    description: str = ""
    url: str = Field(pattern=r"^https?://", description="Default base URL")
    docs: str | None = None
    authentication: Authentication = Authentication()
    configuration: Configuration = Configuration()
    errorMessage: str | None = Field(
        None, description="JMESPath to a readable message in the service's error bodies"
    )
    credentialsFailure: str | None = Field(
        None, description="JMESPath over an error answer (status() is its HTTP status): true "
        "when it means the credentials are wrong. Default: status 401 or 403"
    )
    capabilities: Annotated[list[Capability], Field(min_length=1)]
    images: dict[str, Literal["infotext"] | dict[str, str]] = Field(
        {}, description="What the images this service makes carry, so that PNG Info (and a "
        "file dropped on a form) recognises them and fills this service's forms: a PNG text "
        "chunk's keyword -> 'infotext' (A1111's parameters text, also read from a JPEG/WEBP "
        "EXIF UserComment), or, for a chunk holding JSON, parameter key -> JMESPath reading "
        "that parameter's value from it")


def error_loc(parts: tuple[Any, ...] | list[Any]) -> str:
    """A pydantic error location as a field path: ``capabilities[0].endpoints.x``."""
    out = ""
    for part in parts:
        if part in (_LIST, _SET):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# What the fields without a Field(description=…) above mean: for the reference and the JSON
# Schema editors read (one table rather than a Field() around every short field).
_MEANING = {
    Definition: {
        "schema_": "For editors (the JSON Schema); ignored by webui",
        "id": "The service's id: in URLs and in WEBUI_<ID>_… variables",
        "name": "Shown in the list of services and page titles",
        "description": "Shown under the name in the list of services",
        "docs": "Link to the service's API docs, shown on its page",
        "authentication": "How requests authenticate",
        "configuration": "How the service must be started (setup help while it is offline)",
        "capabilities": "A health check, and image generation",
    },
    Authentication: {
        "type": "none, HTTP Basic, a bearer token, or a token in a header of your choice",
        "usernameEnv": "basic: the variable holding the user name (WEBUI_<ID>_…)",
        "passwordEnv": "basic: the variable holding the password",
        "tokenEnv": "bearer/header: the variable holding the token",
    },
    Configuration: {
        "arguments": "Launch arguments the service needs",
        "help": "Setup help (`code` in backticks)",
    },
    Argument: {
        "flag": "The argument, e.g. --api",
        "description": "What it does",
        "required": "Without it webui cannot work with the service",
    },
    Capability: {
        "capability": "health (one endpoint, the status check) or image_generation",
        "endpoints": "The service's endpoints by name; a generation endpoint has a result "
                     "and a parameter set of its name",
        "parameters": "Parameter sets by generation endpoint: a list, or a set built on "
                      "another (ParameterSet)",
    },
    Endpoint: {
        "method": "HTTP method; websocket: a progress source that is listened to",
        "path": "Appended to the service's URL",
        "query": "Query parameters",
        "headers": "Request headers",
        "steps": "Several requests in order (upload, submit, poll, fetch), each an Endpoint",
    },
    Source: {"endpoint": "A helper endpoint (not a generation endpoint)"},
    Parameter: {
        "key": "The form field's name; also the default target",
        "label": "Shown (default: from the key)",
        "type": "text, textarea, integer, number, boolean, select, image or seed",
        "description": "Help under the field",
        "placeholder": "text/textarea: example text shown while empty",
        "defaultValue": "The value the form starts with (checked like a submitted one)",
        "required": "An empty value is refused",
        "step": "numbers: the value is min + n × step",
        "optionsPath": "JMESPath to the list in the endpoint's answer (default: the answer)",
        "optionsValueKey": "For a list of objects: the field that is the value",
        "optionsLabelKey": "The field shown (default: the value)",
        "appendTo": "Appended to a text parameter instead of sent on its own",
        "group": "The form section it is in",
        "advanced": "Folded away under More",
    },
    Option: {"value": "What is sent", "label": "What is shown (default: the value)"},
    Append: {"to": "The text parameter it is appended to"},
    IfEmpty: {"set": "Target -> value, written", "remove": "Targets removed"},
    ParameterSet: {
        "extends": "The set it starts from (a parent's is '<parent id>:<set>')",
        "exclude": "Keys left out",
        "override": "Key -> fields changed",
        "add": "Parameters added (at the end, or before another with 'before')",
    },
    Jobs: {"progress": "How to follow a running job"},
    Progress: {"endpoint": "The endpoint polled (or, a websocket, listened to)"},
}
for _cls, _fields in _MEANING.items():
    for _name, _text in _fields.items():
        _cls.model_fields[_name].description = _text
    _cls.model_rebuild(force=True)
Definition.model_rebuild(force=True)
