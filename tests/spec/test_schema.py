"""The generated JSON Schema: a valid draft 2020-12 schema that accepts what the loader accepts and
rejects what the loader rejects for the reasons a schema can see (types, names, keys, bounds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings

from cnnkit.errors import SpecError
from cnnkit.plugins import registry
from cnnkit.spec import json_schema, load_spec, spec_to_dict
from cnnkit.spec.yaml_nodes import dump_yaml, read_yaml
from tests.spec.strategies import flat_specs, probe_registry
from tests.spec.test_loader import single_layer_docs

jsonschema = pytest.importorskip("jsonschema")

SPECS = sorted((Path(__file__).parents[2] / "specs").glob("*.yaml"))
PROBE = probe_registry()
VALIDATOR = jsonschema.Draft202012Validator(json_schema(registry()))
PROBE_VALIDATOR = jsonschema.Draft202012Validator(json_schema(PROBE))

GOOD = {"name": "net", "input": [3, 8, 8], "layers": [
    {"name": "c1", "type": "conv2d", "filters": 4, "kernel": 3, "padding": "same"},
    {"name": "p1", "type": "max_pool2d", "kernel": [2, 2], "stride": None},
    {"name": "f", "type": "flatten", "inputs": "p1"},
    {"name": "fc", "type": "linear", "units": 2, "bias": False}]}


def with_layer(**layer):
    """GOOD with keys of its last layer changed."""
    return {**GOOD, "layers": [*GOOD["layers"][:-1], {**GOOD["layers"][-1], **layer}]}


def with_conv(**layer):
    """GOOD with keys of its first layer (a conv2d) changed."""
    return {**GOOD, "layers": [{**GOOD["layers"][0], **layer}, *GOOD["layers"][1:]]}


def test_schema_is_valid_draft_2020_12_and_json():
    schema = json_schema(registry())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert json.loads(json.dumps(schema)) == schema


def test_schema_lists_every_registered_name():
    schema = json_schema(registry())
    reg = registry()
    assert schema["$defs"]["layer"]["properties"]["type"]["enum"] == list(reg.layers)
    for name, layer in reg.layers.items():
        branch = schema["$defs"][f"layer.{name}"]
        assert branch["additionalProperties"] is False
        assert branch["properties"]["type"] == {"const": name}
        common = {"name", "type", "inputs", "backend"}
        assert set(branch["properties"]) == common | {a.name for a in layer.attrs}
        assert branch["required"] == ["type", *(a.name for a in layer.attrs if a.required)]
    for kind in ("dataset", "optimizer", "schedule", "loss"):
        table = getattr(reg, "losses" if kind == "loss" else f"{kind}s")
        assert {f"{kind}.{name}" for name in table} <= set(schema["$defs"])


def test_good_spec_is_valid_for_schema_and_loader():
    VALIDATOR.validate(GOOD)
    load_spec(GOOD)


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_specs_are_valid(path):
    document, _ = read_yaml(path.read_text(encoding="utf-8"), str(path))
    VALIDATOR.validate(document)
    VALIDATOR.validate(spec_to_dict(load_spec(path)))


BAD = {
    "unknown_type": with_layer(type="linaer"),
    "misspelt_attribute": with_layer(unit=2),
    "wrong_type": with_layer(units="four"),
    "zero_units": with_layer(units=0),
    "yaml11_boolean": with_layer(bias="off"),
    "missing_required": {**GOOD, "layers": [{"name": "fc", "type": "linear"}]},
    "bad_layer_name": with_layer(name="fc 1"),
    "bad_input_name": with_layer(inputs=["p 1"]),
    "padding_of_three": with_conv(padding=[1, 1, 1]),
    "negative_kernel": with_conv(kernel=[3, -1]),
    "unknown_top_level_key": {**GOOD, "layer": []},
    "missing_layers": {"name": "net", "input": [8]},
    "empty_layers": {**GOOD, "layers": []},
    "bad_input_shape": {**GOOD, "input": [3, 0, 8]},
    "input_with_batch": {**GOOD, "input": [1, 3, 8, 8]},
    "train_without_data": {**GOOD, "train": {"epochs": 2}},
    "unknown_train_key": {**GOOD, "train": {"data": {"dataset": "x"}, "lr": 0.1}},
    "zero_epochs": {**GOOD, "train": {"data": {"dataset": "x"}, "epochs": 0}},
    "unknown_optimizer": {**GOOD, "train": {"data": {"dataset": "x"}, "optimizer": {"type": "adamm"}}},
    "bad_lr_type": {**GOOD, "train": {"data": {"dataset": "x"}, "optimizer": {"type": "sgd", "lr": "fast"}}},
    "unknown_loss_by_name": {**GOOD, "train": {"data": {"dataset": "x"}, "loss": "hinge"}},
}


@pytest.mark.parametrize("doc", BAD.values(), ids=BAD.keys())
def test_bad_specs_are_rejected_by_schema_and_loader(doc):
    assert not VALIDATOR.is_valid(doc)
    with pytest.raises(SpecError):
        load_spec(doc)


@given(flat_specs(PROBE))
@settings(max_examples=100, deadline=None)
def test_every_spec_the_loader_accepts_is_valid_for_the_schema(doc):
    spec = load_spec(dump_yaml(doc), PROBE)
    PROBE_VALIDATOR.validate(doc)
    PROBE_VALIDATOR.validate(spec_to_dict(spec))


def integral_floats(value) -> bool:
    """JSON Schema's "integer" takes 4.0 (JSON has one number type); the loader wants 4 where an int goes."""
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, list):
        return any(integral_floats(v) for v in value)
    return isinstance(value, dict) and any(integral_floats(v) for v in value.values())


def test_integral_floats_are_the_one_known_difference():
    doc = with_layer(units=4.0)
    assert VALIDATOR.is_valid(doc)
    with pytest.raises(SpecError, match="expected an integer >= 1, got 4.0"):
        load_spec(doc)


@given(single_layer_docs())
@settings(max_examples=150, deadline=None)
def test_schema_and_loader_agree_on_attributes(doc):
    """Loader accepts -> schema accepts; loader refuses an attribute or key -> schema refuses too."""
    valid = PROBE_VALIDATOR.is_valid(doc)
    try:
        load_spec(doc, PROBE)
    except SpecError as error:
        refused_by_value = "attribute '" in error.message or "unknown key" in error.message
        if refused_by_value and not integral_floats(doc["layers"]):
            assert not valid, error.message
        return
    assert valid, list(PROBE_VALIDATOR.iter_errors(doc))
