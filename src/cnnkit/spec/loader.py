"""Spec text or dict -> validated Spec, and back.

Validation runs before anything else: every problem is a one-line SpecError naming file:line:column, the
layer, what was found and what is expected, with did-you-mean suggestions for names. Positions point at
the offending value (or at the key, for a key that should not be there).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from cnnkit.attrs import Attr, _got, parse_attrs
from cnnkit.errors import CnnkitError, SpecError
from cnnkit.registry import Registry, did_you_mean
from cnnkit.spec.model import INPUT, LayerSpec, Spec, TrainSpec
from cnnkit.spec.yaml_nodes import KEY, MAX_BYTES, dump_yaml, one_line, read_yaml, too_large

TOP_KEYS = ("name", "description", "input", "layers", "train")
LAYER_KEYS = ("name", "type", "inputs", "backend")
TRAIN_KEYS = ("data", "batch_size", "epochs", "optimizer", "schedule", "loss", "seed")
TRAIN_COUNTS = {"batch_size": 1, "epochs": 1, "seed": 0}
"""The train section's integer settings and their smallest allowed value."""
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
"""What a spec, layer or input name looks like (matched whole)."""
TRAIN_DEFAULTS = TrainSpec(data={})
_NEEDS = {"name": "a name like my_net", "input": "[channels, height, width] or [features]",
          "layers": "a list of layers"}
_NUMERIC_KINDS = ("int", "float", "pair", "padding", "ints", "floats")

SpecSource = str | os.PathLike | Mapping[str, Any] | Spec


def load_spec(source: SpecSource, registry: Registry | None = None) -> Spec:
    """A validated Spec from a file path, YAML text, a dict, or a Spec (returned as is)."""
    if isinstance(source, Spec):
        return source
    if registry is None:
        from cnnkit.plugins import registry as default_registry

        registry = default_registry()
    if isinstance(source, Mapping):
        return _Validator(dict(source), {}, "<dict>", registry).spec()
    text, name = _read_source(source)
    value, marks = read_yaml(text, name)
    return _Validator(value, marks, name, registry).spec()


def _read_source(source: str | os.PathLike) -> tuple[str, str]:
    """(text, name for messages); a string is YAML text unless it is one line that names a file, ends
    like a spec file's name, or could not be a spec (a spec is a mapping, so its text has ':' or '{')."""
    looks_like_path = isinstance(source, os.PathLike) or "\n" not in source and source.strip() != "" and (
        source.endswith((".yaml", ".yml", ".json")) or os.path.exists(source)
        or not re.search("[:{]", source))
    if not looks_like_path:
        return str(source), "<string>"
    path = Path(source)
    try:
        with path.open("rb") as file:  # bounded read: a FIFO or /dev/zero reports size 0
            data = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError("file not found; expected a YAML spec file", source=str(path)) from None
    except IsADirectoryError:
        raise SpecError("is a directory; expected a YAML spec file", source=str(path)) from None
    except OSError as error:
        raise SpecError(f"cannot read: {error.strerror}", source=str(path)) from None
    if len(data) > MAX_BYTES:
        raise SpecError(too_large(max(len(data), _size(path))), source=str(path))
    try:
        return data.decode("utf-8"), str(path)
    except UnicodeDecodeError as error:
        raise SpecError(f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start} is "
                        f"{error.reason}); save the spec as UTF-8", source=str(path)) from None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _describe(value: Any) -> str:
    return one_line(_got(value), 120)


def _yaml11_hint(attr: Attr, value: Any) -> str:
    """For text an older YAML 1.1 reader would take as a number or boolean: how to write what was meant."""
    if not isinstance(value, str) or attr.kind not in (*_NUMERIC_KINDS, "bool"):
        return ""
    tag = yaml.resolver.Resolver().resolve(yaml.ScalarNode, value, (True, False))
    meant = yaml.load(value, Loader=yaml.CSafeLoader) if tag.endswith((":int", ":float", ":bool")) else None
    if attr.kind == "bool" and isinstance(meant, bool):
        return f"; only true and false are booleans in a spec (YAML 1.2), so write {str(meant).lower()}"
    if attr.kind in _NUMERIC_KINDS and isinstance(meant, (int, float)) and not isinstance(meant, bool):
        return f"; for the number write {meant!r} (plain digits, no quotes or '_')"
    return ""


class _Validator:
    """Turns the raw document into a Spec, raising at the first problem with its position."""

    def __init__(self, doc: Any, marks: dict, source: str, registry: Registry) -> None:
        self.doc, self.marks, self.source, self.registry = doc, marks, source, registry

    def error(self, message: str, path: tuple = (), layer: str | None = None) -> SpecError:
        """A SpecError at the value `path` leads to (or its nearest parent that has a position)."""
        while path and path not in self.marks:
            path = path[:-1]
        return SpecError(message, source=self.source, mark=self.marks.get(path), layer=layer)

    def spec(self) -> Spec:
        doc = self.doc
        if not isinstance(doc, dict):
            hint = ""
            if self.source == "<string>" and isinstance(doc, str):
                hint = " (if this was meant as a file name: no such file)"
            raise self.error(f"a spec is a mapping with 'name', 'input' and 'layers', got "
                             f"{_describe(doc)}{hint}")
        self.check_keys(doc, TOP_KEYS, (), "the spec")
        for key in ("name", "input", "layers"):
            if key not in doc:
                raise self.error(f"the spec needs '{key}' ({_NEEDS[key]})")
        name = self.name(doc["name"], ("name",), "the spec name")
        description = doc.get("description") or ""
        if not isinstance(description, str):
            raise self.error(f"'description' must be text, got {_describe(description)}", ("description",))
        input_shape = self.input_shape(doc["input"])
        layers = self.layers(doc["layers"])
        train = self.train(doc["train"]) if doc.get("train") is not None else None
        spec = Spec(name=name, input=input_shape, layers=layers, train=train, description=description,
                    source=self.source, marks=self.marks)
        from cnnkit.graph import plan

        plan(spec, self.registry)
        return spec

    def check_keys(self, mapping: dict, allowed: tuple[str, ...], path: tuple, where: str,
                   layer: str | None = None) -> None:
        for key in mapping:
            if key not in allowed:
                shown = one_line(str(key))
                raise self.error(f"unknown key '{shown}' in {where}{did_you_mean(shown, allowed)}",
                                 (*path, key, KEY), layer)

    def name(self, value: Any, path: tuple, what: str, layer: str | None = None) -> str:
        if not isinstance(value, str) or not NAME.fullmatch(value):
            raise self.error(f"{what} must be a name of letters, digits, '_' or '-' starting with a letter "
                             f"or '_', got {_describe(value)}", path, layer)
        return value

    def input_shape(self, value: Any) -> tuple[int, ...]:
        ok = isinstance(value, (list, tuple)) and 1 <= len(value) <= 3 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        if not ok:
            raise self.error(f"'input' must be [channels, height, width] (or [features]) of positive "
                             f"integers, got {_describe(value)}", ("input",))
        return tuple(value)

    def layers(self, value: Any) -> list[LayerSpec]:
        if not isinstance(value, (list, tuple)) or not value:
            raise self.error(f"'layers' must be a non-empty list of layers like "
                             f"[{{name: fc, type: linear, units: 10}}], got {_describe(value)}", ("layers",))
        return [self.layer(item, i) for i, item in enumerate(value)]

    def layer(self, item: Any, index: int) -> LayerSpec:
        path = ("layers", index)
        if not isinstance(item, dict):
            raise self.error(f"layer {index + 1} must be a mapping like {{name: conv1, type: conv2d, ...}}, "
                             f"got {_describe(item)}", path)
        if "name" not in item:
            raise self.error(f"layer {index + 1} needs a 'name' (a unique name like conv1)", path)
        name = self.name(item["name"], (*path, "name"), f"the name of layer {index + 1}")
        if "type" not in item:
            raise self.error(f"the layer needs a 'type'{did_you_mean('', self.registry.layers)}", path, name)
        type_name = item["type"]
        layer_type = self.lookup(self.registry.layer, "layer type", type_name, (*path, "type"), name)
        attr_names = tuple(a.name for a in layer_type.attrs)
        self.check_keys(item, LAYER_KEYS + attr_names, path, f"layer type '{type_name}' (its attributes: "
                        f"{', '.join(attr_names) or 'none'})", name)
        values = {k: v for k, v in item.items() if k not in LAYER_KEYS}
        attrs = self.attrs(layer_type.attrs, values, path, f"layer type '{type_name}'", name)
        inputs = self.inputs(item.get("inputs"), (*path, "inputs"), name)
        backend = item.get("backend")
        if backend is not None:
            self.lookup(self.registry.backend, "backend", backend, (*path, "backend"), name)
        return LayerSpec(name=name, type=type_name, attrs=attrs, inputs=inputs, backend=backend,
                         marks=self.layer_marks(item, path))

    def layer_marks(self, item: dict, path: tuple) -> dict:
        marks = {key: self.marks[(*path, key)] for key in item if (*path, key) in self.marks}
        if isinstance(item.get("inputs"), list):
            for i in range(len(item["inputs"])):
                if (*path, "inputs", i) in self.marks:
                    marks[f"inputs.{i}"] = self.marks[(*path, "inputs", i)]
        if path in self.marks:
            marks[""] = self.marks[path]
        return marks

    def lookup(self, find: Callable[[str], Any], kind: str, value: Any, path: tuple,
               layer: str | None = None) -> Any:
        """The registered record named `value`, or an error with did-you-mean at the value."""
        if not isinstance(value, str):
            raise self.error(f"the {kind} must be a name, got {_describe(value)}", path, layer)
        if one_line(value) != value:
            raise self.error(f"unknown {kind} {_describe(value)}", path, layer)
        try:
            return find(value)
        except CnnkitError as error:
            raise self.error(str(error), path, layer) from None

    def attrs(self, attrs: tuple[Attr, ...], values: dict, path: tuple, what: str,
              layer: str | None = None) -> dict[str, Any]:
        by_name = {a.name: a for a in attrs}
        for key, value in values.items():
            if key not in by_name:
                shown = one_line(str(key))
                raise self.error(f"unknown attribute '{shown}' for {what}{did_you_mean(shown, by_name)}",
                                 (*path, key, KEY), layer)
            try:
                by_name[key].parse(value)
            except ValueError as error:
                message = one_line(str(error), 200) + _yaml11_hint(by_name[key], value)
                raise self.error(f"attribute '{key}' of {what}: {message}", (*path, key), layer) from None
        try:
            return parse_attrs(attrs, values)
        except LookupError as missing:
            attr = by_name[missing.args[0]]
            raise self.error(f"{what} needs attribute '{attr.name}' ({attr.expected()})", path,
                             layer) from None

    def inputs(self, value: Any, path: tuple, layer: str) -> tuple[str, ...] | None:
        if value is None:
            return None
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not items:
            raise self.error(f"'inputs' must be a layer name or a list of layer names, got "
                             f"{_describe(value)}", path, layer)
        for i, item in enumerate(items):
            where = path if isinstance(value, str) else (*path, i)
            self.name(item, where, f"input {i + 1} of the layer (a layer name or '{INPUT}')", layer)
        return tuple(items)

    def train(self, value: Any) -> TrainSpec:
        path = ("train",)
        if not isinstance(value, dict):
            raise self.error(f"'train' must be a mapping with 'data', 'optimizer', ..., got "
                             f"{_describe(value)}", path)
        self.check_keys(value, TRAIN_KEYS, path, "'train'")
        if "data" not in value:
            raise self.error("'train' needs 'data', e.g. data: {dataset: shapes}", path)
        counts = {}
        for key, minimum in TRAIN_COUNTS.items():
            attr = Attr(key, "int", getattr(TRAIN_DEFAULTS, key), minimum=minimum)
            counts[key] = self.attrs((attr,), {key: value[key]} if key in value else {}, path, "'train'")[key]
        return TrainSpec(
            data=self.section(value["data"], "dataset", self.registry.dataset, (*path, "data")),
            optimizer=self.section(value.get("optimizer", TRAIN_DEFAULTS.optimizer), "type",
                                   self.registry.optimizer, (*path, "optimizer")),
            schedule=self.section(value.get("schedule", TRAIN_DEFAULTS.schedule), "type",
                                  self.registry.schedule, (*path, "schedule")),
            loss=self.section(value.get("loss", TRAIN_DEFAULTS.loss), "type", self.registry.loss,
                              (*path, "loss")),
            **counts,
        )

    def section(self, value: Any, key: str, find: Callable[[str], Any], path: tuple) -> dict[str, Any]:
        """A {key: name, **attrs} mapping (or just the name) checked against the registered record."""
        kind = "dataset" if key == "dataset" else path[-1]
        if isinstance(value, str):
            value = {key: value}
            name_path = path
        else:
            name_path = (*path, key)
        if not isinstance(value, dict) or key not in value:
            raise self.error(f"'{path[-1]}' must be a {kind} name or a mapping with '{key}', got "
                             f"{_describe(value)}", path)
        record = self.lookup(find, kind, value[key], name_path)
        values = {k: v for k, v in value.items() if k != key}
        return {key: record.name, **self.attrs(record.attrs, values, path, f"{kind} '{record.name}'")}


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """Plain data (lists, not tuples) that load_spec turns back into an equal Spec."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    layers = []
    for layer in spec.layers:
        item: dict[str, Any] = {"name": layer.name, "type": layer.type}
        if layer.inputs is not None:
            item["inputs"] = list(layer.inputs)
        if layer.backend is not None:
            item["backend"] = layer.backend
        item.update(plain(layer.attrs))
        layers.append(item)
    out: dict[str, Any] = {"name": spec.name}
    if spec.description:
        out["description"] = spec.description
    out.update({"input": list(spec.input), "layers": layers})
    if spec.train is not None:
        t = spec.train
        out["train"] = plain({"data": t.data, "batch_size": t.batch_size, "epochs": t.epochs,
                              "optimizer": t.optimizer, "schedule": t.schedule, "loss": t.loss,
                              "seed": t.seed})
    return out


def dump_spec(spec: Spec) -> str:
    """YAML text for the spec (attributes normalised, defaults written out) that loads as an equal Spec."""
    return dump_yaml(spec_to_dict(spec))


def save_spec(spec: Spec, path: str | os.PathLike) -> None:
    Path(path).write_text(dump_spec(spec), encoding="utf-8")
