from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit.attrs import REQUIRED, Attr, parse_attrs


@pytest.mark.parametrize(
    ("attr", "value", "expected"),
    [
        (Attr("n", "int", minimum=1), 3, 3),
        (Attr("lr", "float", minimum=0), 1, 1.0),
        (Attr("lr", "float", minimum=0), 1e-3, 1e-3),
        (Attr("b", "bool"), False, False),
        (Attr("mode", "choice", choices=("a", "b")), "b", "b"),
        (Attr("k", "pair", minimum=1), 3, (3, 3)),
        (Attr("k", "pair", minimum=1), [3, 5], (3, 5)),
        (Attr("p", "padding"), 1, (1, 1, 1, 1)),
        (Attr("p", "padding"), [1, 2], (1, 2, 1, 2)),
        (Attr("p", "padding"), [0, 1, 2, 3], (0, 1, 2, 3)),
        (Attr("p", "padding"), "same", "same"),
        (Attr("p", "padding"), "valid", (0, 0, 0, 0)),
        (Attr("xs", "ints"), [1, 2], (1, 2)),
        (Attr("names", "strs"), ["a"], ("a",)),
    ],
)
def test_parse_normalises(attr, value, expected):
    assert attr.parse(value) == expected


@pytest.mark.parametrize(
    ("attr", "value", "message"),
    [
        (Attr("n", "int", minimum=1), 0, "expected an integer >= 1, got 0"),
        (Attr("n", "int", minimum=1), True, "expected an integer >= 1, got the boolean true"),
        (Attr("n", "int"), 2.5, "expected an integer, got 2.5"),
        (Attr("n", "int"), "3", "expected an integer, got the string '3'"),
        (Attr("r", "float", minimum=0, maximum=1, exclusive_max=True), 1.0, "a number >= 0 and < 1"),
        (Attr("r", "float"), float("nan"), "expected a number"),
        (Attr("b", "bool"), "on", "expected true or false, got the string 'on'"),
        (Attr("m", "choice", choices=("a", "b")), "c", "expected one of 'a', 'b', got the string 'c'"),
        (Attr("k", "pair", minimum=1), [3], "or a list [height, width]"),
        (Attr("k", "pair", minimum=1), [3, 0], "got the list [3, 0]"),
        (Attr("p", "padding"), -1, "'same', 'valid', an integer >= 0"),
        (Attr("p", "padding"), [1, 2, 3], "got the list [1, 2, 3]"),
        (Attr("p", "padding"), "full", "got the string 'full'"),
        (Attr("xs", "ints"), [1, "a"], "expected a list of integers"),
    ],
)
def test_parse_rejects_with_what_was_expected(attr, value, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        attr.parse(value)


def test_parse_attrs_fills_defaults_and_reports_unknown_and_missing():
    attrs = (Attr("units", "int", minimum=1), Attr("bias", "bool", True))
    assert parse_attrs(attrs, {"units": 2}) == {"units": 2, "bias": True}
    with pytest.raises(KeyError):
        parse_attrs(attrs, {"units": 2, "unit": 3})
    with pytest.raises(LookupError):
        parse_attrs(attrs, {})
    assert attrs[0].default is REQUIRED and attrs[0].required


def test_unknown_kind_is_refused_at_definition():
    with pytest.raises(ValueError, match="unknown kind"):
        Attr("x", "tensor")


@given(st.integers(min_value=1, max_value=64), st.integers(min_value=1, max_value=64))
def test_pair_round_trips_through_its_list_form(h, w):
    attr = Attr("k", "pair", minimum=1)
    assert attr.parse(list(attr.parse([h, w]))) == (h, w)


@pytest.mark.parametrize("kind", ["int", "float", "bool", "str", "pair", "padding", "ints", "floats", "strs"])
def test_every_kind_describes_itself_as_json_schema(kind):
    schema = Attr("x", kind, doc="what x is").json_schema()
    assert schema["description"] == "what x is"
