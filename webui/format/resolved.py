"""A definition as the rest of webui uses it: validated, composed and checked, with every path
parsed once at load."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import Definition, Endpoint, Jobs, Parameter, Source, Step
from .paths import PathError, Token, parse_path


@dataclass(frozen=True)
class Target:
    """Where a value is written, in one step of an endpoint: a path in its body, or a query
    parameter, a ``{name}`` of its path, or a header (``place``; ``tokens`` is then the
    name alone)."""

    step: int
    tokens: tuple[Token, ...]
    place: str = "body"


@dataclass(frozen=True)
class Edits:
    """A parameter's ``ifEmpty``, its paths parsed: values written, keys removed."""

    set: tuple[tuple[Target, Any], ...] = ()
    remove: tuple[Target, ...] = ()


@dataclass(frozen=True)
class Copies:
    """A parameter's ``repeat``, its paths parsed: the object copied, where in each copy the
    item's value and its weight go, and what every copy after the first gets (``chain``)."""

    object: Target
    value: tuple[tuple[Token, ...], ...] = ()
    weight: tuple[tuple[Token, ...], ...] = ()
    chain: tuple[tuple[tuple[Token, ...], Any], ...] = ()


@dataclass(frozen=True)
class Mode:
    """A generation mode (txt2img, img2img, …): its endpoint and its resolved parameters,
    with everything a request needs parsed once, at load."""

    name: str
    endpoint: Endpoint
    parameters: list[Parameter]
    # The parameters in the order their conditions are decided (see condition_order).
    decided: tuple[Parameter, ...] = ()
    # Per parameter key: the places its value is written.
    targets: dict[str, list[Target]] = field(default_factory=dict)
    # Per step: the fixed body, {$file: …} replaced by the file's JSON.
    bodies: tuple[dict[str, Any] | None, ...] = ()
    # Per step: the step's ``set``, its paths parsed.
    sets: tuple[tuple[tuple[tuple[Token, ...], Any], ...], ...] = ()
    # Per parameter key: its ``ifEmpty`` edits.
    if_empty: dict[str, Edits] = field(default_factory=dict)
    # Per parameter key: its ``repeat``.
    repeats: dict[str, Copies] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return MODE_LABELS.get(self.name, self.name)

    def parameter(self, key: str) -> Parameter | None:
        return next((p for p in self.parameters if p.key == key), None)

    def by_role(self, role: str) -> Parameter | None:
        """The first parameter with this role (prompt, width, init_image…), if any."""
        return next((p for p in self.parameters if p.kind == role), None)

    @property
    def size_pair(self) -> tuple[Parameter, Parameter] | None:
        """The parameters with the roles width and height, when both are numbers: the form
        offers to swap them and aspect presets within their ranges."""
        pair = (self.by_role("width"), self.by_role("height"))
        if all(p is not None and p.type in ("integer", "number") for p in pair):
            return pair  # type: ignore[return-value]
        return None

    @property
    def weights(self) -> set[str]:
        """Keys of the number parameters that are another's weight (shown in its chips, not
        as fields of their own)."""
        return {p.weight for p in self.parameters if p.weight}


MODE_LABELS = {"txt2img": "Text to image", "img2img": "Image to image", "inpaint": "Inpaint"}


@dataclass(frozen=True)
class ServiceDefinition:
    """A validated, fully resolved definition."""

    model: Definition
    source: Path | None
    modes: dict[str, Mode]
    endpoints: dict[str, Endpoint]
    health: Endpoint | None
    dependencies: tuple[Path, ...] = ()
    # Old keywords the file used, rewritten at load: (field path, what to write instead).
    warnings: tuple[tuple[str, str], ...] = ()
    jobs: Jobs = field(default_factory=lambda: Jobs())
    # Where the service's own prompt styles are listed (None: it has none webui knows of).
    styles: Source | None = None

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


FILE_KEY = "$file"


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


PLACES = ("query", "path", "header")
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def parse_target(text: str, steps: list[Step]) -> Target:
    """``path``, ``query:NAME``, ``path:NAME`` or ``header:NAME`` (one-step endpoints), each
    after ``step:`` in a multi-step one; PathError if it names nothing."""
    parts = text.split(":")
    place = "body"
    if len(parts) >= 2 and parts[-2] in PLACES:
        place, where, step_name = parts[-2], parts[-1], ":".join(parts[:-2])
        if not _NAME.fullmatch(where):
            raise PathError(f"{text!r}: {place}: needs a name (letters, digits, _ . -)")
        sep = ":" if step_name else ""
    else:
        step_name, sep, where = text.rpartition(":")
    if sep:
        index = next((i for i, s in enumerate(steps) if s.name == step_name), None)
        if index is None:
            raise PathError(f"no step named {step_name!r}")
    elif len(steps) > 1:
        # Suggest a step that has a body to write into (a GET step has none).
        sending = next((s for s in steps if s.method not in ("GET", "websocket")), steps[0])
        raise PathError(f"{text!r}: name the step, e.g. {sending.name}:{text}")
    else:
        index = 0
    return Target(index, (where,) if place != "body" else parse_path(where), place)
