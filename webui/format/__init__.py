"""The definition format: what a service definition file may say, how it is read and checked.

Pure: nothing here talks HTTP or knows the web layer. ``load_file`` gives a
:class:`ServiceDefinition` (or raises :class:`DefinitionError` with ``field.path: message``
lines); the rest of webui works from that.
"""

from .conditions import condition_holds, condition_order, same_value, when_json
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
    Pattern,
    Request,
    Result,
    Step,
    When,
)
from .resolved import (
    FILE_KEY,
    PLACEHOLDER,
    DefinitionError,
    Mode,
    ServiceDefinition,
    Target,
    parse_target,
    placeholders,
)
from .schema import json_schema, schema_text
from .values import Choice, FieldError, coerce, find_choice

__all__ = [
    "DEFAULT_SEED_RANGE", "FILE_KEY", "GENERATION_CAPABILITY", "HEALTH_CAPABILITY", "PLACEHOLDER",
    "Choice", "Definition", "DefinitionError", "Endpoint", "FieldError", "Jobs", "Lookup", "Mode",
    "Option", "OptionsSource", "Parameter", "Pattern", "Request", "Result", "ServiceDefinition",
    "Step", "Target", "When", "coerce", "condition_holds", "condition_order", "find_choice",
    "json_schema", "load_data", "load_file", "parse_target", "parse_text", "placeholders",
    "read_raw", "same_value", "schema_text", "when_json",
]
