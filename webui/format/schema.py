"""The JSON Schema of definition files, for editors (docs/definition.schema.json)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from .model import Definition


def json_schema() -> dict[str, Any]:
    """The JSON Schema of definition files (committed as docs/definition.schema.json)."""
    schema = Definition.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "webui service definition"
    return schema


@cache
def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
