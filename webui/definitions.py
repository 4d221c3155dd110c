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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import jmespath
import jmespath.exceptions
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

from .paths import PathError, Token, format_path, overlaps, parse_path

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

    @model_validator(mode="after")
    def _check(self) -> Result:
        if self.encoding != "bytes" and not self.images:
            raise ValueError("images (a JMESPath) is required unless encoding is bytes")
        return self


class Endpoint(_Model):
    """One HTTP request of the service."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = Field(pattern=r"^/")
    query: dict[str, Scalar] = {}
    headers: dict[str, str] = {}
    body: dict[str, Any] | None = Field(
        None, description="Fixed part of the JSON body; parameters are written into it"
    )
    timeout: float = Field(30, gt=0, description="Seconds to wait for the answer")
    result: Result | None = Field(None, description="Present on generation endpoints")


class OptionsSource(_Model):
    """One place a select's choices come from. Several are concatenated in order."""

    endpoint: str
    path: str = Field("", description="JMESPath to the list in the response; '' = the body")
    valueKey: str | None = None
    labelKey: str | None = None


class Option(_Model):
    value: Scalar
    label: str | None = None


class Append(_Model):
    """Instead of its own field, the value is formatted and appended to another parameter's
    value (a LoRA tag added to the prompt). Empty values append nothing."""

    to: str
    format: str = Field(description="Python format string; {value} and {other_key} allowed")


class Parameter(_Model):
    """One form field and where its value goes in the request."""

    key: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    label: str | None = None
    type: ParamType
    description: str = ""
    placeholder: str = ""
    defaultValue: Any = None
    required: bool = False
    range: tuple[float, float] | None = Field(None, description="[min, max], inclusive")
    step: float | None = Field(None, gt=0)
    options: list[Option] | None = Field(None, description="Static choices of a select")
    optionsEndpoint: str | None = None
    optionsPath: str = ""
    optionsValueKey: str | None = None
    optionsLabelKey: str | None = None
    optionsFrom: list[OptionsSource] = Field(
        [], description="Several option sources, concatenated (the optionsEndpoint fields are "
        "shorthand for a single one)"
    )
    target: str | None = Field(
        None, description="Path in the request body (default: the key), e.g. "
        "override_settings.sd_model_checkpoint or init_images[0]"
    )
    send: bool = Field(True, description="false: only used in other parameters' formats")
    appendTo: Append | None = None
    encode: Literal["base64", "data_url"] = Field(
        "base64", description="How an image upload is put into a JSON body"
    )
    group: str | None = None
    advanced: bool = False
    before: str | None = Field(None, description="In 'add': insert before this key")

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
            )
            return [head, *self.optionsFrom]
        return list(self.optionsFrom)

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


class Capability(_Model):
    capability: Literal["image_generation", "health"]
    endpoints: dict[str, Endpoint]
    parameters: dict[str, ParameterSetSpec] = {}


class Definition(_Model):
    """One service definition file."""

    schema_: str | None = Field(None, alias="$schema")
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
    capabilities: Annotated[list[Capability], Field(min_length=1)]


# ---------------------------------------------------------------------------------------------
# Resolved form: what the rest of the app uses.


@dataclass(frozen=True)
class Mode:
    """A generation mode (txt2img, img2img, …): its endpoint and its resolved parameters."""

    name: str
    endpoint: Endpoint
    parameters: list[Parameter]

    @property
    def label(self) -> str:
        return MODE_LABELS.get(self.name, self.name)

    def parameter(self, key: str) -> Parameter | None:
        return next((p for p in self.parameters if p.key == key), None)


MODE_LABELS = {"txt2img": "Text to image", "img2img": "Image to image"}


@dataclass(frozen=True)
class ServiceDefinition:
    """A validated, fully resolved definition."""

    model: Definition
    source: Path | None
    modes: dict[str, Mode]
    endpoints: dict[str, Endpoint]
    health: Endpoint | None
    targets: dict[str, dict[str, tuple[Token, ...]]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.model.id


class DefinitionError(Exception):
    """A definition that cannot be used; ``problems`` are ``(field path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
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


def load_file(path: Path) -> ServiceDefinition:
    """Read, validate and resolve one definition file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(str(path), [("", f"cannot read file: {exc}")]) from None
    return load_data(parse_text(text, str(path)), str(path), path)


def load_data(data: Any, source: str, path: Path | None = None) -> ServiceDefinition:
    """Validate and resolve already-parsed definition data."""
    if not isinstance(data, dict):
        raise DefinitionError(source, [("", "a definition must be a mapping (YAML object)")])
    try:
        model = Definition.model_validate(data)
    except ValidationError as exc:
        problems = [(_loc(e["loc"]), e["msg"]) for e in exc.errors()]
        raise DefinitionError(source, problems) from None
    return _resolve(model, source, path)


def _resolve(model: Definition, source: str, path: Path | None) -> ServiceDefinition:
    problems: list[tuple[str, str]] = []
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
                    expr = getattr(ep.result, attr)
                    if expr:
                        _check_jmespath(expr, f"{eloc}.result.{attr}", problems)
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

    modes: dict[str, Mode] = {}
    targets: dict[str, dict[str, tuple[Token, ...]]] = {}
    for set_name, (loc, _spec) in raw_sets.items():
        ep = endpoints.get(set_name)
        if ep is None or ep.result is None:
            problems.append((loc, f"no generation endpoint named {set_name!r} (an endpoint "
                                  "with a result) for this parameter set"))
            continue
        params = resolved.get(set_name)
        if params is None:
            continue
        targets[set_name] = _check_parameters(params, ep, endpoints, loc, problems)
        modes[set_name] = Mode(set_name, ep, params)

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
    return ServiceDefinition(model, path, modes, endpoints, health, targets)


def _check_jmespath(expr: str, loc: str, problems: list[tuple[str, str]]) -> None:
    try:
        jmespath.compile(expr)
    except jmespath.exceptions.JMESPathError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        problems.append((loc, f"invalid JMESPath {expr!r}: {first}"))


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
    loc: str,
    problems: list[tuple[str, str]],
) -> dict[str, tuple[Token, ...]]:
    """Check every parameter's references; return each sent parameter's parsed target."""
    by_key = {p.key: p for p in params}
    written: dict[str, tuple[Token, ...]] = {}
    fixed = _leaf_paths(ep.body or {})
    for p in params:
        if p.key in written:
            continue  # a duplicate key, already reported
        ploc = f"{loc}[{p.key}]"
        _check_parameter_value_spec(p, ploc, problems)
        if p.before is not None:
            problems.append((f"{ploc}.before", "'before' is only used in 'add'"))
        for si, src in enumerate(p.sources):
            sloc = ploc + (".optionsEndpoint" if si == 0 and p.optionsEndpoint else
                           f".optionsFrom[{si - (1 if p.optionsEndpoint else 0)}]")
            target_ep = endpoints.get(src.endpoint)
            if target_ep is None:
                problems.append((sloc, f"no endpoint named {src.endpoint!r}"))
            elif target_ep.result is not None:
                problems.append((sloc, f"{src.endpoint!r} is a generation endpoint"))
            if src.path:
                path_loc = (ploc + ".optionsPath" if si == 0 and p.optionsEndpoint
                            else sloc + ".path")
                _check_jmespath(src.path, path_loc, problems)
        if p.appendTo:
            other = by_key.get(p.appendTo.to)
            if other is None:
                problems.append((f"{ploc}.appendTo.to", f"no parameter {p.appendTo.to!r}"))
            elif other.type not in ("text", "textarea") or other.appendTo or not other.send:
                problems.append((f"{ploc}.appendTo.to", "can only append to a text parameter "
                                                        "that is sent"))
            try:
                names = [n for _, n, _, _ in string.Formatter().parse(p.appendTo.format)
                         if n is not None]
            except ValueError as exc:
                problems.append((f"{ploc}.appendTo.format", f"invalid format: {exc}"))
                names = []
            for name in names:
                field_name = re.split(r"[.\[]", name, maxsplit=1)[0]
                if not field_name or field_name.isdigit():
                    problems.append((f"{ploc}.appendTo.format", "placeholders need a name: "
                                                                "{value} or {other_key}"))
                elif field_name != "value" and field_name not in by_key:
                    problems.append((f"{ploc}.appendTo.format",
                                     f"unknown placeholder {field_name!r}"))
            if p.target:
                problems.append((f"{ploc}.target", "a parameter has a target or appendTo, "
                                                   "not both"))
            continue
        if not p.send:
            if p.target:
                problems.append((f"{ploc}.target", "a parameter with send: false has no target"))
            continue
        try:
            tokens = parse_path(p.target or p.key)
        except PathError as exc:
            problems.append((f"{ploc}.target", str(exc)))
            continue
        for other_key, other_tokens in written.items():
            if overlaps(tokens, other_tokens):
                problems.append((f"{ploc}.target", f"{format_path(tokens)!r} collides with the "
                                                   f"target of {other_key!r}"))
        for fixed_tokens in fixed:
            if overlaps(tokens, fixed_tokens):
                problems.append((f"{ploc}.target", f"{format_path(tokens)!r} is also set by the "
                                                   "endpoint's fixed body"))
        written[p.key] = tokens
    return written


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
    if p.type == "image" and p.defaultValue is not None:
        problems.append((f"{ploc}.defaultValue", "an image parameter has no default"))
    if p.defaultValue is not None and p.type != "image":
        # Defaults go through the same validation as submitted values.
        from .forms import FieldError, coerce

        try:
            coerce(p, p.defaultValue, allowed=None)
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


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


_ID_SAFE = re.compile(r"[^A-Za-z0-9]+")


def env_name(service_id: str, suffix: str) -> str:
    """``a1111`` + ``URL`` -> ``WEBUI_A1111_URL``: the operator's override variables."""
    return f"WEBUI_{_ID_SAFE.sub('_', service_id).upper()}_{suffix}"
