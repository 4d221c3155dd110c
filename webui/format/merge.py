"""``extends``: a definition merged over the one it builds on (JSON merge patch)."""

from __future__ import annotations

from typing import Any

from .resolved import FILE_KEY


def inherit(child: dict[str, Any], parent: dict[str, Any], parent_id: str) -> dict[str, Any]:
    """Merge a child definition over its parent (JSON merge patch: mappings merge, null
    deletes, other values replace). Capabilities merge by their ``capability``; the parent's
    parameter sets stay available as ``<parent_id>:<name>``."""
    merged = _merge_patch({k: v for k, v in parent.items() if k not in ("$schema", "$warnings")},
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
