"""Loading and round-tripping: load -> dump_spec -> load is equal, for the shipped specs and random ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnkit.errors import Mark, SpecError
from cnnkit.spec import dump_spec, load_spec, save_spec, spec_to_dict
from cnnkit.spec.yaml_nodes import dump_yaml
from tests.spec.strategies import attr_values, flat_specs, junk, names, probe_registry

SPECS = sorted((Path(__file__).parents[2] / "specs").glob("*.yaml"))
PROBE = probe_registry()
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SEED = """\
name: seed_convnet
input: [3, 32, 32]                 # C, H, W
layers:
  - {name: conv1, type: conv2d, filters: 6, kernel: 5}
  - {name: relu1, type: relu}
  - {name: pool1, type: max_pool2d, kernel: 2}
  - {name: flat,  type: flatten}
  - {name: fc,    type: linear, units: 4}
"""


def round_trip(spec, reg=None):
    again = load_spec(dump_spec(spec), reg)
    assert again == spec
    assert dump_spec(again) == dump_spec(spec)
    return again


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_specs_round_trip(path, tmp_path):
    spec = load_spec(path)
    round_trip(spec)
    save_spec(spec, tmp_path / "saved.yaml")
    assert load_spec(tmp_path / "saved.yaml") == spec


def test_text_path_dict_and_spec_sources_agree(tmp_path):
    path = tmp_path / "seed.yaml"
    path.write_text(SEED, encoding="utf-8")
    from_text = load_spec(SEED)
    assert load_spec(path) == from_text
    assert load_spec(str(path)) == from_text
    assert load_spec(spec_to_dict(from_text)) == from_text
    assert load_spec(from_text) is from_text
    assert load_spec(path).source == str(path) and from_text.source == "<string>"


def test_attributes_are_normalised_and_defaults_filled():
    spec = load_spec(SEED)
    conv = spec.layer("conv1")
    assert conv.attrs["kernel"] == (5, 5) and conv.attrs["stride"] == (1, 1)
    assert conv.attrs["padding"] == (0, 0, 0, 0)
    assert spec.layer("fc").attrs == {"units": 4, "bias": True, "init": "he"}


def test_yaml_1_1_traps_read_as_meant():
    spec = load_spec("name: NO\ninput: [0o10]\nlayers:\n  - {name: on, type: dropout, rate: .5}\n"
                     "  - {name: yes, type: leaky_relu, alpha: 1e-2}\n")
    assert spec.name == "NO" and spec.input == (8,)
    assert [layer.name for layer in spec.layers] == ["on", "yes"]
    assert spec.layers[0].attrs["rate"] == 0.5 and spec.layers[1].attrs["alpha"] == 0.01
    assert "name: 'NO'" in dump_spec(spec)
    round_trip(spec)


def test_description_round_trips():
    spec = load_spec("name: n\ndescription: 'yes: a #1 net'\ninput: [4]\nlayers:\n"
                     "  - {name: a, type: relu}\n")
    assert spec.description == "yes: a #1 net"
    round_trip(spec)


def test_layer_marks_locate_layer_keys_and_each_input():
    spec = load_spec(SEED.replace("{name: flat,  type: flatten}",
                                  "{name: flat, type: flatten, inputs: [pool1]}"))
    flat = spec.layer("flat")
    assert flat.marks[""] == Mark(7, 5)
    assert flat.marks["type"] == Mark(7, 24)
    assert flat.marks["inputs.0"] == Mark(7, 42)
    assert spec.mark("layers", 0, "filters") == Mark(4, 42)
    assert spec.mark("layers", 0, "no such key") == Mark(4, 5)


def test_a_one_line_string_is_a_file_name_unless_it_could_be_a_spec():
    with pytest.raises(SpecError, match=r"^specs/missing: file not found; expected a YAML spec file$"):
        load_spec("specs/missing")
    with pytest.raises(SpecError, match=r"got the string 'C:specs' \(if this was meant as a file name"):
        load_spec("C:specs")
    assert load_spec("{name: n, input: [4], layers: [{name: a, type: relu}]}").name == "n"
    with pytest.raises(SpecError, match=r"^<string>:1:1: the spec is empty"):
        load_spec("")


def test_dict_errors_name_the_layer_without_a_position():
    expected = r"^<dict>: layer 'a': unknown layer type 'relux'; did you mean 'relu'\?$"
    with pytest.raises(SpecError, match=expected):
        load_spec({"name": "n", "input": [4], "layers": [{"name": "a", "type": "relux"}]})


@given(flat_specs(PROBE))
@settings(max_examples=100, deadline=None)
def test_random_specs_round_trip(doc):
    """Random chains with random attribute values and YAML-tricky names survive dump -> load unchanged."""
    spec = load_spec(dump_yaml(doc), PROBE)
    assert [layer.name for layer in spec.layers] == [layer["name"] for layer in doc["layers"]]
    assert spec.name == doc["name"] and spec.description == doc.get("description", "")
    assert load_spec(doc, PROBE) == spec
    round_trip(spec, PROBE)


@st.composite
def single_layer_docs(draw):
    """One registered layer type with attribute values that are sometimes right and sometimes junk."""
    layer_type = PROBE.layers[draw(st.sampled_from(sorted(PROBE.layers)))]
    attrs = {}
    for attr in layer_type.attrs:
        if attr.required or draw(st.booleans()):
            attrs[attr.name] = draw(attr_values(attr) | junk)
    if draw(st.integers(0, 9)) == 0:
        attrs[draw(names)] = draw(junk)
    shape = draw(st.sampled_from([[6], [2, 9, 9], [3, 4, 5]]))
    return {"name": "n", "input": shape, "layers": [{"name": "l0", "type": layer_type.name, **attrs}]}


@given(single_layer_docs())
@FUZZ
def test_any_layer_with_any_attributes_loads_or_fails_on_one_located_line(doc):
    text = dump_yaml(doc)
    try:
        spec = load_spec(text, PROBE)
    except SpecError as error:
        message = str(error)
        assert "\n" not in message
        assert message.startswith("<string>:") and ": layer 'l0': " in message, message
        assert error.mark is not None
        return
    round_trip(spec, PROBE)


@st.composite
def random_graphs(draw):
    """`join` layers whose inputs are any other layers, later ones too: cycles included."""
    count = draw(st.integers(1, 7))
    layer_names = [f"l{i}" for i in range(count)]
    layers = [{"name": name, "type": "join", "inputs": draw(st.lists(
        st.sampled_from(["input", *(n for n in layer_names if n != name)]), min_size=1, max_size=3))}
        for name in layer_names]
    return {"name": "g", "input": [4], "layers": layers}


@given(random_graphs())
@settings(max_examples=200, deadline=None)
def test_a_reported_cycle_is_a_real_cycle_at_its_first_layers_input(doc):
    inputs = {layer["name"]: layer["inputs"] for layer in doc["layers"]}
    try:
        load_spec(dump_yaml(doc), PROBE)
    except SpecError as error:
        found = re.search(r"the layers form a cycle (\S+(?: -> \S+)*) through", error.message)
        if found:
            cycle = found.group(1).split(" -> ")
            assert cycle[0] == cycle[-1] == error.layer and len(set(cycle[:-1])) == len(cycle) - 1
            assert all(a in inputs[b] for a, b in zip(cycle, cycle[1:])), (cycle, inputs)
            assert error.mark is not None
