"""Typed attributes: what a layer, optimizer, schedule or dataset accepts, with defaults and checks.

An `Attr` both validates a user's value (returning the normalised form that kernels see) and describes
itself as JSON Schema, so the spec validator and `cnnkit schema` never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()

KINDS = ("int", "float", "bool", "str", "choice", "pair", "padding", "ints", "strs", "floats")


@dataclass(frozen=True)
class Attr:
    """One attribute.

    kind: int | float | bool | str | choice (one of `choices`) | pair (int or [h, w] -> (h, w)) |
    padding (int, [h, w], [top, left, bottom, right] -> 4-tuple, or "same"/"valid") |
    ints / floats / strs (a list; tuple after parsing).
    `minimum`/`maximum` bound numbers (each element for pair/ints); `exclusive_min`/`exclusive_max` make
    them strict.
    A default of None makes the attribute optional: null means "not given" (e.g. a pool's stride).
    """

    name: str
    kind: str
    default: Any = REQUIRED
    doc: str = ""
    minimum: float | None = None
    maximum: float | None = None
    exclusive_min: bool = False
    exclusive_max: bool = False
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"attribute '{self.name}': unknown kind '{self.kind}', expected one of {KINDS}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def parse(self, value: Any) -> Any:
        """The normalised value, or ValueError saying what was expected and what was found."""
        if value is None and self.default is None:
            return None
        parser = _PARSERS[self.kind]
        return parser(self, value)

    def expected(self) -> str:
        """Plain words for what this attribute takes, for error messages."""
        return _describe(self)

    def json_schema(self) -> dict[str, Any]:
        schema = _SCHEMAS[self.kind](self)
        return {"anyOf": [schema, {"type": "null"}]} if self.default is None else schema


def parse_attrs(attrs: tuple[Attr, ...], values: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in and every value parsed; unknown or missing names raise KeyError(name)."""
    known = {a.name: a for a in attrs}
    for name in values:
        if name not in known:
            raise KeyError(name)
    out: dict[str, Any] = {}
    for attr in attrs:
        if attr.name in values:
            out[attr.name] = attr.parse(values[attr.name])
        elif attr.required:
            raise LookupError(attr.name)
        else:
            out[attr.name] = attr.default
    return out


def _got(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "nothing (null)"
    if isinstance(value, list):
        return f"the list {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


def _bounds(attr: Attr) -> str:
    parts = []
    if attr.minimum is not None:
        parts.append(f"{'>' if attr.exclusive_min else '>='} {_num(attr.minimum)}")
    if attr.maximum is not None:
        parts.append(f"{'<' if attr.exclusive_max else '<='} {_num(attr.maximum)}")
    return " and ".join(parts)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _describe(attr: Attr) -> str:
    bounds = _bounds(attr)
    suffix = f" {bounds}" if bounds else ""
    return {
        "int": f"an integer{suffix}",
        "float": f"a number{suffix}",
        "bool": "true or false",
        "str": "a string",
        "choice": "one of " + ", ".join(repr(c) for c in attr.choices),
        "pair": f"an integer{suffix} or a list [height, width] of such integers",
        "padding": "'same', 'valid', an integer >= 0, [height, width] or [top, left, bottom, right]",
        "ints": f"a list of integers{suffix}",
        "floats": f"a list of numbers{suffix}",
        "strs": "a list of strings",
    }[attr.kind]


def _fail(attr: Attr, value: Any) -> ValueError:
    return ValueError(f"expected {attr.expected()}, got {_got(value)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_bounds(attr: Attr, value: Any, whole: Any) -> None:
    if attr.minimum is not None:
        if value < attr.minimum or (attr.exclusive_min and value <= attr.minimum):
            raise _fail(attr, whole)
    if attr.maximum is not None:
        if value > attr.maximum or (attr.exclusive_max and value >= attr.maximum):
            raise _fail(attr, whole)


def _parse_int(attr: Attr, value: Any) -> int:
    if not _is_int(value):
        raise _fail(attr, value)
    _check_bounds(attr, value, value)
    return value


def _parse_float(attr: Attr, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(attr, value)
    _check_bounds(attr, value, value)
    return float(value)


def _parse_bool(attr: Attr, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(attr, value)
    return value


def _parse_str(attr: Attr, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(attr, value)
    return value


def _parse_choice(attr: Attr, value: Any) -> str:
    if not isinstance(value, str) or value not in attr.choices:
        raise _fail(attr, value)
    return value


def _parse_pair(attr: Attr, value: Any) -> tuple[int, int]:
    items = [value, value] if _is_int(value) else value
    if not isinstance(items, (list, tuple)) or len(items) != 2 or not all(_is_int(v) for v in items):
        raise _fail(attr, value)
    for v in items:
        _check_bounds(attr, v, value)
    return (items[0], items[1])


def _parse_padding(attr: Attr, value: Any) -> str | tuple[int, int, int, int]:
    if value in ("same", "valid"):
        return "same" if value == "same" else (0, 0, 0, 0)
    items = [value] if _is_int(value) else value
    if not isinstance(items, (list, tuple)) or len(items) not in (1, 2, 4):
        raise _fail(attr, value)
    if not all(_is_int(v) and v >= 0 for v in items):
        raise _fail(attr, value)
    if len(items) == 1:
        return (items[0],) * 4
    if len(items) == 2:
        return (items[0], items[1], items[0], items[1])
    return tuple(items)  # type: ignore[return-value]


def _parse_list(attr: Attr, value: Any, check) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise _fail(attr, value)
    for v in value:
        if not check(v):
            raise _fail(attr, value)
        if not isinstance(v, str):
            _check_bounds(attr, v, value)
    return tuple(value)


_PARSERS = {
    "int": _parse_int,
    "float": _parse_float,
    "bool": _parse_bool,
    "str": _parse_str,
    "choice": _parse_choice,
    "pair": _parse_pair,
    "padding": _parse_padding,
    "ints": lambda a, v: _parse_list(a, v, _is_int),
    "floats": lambda a, v: tuple(float(x) for x in _parse_list(
        a, v, lambda x: isinstance(x, (int, float)) and not isinstance(x, bool))),
    "strs": lambda a, v: _parse_list(a, v, lambda x: isinstance(x, str) and bool(x)),
}


def _number_schema(attr: Attr, type_: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": type_}
    if attr.minimum is not None:
        schema["exclusiveMinimum" if attr.exclusive_min else "minimum"] = attr.minimum
    if attr.maximum is not None:
        schema["exclusiveMaximum" if attr.exclusive_max else "maximum"] = attr.maximum
    return schema


def _with_doc(attr: Attr, schema: dict[str, Any]) -> dict[str, Any]:
    if attr.doc:
        schema["description"] = attr.doc
    if not attr.required:
        default = attr.default
        schema["default"] = list(default) if isinstance(default, tuple) else default
    return schema


_SCHEMAS = {
    "int": lambda a: _with_doc(a, _number_schema(a, "integer")),
    "float": lambda a: _with_doc(a, _number_schema(a, "number")),
    "bool": lambda a: _with_doc(a, {"type": "boolean"}),
    "str": lambda a: _with_doc(a, {"type": "string", "minLength": 1}),
    "choice": lambda a: _with_doc(a, {"enum": list(a.choices)}),
    "pair": lambda a: _with_doc(a, {"oneOf": [
        _number_schema(a, "integer"),
        {"type": "array", "items": _number_schema(a, "integer"), "minItems": 2, "maxItems": 2}]}),
    "padding": lambda a: _with_doc(a, {"oneOf": [
        {"enum": ["same", "valid"]}, {"type": "integer", "minimum": 0},
        {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 4,
         "not": {"minItems": 3, "maxItems": 3}}]}),
    "ints": lambda a: _with_doc(a, {"type": "array", "items": _number_schema(a, "integer")}),
    "floats": lambda a: _with_doc(a, {"type": "array", "items": _number_schema(a, "number")}),
    "strs": lambda a: _with_doc(a, {"type": "array", "items": {"type": "string", "minLength": 1}}),
}
