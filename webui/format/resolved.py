"""A definition as the rest of webui uses it: validated, composed and checked, with every path
parsed once at load."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import Definition, Endpoint, Jobs, Parameter, Step
from .paths import PathError, Token, parse_path


@dataclass(frozen=True)
class Target:
    """Where a value is written: a path in the body of one step of an endpoint."""

    step: int
    tokens: tuple[Token, ...]


@dataclass(frozen=True)
class Edits:
    """A parameter's ``ifEmpty``, its paths parsed: values written, keys removed."""

    set: tuple[tuple[Target, Any], ...] = ()
    remove: tuple[Target, ...] = ()


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
