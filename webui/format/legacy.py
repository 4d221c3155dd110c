"""Definition files written for the first edition of the format keep working: their old
keywords are rewritten into the new ones when a file is read, and each rewrite is a warning
that says what to write instead (``webui check`` prints them; ``webui check --upgrade FILE``
writes the file anew).
"""

from __future__ import annotations

import copy
import re
from typing import Any

Warnings = list[tuple[str, str]]


def upgrade(data: dict[str, Any]) -> tuple[dict[str, Any], Warnings]:
    """The file's data in the current edition, and what was rewritten (location, message)."""
    data = copy.deepcopy(data)
    warnings: Warnings = []
    identify = data.pop("identify", None)
    for ci, cap in enumerate(_list(data.get("capabilities"))):
        if not isinstance(cap, dict):
            continue
        cloc = f"capabilities[{ci}]"
        for name, ep in _dict(cap.get("endpoints")).items():
            _endpoint(ep, f"{cloc}.endpoints.{name}", warnings)
        for name, spec in _dict(cap.get("parameters")).items():
            sloc = f"{cloc}.parameters.{name}"
            if isinstance(spec, list):
                for i, p in enumerate(spec):
                    _parameter(p, f"{sloc}[{i}]", warnings)
            elif isinstance(spec, dict):
                for i, p in enumerate(_list(spec.get("add"))):
                    _parameter(p, f"{sloc}.add[{i}]", warnings)
                for key, patch in _dict(spec.get("override")).items():
                    _parameter(patch, f"{sloc}.override.{key}", warnings)
        jobs = cap.get("jobs")
        if isinstance(jobs, dict) and isinstance(jobs.get("progress"), dict):
            _progress(jobs["progress"], f"{cloc}.jobs.progress", warnings)
    if isinstance(identify, dict):
        _identify(data, identify, warnings)
    return data, warnings


def _identify(data: dict[str, Any], identify: dict[str, Any], warnings: Warnings) -> None:
    """The probe becomes the health check, its condition the health endpoint's ``when``."""
    caps = [c for c in _list(data.get("capabilities")) if isinstance(c, dict)]
    probe = next((c["endpoints"][identify.get("endpoint")] for c in caps
                  if identify.get("endpoint") in _dict(c.get("endpoints"))), None)
    health = next((c for c in caps if c.get("capability") == "health"), None)
    if not isinstance(probe, dict):
        return
    endpoint = {k: v for k, v in probe.items() if k in ("method", "path", "query", "headers",
                                                        "timeout")}
    endpoint["when"] = identify.get("when")
    if health is None:
        data.setdefault("capabilities", []).insert(0, {"capability": "health",
                                                       "endpoints": {"health": endpoint}})
    else:
        health["endpoints"] = {next(iter(_dict(health.get("endpoints"))), "health"): endpoint}
    warnings.append(("identify", "make the probe the health endpoint, with `when: <condition>` "
                                 "(identify is gone)"))


def _endpoint(ep: Any, loc: str, warnings: Warnings) -> None:
    if not isinstance(ep, dict):
        return
    _rename(ep, "encoding", "as", loc, warnings)
    result = ep.get("result")
    if isinstance(result, dict):
        _result(result, f"{loc}.result", warnings)
    for i, step in enumerate(_list(ep.get("steps"))):
        _endpoint(step, f"{loc}.steps[{i}]", warnings)
    poll = ep.get("poll")
    if isinstance(poll, dict):
        _poll(poll, f"{loc}.poll", warnings)


def _result(result: dict[str, Any], loc: str, warnings: Warnings) -> None:
    _rename(result, "encoding", "as", loc, warnings)
    fields = result.pop("parseJson", None)
    if fields:
        for attr in ("images", "seeds", "infotexts", "info"):
            text = result.get(attr)
            if isinstance(text, str):
                for field in fields:
                    text = re.sub(rf"(?<![\w.'`]){re.escape(field)}(?![\w'`])",
                                  f"json({field})", text)
                result[attr] = text
        warnings.append((f"{loc}.parseJson", "read JSON text with the json() function: "
                                             f"json({fields[0]}).… (parseJson is gone)"))
    headers = result.pop("headers", None)
    if isinstance(headers, dict) and headers:
        for attr, header in headers.items():
            result[attr] = f"header('{header}')"
        attr, header = next(iter(headers.items()))
        warnings.append((f"{loc}.headers", "read a header with the header() function: "
                                           f"{attr}: \"header('{header}')\" (headers is gone)"))


def _poll(poll: dict[str, Any], loc: str, warnings: Warnings) -> None:
    message = poll.pop("failMessage", None)
    if message and poll.get("failWhen"):
        poll["failWhen"] = f"({poll['failWhen']}) && ({message} || 'no reason given')"
        warnings.append((f"{loc}.failMessage", "failWhen gives the reason itself: "
                                               "`failWhen: \"<condition> && <message>\"`"))
    elif message:
        warnings.append((f"{loc}.failMessage", "removed: without failWhen it was never used "
                                               "(failWhen gives the reason itself)"))
    queue = poll.get("backendQueue")
    if isinstance(queue, dict) and "path" not in queue:
        parts = [f"{k}: {queue.pop(k)}" for k in ("running", "waiting", "ahead") if k in queue]
        queue["path"] = "{" + ", ".join(parts) + "}"
        warnings.append((f"{loc}.backendQueue", "one path gives the object: "
                                                "`path: \"{running: …, waiting: …, ahead: …}\"`"))


def _parameter(p: Any, loc: str, warnings: Warnings) -> None:
    if not isinstance(p, dict):
        return
    _rename(p, "encode", "as", loc, warnings)
    if p.get("send") is False:
        p.pop("send")
        p["target"] = []
        warnings.append((f"{loc}.send", "a value sent nowhere has `target: []` (send is gone)"))
    elif "send" in p:
        p.pop("send")
    if p.pop("pickRandom", None):
        low, high = (p.get("range") or [0, 4294967295])
        p["range"] = [max(0, low), high]
        warnings.append((f"{loc}.pickRandom", "a seed whose range starts at 0 gets -1 picked "
                                              "by webui (pickRandom is gone)"))
    sources = p.pop("optionsFrom", None)
    if sources:
        endpoints = [s.get("endpoint") for s in sources if isinstance(s, dict)]
        head = p.get("optionsEndpoint")
        p["optionsEndpoint"] = ([head] if isinstance(head, str) else []) + endpoints
        keys = (("path", "optionsPath"), ("valueKey", "optionsValueKey"),
                ("labelKey", "optionsLabelKey"), ("aliases", "optionsAliases"))
        first = sources[0] if isinstance(sources[0], dict) else {}
        for old, new in keys:
            if old in first and new not in p:
                p[new] = first[old]
        warnings.append((f"{loc}.optionsFrom", "list the endpoints in optionsEndpoint: "
                                               "[a, b] (optionsFrom is gone)"))
        for i, source in enumerate(sources[1:], 1):
            differs = [old for old, _ in keys
                       if isinstance(source, dict) and source.get(old) != first.get(old)]
            if differs:
                # One parameter reads all its endpoints alike now: say what no longer holds.
                warnings.append((f"{loc}.optionsFrom[{i}]", f"read with the first source's "
                                 f"{', '.join(differs)} now: every endpoint of a parameter "
                                 "is read alike; check its answers have that shape"))
    places = [(p.get("when"), f"{loc}.when")] + [
        (o.get("when"), f"{loc}.options[{j}].when")
        for j, o in enumerate(_list(p.get("options"))) if isinstance(o, dict)]
    for where, wloc in places:
        if isinstance(where, dict):
            for key, wanted in where.items():
                where[key] = _pattern(wanted, f"{wloc}.{key}", warnings)


def _pattern(wanted: Any, loc: str, warnings: Warnings) -> Any:
    if isinstance(wanted, list):
        return [_pattern(w, loc, warnings) for w in wanted]
    if isinstance(wanted, dict) and set(wanted) == {"pattern"}:
        warnings.append((loc, f"write a pattern as \"/{wanted['pattern']}/\""))
        return f"/{wanted['pattern']}/"
    return wanted


def _progress(progress: dict[str, Any], loc: str, warnings: Warnings) -> None:
    _rename(progress, "previewEncoding", "as", loc, warnings)
    _rename(progress, "activeWhen", "when", loc, warnings)
    step, steps = progress.pop("step", None), progress.pop("steps", None)
    fraction = progress.pop("fraction", None)
    dropped = ""
    if step and steps:
        progress["value"] = f"[{step}, {steps}]"
        if fraction:
            dropped = "; fraction was dropped ([done, total] gives the fraction too)"
    elif fraction:
        progress["value"] = fraction
        if step or steps:
            dropped = f"; {'step' if step else 'steps'} without the other was dropped"
    elif step or steps:
        dropped = (f"; {'step' if step else 'steps'} without the other gives no progress and "
                   "was dropped: write value: [done, total]")
    if step or steps or fraction:
        warnings.append((loc, "the progress is `value`: 0..1, or [done, total] "
                              f"(fraction, step and steps are gone){dropped}"))


def _rename(node: dict[str, Any], old: str, new: str, loc: str, warnings: Warnings) -> None:
    if old in node:
        value = node.pop(old)
        node.setdefault(new, value)
        warnings.append((f"{loc}.{old}", f"write {new}: {value} ({old} is now {new})"))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
