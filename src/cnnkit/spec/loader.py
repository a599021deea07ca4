"""Spec text or dict -> validated Spec, and back.

Validation runs before anything else: every problem is a SpecError naming file:line:column, the layer,
what was found and what is expected, with did-you-mean suggestions for names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cnnkit.attrs import Attr, parse_attrs
from cnnkit.errors import CnnkitError, SpecError
from cnnkit.registry import Registry, did_you_mean
from cnnkit.spec.model import LayerSpec, Spec, TrainSpec
from cnnkit.spec.yaml_nodes import read_yaml

TOP_KEYS = ("name", "description", "input", "layers", "train")
LAYER_KEYS = ("name", "type", "inputs", "backend")
TRAIN_KEYS = ("data", "batch_size", "epochs", "optimizer", "schedule", "loss", "seed")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*$")
TRAIN_DEFAULTS = TrainSpec(data={})

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
    looks_like_path = isinstance(source, os.PathLike) or (
        "\n" not in source and (source.endswith((".yaml", ".yml", ".json")) or os.path.exists(source)))
    if not looks_like_path:
        return str(source), "<string>"
    path = Path(source)
    try:
        size = path.stat().st_size
        from cnnkit.spec.yaml_nodes import MAX_BYTES

        if size > MAX_BYTES:
            raise SpecError(f"the spec is larger than {MAX_BYTES // 1024} KiB ({size} bytes); a network "
                            f"spec is a few KiB, so this is probably not a spec", source=str(path))
        return path.read_text(encoding="utf-8"), str(path)
    except FileNotFoundError:
        raise SpecError("file not found", source=str(path)) from None
    except IsADirectoryError:
        raise SpecError("is a directory, expected a YAML spec file", source=str(path)) from None
    except UnicodeDecodeError as error:
        raise SpecError(f"not UTF-8 text ({error.reason} at byte {error.start})", source=str(path)) from None
    except OSError as error:
        raise SpecError(f"cannot read: {error.strerror}", source=str(path)) from None


def _describe(value: Any) -> str:
    from cnnkit.attrs import _got

    return _got(value)


class _Validator:
    """Turns the raw document into a Spec, raising at the first problem with its position."""

    def __init__(self, doc: Any, marks: dict, source: str, registry: Registry) -> None:
        self.doc, self.marks, self.source, self.registry = doc, marks, source, registry

    def error(self, message: str, path: tuple = (), layer: str | None = None) -> SpecError:
        while path and path not in self.marks:
            path = path[:-1]
        return SpecError(message, source=self.source, mark=self.marks.get(path), layer=layer)

    def spec(self) -> Spec:
        doc = self.doc
        if not isinstance(doc, dict):
            raise self.error(f"a spec is a mapping with 'name', 'input' and 'layers', got {_describe(doc)}")
        self.check_keys(doc, TOP_KEYS, (), "spec")
        for key in ("name", "input", "layers"):
            if key not in doc:
                raise self.error(f"the spec needs '{key}'")
        name = self.name(doc["name"], ("name",), "spec name")
        input_shape = self.input_shape(doc["input"])
        layers = self.layers(doc["layers"])
        train = self.train(doc["train"]) if doc.get("train") is not None else None
        spec = Spec(name=name, input=input_shape, layers=layers, train=train, source=self.source,
                    marks=self.marks)
        from cnnkit.graph import plan

        plan(spec, self.registry)
        return spec

    def check_keys(self, mapping: dict, allowed: tuple[str, ...], path: tuple, what: str,
                   layer: str | None = None, extra: tuple[str, ...] = ()) -> None:
        for key in mapping:
            if key not in allowed and key not in extra:
                raise self.error(f"unknown key '{key}' in {what}{did_you_mean(str(key), allowed + extra)}",
                                 (*path, key), layer)

    def name(self, value: Any, path: tuple, what: str, layer: str | None = None) -> str:
        if not isinstance(value, str) or not NAME.match(value):
            raise self.error(f"{what} must be a name of letters, digits, '_' or '-' starting with a letter "
                             f"or '_', got {_describe(value)}", path, layer)
        return value

    def input_shape(self, value: Any) -> tuple[int, ...]:
        ok = isinstance(value, list) and 1 <= len(value) <= 3 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        if not ok:
            raise self.error(f"'input' must be [channels, height, width] (or [features]) of positive "
                             f"integers, got {_describe(value)}", ("input",))
        return tuple(value)

    def layers(self, value: Any) -> list[LayerSpec]:
        if not isinstance(value, list) or not value:
            raise self.error(f"'layers' must be a non-empty list of layers, got {_describe(value)}",
                             ("layers",))
        return [self.layer(item, i) for i, item in enumerate(value)]

    def layer(self, item: Any, index: int) -> LayerSpec:
        path = ("layers", index)
        if not isinstance(item, dict):
            raise self.error(f"layer {index + 1} must be a mapping like {{name: conv1, type: conv2d, ...}}, "
                             f"got {_describe(item)}", path)
        for key in ("name", "type"):
            if key not in item:
                raise self.error(f"layer {index + 1} needs '{key}'", path, item.get("name")
                                 if isinstance(item.get("name"), str) else None)
        name = self.name(item["name"], (*path, "name"), "a layer name")
        type_name = item["type"]
        try:
            layer_type = self.registry.layer(type_name)
        except CnnkitError as error:
            raise self.error(str(error), (*path, "type"), name) from None
        attr_names = tuple(a.name for a in layer_type.attrs)
        self.check_keys(item, LAYER_KEYS, path, f"layer type '{type_name}' (its attributes: "
                        f"{', '.join(attr_names) or 'none'})", name, attr_names)
        values = {k: v for k, v in item.items() if k not in LAYER_KEYS}
        attrs = self.attrs(layer_type.attrs, values, path, f"layer type '{type_name}'", name)
        inputs = self.inputs(item.get("inputs"), (*path, "inputs"), name)
        backend = item.get("backend")
        if backend is not None:
            try:
                self.registry.backend(backend)
            except CnnkitError as error:
                raise self.error(str(error), (*path, "backend"), name) from None
        marks = {key: self.marks[(*path, key)] for key in item if (*path, key) in self.marks}
        if path in self.marks:
            marks[""] = self.marks[path]
        return LayerSpec(name=name, type=type_name, attrs=attrs, inputs=inputs, backend=backend, marks=marks)

    def attrs(self, attrs: tuple[Attr, ...], values: dict, path: tuple, what: str,
              layer: str | None = None) -> dict[str, Any]:
        by_name = {a.name: a for a in attrs}
        for key, value in values.items():
            try:
                by_name[key].parse(value)
            except KeyError:
                raise self.error(f"unknown attribute '{key}' for {what}"
                                 f"{did_you_mean(str(key), by_name)}", (*path, key), layer) from None
            except ValueError as error:
                raise self.error(f"attribute '{key}' of {what}: {error}", (*path, key), layer) from None
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
        if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
            raise self.error(f"'inputs' must be a layer name or a list of layer names, got "
                             f"{_describe(value)}", path, layer)
        return tuple(items)

    def train(self, value: Any) -> TrainSpec:
        path = ("train",)
        if not isinstance(value, dict):
            raise self.error(f"'train' must be a mapping, got {_describe(value)}", path)
        self.check_keys(value, TRAIN_KEYS, path, "train")
        if "data" not in value:
            raise self.error("'train' needs 'data', e.g. {dataset: shapes}", path)
        counts = {}
        for key in ("batch_size", "epochs", "seed"):
            minimum = 0 if key == "seed" else 1
            attr = Attr(key, "int", getattr(TRAIN_DEFAULTS, key), minimum=minimum)
            counts[key] = self.attrs((attr,), {key: value[key]} if key in value else {}, path, "train")[key]
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

    def section(self, value: Any, key: str, find, path: tuple) -> dict[str, Any]:
        """A {key: name, **attrs} mapping (or just the name) checked against the registered record."""
        if isinstance(value, str):
            value = {key: value}
        what = path[-1]
        if not isinstance(value, dict) or key not in value:
            raise self.error(f"'{what}' must be a name or a mapping with '{key}', got {_describe(value)}",
                             path)
        try:
            record = find(value[key])
        except CnnkitError as error:
            raise self.error(str(error), (*path, key)) from None
        values = {k: v for k, v in value.items() if k != key}
        return {key: record.name, **self.attrs(record.attrs, values, path, f"{what} '{record.name}'")}


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
    out: dict[str, Any] = {"name": spec.name, "input": list(spec.input), "layers": layers}
    if spec.train is not None:
        t = spec.train
        out["train"] = plain({"data": t.data, "batch_size": t.batch_size, "epochs": t.epochs,
                              "optimizer": t.optimizer, "schedule": t.schedule, "loss": t.loss,
                              "seed": t.seed})
    return out


def dump_spec(spec: Spec) -> str:
    """YAML text for the spec (attributes normalised, defaults written out)."""
    return yaml.safe_dump(spec_to_dict(spec), sort_keys=False, default_flow_style=None)


def save_spec(spec: Spec, path: str | os.PathLike) -> None:
    Path(path).write_text(dump_spec(spec), encoding="utf-8")
