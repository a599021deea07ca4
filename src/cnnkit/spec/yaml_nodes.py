"""YAML text <-> plain Python values, keeping the file position of every value and key.

Parsed with PyYAML's C safe loader into composed nodes, then converted with YAML 1.2 core-schema rules so
the YAML 1.1 traps do not bite: `1e-3` is a float, `NO`/`on`/`yes` stay strings, only true/false are
booleans, `0o17` is octal and `012` is twelve. Anchors, aliases and tags are refused (no alias bombs, no
python objects), as are duplicate keys, several documents, nesting deeper than MAX_DEPTH and text over
MAX_BYTES. `dump_yaml` writes values back so that both this reader and a YAML 1.1 reader get them again.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from cnnkit.errors import Mark, SpecError

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
KEY = "<key>"
"""Last element of a path whose mark is the position of the key itself, e.g. ("layers", 0, "unit", KEY)."""

_NULL = {"", "~", "null", "Null", "NULL"}
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_OCT = re.compile(r"0o[0-7]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_SPECIAL_FLOAT = {".inf": float("inf"), ".Inf": float("inf"), ".INF": float("inf"),
                  ".nan": float("nan"), ".NaN": float("nan"), ".NAN": float("nan")}
_MAX_DIGITS = 4000  # below Python's int-from-text limit; no spec needs a number this long

Path = tuple[Any, ...]


def read_yaml(text: str, source: str) -> tuple[Any, dict[Path, Mark]]:
    """The document's value and a map from each value's path (keys and indices) to its position.

    A key's own position is stored under its value's path plus KEY.
    """
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise SpecError(f"the text holds U+{ord(text[error.start]):04X}, a lone surrogate, which is not a "
                        f"character; expected Unicode text", source=source,
                        mark=_position(text, error.start)) from None
    if size > MAX_BYTES:
        raise SpecError(too_large(size), source=source)
    try:
        _check_events(text, source)
        node = yaml.compose(text, Loader=yaml.CSafeLoader)
    except yaml.MarkedYAMLError as error:
        raise _syntax_error(error, text, source) from None
    except yaml.reader.ReaderError as error:
        code = error.character if isinstance(error.character, int) else ord(error.character)
        raise SpecError(f"invalid YAML: the character U+{code:04X} cannot appear in YAML text; remove it",
                        source=source, mark=_position(text, error.position)) from None
    except yaml.YAMLError as error:
        raise SpecError(f"invalid YAML: {one_line(str(error).splitlines()[0])}", source=source) from None
    if node is None:
        raise SpecError("the spec is empty; expected a mapping with 'name', 'input' and 'layers'",
                        source=source, mark=Mark(1, 1))
    marks: dict[Path, Mark] = {}
    return _convert(node, (), marks, source), marks


def too_large(size: int) -> str:
    return (f"the spec is {size} bytes, more than the {MAX_BYTES // 1024} KiB a spec may have; a network "
            f"spec is a few KiB, so this is probably not a spec")


def one_line(text: str, limit: int = 80) -> str:
    """User text made safe for a one-line message: control characters escaped, long text cut."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def _syntax_error(error: yaml.MarkedYAMLError, text: str, source: str) -> SpecError:
    mark = error.problem_mark or error.context_mark
    where = Mark(mark.line + 1, mark.column + 1) if mark else None
    problem = error.problem or error.context or "invalid YAML"
    if mark is not None and ("tab character" in problem or _char_at(text, mark.line, mark.column) == "\t"):
        problem += "; indent with spaces, YAML does not allow tabs for indentation"
    return SpecError(f"invalid YAML: {one_line(problem, 200)}", source=source, mark=where)


def _position(text: str, offset: int) -> Mark:
    line_start = text.rfind("\n", 0, offset) + 1
    return Mark(text.count("\n", 0, offset) + 1, offset - line_start + 1)


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n")
    return lines[line][column:column + 1] if line < len(lines) else ""


def _mark(node_or_event: Any) -> Mark:
    start = node_or_event.start_mark
    return Mark(start.line + 1, start.column + 1)


def _check_events(text: str, source: str) -> None:
    """Refuse what the composer would otherwise accept: aliases, tags, deep nesting, several documents."""
    depth = 0
    documents = 0
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise SpecError("anchors and aliases (&name / *name) are not allowed in specs; write the "
                            "values out", source=source, mark=_mark(event))
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise SpecError(f"YAML tags like '{one_line(tag)}' are not allowed in specs; write plain values "
                            f"(quote text that would read as a number, e.g. '1e3')", source=source,
                            mark=_mark(event))
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecError(f"the spec nests lists and mappings deeper than {MAX_DEPTH} levels; a spec "
                                f"needs a handful", source=source, mark=_mark(event))
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
            key = _convert(key_node, (*path, KEY), {}, source)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                shown = "nothing (null)" if key is None else one_line(repr(key))
                raise SpecError(f"mapping keys must be names, got {shown}", source=source,
                                mark=_mark(key_node))
            if key in out:
                raise SpecError(f"duplicate key '{one_line(str(key))}' (first at line "
                                f"{marks[(*path, key, KEY)].line}); each key may appear once", source=source,
                                mark=_mark(key_node))
            marks[(*path, key, KEY)] = _mark(key_node)
            out[key] = _convert(value_node, (*path, key), marks, source)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), marks, source) for i, item in enumerate(node.value)]
    if not node.style and len(node.value) > _MAX_DIGITS and _INT.fullmatch(node.value):
        raise SpecError(f"a number with {len(node.value)} digits; no spec needs one this long",
                        source=source, mark=_mark(node))
    return scalar(node.value, plain=not node.style)


def scalar(text: str, plain: bool = True) -> Any:
    """A YAML 1.2 core-schema scalar: quoted text is always a string."""
    if not plain:
        return text
    if text in _NULL:
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.fullmatch(text):
        return int(text)
    if _HEX.fullmatch(text):
        return int(text, 16)
    if _OCT.fullmatch(text):
        return int(text[2:], 8)
    if _FLOAT.fullmatch(text):
        return float(text)
    sign, rest = (text[0], text[1:]) if text[:1] in ("+", "-") else ("", text)
    if rest in _SPECIAL_FLOAT and not (sign and rest.lower() == ".nan"):
        return -_SPECIAL_FLOAT[rest] if sign == "-" else _SPECIAL_FLOAT[rest]
    return text


class _Dumper(yaml.SafeDumper):
    """Quotes every string that this module's reader, or a YAML 1.1 reader, would read as something else."""

    def represent_str(self, data: str) -> yaml.ScalarNode:
        if not data.isprintable():
            style: str | None = '"'
        elif scalar(data) != data:
            style = "'"
        else:
            style = None
        return self.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _Dumper.represent_str)


def dump_yaml(value: Any) -> str:
    """YAML text that read_yaml turns back into an equal value (mappings keep their order)."""
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=None, allow_unicode=True,
                     width=100)
