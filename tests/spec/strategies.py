"""Hypothesis strategies for specs: attribute values drawn from each Attr's own declaration, names that are
YAML traps, and whole random specs built from whatever the registry holds."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from cnnkit.attrs import Attr
from cnnkit.plugins import collect, make_plugin_manager
from cnnkit.registry import Dataset, LayerType, Registry
from cnnkit.spec.loader import NAME

TRICKY_NAMES = ("on", "off", "yes", "no", "NO", "Yes", "y", "n", "Y", "N", "true", "false", "True", "FALSE",
                "null", "Null", "NULL", "inf", "nan", "e3", "_1e3", "_0o17", "x1_000", "_", "-", "a-b",
                "E", "_.5")
TRICKY_TEXT = ("on", "NO", "yes", "off", "1e3", "1E-3", "0o17", "0x1F", "012", "1_000", ".5", "+.inf", ".NaN",
               "~", "null", "", " ", "true", "True", "- a", "a: b", "#x", "'q'", '"q"', "1:30", "@x", "!x",
               "&a", "*a", "[1]", "{a: 1}", "%", "a\nb", "\t", "\u2028", "\ufeff", "\x85", "é", "0b101")

names = st.sampled_from(TRICKY_NAMES).filter(NAME.fullmatch) | st.from_regex(NAME, fullmatch=True)
texts = st.sampled_from(TRICKY_TEXT) | st.text(max_size=30)


def _ints(attr: Attr) -> st.SearchStrategy[int]:
    lo = math.ceil(attr.minimum) if attr.minimum is not None else -50
    hi = math.floor(attr.maximum) if attr.maximum is not None else lo + 50
    lo += attr.exclusive_min and lo == attr.minimum
    hi -= attr.exclusive_max and hi == attr.maximum
    return st.integers(lo, hi) if lo <= hi else st.nothing()


def _floats(attr: Attr) -> st.SearchStrategy[float]:
    lo = attr.minimum if attr.minimum is not None else -1e6
    hi = attr.maximum if attr.maximum is not None else 1e6
    return st.floats(lo, hi, exclude_min=attr.exclusive_min and attr.minimum is not None,
                     exclude_max=attr.exclusive_max and attr.maximum is not None, allow_nan=False,
                     allow_infinity=False)


def _padding() -> st.SearchStrategy[Any]:
    lists = st.lists(st.integers(0, 3), min_size=1, max_size=4).filter(lambda v: len(v) != 3)
    return st.sampled_from(["same", "valid"]) | st.integers(0, 3) | lists


def attr_values(attr: Attr) -> st.SearchStrategy[Any]:
    """Values the attribute accepts, in every form it accepts (e.g. a pair as k or [h, w])."""
    kinds = {
        "int": lambda: _ints(attr),
        "float": lambda: _floats(attr) | _ints(attr),
        "bool": st.booleans,
        "str": lambda: texts.filter(bool),
        "choice": lambda: st.sampled_from(attr.choices),
        "pair": lambda: _ints(attr) | st.lists(_ints(attr), min_size=2, max_size=2),
        "padding": _padding,
        "ints": lambda: st.lists(_ints(attr), max_size=4),
        "floats": lambda: st.lists(_floats(attr), max_size=4),
        "strs": lambda: st.lists(texts.filter(bool), max_size=4),
    }
    values = kinds[attr.kind]()
    return values | st.none() if attr.default is None else values


def attr_dicts(attrs: tuple[Attr, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """Every required attribute and a random subset of the optional ones."""
    return st.fixed_dictionaries({a.name: attr_values(a) for a in attrs if a.required},
                                 optional={a.name: attr_values(a) for a in attrs if not a.required})


junk = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | texts,
                    lambda inner: st.lists(inner, max_size=4), max_leaves=6)
"""Anything a YAML file can hold where an attribute value goes."""


def probe_registry() -> Registry:
    """The built-in registry plus `probe`, a shape-keeping layer with one attribute of every kind, `join`,
    which takes any number of inputs, and `probe_data`, a dataset with the probe's attributes (so train
    sections are tested whatever is built in)."""
    registry = collect(make_plugin_manager(load_entrypoints=False))
    attrs = (Attr("i", "int", 3, minimum=-5, maximum=10**6),
             Attr("f", "float", 0.5, minimum=0, maximum=1, exclusive_min=True, exclusive_max=True),
             Attr("b", "bool", False), Attr("s", "str", "on"),
             Attr("c", "choice", "NO", choices=("NO", "yes", "1e3")),
             Attr("p", "pair", (1, 1), minimum=1), Attr("pad", "padding", (0, 0, 0, 0)),
             Attr("is", "ints", (), minimum=-3), Attr("fs", "floats", ()), Attr("ss", "strs", ()),
             Attr("opt", "pair", None, minimum=1))
    registry.add(LayerType(name="probe", attrs=attrs, infer_shape=lambda attrs, shapes: shapes[0],
                           plugin="tests"))
    registry.add(LayerType(name="join", attrs=(), infer_shape=lambda attrs, shapes: shapes[0],
                           arity=(1, None), plugin="tests"))
    registry.add(Dataset(name="probe_data", attrs=attrs, load=lambda attrs, shape, seed: None,
                         plugin="tests"))
    return registry


FLAT_TYPES = ("linear", "relu", "sigmoid", "tanh", "leaky_relu", "dropout", "probe")
"""Layer types that take a flat (features,) input and give one back, whatever their attributes."""


@st.composite
def flat_specs(draw: st.DrawFn, registry: Registry) -> dict[str, Any]:
    """A valid spec as plain data: a chain of FLAT_TYPES with random attributes and YAML-tricky names,
    and, when the registry has datasets, a random train section."""
    types = [t for t in FLAT_TYPES if t in registry.layers]
    layer_names = draw(st.lists(names.filter(lambda n: n != "input"), min_size=1, max_size=6, unique=True))
    layers = []
    for i, name in enumerate(layer_names):
        layer_type = registry.layers[draw(st.sampled_from(types))]
        layer = {"name": name, "type": layer_type.name, **draw(attr_dicts(layer_type.attrs))}
        if draw(st.booleans()):
            layer["inputs"] = [layer_names[i - 1] if i else "input"]
        layers.append(layer)
    spec: dict[str, Any] = {"name": draw(names), "input": [draw(st.integers(1, 64))], "layers": layers}
    if draw(st.booleans()):
        spec["description"] = draw(texts)
    if registry.datasets and draw(st.booleans()):
        spec["train"] = draw(train_sections(registry))
    return spec


def _section(draw: st.DrawFn, key: str, records: dict[str, Any]) -> Any:
    record = records[draw(st.sampled_from(sorted(records)))]
    return {key: record.name, **draw(attr_dicts(record.attrs))}


@st.composite
def train_sections(draw: st.DrawFn, registry: Registry) -> dict[str, Any]:
    train = {"data": _section(draw, "dataset", registry.datasets)}
    tables = {"optimizer": registry.optimizers, "schedule": registry.schedules, "loss": registry.losses}
    for key, records in tables.items():
        if draw(st.booleans()):
            train[key] = _section(draw, "type", records)
    for key, low in (("batch_size", 1), ("epochs", 1), ("seed", 0)):
        if draw(st.booleans()):
            train[key] = draw(st.integers(low, 10**6))
    return train
