"""The spec format as JSON Schema (draft 2020-12), generated from what the plugins registered.

Editors use it to complete and check spec files (`cnnkit schema -o cnnkit-spec.schema.json`). It is built
from the same Attr records the loader validates with, so the two agree on every attribute; what only the
loader can check (shapes, cycles, unknown inputs) is left to `cnnkit summary`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cnnkit.attrs import Attr
from cnnkit.registry import Registry
from cnnkit.spec.loader import NAME, TRAIN_COUNTS, TRAIN_DEFAULTS
from cnnkit.spec.model import INPUT

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(registry: Registry) -> dict[str, Any]:
    """The JSON Schema of a spec file, for the layer types, datasets, optimizers, schedules and losses in
    `registry`: each layer type's attributes, defaults and bounds, with unknown keys refused."""
    defs: dict[str, Any] = {"name": {"type": "string", "pattern": f"^{NAME.pattern}$",
                                     "description": "letters, digits, '_' or '-', starting with a letter "
                                                    "or '_'"}}
    defs["layer"] = _layer(registry, defs)
    defs["train"] = _train(registry, defs)
    return {
        "$schema": DIALECT,
        "title": "cnnkit network spec",
        "description": "A CNN declared in YAML: its input shape, its layers and how to train it.",
        "type": "object",
        "required": ["name", "input", "layers"],
        "additionalProperties": False,
        "properties": {
            "name": {"$ref": "#/$defs/name"},
            "description": {"type": ["string", "null"]},
            "input": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1,
                      "maxItems": 3, "description": "[channels, height, width] or [features]"},
            "layers": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/layer"},
                       "description": "in order; each takes the previous layer's output unless 'inputs' "
                                      "names others"},
            "train": {"anyOf": [{"$ref": "#/$defs/train"}, {"type": "null"}]},
        },
        "$defs": defs,
    }


def _attr_properties(attrs: tuple[Attr, ...]) -> dict[str, Any]:
    return {attr.name: attr.json_schema() for attr in attrs}


def _required(attrs: tuple[Attr, ...]) -> list[str]:
    return [attr.name for attr in attrs if attr.required]


def _dispatch(key: str, records: Mapping[str, Any], prefix: str, common: dict[str, Any],
              defs: dict[str, Any]) -> dict[str, Any]:
    """{"allOf": one `if key is this name then that record's schema` per record}, each schema in defs."""
    branches = []
    for name, record in records.items():
        defs[f"{prefix}.{name}"] = {
            "type": "object",
            "properties": {**common, key: {"const": name}, **_attr_properties(record.attrs)},
            "required": [key, *_required(record.attrs)],
            "additionalProperties": False,
            **({"description": record.doc} if record.doc else {}),
        }
        branches.append({"if": {"properties": {key: {"const": name}}, "required": [key]},
                         "then": {"$ref": f"#/$defs/{prefix}.{name}"}})
    return {"allOf": branches} if branches else {}


def _layer(registry: Registry, defs: dict[str, Any]) -> dict[str, Any]:
    common = {
        "name": {"$ref": "#/$defs/name"},
        "inputs": {"anyOf": [{"$ref": "#/$defs/name"},
                             {"type": "array", "items": {"$ref": "#/$defs/name"}, "minItems": 1},
                             {"type": "null"}],
                   "description": f"the layers (or '{INPUT}') whose outputs this layer takes; "
                                  f"default: the previous layer"},
        "backend": {"enum": [*registry.backends, None],
                    "description": "run this layer on another backend than the network's"},
    }
    return {
        "type": "object",
        "required": ["name", "type"],
        "properties": {**common, "type": {"enum": list(registry.layers)}},
        **_dispatch("type", registry.layers, "layer", common, defs),
    }


def _section(key: str, records: Mapping[str, Any], prefix: str, defs: dict[str, Any],
             default: Any = None) -> dict[str, Any]:
    """A train section: a record's name alone (when it needs no attribute) or {key: name, **attrs}."""
    names = list(records)
    bare = [name for name, record in records.items() if not _required(record.attrs)]
    mapping = {"type": "object", "required": [key], "properties": {key: {"enum": names}},
               **_dispatch(key, records, prefix, {}, defs)}
    schema: dict[str, Any] = {"anyOf": [{"enum": bare}, mapping] if bare else [mapping]}
    if default is not None:
        schema["default"] = default
    return schema


def _train(registry: Registry, defs: dict[str, Any]) -> dict[str, Any]:
    counts = {key: {"type": "integer", "minimum": minimum, "default": getattr(TRAIN_DEFAULTS, key)}
              for key, minimum in TRAIN_COUNTS.items()}
    return {
        "type": "object",
        "required": ["data"],
        "additionalProperties": False,
        "properties": {
            "data": _section("dataset", registry.datasets, "dataset", defs),
            **counts,
            "optimizer": _section("type", registry.optimizers, "optimizer", defs, TRAIN_DEFAULTS.optimizer),
            "schedule": _section("type", registry.schedules, "schedule", defs, TRAIN_DEFAULTS.schedule),
            "loss": _section("type", registry.losses, "loss", defs, TRAIN_DEFAULTS.loss),
        },
    }
