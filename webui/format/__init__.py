"""The definition format: what a service definition file may say, how it is read and checked.

Pure: nothing here talks HTTP or knows the web layer. ``load_file`` gives a
:class:`ServiceDefinition` (or raises :class:`DefinitionError` with ``field.path: message``
lines); the rest of webui works from that.
"""

from .conditions import condition_holds, condition_order, pattern_of, same_value, when_json
from .load import Lookup, load_data, load_file, parse_text, read_raw
from .model import (
    DEFAULT_SEED_RANGE,
    GENERATION_CAPABILITY,
    HEALTH_CAPABILITY,
    Definition,
    Endpoint,
    Jobs,
    Option,
    OptionsSource,
    Parameter,
    Request,
    Result,
    Source,
    Step,
    When,
)
from .resolved import (
    FILE_KEY,
    MODE_LABELS,
    PLACEHOLDER,
    DefinitionError,
    Mode,
    ServiceDefinition,
    Target,
    parse_target,
    placeholders,
)
from .schema import json_schema, schema_text
from .values import Choice, FieldError, coerce, find_choice, item_parts, items_text, refused

__all__ = [
    "Choice", "DEFAULT_SEED_RANGE", "Definition", "DefinitionError", "Endpoint", "FILE_KEY",
    "FieldError", "GENERATION_CAPABILITY", "HEALTH_CAPABILITY", "Jobs", "Lookup", "MODE_LABELS",
    "Mode", "Option", "OptionsSource", "PLACEHOLDER", "Parameter", "Request", "Result",
    "ServiceDefinition", "Source", "Step", "Target", "When", "coerce", "condition_holds",
    "condition_order", "find_choice", "item_parts", "items_text", "json_schema", "load_data",
    "load_file", "parse_target",
    "parse_text", "pattern_of", "placeholders", "read_raw", "refused", "same_value",
    "schema_text", "when_json",
]
