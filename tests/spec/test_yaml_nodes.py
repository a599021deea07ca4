"""The YAML layer: 1.2 core-schema scalars, positions of values and keys, and dump_yaml/read_yaml agreeing."""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from cnnkit.errors import Mark, SpecError
from cnnkit.spec.yaml_nodes import KEY, MAX_DEPTH, dump_yaml, one_line, read_yaml, scalar
from tests.spec.strategies import TRICKY_TEXT, texts

PLAIN_SCALARS = [
    # YAML 1.1 booleans are text in 1.2; only true/false (three spellings each) are booleans
    *[(word, word) for word in ("on", "off", "yes", "no", "y", "n", "Y", "N", "NO", "Yes", "ON", "Off")],
    ("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False), ("FALSE", False),
    ("tRUE", "tRUE"),
    # numbers the way users write learning rates and sizes
    ("1e-3", 0.001), ("1E3", 1000.0), ("1e3", 1000.0), ("5e-4", 0.0005), (".5", 0.5), ("-.5", -0.5),
    ("1.", 1.0), ("+1.5e+2", 150.0), ("0.0005", 0.0005),
    ("42", 42), ("-7", -7), ("+7", 7), ("007", 7), ("012", 12), ("0o17", 15), ("0x1F", 31),
    # YAML 1.1 numbers that 1.2 reads as text (the loader adds a hint where a number is expected)
    ("1_000", "1_000"), ("0b101", "0b101"), ("1:30", "1:30"), ("-0x1F", "-0x1F"), ("0o8", "0o8"),
    ("1,000", "1,000"), ("1e", "1e"), ("e3", "e3"), (".", "."),
    # nulls and special floats
    ("", None), ("~", None), ("null", None), ("Null", None), ("NULL", None), ("nULL", "nULL"),
    (".inf", math.inf), ("-.Inf", -math.inf), ("+.INF", math.inf), (".iNf", ".iNf"), ("-.nan", "-.nan"),
]


@pytest.mark.parametrize(("text", "value"), PLAIN_SCALARS, ids=[repr(t) for t, _ in PLAIN_SCALARS])
def test_plain_scalars_follow_yaml_1_2_core(text, value):
    got = scalar(text)
    assert type(got) is type(value) and got == value


def test_nan_is_read_but_not_equal_to_itself():
    assert math.isnan(scalar(".nan")) and math.isnan(scalar(".NaN"))


@pytest.mark.parametrize("text", ["on", "1e3", "42", "true", "null", ""])
def test_quoted_scalars_are_text(text):
    assert scalar(text, plain=False) == text
    value, _ = read_yaml(f"a: '{text}'\nb: \"{text}\"\n", "<t>")
    assert value == {"a": text, "b": text}


@given(st.integers())
def test_integers_read_back(i):
    assert scalar(str(i)) == i


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_read_back_from_repr_and_exponent_forms(x):
    assert scalar(repr(x)) == x
    assert scalar(f"{x:.17e}") == x


@given(texts)
def test_every_text_is_either_itself_or_a_plain_value(text):
    value = scalar(text)
    assert value == text or not isinstance(value, str) or value != value


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20)


@given(json_like)
def test_dump_yaml_reads_back_equal(value):
    document, _ = read_yaml(dump_yaml({"v": value}), "<t>")
    assert document == {"v": value}


@given(st.sampled_from(TRICKY_TEXT) | texts)
def test_dumped_strings_read_as_strings_in_yaml_1_1_too(text):
    """Quoting is safe for both readers, so editors and other tools see the same text."""
    dumped = dump_yaml({"v": text})
    assert yaml.safe_load(dumped) == {"v": text}
    assert read_yaml(dumped, "<t>")[0] == {"v": text}


@given(st.text())
def test_one_line_has_no_line_breaks(text):
    assert len(one_line(text).splitlines()) <= 1


def test_marks_point_at_values_and_keys():
    text = "name: net\nlayers:\n  - {name: a, type: linear}\n  - name: b\n    units: 4\n"
    value, marks = read_yaml(text, "<t>")
    assert value["layers"][1] == {"name": "b", "units": 4}
    assert marks[()] == Mark(1, 1)
    assert marks[("name",)] == Mark(1, 7)
    assert marks[("name", KEY)] == Mark(1, 1)
    assert marks[("layers", 0)] == Mark(3, 5)
    assert marks[("layers", 0, "type")] == Mark(3, 21)
    assert marks[("layers", 0, "type", KEY)] == Mark(3, 15)
    assert marks[("layers", 1)] == Mark(4, 5)
    assert marks[("layers", 1, "units")] == Mark(5, 12)
    assert marks[("layers", 1, "units", KEY)] == Mark(5, 5)


def test_nesting_up_to_the_limit_is_fine():
    depth = MAX_DEPTH - 1
    value, _ = read_yaml("a: " + "[" * depth + "]" * depth, "<t>")
    assert value["a"] == eval("[" * depth + "]" * depth)


@pytest.mark.parametrize("text", ["a: !!str 5", "a: ! 5", "a: !local x", "!!map {a: 1}", "a: !!binary aGk="])
def test_every_tag_is_refused(text):
    with pytest.raises(SpecError, match="tags like .* are not allowed"):
        read_yaml(text, "<t>")


def test_merge_keys_are_plain_keys_not_merges():
    value, _ = read_yaml("a: {<<: {b: 1}}", "<t>")
    assert value == {"a": {"<<": {"b": 1}}}


def test_a_byte_order_mark_is_ignored():
    assert read_yaml("\ufeffa: 1\n", "<t>")[0] == {"a": 1}


def test_windows_line_endings_read_the_same():
    text = "name: net\nlayers:\n  - {name: a, type: linear}\n  - name: b\n    units: 4\n"
    assert read_yaml(text.replace("\n", "\r\n"), "<t>") == read_yaml(text, "<t>")


def test_lone_surrogates_in_python_text_are_refused_with_a_position():
    with pytest.raises(SpecError, match=r"^<t>:2:4: the text holds U\+DC80, a lone surrogate"):
        read_yaml("a: 1\nb: \udc80\n", "<t>")
