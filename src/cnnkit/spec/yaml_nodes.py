"""YAML text -> plain Python values plus the file position of every value.

Parsed with PyYAML's C safe loader into composed nodes, then converted with YAML 1.2 core-schema rules so
the YAML 1.1 traps do not bite: `1e-3` is a float, `NO`/`on`/`yes` stay strings, only true/false are
booleans. Anchors, aliases and explicit tags are refused (no alias bombs, no python objects), as are
duplicate keys, nesting deeper than MAX_DEPTH and text over MAX_BYTES.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from cnnkit.errors import Mark, SpecError

MAX_BYTES = 1 << 20
MAX_DEPTH = 64

_NULL = {"", "~", "null", "Null", "NULL"}
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+$")
_HEX = re.compile(r"0x[0-9a-fA-F]+$")
_OCT = re.compile(r"0o[0-7]+$")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_SPECIAL_FLOAT = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}

Path = tuple[Any, ...]


def read_yaml(text: str, source: str) -> tuple[Any, dict[Path, Mark]]:
    """The document's value and a map from each value's path (keys and indices) to its position."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise SpecError(f"the spec is larger than {MAX_BYTES // 1024} KiB; a network spec is a few KiB, "
                        f"so this is probably not a spec", source=source)
    if not text.strip():
        raise SpecError("the spec is empty; expected a mapping with 'name', 'input' and 'layers'",
                        source=source, mark=Mark(1, 1))
    try:
        _check_events(text, source)
        node = yaml.compose(text, Loader=yaml.CSafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark else None
        problem = error.problem or error.context or "invalid YAML"
        raise SpecError(f"invalid YAML: {problem}", source=source, mark=where) from None
    except yaml.YAMLError as error:
        raise SpecError(f"invalid YAML: {error}", source=source) from None
    marks: dict[Path, Mark] = {}
    return _convert(node, (), marks, source), marks


def _mark(node_or_event: Any) -> Mark:
    start = node_or_event.start_mark
    return Mark(start.line + 1, start.column + 1)


def _check_events(text: str, source: str) -> None:
    depth = 0
    documents = 0
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise SpecError("anchors and aliases (&name / *name) are not allowed in specs; write the "
                            "values out", source=source, mark=_mark(event))
        tag = getattr(event, "tag", None)
        implicit = getattr(event, "implicit", True)
        explicit = tag is not None and (implicit is False or implicit == (False, False))
        if explicit and tag not in ("!", "tag:yaml.org,2002:str"):
            raise SpecError(f"YAML tags like '{tag}' are not allowed in specs; write plain values",
                            source=source, mark=_mark(event))
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecError(f"the spec nests deeper than {MAX_DEPTH} levels", source=source,
                                mark=_mark(event))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise SpecError("the file holds more than one YAML document ('---'); a spec is one",
                                source=source, mark=_mark(event))


def _convert(node: yaml.Node, path: Path, marks: dict[Path, Mark], source: str) -> Any:
    marks[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _convert(key_node, (*path, "<key>"), {}, source)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise SpecError(f"mapping keys must be names, got {key!r}", source=source,
                                mark=_mark(key_node))
            if key in out:
                raise SpecError(f"duplicate key '{key}' (first at line {marks[(*path, key)].line}); "
                                f"each key may appear once", source=source, mark=_mark(key_node))
            out[key] = _convert(value_node, (*path, key), marks, source)
            marks[(*path, key)] = _mark(value_node)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), marks, source) for i, item in enumerate(node.value)]
    return scalar(node.value, plain=not node.style)


def scalar(text: str, plain: bool = True) -> Any:
    """A YAML 1.2 core-schema scalar: quoted text is always a string."""
    if not plain:
        return text
    if text in _NULL:
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.match(text):
        return int(text)
    if _HEX.match(text):
        return int(text, 16)
    if _OCT.match(text):
        return int(text[2:], 8)
    if _FLOAT.match(text):
        return float(text)
    if text.lower() in _SPECIAL_FLOAT:
        return _SPECIAL_FLOAT[text.lower()]
    return text
