"""The load-time checks of a definition: parameter sets composed, every reference resolved
(endpoints, steps, targets, workflow files, conditions, expressions). Anything wrong is a
``field.path: message`` line; a definition that passes cannot fail for its own reasons later."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import expr
from .conditions import condition_order
from .limits import MAX_INCLUDED_BYTES, TOO_DEEP, LimitError, read_regular_file, too_deep
from .model import (
    GENERATION_CAPABILITY,
    HEALTH_CAPABILITY,
    ROLES,
    Definition,
    Endpoint,
    Jobs,
    Parameter,
    ParameterSet,
    Step,
    error_loc,
)
from .paths import PathError, Token, format_path, get_path, overlaps, parse_path
from .resolved import (
    BUILTIN_VARIABLES,
    FILE_KEY,
    Copies,
    DefinitionError,
    Edits,
    Mode,
    ServiceDefinition,
    Target,
    parse_target,
    placeholders,
)
from .values import FieldError, coerce

# Where a {$file: …} went in a body, the file's name, and its content.
Region = tuple[tuple[Token, ...], str, Any]


def resolve(
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
            if ep.steps is None and ep.step_fields:
                problems.append((eloc, f"{', '.join(ep.step_fields)}: only steps have these "
                                       "(write the endpoint as steps)"))
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
    styles = None
    for ci, cap in enumerate(model.capabilities):
        if cap.styles is not None:
            sloc = f"capabilities[{ci}].styles"
            if cap.capability != GENERATION_CAPABILITY:
                problems.append((sloc, "only an image_generation capability has styles"))
            _check_helper_endpoint(cap.styles.endpoint, endpoints, f"{sloc}.endpoint", problems)
            _check_jmespath(cap.styles.path, f"{sloc}.path", problems)
            styles = cap.styles
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
            job_endpoints.add(jobs.progress.endpoint)  # its path may name the job: {job_id}
            for attr in ("value", "eta", "preview", "when", "images"):
                text = getattr(jobs.progress, attr)
                if text:
                    _check_jmespath(text, f"{jloc}.progress.{attr}", problems)
        for attr, name in named:
            _check_plain_endpoint(name, endpoints, f"{jloc}.{attr}", problems)
        for name in [*jobs.interrupt_calls, *jobs.skip_calls]:
            job_endpoints.add(name)
            if name in endpoints and endpoints[name].method == "websocket":
                problems.append((f"{jloc}.interrupt", f"{name!r} is a websocket: it is "
                                                      "listened to, not called"))

    for name, (eloc, ep) in endpoint_locs.items():
        if ep.when is not None:
            if ep is not health:
                problems.append((f"{eloc}.when", "only the health endpoint tells its service "
                                                 "apart (when)"))
            else:
                _check_jmespath(ep.when, f"{eloc}.when", problems)
        if ep.method == "websocket" and (
                jobs.progress is None or jobs.progress.endpoint != name):
            problems.append((f"{eloc}.method", "a websocket endpoint is only a progress "
                                               "source (jobs.progress.endpoint)"))
    if model.credentialsFailure:
        _check_jmespath(model.credentialsFailure, "credentialsFailure", problems)
    saved = {var for ep in endpoints.values() if ep.result for s in ep.step_list
             for var in s.save}
    for name, (eloc, ep) in endpoint_locs.items():
        # {name}s of a step's path that a parameter fills (target path:NAME).
        filled = {t.rsplit(":", 1)[1] for p in resolved.get(name, [])
                  for t in p.targets if ":path:" in f":{t}"}
        _check_steps(ep, eloc, problems, endpoints,
                     saved if name in job_endpoints else None, filled)

    modes: dict[str, Mode] = {}
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
        step_bodies = [_load_body_files(
            step.body, f"{eloc}.steps[{i}].body" if ep.steps is not None else f"{eloc}.body",
            files, problems) for i, step in enumerate(ep.step_list)]
        regions = [r for _b, r in step_bodies]
        targets = _check_parameters(params, ep, endpoints, regions, loc, problems)
        try:
            decided = tuple(condition_order(params))
        except ValueError as exc:
            problems.append((loc, str(exc)))
            decided = tuple(params)
        modes[set_name] = Mode(
            set_name, ep, params, decided, targets,
            bodies=tuple(b for b, _regions in step_bodies),
            sets=tuple(tuple((parse_path(path), value) for path, value in step.set.items())
                       for step in ep.step_list) if not problems else (),
            if_empty={p.key: _edits(p, ep.step_list) for p in params
                      if p.ifEmpty} if not problems else {},
            repeats={p.key: _copies(p, next((q for q in params if q.key == p.weight), None),
                                    ep.step_list) for p in params
                     if p.repeat} if not problems else {})

    for name, (eloc, ep) in endpoint_locs.items():
        if ep.result and name not in raw_sets:
            problems.append((eloc, f"generation endpoint {name!r} has no parameter set of the "
                                   "same name"))
    if model.errorMessage:
        _check_jmespath(model.errorMessage, "errorMessage", problems)
    _check_images(model, modes, problems)
    if not modes and not problems:
        problems.append(("capabilities", "no image_generation endpoint with parameters"))
    if problems:
        error = DefinitionError(source, problems)
        error.dependencies = tuple(files)  # a fixed workflow file loads it again
        raise error
    deps = tuple(p for p in (path, *parents, *files) if p is not None)
    return ServiceDefinition(model, path, modes, endpoints, health, dependencies=deps, jobs=jobs,
                             styles=styles)


def _edits(p: Parameter, steps: list[Step]) -> Edits:
    """A parameter's ifEmpty with its paths parsed (they were checked above)."""
    assert p.ifEmpty is not None
    return Edits(
        set=tuple((parse_target(path, steps), value) for path, value in p.ifEmpty.set.items()),
        remove=tuple(parse_target(path, steps) for path in p.ifEmpty.remove))


def _copies(p: Parameter, weight: Parameter | None, steps: list[Step]) -> Copies:
    """A parameter's repeat with its paths parsed (they were checked above): where each
    copy gets the item's value and weight, relative to the copy."""
    assert p.repeat is not None
    obj = parse_target(p.repeat, steps)

    def inside(q: Parameter | None) -> tuple[tuple[Token, ...], ...]:
        targets = [parse_target(t, steps) for t in (q.targets if q else [])]
        return tuple(t.tokens[len(obj.tokens):] for t in targets)

    return Copies(object=obj, value=inside(p), weight=inside(weight),
                  chain=tuple((parse_path(path), value) for path, value in p.chain.items()))


def _check_steps(
    ep: Endpoint, eloc: str, problems: list[tuple[str, str]], endpoints: dict[str, Endpoint],
    job_scope: set[str] | None = None, filled: set[str] | None = None,
) -> None:
    """Step names, saved variables, placeholders, polls and loops of one endpoint.
    ``job_scope``: the variables a job's steps save, for an endpoint a job calls (interrupt)."""
    if ep.steps is not None and ep.result is None:
        problems.append((f"{eloc}.steps", "only generation endpoints have steps"))
    if ep.result is None:
        used = placeholders([ep.path, ep.query, ep.headers, ep.body])
        if job_scope is None and used:
            problems.append((eloc, "placeholders are only filled in generation endpoints and "
                                   "in those a job calls (progress, interrupt, skip): "
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
        scope = set(known) | (filled or set())
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
            for attr in ("until", "failWhen"):
                text = getattr(step.poll, attr)
                if text:
                    _check_jmespath(text, f"{sloc}.poll.{attr}", problems)
            queue = step.poll.backendQueue
            if queue:
                qloc = f"{sloc}.poll.backendQueue"
                _check_plain_endpoint(queue.endpoint, endpoints, f"{qloc}.endpoint", problems)
                _check_jmespath(queue.path, f"{qloc}.path", problems)
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
) -> tuple[dict[str, Any] | None, list[Region]]:
    """Replace ``{$file: path}`` values by the file's JSON; return the body and the places the
    files went (targets there must already exist: they bind to workflow nodes)."""
    regions: list[Region] = []

    def walk(node: Any, at: tuple[Token, ...]) -> Any:
        if isinstance(node, dict):
            if set(node) == {FILE_KEY}:
                file = Path(node[FILE_KEY])
                files.append(file)
                try:
                    content = read_json_file(file)
                except ValueError as exc:
                    problems.append((f"{loc}{'.' if at else ''}{format_path(at)}",
                                     f"cannot read JSON file {file.name}: {exc}"))
                    return {}
                regions.append((at, file.name, content))
                return content
            return {k: walk(v, (*at, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*at, i)) for i, v in enumerate(node)]
        return node

    return (walk(body, ()) if body is not None else None), regions


def read_json_file(file: Path) -> Any:
    """The JSON content of an included file: a regular file of at most MAX_INCLUDED_BYTES,
    nested at most MAX_DEPTH levels deep; ValueError (with the reason) otherwise."""
    text = read_regular_file(file, MAX_INCLUDED_BYTES, "an included file").decode("utf-8")
    try:
        content = json.loads(text)
    except RecursionError:
        raise LimitError(TOO_DEEP) from None
    if too_deep(content):
        raise LimitError(TOO_DEEP)
    return content


def _check_jmespath(text: str, loc: str, problems: list[tuple[str, str]]) -> None:
    problem = expr.check(text)
    if problem:
        problems.append((loc, problem))


def _index(value: str | list[str] | None, i: int) -> str:
    return f"[{i}]" if isinstance(value, list) else ""


def _check_plain_endpoint(
    name: str, endpoints: dict[str, Endpoint], loc: str, problems: list[tuple[str, str]]
) -> None:
    """``name`` is a one-request endpoint that is not a generation (interrupt, probes…)."""
    if _check_helper_endpoint(name, endpoints, loc, problems) and endpoints[name].steps:
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
                    problems.append((f"{loc}.override.{p.key}.{error_loc(e['loc'])}", e["msg"]))
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
    regions: list[list[Region]],
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
            _check_helper_endpoint(src.endpoint, endpoints, ploc + ".optionsEndpoint"
                                   + _index(p.optionsEndpoint, si), problems)
        if p.optionsPath:
            _check_jmespath(p.optionsPath, ploc + ".optionsPath", problems)
        for ai, alias in enumerate(p.optionsAliases):
            _check_jmespath(alias, f"{ploc}.optionsAliases[{ai}]", problems)
        for other in p.together:
            if other not in by_key or other == p.key:
                problems.append((f"{ploc}.together", f"no other parameter {other!r}"))
        if p.role is not None and p.role not in ROLES:
            problems.append((f"{ploc}.role", f"unknown role {p.role!r} (known: "
                                             f"{', '.join(ROLES)})"))
        if p.role == "mask" and p.type != "image":
            problems.append((f"{ploc}.role", "a mask is an image parameter"))
        if p.maskTransparent and p.role != "mask":
            problems.append((f"{ploc}.maskTransparent", "goes with role: mask"))
        if p.role == "mask" and not any(q.kind == "init_image" for q in params):
            problems.append((f"{ploc}.role", "a mask is painted over the mode's input image: "
                                             "the mode needs an image parameter with the role "
                                             "init_image"))
        if p.optionsAliases and not p.optionsEndpoint:
            problems.append((f"{ploc}.optionsAliases", "optionsAliases go with optionsEndpoint"))
        if p.defaultFrom:
            if p.type != "select":
                problems.append((f"{ploc}.defaultFrom", "only a select takes its value from "
                                                        "the service"))
            _check_helper_endpoint(p.defaultFrom.endpoint, endpoints,
                                    f"{ploc}.defaultFrom.endpoint", problems)
            _check_jmespath(p.defaultFrom.path, f"{ploc}.defaultFrom.path", problems)
        if p.ifEmpty:
            for path in [*p.ifEmpty.set, *p.ifEmpty.remove]:
                target = _parse_target(path, steps, f"{ploc}.ifEmpty", problems)
                if target:
                    _check_in_file(target, steps, regions, f"{ploc}.ifEmpty", problems)
        if p.weight is not None:
            _check_weight(p, by_key, params, ploc, problems)
        if p.chain and not p.repeat:
            problems.append((f"{ploc}.chain", "goes with repeat"))
        if p.appendTo:
            _check_append(p, by_key, ploc, problems)
            if p.repeat:
                problems.append((f"{ploc}.repeat", "a parameter has appendTo or repeat, not "
                                                   "both"))
            continue
        found: list[Target] = []
        for text in p.targets:
            target = _parse_target(text, steps, f"{ploc}.target", problems)
            if target is None:
                continue
            _check_target(p, target, steps, regions, fixed, written, ploc, problems)
            if any(_same_place(target, t) for t in found):
                problems.append((f"{ploc}.target", f"{text!r} is given twice"))
            found.append(target)
        written[p.key] = found
        if p.repeat:
            _check_repeat(p, by_key.get(p.weight or ""), steps, regions, ploc, problems)
    return written


def _check_target(
    p: Parameter, target: Target, steps: list[Step],
    regions: list[list[Region]], fixed: list[list[tuple[Token, ...]]],
    written: dict[str, list[Target]], ploc: str, problems: list[tuple[str, str]],
) -> None:
    step = steps[target.step]
    if target.place != "body":
        # A query parameter, a {name} of the path or a header: text, never an image.
        name = target.tokens[0]
        if p.type == "image":
            problems.append((f"{ploc}.target", f"an image cannot go into the {target.place}"))
        if target.place == "path" and name not in placeholders(step.path):
            problems.append((f"{ploc}.target", f"the path of step {step.name!r} has no "
                                               f"{{{name}}}"))
        for other_key, others in written.items():
            if any(_same_place(target, o) for o in others):
                problems.append((f"{ploc}.target", f"{target.place}:{name} is also the target "
                                                   f"of {other_key!r}"))
        return
    if step.method == "GET":
        problems.append((f"{ploc}.target", f"step {step.name!r} is a GET: it has no body "
                                           "to write into"))
    if p.type == "image" and step.encoding == "form":
        problems.append((f"{ploc}.target", "an image cannot go into a form-encoded body "
                                           "(use json or multipart)"))
    shown = format_path(target.tokens)
    for other_key, others in written.items():
        if any(_same_place(target, o) for o in others):
            problems.append((f"{ploc}.target", f"{shown!r} collides with the target of "
                                               f"{other_key!r}"))
    if _in_region(target.tokens, regions[target.step]):
        _check_in_file(target, steps, regions, f"{ploc}.target", problems)
    elif any(overlaps(target.tokens, f) for f in fixed[target.step]):
        problems.append((f"{ploc}.target", f"{shown!r} is also set by the endpoint's fixed "
                                           "body"))


def _same_place(a: Target, b: Target) -> bool:
    """Whether two targets write to the same place (or inside each other) of one step."""
    if a.step != b.step or a.place != b.place:
        return False
    return a.tokens == b.tokens if a.place != "body" else overlaps(a.tokens, b.tokens)


def _check_helper_endpoint(
    name: str, endpoints: dict[str, Endpoint], loc: str, problems: list[tuple[str, str]]
) -> bool:
    """``name`` is an endpoint and not a generation endpoint (an option list, a setting)."""
    target = endpoints.get(name)
    if target is None:
        problems.append((loc, f"no endpoint named {name!r}"))
    elif target.result is not None:
        problems.append((loc, f"{name!r} is a generation endpoint"))
    return target is not None and target.result is None


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


def _parse_target(
    text: str, steps: list[Step], loc: str, problems: list[tuple[str, str]]
) -> Target | None:
    try:
        return parse_target(text, steps)
    except PathError as exc:
        problems.append((loc, str(exc)))
        return None


def _in_region(tokens: tuple[Token, ...], regions: list[Region]) -> bool:
    return any(tokens[: len(at)] == at and len(tokens) > len(at) for at, _, _ in regions)


def _check_in_file(
    target: Target, steps: list[Step], regions: list[list[Region]],
    loc: str, problems: list[tuple[str, str]],
) -> None:
    """A target inside a file-loaded body (a workflow) must name something that exists."""
    for at, name, content in regions[target.step]:
        if target.tokens[: len(at)] != at:
            continue
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


def _check_append(
    p: Parameter, by_key: dict[str, Parameter], ploc: str, problems: list[tuple[str, str]]
) -> None:
    assert p.appendTo is not None
    other = by_key.get(p.appendTo.to)
    if other is None:
        problems.append((f"{ploc}.appendTo.to", f"no parameter {p.appendTo.to!r}"))
    elif other.type not in ("text", "textarea") or other.appendTo or not other.targets:
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
    # Which fields a type takes is the model's check (Parameter._fits_its_type).
    if p.range is not None and p.range[0] > p.range[1]:
        problems.append((f"{ploc}.range", "min is greater than max"))
    if p.type == "select" and not p.options and not p.sources:
        problems.append((ploc, "a select needs options or optionsEndpoint"))
    for regex in p.refuse:
        try:
            re.compile(regex)
        except re.error as exc:
            problems.append((f"{ploc}.refuse", f"{regex!r} is not a regular expression: {exc}"))
    if p.type == "image" and p.defaultValue is not None:
        problems.append((f"{ploc}.defaultValue", "an image parameter has no default"))
    if p.defaultValue is not None and p.type != "image":
        # Defaults go through the same validation as submitted values.
        defaults = p.defaultValue if p.multiple and isinstance(p.defaultValue, list) else [
            p.defaultValue]
        try:
            for value in defaults:
                coerce(p, value, allowed=None)
        except FieldError as exc:
            problems.append((f"{ploc}.defaultValue", str(exc)))


def _check_weight(
    p: Parameter, by_key: dict[str, Parameter], params: list[Parameter], ploc: str,
    problems: list[tuple[str, str]],
) -> None:
    """A select's weight is a number parameter of the set, the weight of no other select,
    sent only as part of each chosen value (no target of its own outside the repeated
    object)."""
    weight = by_key.get(p.weight or "")
    wloc = f"{ploc}.weight"
    if weight is None or weight.key == p.key:
        problems.append((wloc, f"no other parameter {p.weight!r}"))
        return
    if weight.type not in ("number", "integer"):
        problems.append((wloc, f"{weight.key!r} is a {weight.type}: a weight is a number or "
                               "an integer"))
    if weight.when:
        problems.append((wloc, f"{weight.key!r} has a condition: a weight goes with each "
                               "chosen value, and only there"))
    others = [q.key for q in params if q.weight == weight.key and q.key != p.key]
    if others:
        problems.append((wloc, f"{weight.key!r} is also the weight of {others[0]!r}"))
    if weight.targets and not p.repeat:
        problems.append((wloc, f"{weight.key!r} has targets of its own: give it target: [] "
                               "(each value's weight goes into appendTo's format as "
                               f"{{{weight.key}}}), or repeat an object to write it into"))


def _check_repeat(
    p: Parameter, weight: Parameter | None, steps: list[Step], regions: list[list[Region]],
    ploc: str, problems: list[tuple[str, str]],
) -> None:
    """The repeated object is an object of a file-loaded body (a workflow node); the
    parameter's targets, and its weight's, are inside it; the chain's paths parse and use
    only {previous}."""
    assert p.repeat is not None
    rloc = f"{ploc}.repeat"
    target = _parse_target(p.repeat, steps, rloc, problems)
    if target is None:
        return
    if target.place != "body" or not isinstance(target.tokens[-1], str):
        problems.append((rloc, "names a key of an object in the body"))
        return
    if not _in_region(target.tokens, regions[target.step]):
        problems.append((rloc, "must name an object of a file-loaded body (a workflow): its "
                               "copies take its place there"))
        return
    before = len(problems)
    _check_in_file(target, steps, regions, rloc, problems)
    if len(problems) == before and not isinstance(_region_value(target, regions), dict):
        problems.append((rloc, "is not an object (only an object is copied)"))
    for q in (p, weight):
        for text in q.targets if q is not None else []:
            inner = _parse_target(text, steps, f"{ploc}.target", problems)
            if inner is not None and not (
                    inner.step == target.step and inner.place == "body"
                    and len(inner.tokens) > len(target.tokens)
                    and inner.tokens[: len(target.tokens)] == target.tokens):
                where = "target" if q is p else f"weight {q.key!r}'s target"
                problems.append((rloc, f"the {where} {text!r} is not inside the repeated "
                                       f"object {p.repeat!r} (it is written into each copy)"))
    for path in p.chain:
        try:
            parse_path(path)
        except PathError as exc:
            problems.append((f"{ploc}.chain", str(exc)))
    for name in sorted(placeholders(list(p.chain.values())) - {"previous"}):
        problems.append((f"{ploc}.chain", f"unknown placeholder {{{name}}} (known here: "
                                          "{previous})"))


def _region_value(target: Target, regions: list[list[Region]]) -> Any:
    """What a target inside a file-loaded body names (it exists)."""
    for at, _name, content in regions[target.step]:
        if target.tokens[: len(at)] == at:
            return get_path(content, target.tokens[len(at):])
    return None


def _leaf_paths(doc: Any, prefix: tuple[Token, ...] = ()) -> list[tuple[Token, ...]]:
    # An empty object is a place for parameters to write into ({input: {}}), not a value.
    if isinstance(doc, dict):
        return [t for k, v in doc.items() for t in _leaf_paths(v, (*prefix, k))]
    if isinstance(doc, list) and doc:
        return [t for i, v in enumerate(doc) for t in _leaf_paths(v, (*prefix, i))]
    return [prefix] if prefix else []


# webui's own note in the PNGs it saves (the service, mode and values of the job).
WEBUI_KEYWORD = "webui"
_PNG_KEYWORD = re.compile(r"[\x20-\x7e\xa1-\xff]{1,79}")


def _check_images(model: Definition, modes: dict[str, Mode],
                  problems: list[tuple[str, str]]) -> None:
    """``images``: PNG keywords, and readers naming parameters some mode has."""
    keys = {p.key for m in modes.values() for p in m.parameters if p.type != "image"}
    for keyword, reader in model.images.items():
        loc = f"images.{keyword}"
        if not _PNG_KEYWORD.fullmatch(keyword) or keyword != keyword.strip():
            problems.append((loc, "a PNG text keyword is 1 to 79 Latin-1 characters, without "
                                  "leading or trailing spaces"))
        elif keyword == WEBUI_KEYWORD:
            problems.append((loc, f"{WEBUI_KEYWORD!r} is webui's own note in the images it "
                                  "saves"))
        if isinstance(reader, str):
            continue
        if not reader:
            problems.append((loc, "name at least one parameter to read"))
        for key, text in reader.items():
            if modes and key not in keys:
                problems.append((f"{loc}.{key}", f"no mode has a parameter {key!r} (known: "
                                                 f"{', '.join(sorted(keys))})"))
            _check_jmespath(text, f"{loc}.{key}", problems)
