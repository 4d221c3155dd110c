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


class Result(_Model):
    """Where the images and their metadata are in a response (JMESPath expressions)."""

    images: str | None = Field(
        None, description="JMESPath to the image, or list of images (not used with bytes)"
    )
    encoding: Literal["base64", "data_url", "url", "bytes", "auto"] = Field(
        "base64",
        description="How each image is given: base64 text, a data: URL, a URL to fetch, "
        "the raw response body (bytes), or auto (detected per value)",
    )
    parseJson: list[str] = Field(
        [], description="Top-level response fields that hold JSON *text*; parsed before the "
        "paths below are applied (A1111's info is such a string)"
    )
    seeds: str | None = Field(None, description="JMESPath to the seed(s), one per image or one")
    infotexts: str | None = Field(None, description="JMESPath to per-image generation info text")
    info: str | None = Field(None, description="JMESPath to further info shown with the result")
    headers: dict[Literal["seeds", "infotexts", "info"], str] = Field(
        {}, description="Read seeds / infotexts / info from these response headers instead "
        "(for APIs whose body is the image itself)"
    )
    fetchFrom: list[str] = Field(
        [], description="Where image URLs may be fetched from besides the service's own "
        "address: host names (https on port 443) or origins (http(s)://host[:port]), e.g. "
        "the CDN an API hands out links to. Any other URL is refused"
    )

    @model_validator(mode="after")
    def _check(self) -> Result:
        if self.encoding != "bytes" and not self.images:
            raise ValueError("images (a JMESPath) is required unless encoding is bytes")
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


class BackendQueue(_Model):
    """A service's own queue, asked while a polled job is not done. The expressions read its
    answer; ``var('name')`` gives values saved by earlier steps (the job's id)."""

    endpoint: str
    running: str = Field(description="JMESPath; truthy while the service runs this job")
    waiting: str = Field(description="JMESPath; truthy while the job waits in its queue")
    ahead: str | None = Field(None, description="JMESPath; how many jobs are before it")


class Poll(_Model):
    """Repeat a GET until the job it watches is done (or failed, or too slow)."""

    until: str = Field(description="JMESPath; a truthy value means done")
    every: float = Field(1.0, gt=0, description="Seconds between polls")
    timeout: float = Field(600, gt=0, description="Seconds before giving up")
    failWhen: str | None = Field(None, description="JMESPath; a truthy value means the job failed")
    failMessage: str | None = Field(None, description="JMESPath to the failure's message")
    backendQueue: BackendQueue | None = Field(
        None, description="Where the job stands while it is not done: waiting in the "
        "service's own queue, running, or gone (removed there)")


class Request(_Model):
    """The fields of one HTTP request. Strings in path, query, headers and body may hold
    ``{placeholders}``: ``{client_id}``, variables saved by earlier steps, ``{item}``."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str | None = Field(None, pattern=r"^/")
    query: dict[str, Scalar] = {}
    headers: dict[str, str] = {}
    body: dict[str, Any] | None = Field(
        None, description="Fixed part of the body; parameters are written into it. A value "
        "{$file: name.json} is replaced by that file's JSON (relative to the definition)"
    )
    encoding: Literal["json", "multipart", "form"] = Field(
        "json", description="How the body is sent: JSON, multipart/form-data (images as file "
        "parts) or application/x-www-form-urlencoded"
    )
    timeout: float = Field(30, gt=0, description="Seconds to wait for the whole answer (a "
                           "total: a backend that trickles it is given up on at that time)")
    maxResponseMB: float | None = Field(
        None, gt=0, description="The largest answer read, in MB; a larger one is an error. "
        "Default: 200 for generation endpoints and their steps, 20 for the others"
    )


class Step(Request):
    """One request of a multi-step endpoint."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    path: str = Field(pattern=r"^/")
    save: dict[str, str] = Field({}, description="Variables for later steps: name -> JMESPath")
    set: dict[str, Any] = Field(
        {}, description="Written into this step's body after the parameters: path -> value "
        "(strings may hold placeholders)"
    )
    poll: Poll | None = None
    forEach: str | None = Field(
        None, description="Repeat the step for each item of this saved list ({item} in strings)"
    )


class Endpoint(Request):
    """A service endpoint: one request, or several ``steps`` (upload, submit, poll, fetch)."""

    steps: list[Step] | None = None
    result: Result | None = Field(None, description="Present on generation endpoints; read "
                                  "from the (last step's) response(s)")

    @model_validator(mode="after")
    def _check(self) -> Endpoint:
        if self.steps is None and self.path is None:
            raise ValueError("an endpoint needs a path, or steps")
        if self.steps is not None:
            own = self.model_fields_set & (set(Request.model_fields) - {"timeout"})
            if own:
                raise ValueError(f"an endpoint with steps has no {', '.join(sorted(own))} of "
                                 "its own (put them on its steps)")
            if not self.steps:
                raise ValueError("steps is empty")
        return self

    @property
    def step_list(self) -> list[Step]:
        """The steps; a one-request endpoint is a single step named 'request'."""
        if self.steps is not None:
            return self.steps
        fields = self.model_dump(include=set(Request.model_fields))
        return [Step(name="request", **fields)]


class OptionsSource(_Model):
    """One place a select's choices come from. Several are concatenated in order."""

    endpoint: str
    path: str = Field("", description="JMESPath to the list in the response; '' = the body")
    valueKey: str | None = None
    labelKey: str | None = None
    aliases: list[str] = Field(
        [], description="JMESPaths giving other keys each listed item is known by: a value "
        "saved earlier (a remembered form, reused parameters) that equals one of them selects "
        "the item, whose value may have changed since")


class Pattern(_Model):
    """A value matching a regular expression (a family of models: ``^gpt-image``)."""

    pattern: str

    @model_validator(mode="after")
    def _compiles(self) -> Pattern:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {self.pattern!r}: {exc}") from None
        return self


When = dict[str, Scalar | Pattern | list[Scalar | Pattern]]


class Option(_Model):
    value: Scalar
    label: str | None = None
    when: When | None = Field(None, description="Offered only while these parameters have "
                              "these values (a list: any of them)")


class DefaultFrom(_Model):
    """Where a select's current value is read (the server's own setting), shown selected."""

    endpoint: str
    path: str = Field(description="JMESPath to the value in the endpoint's answer")


class Append(_Model):
    """Instead of its own field, the value is formatted and appended to another parameter's
    value (a LoRA tag added to the prompt). Empty values append nothing."""

    to: str
    format: str = Field(description="Python format string; {value} and {other_key} allowed")


class IfEmpty(_Model):
    """Body edits applied when an optional parameter is left empty. Paths are targets."""

    set: dict[str, Any] = {}
    remove: list[str] = []


class Parameter(_Model):
    """One form field and where its value goes in the request."""

    key: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    label: str | None = None
    type: ParamType
    description: str = ""
    placeholder: str = ""
    maxLength: int | None = Field(
        None, ge=1, description="text/textarea: the most characters accepted (default 20000)")
    defaultValue: Any = None
    required: bool = False
    range: tuple[int | float, int | float] | None = Field(None, description="[min, max], inclusive")
    step: float | None = Field(None, gt=0)
    options: list[Option] | None = Field(None, description="Static choices of a select")
    optionsEndpoint: str | None = None
    optionsPath: str = ""
    optionsValueKey: str | None = None
    optionsLabelKey: str | None = None
    optionsAliases: list[str] = Field([], description="aliases of the optionsEndpoint source")
    defaultFrom: DefaultFrom | None = Field(
        None, description="select: take the selected value from the service (e.g. the model "
        "its settings load) instead of a fixed defaultValue")
    multiple: bool = Field(False, description="select only: several values, sent as a list")
    optionsFrom: list[OptionsSource] = Field(
        [], description="Several option sources, concatenated (the optionsEndpoint fields are "
        "shorthand for a single one)"
    )
    target: str | list[str] | None = Field(
        None, description="Path in the request body (default: the key), e.g. "
        "override_settings.sd_model_checkpoint or init_images[0]; a list writes the value to "
        "each path"
    )
    when: When | None = Field(
        None, description="Shown, checked and sent only while these parameters have these "
        "values (a list: any of them), e.g. {enable_hr: true}"
    )
    send: bool = Field(True, description="false: only used in other parameters' formats")
    appendTo: Append | None = None
    encode: Literal["base64", "data_url"] = Field(
        "base64", description="How an image upload is put into a JSON body"
    )
    group: str | None = None
    advanced: bool = False
    before: str | None = Field(None, description="In 'add': insert before this key")
    pickRandom: bool = Field(
        False, description="seed only: for -1, webui picks the random seed (for services that "
        "have no 'random' value of their own) and reports it"
    )
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

    @property
    def title(self) -> str:
        return self.label or self.key.replace("_", " ").capitalize()

    @property
    def sources(self) -> list[OptionsSource]:
        if self.optionsEndpoint:
            head = OptionsSource(
                endpoint=self.optionsEndpoint,
                path=self.optionsPath,
                valueKey=self.optionsValueKey,
                labelKey=self.optionsLabelKey,
                aliases=self.optionsAliases,
            )
            return [head, *self.optionsFrom]
        return list(self.optionsFrom)

    @property
    def targets(self) -> list[str]:
        """The paths the value is written to (none for a parameter that is not sent)."""
        if not self.send or self.appendTo:
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
    """How to follow a running generation: an endpoint polled while it runs, and where its
    answer holds the progress (JMESPath expressions, all optional but the endpoint)."""

    endpoint: str
    every: float = Field(1.0, gt=0, description="Seconds between progress requests")
    fraction: str | None = Field(None, description="0..1 done")
    eta: str | None = Field(None, description="Seconds left")
    step: str | None = None
    steps: str | None = None
    preview: str | None = Field(None, description="The in-progress image")
    previewEncoding: Literal["base64", "data_url", "auto"] = "base64"
    activeWhen: str | None = Field(
        None, description="JMESPath; answers where it is falsy describe no running job (e.g. "
        "what is left of the previous one) and are not shown")


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


class Identify(_Model):
    """A probe telling this service apart from others with the same API."""

    endpoint: str
    when: str = Field(description="JMESPath over the answer; truthy for this service only. "
                      "A 404 answer means another service")


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
    identify: Identify | None = Field(
        None, description="How to recognise this service among others answering alike (a "
        "fork on the same port)")
    capabilities: Annotated[list[Capability], Field(min_length=1)]


def error_loc(parts: tuple[Any, ...] | list[Any]) -> str:
    """A pydantic error location as a field path: ``capabilities[0].endpoints.x``."""
    out = ""
    for part in parts:
        if part in (_LIST, _SET):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
