"""The definition format: a pydantic model of one service file, and its loader.

A file is parsed (YAML or JSON), validated field by field by the models below, then
*resolved*: parameter sets are composed (``extends``/``exclude``/``override``/``add``) and every
cross-reference is checked (options endpoints, ``appendTo`` keys, target collisions, JMESPath
expressions). Anything wrong is a :class:`DefinitionError` listing ``field.path: message``
lines, so a broken file is reported at load, never discovered while generating.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from . import expr
from .paths import PathError, Token, format_path, get_path, overlaps, parse_path

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

    @model_validator(mode="after")
    def _check(self) -> Result:
        if self.encoding != "bytes" and not self.images:
            raise ValueError("images (a JMESPath) is required unless encoding is bytes")
        return self


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
    timeout: float = Field(30, gt=0, description="Seconds to wait for the answer")


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


# ---------------------------------------------------------------------------------------------
# Resolved form: what the rest of the app uses.


@dataclass(frozen=True)
class Mode:
    """A generation mode (txt2img, img2img, …): its endpoint and its resolved parameters."""

    name: str
    endpoint: Endpoint
    parameters: list[Parameter]
    # The parameters in the order their conditions are decided (see condition_order).
    decided: tuple[Parameter, ...] = ()

    @property
    def label(self) -> str:
        return MODE_LABELS.get(self.name, self.name)

    def parameter(self, key: str) -> Parameter | None:
        return next((p for p in self.parameters if p.key == key), None)


MODE_LABELS = {"txt2img": "Text to image", "img2img": "Image to image"}


@dataclass(frozen=True)
class Target:
    """Where a value is written: a path in the body of one step of an endpoint."""

    step: int
    tokens: tuple[Token, ...]


@dataclass(frozen=True)
class ServiceDefinition:
    """A validated, fully resolved definition."""

    model: Definition
    source: Path | None
    modes: dict[str, Mode]
    endpoints: dict[str, Endpoint]
    health: Endpoint | None
    targets: dict[str, dict[str, list[Target]]] = field(default_factory=dict)
    # Per mode, per step: the fixed body with {$file: …} replaced by the file's JSON.
    bodies: dict[str, list[dict[str, Any] | None]] = field(default_factory=dict)
    dependencies: tuple[Path, ...] = ()
    jobs: Jobs = field(default_factory=lambda: Jobs())

    @property
    def id(self) -> str:
        return self.model.id


class DefinitionError(Exception):
    """A definition that cannot be used; ``problems`` are ``(field path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        self.dependencies: tuple[Path, ...] = ()
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.source}: {loc or '(file)'}: {msg}" for loc, msg in self.problems]


def _loc(parts: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in parts:
        if part in (_LIST, _SET):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---------------------------------------------------------------------------------------------
# Loading


def parse_text(text: str, source: str) -> Any:
    """Parse YAML (a superset of JSON) text; raise DefinitionError with the line on failure."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError(source, [(where, f"not valid YAML/JSON: {problem}")]) from None


FILE_KEY = "$file"
Lookup = Callable[[str], "tuple[dict[str, Any], Path] | None"]


def read_raw(path: Path) -> dict[str, Any]:
    """Parse a definition file; ``{$file: name}`` references become absolute paths."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(str(path), [("", f"cannot read file: {exc}")]) from None
    data = parse_text(text, str(path))
    if not isinstance(data, dict):
        raise DefinitionError(str(path), [("", "a definition must be a mapping (YAML object)")])
    return _absolutize(data, path.parent)


def _absolutize(node: Any, base: Path) -> Any:
    if isinstance(node, dict):
        if set(node) == {FILE_KEY} and isinstance(node[FILE_KEY], str):
            return {FILE_KEY: str((base / node[FILE_KEY]).resolve())}
        return {k: _absolutize(v, base) for k, v in node.items()}
    if isinstance(node, list):
        return [_absolutize(v, base) for v in node]
    return node


def load_file(path: Path, lookup: Lookup | None = None) -> ServiceDefinition:
    """Read, validate and resolve one definition file. ``lookup`` finds the raw data of a
    definition by id, for ``extends``."""
    data = read_raw(path)
    parents: list[Path] = []
    try:
        data = _apply_extends(data, str(path), lookup, parents, (path,))
        return load_data(data, str(path), path, tuple(parents))
    except DefinitionError as exc:
        exc.dependencies = (path, *parents)
        raise


def _apply_extends(
    data: dict[str, Any], source: str, lookup: Lookup | None, parents: list[Path],
    chain: tuple[Path, ...],
) -> dict[str, Any]:
    parent_id = data.get("extends")
    if parent_id is None:
        return data
    found = lookup(parent_id) if lookup and isinstance(parent_id, str) else None
    if found is None:
        raise DefinitionError(source, [("extends", f"no definition with id {parent_id!r} "
                                                   "(bundled, or in the same folder)")])
    if "id" not in data:
        raise DefinitionError(source, [("id", "a definition that extends another needs its "
                                              "own id")])
    parent, parent_path = found
    if parent_path in chain:
        raise DefinitionError(source, [("extends", "definitions extend each other in a loop")])
    parents.append(parent_path)
    parent = _apply_extends(parent, str(parent_path), lookup, parents, (*chain, parent_path))
    return inherit(data, parent, parent_id)


def inherit(child: dict[str, Any], parent: dict[str, Any], parent_id: str) -> dict[str, Any]:
    """Merge a child definition over its parent (JSON merge patch: mappings merge, null
    deletes, other values replace). Capabilities merge by their ``capability``; the parent's
    parameter sets stay available as ``<parent_id>:<name>``."""
    merged = _merge_patch({k: v for k, v in parent.items() if k != "$schema"},
                          {k: v for k, v in child.items() if k not in ("capabilities", "extends")})
    caps = [dict(c) for c in parent.get("capabilities") or [] if isinstance(c, dict)]
    for cap in caps:
        sets = cap.get("parameters") or {}
        library = {f"{parent_id}:{name}": _qualify(spec, parent_id)
                   for name, spec in sets.items() if ":" not in name}
        cap["parameters"] = {**sets, **library}
    for child_cap in child.get("capabilities") or []:
        kind = child_cap.get("capability") if isinstance(child_cap, dict) else None
        base = next((c for c in caps if c.get("capability") == kind), None)
        if base is None:
            caps.append(child_cap)
        else:
            caps[caps.index(base)] = _merge_patch(base, child_cap)
    merged["capabilities"] = caps
    return merged


def _qualify(spec: Any, parent_id: str) -> Any:
    # A library copy of a set built on another refers to the library copy of that one.
    if isinstance(spec, dict) and isinstance(spec.get("extends"), str) and ":" not in spec[
            "extends"]:
        return {**spec, "extends": f"{parent_id}:{spec['extends']}"}
    return spec


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict) or not isinstance(target, dict) or FILE_KEY in patch:
        return patch
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch(out.get(key), value)
    return out


def load_data(
    data: Any, source: str, path: Path | None = None, parents: tuple[Path, ...] = ()
) -> ServiceDefinition:
    """Validate and resolve already-parsed (and already inherited) definition data."""
    if not isinstance(data, dict):
        raise DefinitionError(source, [("", "a definition must be a mapping (YAML object)")])
    try:
        model = Definition.model_validate(data)
    except ValidationError as exc:
        problems = [(_loc(e["loc"]), e["msg"]) for e in exc.errors()]
        raise DefinitionError(source, problems) from None
    return _resolve(model, source, path, parents)


def _resolve(
    model: Definition, source: str, path: Path | None, parents: tuple[Path, ...]
) -> ServiceDefinition:
    problems: list[tuple[str, str]] = []
    files: list[Path] = []
    endpoints: dict[str, Endpoint] = {}
    endpoint_locs: dict[str, tuple[str, Endpoint]] = {}
    health: Endpoint | None = None
    raw_sets: dict[str, tuple[str, list[Parameter] | ParameterSet]] = {}

    for ci, cap in enumerate(model.capabilities):
        cloc = f"capabilities[{ci}]"
        for name, ep in cap.endpoints.items():
            eloc = f"{cloc}.endpoints.{name}"
            if name in endpoints:
                problems.append((eloc, f"endpoint {name!r} is defined twice"))
            endpoints[name] = ep
            endpoint_locs[name] = (eloc, ep)
            if ep.result:
                for attr in ("images", "seeds", "infotexts", "info"):
                    text = getattr(ep.result, attr)
                    if text:
                        _check_jmespath(text, f"{eloc}.result.{attr}", problems)
        if cap.capability == HEALTH_CAPABILITY:
            if len(cap.endpoints) != 1:
                problems.append((f"{cloc}.endpoints", "a health capability has one endpoint"))
            elif health is None:
                health = next(iter(cap.endpoints.values()))
            else:
                problems.append((cloc, "only one health capability is allowed"))
            if cap.parameters:
                problems.append((f"{cloc}.parameters", "a health capability has no parameters"))
        for set_name, spec in cap.parameters.items():
            if set_name in raw_sets:
                problems.append((f"{cloc}.parameters.{set_name}", "parameter set defined twice"))
            raw_sets[set_name] = (f"{cloc}.parameters.{set_name}", spec)

    resolved: dict[str, list[Parameter]] = {}

    def resolve_set(name: str, chain: tuple[str, ...]) -> list[Parameter] | None:
        if name in resolved:
            return resolved[name]
        loc, spec = raw_sets[name]
        if isinstance(spec, list):
            params = list(spec)
            _check_unique(params, loc, problems)
        else:
            if spec.extends not in raw_sets:
                problems.append((f"{loc}.extends", f"no parameter set named {spec.extends!r}"))
                return None
            if spec.extends in chain:
                problems.append((f"{loc}.extends", "parameter sets extend each other in a loop"))
                return None
            base = resolve_set(spec.extends, (*chain, name))
            if base is None:
                return None
            params = _compose(base, spec, loc, problems)
        resolved[name] = params
        return params

    for set_name in raw_sets:
        resolve_set(set_name, ())

    job_endpoints: set[str] = set()
    jobs = Jobs()
    for ci, cap in enumerate(model.capabilities):
        if cap.jobs is None:
            continue
        jloc = f"capabilities[{ci}].jobs"
        if cap.capability != GENERATION_CAPABILITY:
            problems.append((jloc, "only an image_generation capability has jobs"))
        jobs = cap.jobs
        named = [(f"interrupt{_index(jobs.interrupt, i)}", n)
                 for i, n in enumerate(jobs.interrupt_calls)]
        named += [(f"skip{_index(jobs.skip, i)}", n) for i, n in enumerate(jobs.skip_calls)]
        if jobs.progress:
            named.append(("progress.endpoint", jobs.progress.endpoint))
            for attr in ("fraction", "eta", "step", "steps", "preview", "activeWhen"):
                text = getattr(jobs.progress, attr)
                if text:
                    _check_jmespath(text, f"{jloc}.progress.{attr}", problems)
        for attr, name in named:
            _check_plain_endpoint(name, endpoints, f"{jloc}.{attr}", problems)
        for name in [*jobs.interrupt_calls, *jobs.skip_calls]:
            job_endpoints.add(name)

    if model.identify:
        _check_plain_endpoint(model.identify.endpoint, endpoints, "identify.endpoint", problems)
        _check_jmespath(model.identify.when, "identify.when", problems)
    if model.credentialsFailure:
        _check_jmespath(model.credentialsFailure, "credentialsFailure", problems)
    saved = {var for ep in endpoints.values() if ep.result for s in ep.step_list
             for var in s.save}
    for name, (eloc, ep) in endpoint_locs.items():
        _check_steps(ep, eloc, problems, endpoints,
                     saved if name in job_endpoints else None)

    modes: dict[str, Mode] = {}
    targets: dict[str, dict[str, list[Target]]] = {}
    bodies: dict[str, list[dict[str, Any] | None]] = {}
    for set_name, (loc, _spec) in raw_sets.items():
        if ":" in set_name:
            continue  # a set inherited from a parent definition, to build on
        ep = endpoints.get(set_name)
        if ep is None or ep.result is None:
            problems.append((loc, f"no generation endpoint named {set_name!r} (an endpoint "
                                  "with a result) for this parameter set"))
            continue
        params = resolved.get(set_name)
        if params is None:
            continue
        eloc = endpoint_locs[set_name][0]
        step_bodies = [_load_body_files(step.body, f"{eloc}.steps[{i}].body", files, problems)
                       for i, step in enumerate(ep.step_list)]
        bodies[set_name] = [b for b, _regions in step_bodies]
        regions = [r for _b, r in step_bodies]
        targets[set_name] = _check_parameters(params, ep, endpoints, regions, loc, problems)
        try:
            decided = tuple(condition_order(params))
        except ValueError as exc:
            problems.append((loc, str(exc)))
            decided = tuple(params)
        modes[set_name] = Mode(set_name, ep, params, decided)

    for name, (eloc, ep) in endpoint_locs.items():
        if ep.result and name not in raw_sets:
            problems.append((eloc, f"generation endpoint {name!r} has no parameter set of the "
                                   "same name"))
    if model.errorMessage:
        _check_jmespath(model.errorMessage, "errorMessage", problems)
    if not modes and not problems:
        problems.append(("capabilities", "no image_generation endpoint with parameters"))
    if problems:
        raise DefinitionError(source, problems)
    deps = tuple(p for p in (path, *parents, *files) if p is not None)
    return ServiceDefinition(model, path, modes, endpoints, health, targets, bodies, deps,
                             jobs)


PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_]+)*)\}")
BUILTIN_VARIABLES = ("client_id",)


def placeholders(node: Any) -> set[str]:
    """Names of the ``{variables}`` used in the strings of ``node``."""
    if isinstance(node, str):
        return {m.group(1) for m in PLACEHOLDER.finditer(node)}
    if isinstance(node, dict):
        if FILE_KEY in node:
            return set()
        return set().union(*(placeholders(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(placeholders(v) for v in node)) if node else set()
    return set()


def _check_steps(
    ep: Endpoint, eloc: str, problems: list[tuple[str, str]], endpoints: dict[str, Endpoint],
    job_scope: set[str] | None = None,
) -> None:
    """Step names, saved variables, placeholders, polls and loops of one endpoint.
    ``job_scope``: the variables a job's steps save, for an endpoint a job calls (interrupt)."""
    if ep.steps is not None and ep.result is None:
        problems.append((f"{eloc}.steps", "only generation endpoints have steps"))
    if ep.result is None:
        used = placeholders([ep.path, ep.query, ep.headers, ep.body])
        if job_scope is None and used:
            problems.append((eloc, "placeholders are only filled in generation endpoints and "
                                   "in those a job calls (interrupt, skip): "
                                   f"{', '.join('{' + u + '}' for u in sorted(used))}"))
        for name in sorted(used - (job_scope or set()) - set(BUILTIN_VARIABLES)
                           if job_scope is not None else ()):
            problems.append((eloc, f"unknown placeholder {{{name}}}: no step of a generation "
                                   "endpoint saves it"))
        return
    known: set[str] = set(BUILTIN_VARIABLES)
    names: set[str] = set()
    for i, step in enumerate(ep.step_list):
        sloc = f"{eloc}.steps[{i}]" if ep.steps is not None else eloc
        if step.name in names:
            problems.append((f"{sloc}.name", f"duplicate step name {step.name!r}"))
        names.add(step.name)
        if step.encoding != "json" and step.body and any(
                isinstance(v, dict | list) and FILE_KEY not in v for v in step.body.values()):
            problems.append((f"{sloc}.body", f"a {step.encoding} body holds flat fields only"))
        scope = set(known)
        if step.forEach is not None:
            if step.forEach not in known:
                problems.append((f"{sloc}.forEach", f"no variable {step.forEach!r} is saved by "
                                                    "an earlier step"))
            scope.add("item")
        used = placeholders([step.path, step.query, step.headers, step.body, step.set])
        for name in sorted(used - scope):
            problems.append((sloc, f"unknown placeholder {{{name}}} (known here: "
                                   f"{', '.join(sorted(scope))})"))
        for var, text in step.save.items():
            _check_jmespath(text, f"{sloc}.save.{var}", problems)
        if step.poll:
            for attr in ("until", "failWhen", "failMessage"):
                text = getattr(step.poll, attr)
                if text:
                    _check_jmespath(text, f"{sloc}.poll.{attr}", problems)
            queue = step.poll.backendQueue
            if queue:
                qloc = f"{sloc}.poll.backendQueue"
                _check_plain_endpoint(queue.endpoint, endpoints, f"{qloc}.endpoint", problems)
                for attr in ("running", "waiting", "ahead"):
                    text = getattr(queue, attr)
                    if text:
                        _check_jmespath(text, f"{qloc}.{attr}", problems)
            if step.method != "GET":
                problems.append((f"{sloc}.poll", "only a GET is polled (a POST is never "
                                                 "repeated)"))
        for path in step.set:
            try:
                parse_path(path)
            except PathError as exc:
                problems.append((f"{sloc}.set", str(exc)))
        known |= set(step.save)


def _load_body_files(
    body: dict[str, Any] | None, loc: str, files: list[Path], problems: list[tuple[str, str]]
) -> tuple[dict[str, Any] | None, list[tuple[tuple[Token, ...], str]]]:
    """Replace ``{$file: path}`` values by the file's JSON; return the body and the places the
    files went (targets there must already exist: they bind to workflow nodes)."""
    regions: list[tuple[tuple[Token, ...], str]] = []

    def walk(node: Any, at: tuple[Token, ...]) -> Any:
        if isinstance(node, dict):
            if set(node) == {FILE_KEY}:
                file = Path(node[FILE_KEY])
                files.append(file)
                try:
                    content = json.loads(file.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    problems.append((f"{loc}{'.' if at else ''}{format_path(at)}",
                                     f"cannot read JSON file {file.name}: {exc}"))
                    return {}
                regions.append((at, file.name))
                return content
            return {k: walk(v, (*at, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*at, i)) for i, v in enumerate(node)]
        return node

    return (walk(body, ()) if body is not None else None), regions


def _check_jmespath(text: str, loc: str, problems: list[tuple[str, str]]) -> None:
    problem = expr.check(text)
    if problem:
        problems.append((loc, problem))


def _index(value: str | list[str] | None, i: int) -> str:
    return f"[{i}]" if isinstance(value, list) else ""


def _check_plain_endpoint(
    name: str, endpoints: dict[str, Endpoint], loc: str, problems: list[tuple[str, str]]
) -> None:
    target = endpoints.get(name)
    if target is None:
        problems.append((loc, f"no endpoint named {name!r}"))
    elif target.steps is not None or target.result:
        problems.append((loc, f"{name!r} must be a plain one-request endpoint"))


def _check_unique(params: list[Parameter], loc: str, problems: list[tuple[str, str]]) -> None:
    seen: set[str] = set()
    for i, p in enumerate(params):
        if p.key in seen:
            problems.append((f"{loc}[{i}].key", f"duplicate key {p.key!r}"))
        seen.add(p.key)


def _compose(
    base: list[Parameter], spec: ParameterSet, loc: str, problems: list[tuple[str, str]]
) -> list[Parameter]:
    keys = {p.key for p in base}
    for i, key in enumerate(spec.exclude):
        if key not in keys:
            problems.append((f"{loc}.exclude[{i}]", f"{spec.extends!r} has no parameter {key!r}"))
    params = [p for p in base if p.key not in spec.exclude]
    out: list[Parameter] = []
    for p in params:
        patch = spec.override.get(p.key)
        if patch is not None:
            if "key" in patch and patch["key"] != p.key:
                problems.append((f"{loc}.override.{p.key}.key", "an override cannot rename"))
            merged = {**p.model_dump(exclude_unset=True, by_alias=True), **patch}
            try:
                p = Parameter.model_validate(merged)
            except ValidationError as exc:
                for e in exc.errors():
                    problems.append((f"{loc}.override.{p.key}.{_loc(e['loc'])}", e["msg"]))
        out.append(p)
    for key in spec.override:
        if key not in keys:
            problems.append((f"{loc}.override.{key}", f"{spec.extends!r} has no parameter {key!r}"))
        elif key in spec.exclude:
            problems.append((f"{loc}.override.{key}", "parameter is both excluded and overridden"))
    for i, p in enumerate(spec.add):
        if any(q.key == p.key for q in out):
            problems.append((f"{loc}.add[{i}].key", f"duplicate key {p.key!r} (use override to "
                                                    "change an inherited parameter)"))
            continue
        if p.before is not None:
            idx = next((j for j, q in enumerate(out) if q.key == p.before), None)
            if idx is None:
                problems.append((f"{loc}.add[{i}].before", f"no parameter {p.before!r}"))
                continue
            out.insert(idx, p.model_copy(update={"before": None}))
        else:
            out.append(p)
    return out


def _check_parameters(
    params: list[Parameter],
    ep: Endpoint,
    endpoints: dict[str, Endpoint],
    regions: list[list[tuple[tuple[Token, ...], str]]],
    loc: str,
    problems: list[tuple[str, str]],
) -> dict[str, list[Target]]:
    """Check every parameter's references; return each sent parameter's parsed targets."""
    by_key = {p.key: p for p in params}
    written: dict[str, list[Target]] = {}
    steps = ep.step_list
    fixed = [[t for t in _leaf_paths(s.body or {}) if not _in_region(t, regions[i])]
             for i, s in enumerate(steps)]
    seen: set[str] = set()
    for p in params:
        if p.key in seen:
            continue  # a duplicate key, already reported
        seen.add(p.key)
        ploc = f"{loc}[{p.key}]"
        _check_parameter_value_spec(p, ploc, problems)
        _check_when(p, by_key, ploc, problems)
        if p.before is not None:
            problems.append((f"{ploc}.before", "'before' is only used in 'add'"))
        for si, src in enumerate(p.sources):
            head = si == 0 and bool(p.optionsEndpoint)
            sloc = ploc + (".optionsEndpoint" if head else
                           f".optionsFrom[{si - (1 if p.optionsEndpoint else 0)}]")
            _check_options_endpoint(src.endpoint, endpoints, sloc, problems)
            if src.path:
                _check_jmespath(src.path, ploc + ".optionsPath" if head else sloc + ".path",
                                problems)
            for ai, alias in enumerate(src.aliases):
                _check_jmespath(alias, (f"{ploc}.optionsAliases[{ai}]" if head
                                        else f"{sloc}.aliases[{ai}]"), problems)
        if p.optionsAliases and not p.optionsEndpoint:
            problems.append((f"{ploc}.optionsAliases", "optionsAliases go with optionsEndpoint"))
        if p.defaultFrom:
            if p.type != "select":
                problems.append((f"{ploc}.defaultFrom", "only a select takes its value from "
                                                        "the service"))
            _check_options_endpoint(p.defaultFrom.endpoint, endpoints,
                                    f"{ploc}.defaultFrom.endpoint", problems)
            _check_jmespath(p.defaultFrom.path, f"{ploc}.defaultFrom.path", problems)
        if p.ifEmpty:
            for path in [*p.ifEmpty.set, *p.ifEmpty.remove]:
                target = _parse_target(path, steps, f"{ploc}.ifEmpty", problems)
                if target:
                    _check_in_file(target, steps, regions, f"{ploc}.ifEmpty", problems)
        if p.appendTo:
            _check_append(p, by_key, ploc, problems)
            continue
        if not p.send:
            if p.target:
                problems.append((f"{ploc}.target", "a parameter with send: false has no target"))
            continue
        if isinstance(p.target, list) and not p.target:
            problems.append((f"{ploc}.target", "an empty list of targets"))
        found: list[Target] = []
        for text in p.targets:
            target = _parse_target(text, steps, f"{ploc}.target", problems)
            if target is None:
                continue
            _check_target(p, target, steps, regions, fixed, written, ploc, problems)
            if any(overlaps(target.tokens, t.tokens) and t.step == target.step for t in found):
                problems.append((f"{ploc}.target", f"{text!r} is given twice"))
            found.append(target)
        written[p.key] = found
    return written


def _check_target(
    p: Parameter, target: Target, steps: list[Step],
    regions: list[list[tuple[tuple[Token, ...], str]]], fixed: list[list[tuple[Token, ...]]],
    written: dict[str, list[Target]], ploc: str, problems: list[tuple[str, str]],
) -> None:
    step = steps[target.step]
    if step.method == "GET":
        problems.append((f"{ploc}.target", f"step {step.name!r} is a GET: it has no body "
                                           "to write into"))
    if p.type == "image" and step.encoding == "form":
        problems.append((f"{ploc}.target", "an image cannot go into a form-encoded body "
                                           "(use json or multipart)"))
    shown = format_path(target.tokens)
    for other_key, others in written.items():
        if any(o.step == target.step and overlaps(target.tokens, o.tokens) for o in others):
            problems.append((f"{ploc}.target", f"{shown!r} collides with the target of "
                                               f"{other_key!r}"))
    if _in_region(target.tokens, regions[target.step]):
        _check_in_file(target, steps, regions, f"{ploc}.target", problems)
    elif any(overlaps(target.tokens, f) for f in fixed[target.step]):
        problems.append((f"{ploc}.target", f"{shown!r} is also set by the endpoint's fixed "
                                           "body"))


def _check_options_endpoint(
    name: str, endpoints: dict[str, Endpoint], loc: str, problems: list[tuple[str, str]]
) -> None:
    target_ep = endpoints.get(name)
    if target_ep is None:
        problems.append((loc, f"no endpoint named {name!r}"))
    elif target_ep.result is not None:
        problems.append((loc, f"{name!r} is a generation endpoint"))


def condition_order(params: list[Parameter]) -> list[Parameter]:
    """The parameters ordered so that each comes after those its ``when`` names (the form
    decides what is on in this order). ValueError naming the circle, if there is one."""
    by_key = {p.key: p for p in params}
    done: dict[str, Parameter] = {}
    visiting: list[str] = []

    def visit(p: Parameter) -> None:
        if p.key in done:
            return
        if p.key in visiting:
            circle = visiting[visiting.index(p.key):] + [p.key]
            raise ValueError(f"conditions go round in a circle: {' → '.join(circle)}")
        visiting.append(p.key)
        for key in p.when or {}:
            if key in by_key and key != p.key:
                visit(by_key[key])
        visiting.pop()
        done[p.key] = p

    for p in params:
        visit(p)
    return list(done.values())


def when_json(when: When | None) -> str:
    """A condition as the page's script reads it (data-when)."""
    return json.dumps({k: [w.model_dump() if isinstance(w, Pattern) else w
                           for w in (v if isinstance(v, list) else [v])]
                       for k, v in (when or {}).items()})


def condition_holds(when: When | None, values: dict[str, Any]) -> bool:
    """Whether every named parameter has (one of) the wanted values."""
    for key, wanted in (when or {}).items():
        choices = wanted if isinstance(wanted, list) else [wanted]
        if not any(same_value(values.get(key), w) for w in choices):
            return False
    return True


def same_value(value: Any, wanted: Any) -> bool:
    """A form value equals a value written in a definition (true == on, 1 == 1.0 == "1"), or
    matches its pattern."""
    if isinstance(value, list):
        return any(same_value(v, wanted) for v in value)
    if isinstance(wanted, Pattern):
        return value is not None and re.search(wanted.pattern, str(value)) is not None
    if isinstance(wanted, bool) or isinstance(value, bool):
        return value is wanted or (isinstance(value, bool) and str(value).lower() == str(
            wanted).lower())
    if value is None:
        return False
    if isinstance(value, int | float) and isinstance(wanted, int | float):
        return value == wanted
    return str(value) == str(wanted)


def _check_when(
    p: Parameter, by_key: dict[str, Parameter], ploc: str, problems: list[tuple[str, str]]
) -> None:
    """Conditions name other parameters of the mode, and do not go round in a circle."""
    conditions = [(f"{ploc}.when", p.when)] + [
        (f"{ploc}.options[{i}].when", o.when) for i, o in enumerate(p.options or []) if o.when]
    for cloc, when in conditions:
        for key in when or {}:
            other = by_key.get(key)
            if other is None:
                problems.append((cloc, f"no parameter {key!r}"))
            elif key == p.key:
                problems.append((cloc, "a parameter cannot depend on itself"))
            elif other.type in ("image", "textarea", "text"):
                problems.append((cloc, f"{key!r} is a {other.type}: conditions compare the "
                                       "value of a boolean, select or number"))



def parse_target(text: str, steps: list[Step]) -> Target:
    """``path`` (one-step endpoints) or ``step:path``; PathError if it names nothing."""
    step_name, sep, path = text.rpartition(":")
    if sep:
        index = next((i for i, s in enumerate(steps) if s.name == step_name), None)
        if index is None:
            raise PathError(f"no step named {step_name!r}")
    elif len(steps) > 1:
        raise PathError(f"{text!r}: name the step, e.g. {steps[-1].name}:{text}")
    else:
        index = 0
    return Target(index, parse_path(path))


def _parse_target(
    text: str, steps: list[Step], loc: str, problems: list[tuple[str, str]]
) -> Target | None:
    try:
        return parse_target(text, steps)
    except PathError as exc:
        problems.append((loc, str(exc)))
        return None


def _in_region(tokens: tuple[Token, ...], regions: list[tuple[tuple[Token, ...], str]]) -> bool:
    return any(tokens[: len(at)] == at and len(tokens) > len(at) for at, _ in regions)


def _check_in_file(
    target: Target, steps: list[Step], regions: list[list[tuple[tuple[Token, ...], str]]],
    loc: str, problems: list[tuple[str, str]],
) -> None:
    """A target inside a file-loaded body (a workflow) must name something that exists."""
    for at, name in regions[target.step]:
        if target.tokens[: len(at)] != at:
            continue
        # The file content is what _load_body_files loaded; re-read it from the step's body.
        content = json.loads(Path(_file_ref(steps[target.step].body, at)).read_text("utf-8"))
        inner = target.tokens[len(at):]
        try:
            parent = get_path(content, inner[:-1])
            ok = (isinstance(parent, dict) and inner[-1] in parent) or (
                isinstance(parent, list) and isinstance(inner[-1], int)
                and inner[-1] < len(parent))
        except KeyError:
            ok = False
        if not ok:
            problems.append((loc, f"{format_path(inner)!r} does not exist in {name}"))
        return


def _file_ref(body: Any, at: tuple[Token, ...]) -> str:
    node = get_path(body, at)
    return node[FILE_KEY]


def _check_append(
    p: Parameter, by_key: dict[str, Parameter], ploc: str, problems: list[tuple[str, str]]
) -> None:
    assert p.appendTo is not None
    other = by_key.get(p.appendTo.to)
    if other is None:
        problems.append((f"{ploc}.appendTo.to", f"no parameter {p.appendTo.to!r}"))
    elif other.type not in ("text", "textarea") or other.appendTo or not other.send:
        problems.append((f"{ploc}.appendTo.to", "can only append to a text parameter that is "
                                                "sent"))
    try:
        names = [n for _, n, _, _ in string.Formatter().parse(p.appendTo.format) if n is not None]
    except ValueError as exc:
        problems.append((f"{ploc}.appendTo.format", f"invalid format: {exc}"))
        names = []
    for name in names:
        field_name = re.split(r"[.\[]", name, maxsplit=1)[0]
        if not field_name or field_name.isdigit():
            problems.append((f"{ploc}.appendTo.format", "placeholders need a name: {value} or "
                                                        "{other_key}"))
        elif field_name != "value" and field_name not in by_key:
            problems.append((f"{ploc}.appendTo.format", f"unknown placeholder {field_name!r}"))
    if p.target:
        problems.append((f"{ploc}.target", "a parameter has a target or appendTo, not both"))


def _check_parameter_value_spec(p: Parameter, ploc: str, problems: list[tuple[str, str]]) -> None:
    numeric = p.type in ("integer", "number", "seed")
    if p.range is not None and not numeric:
        problems.append((f"{ploc}.range", f"a {p.type} parameter has no range"))
    if p.range is not None and p.range[0] > p.range[1]:
        problems.append((f"{ploc}.range", "min is greater than max"))
    if p.step is not None and not numeric:
        problems.append((f"{ploc}.step", f"a {p.type} parameter has no step"))
    if p.type == "select":
        if not p.options and not p.sources:
            problems.append((ploc, "a select needs options or optionsEndpoint"))
    elif p.options or p.sources:
        problems.append((ploc, f"a {p.type} parameter has no options"))
    if p.multiple and p.type != "select":
        problems.append((f"{ploc}.multiple", "only a select can take several values"))
    if p.multiple and p.appendTo:
        problems.append((f"{ploc}.appendTo", "a select with several values cannot append"))
    if p.pickRandom and p.type != "seed":
        problems.append((f"{ploc}.pickRandom", "only a seed picks a random value"))
    if p.type == "image" and p.defaultValue is not None:
        problems.append((f"{ploc}.defaultValue", "an image parameter has no default"))
    if p.defaultValue is not None and p.type != "image":
        # Defaults go through the same validation as submitted values.
        from .forms import FieldError, coerce

        defaults = p.defaultValue if p.multiple and isinstance(p.defaultValue, list) else [
            p.defaultValue]
        try:
            for value in defaults:
                coerce(p, value, allowed=None)
        except FieldError as exc:
            problems.append((f"{ploc}.defaultValue", str(exc)))


def _leaf_paths(doc: Any, prefix: tuple[Token, ...] = ()) -> list[tuple[Token, ...]]:
    if isinstance(doc, dict) and doc:
        return [t for k, v in doc.items() for t in _leaf_paths(v, (*prefix, k))]
    if isinstance(doc, list) and doc:
        return [t for i, v in enumerate(doc) for t in _leaf_paths(v, (*prefix, i))]
    return [prefix] if prefix else []


def json_schema() -> dict[str, Any]:
    """The JSON Schema of definition files (committed as docs/definition.schema.json)."""
    schema = Definition.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "webui service definition"
    return schema


@cache
def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


_ID_SAFE = re.compile(r"[^A-Za-z0-9]+")


def env_name(service_id: str, suffix: str) -> str:
    """``a1111`` + ``URL`` -> ``WEBUI_A1111_URL``: the operator's override variables."""
    return f"WEBUI_{_ID_SAFE.sub('_', service_id).upper()}_{suffix}"
