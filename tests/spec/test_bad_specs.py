"""Every way a spec file can be wrong gives one line: file:line:column, the layer, what was found, what fits.

Each case is a real file; `where` is ":line:column" of the offending value (or key, for a key that should
not be there), "" where no position applies (the file as a whole). `message` is a regex for the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from cnnkit.errors import SpecError
from cnnkit.spec import load_spec

IMAGE = "name: net\ninput: [3, 8, 8]\nlayers:\n"
FLAT = "name: net\ninput: [8]\nlayers:\n"
TRAIN = FLAT + "  - {name: fc, type: linear, units: 4}\ntrain:\n"
DIRECTORY = object()
MISSING = object()
BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))


@dataclass(frozen=True)
class Bad:
    id: str
    content: str | bytes | object
    where: str
    layer: str | None
    message: str

    def write(self, folder: Path) -> Path:
        path = folder / f"{self.id}.yaml"
        if self.content is DIRECTORY:
            path.mkdir()
        elif isinstance(self.content, bytes):
            path.write_bytes(self.content)
        elif isinstance(self.content, str):
            path.write_text(self.content, encoding="utf-8")
        return path


CASES = [
    # YAML itself
    Bad("yaml_syntax", "name: net\ninput: [3, 8\nlayers: []\n", ":3:7", None,
        r"invalid YAML: did not find expected ',' or '\]'"),
    Bad("tab_indent", FLAT + "\t- {name: a, type: relu}\n", ":4:1", None,
        r"invalid YAML: found character that cannot start any token; indent with spaces, YAML does not allow "
        r"tabs for indentation"),
    Bad("tab_in_mapping", "name: net\n\tinput: [8]\n", ":2:1", None,
        r"invalid YAML: found a tab character that violates indentation; indent with spaces, .*"),
    Bad("control_character", FLAT + "  - {name: a\x07, type: relu}\n", ":4:13", None,
        r"invalid YAML: the character U\+0007 cannot appear in YAML text; remove it"),
    Bad("empty_file", "", ":1:1", None,
        r"the spec is empty; expected a mapping with 'name', 'input' and 'layers'"),
    Bad("comments_only", "# to do\n\n", ":1:1", None, r"the spec is empty; .*"),
    Bad("alias_bomb", BILLION_LAUGHS, ":1:4", None,
        r"anchors and aliases \(&name / \*name\) are not allowed in specs; write the values out"),
    Bad("python_tag", "name: !!python/object/apply:os.system ['echo hi']\n", ":1:7", None,
        r"YAML tags like 'tag:yaml.org,2002:python/object/apply:os.system' are not allowed in specs; "
        r"write plain values .*"),
    Bad("explicit_str_tag", FLAT + "  - {name: a, type: !!str relu}\n", ":4:21", None,
        r"YAML tags like 'tag:yaml.org,2002:str' are not allowed in specs; .*"),
    Bad("deep_nesting", "name: net\ninput: [8]\nlayers: " + "[" * 65 + "]" * 65 + "\n", ":3:72", None,
        r"the spec nests lists and mappings deeper than 64 levels; a spec needs a handful"),
    Bad("huge_file", "name: net\n" + "# padding the file past one mebibyte\n" * 30000, "", None,
        r"the spec is \d+ bytes, more than the 1024 KiB a spec may have; .*"),
    Bad("giant_number", FLAT + "  - {name: fc, type: linear, units: " + "9" * 5000 + "}\n", ":4:37", None,
        r"a number with 5000 digits; no spec needs one this long"),
    Bad("multiple_documents", FLAT + "  - {name: a, type: relu}\n---\nname: other\n", ":5:1", None,
        r"the file holds more than one YAML document \('---'\); a spec is one"),
    Bad("duplicate_key", "name: net\ninput: [8]\nname: again\n", ":3:1", None,
        r"duplicate key 'name' \(first at line 1\); each key may appear once"),
    Bad("null_key", "name: net\n~: 1\n", ":2:1", None, r"mapping keys must be names, got nothing \(null\)"),
    # the file
    Bad("non_utf8", b"name: caf\xe9\ninput: [8]\n", "", None,
        r"not UTF-8 text \(byte 0xe9 at offset 9 is invalid continuation byte\); save the spec as UTF-8"),
    Bad("utf16", "name: net\n".encode("utf-16"), "", None,
        r"not UTF-8 text \(byte 0xff at offset 0 is invalid start byte\); save the spec as UTF-8"),
    Bad("directory", DIRECTORY, "", None, r"is a directory; expected a YAML spec file"),
    Bad("missing_file", MISSING, "", None, r"file not found; expected a YAML spec file"),
    # the document's shape
    Bad("document_is_list", "- {name: a, type: relu}\n", ":1:1", None,
        r"a spec is a mapping with 'name', 'input' and 'layers', got the list \[\{'name': 'a', 'type': "
        r"'relu'\}\]"),
    Bad("document_is_scalar", "just some text\n", ":1:1", None,
        r"a spec is a mapping with 'name', 'input' and 'layers', got the string 'just some text'"),
    Bad("unknown_top_level_key", "name: net\ninput: [8]\nlayer:\n  - {name: a, type: relu}\n", ":3:1", None,
        r"unknown key 'layer' in the spec; did you mean 'layers'\?"),
    Bad("missing_layers", "name: net\ninput: [8]\n", ":1:1", None,
        r"the spec needs 'layers' \(a list of layers\)"),
    Bad("boolean_spec_name", "name: true\ninput: [8]\nlayers:\n  - {name: a, type: relu}\n", ":1:7", None,
        r"the spec name must be a name of letters, digits, '_' or '-' starting with a letter or '_', got the "
        r"boolean true"),
    Bad("byte_order_mark", "\ufeffname: true\ninput: [8]\nlayers: [{name: a, type: relu}]\n",
        ":1:7", None, r"the spec name must be a name .*, got the boolean true"),
    Bad("bad_input_shape", "name: net\ninput: [3, 0, 8]\nlayers:\n  - {name: a, type: relu}\n", ":2:8", None,
        r"'input' must be \[channels, height, width\] \(or \[features\]\) of positive integers, got the list "
        r"\[3, 0, 8\]"),
    Bad("input_with_batch", "name: net\ninput: [1, 3, 8, 8]\nlayers:\n  - {name: a, type: relu}\n", ":2:8",
        None, r"'input' must be \[channels, height, width\] .*, got the list \[1, 3, 8, 8\]"),
    Bad("layers_empty", "name: net\ninput: [8]\nlayers: []\n", ":3:9", None,
        r"'layers' must be a non-empty list of layers like \[\{name: fc, type: linear, units: 10\}\], "
        r"got the list \[\]"),
    Bad("layers_null", "name: net\ninput: [8]\nlayers:\n", ":3:8", None,
        r"'layers' must be a non-empty list of layers like .*, got nothing \(null\)"),
    # a layer's own keys
    Bad("layer_not_mapping", FLAT + "  - relu\n", ":4:5", None,
        r"layer 1 must be a mapping like \{name: conv1, type: conv2d, \.\.\.\}, got the string 'relu'"),
    Bad("missing_layer_name", FLAT + "  - {type: relu}\n", ":4:5", None,
        r"layer 1 needs a 'name' \(a unique name like conv1\)"),
    Bad("bad_layer_name", FLAT + "  - {name: conv 1, type: relu}\n", ":4:12", None,
        r"the name of layer 1 must be a name of letters, digits, '_' or '-' starting with a letter or '_', "
        r"got the string 'conv 1'"),
    Bad("missing_type", FLAT + "  - {name: a, units: 4}\n", ":4:5", "a",
        r"the layer needs a 'type'; known: .*\blinear\b.*"),
    Bad("unknown_type", IMAGE + "  - {name: c1, type: conv2dd, filters: 4, kernel: 3}\n", ":4:22", "c1",
        r"unknown layer type 'conv2dd'; did you mean 'conv2d'\?"),
    Bad("unknown_backend", FLAT + "  - {name: a, type: relu, backend: cuda}\n", ":4:36", "a",
        r"unknown backend 'cuda'; .*"),
    Bad("inputs_not_names", FLAT + "  - {name: a, type: relu, inputs: 5}\n", ":4:35", "a",
        r"'inputs' must be a layer name or a list of layer names, got 5"),
    # attributes
    Bad("misspelt_attribute", IMAGE + "  - {name: c1, type: conv2d, filter: 4, kernel: 3}\n", ":4:30", "c1",
        r"unknown key 'filter' in layer type 'conv2d' \(its attributes: filters, kernel, .*\); did you mean "
        r"'filters'\?"),
    Bad("wrong_type", IMAGE + "  - name: c1\n    type: conv2d\n    filters: four\n    kernel: 3\n",
        ":6:14", "c1",
        r"attribute 'filters' of layer type 'conv2d': expected an integer >= 1, got the string 'four'"),
    Bad("zero_size", IMAGE + "  - {name: c1, type: conv2d, filters: 0, kernel: 3}\n", ":4:39", "c1",
        r"attribute 'filters' of layer type 'conv2d': expected an integer >= 1, got 0"),
    Bad("negative_size", IMAGE + "  - {name: c1, type: conv2d, filters: 4, kernel: [3, -1]}\n", ":4:50", "c1",
        r"attribute 'kernel' of layer type 'conv2d': expected an integer >= 1 or a list \[height, width\] of "
        r"such integers, got the list \[3, -1\]"),
    Bad("float_for_int", FLAT + "  - {name: fc, type: linear, units: 1e3}\n", ":4:37", "fc",
        r"attribute 'units' of layer type 'linear': expected an integer >= 1, got 1000.0"),
    Bad("yaml11_boolean", FLAT + "  - {name: fc, type: linear, units: 4, bias: off}\n", ":4:46", "fc",
        r"attribute 'bias' of layer type 'linear': expected true or false, got the string 'off'; "
        r"only true and false are booleans in a spec \(YAML 1.2\), so write false"),
    Bad("yaml11_underscore", FLAT + "  - {name: fc, type: linear, units: 1_000}\n", ":4:37", "fc",
        r"attribute 'units' of layer type 'linear': expected an integer >= 1, got the string '1_000'; "
        r"for the number write 1000 \(plain digits, no quotes or '_'\)"),
    Bad("padding_of_three",
        IMAGE + "  - {name: c1, type: conv2d, filters: 4, kernel: 3, padding: [1, 1, 1]}\n", ":4:62", "c1",
        r"attribute 'padding' of layer type 'conv2d': expected 'same', 'valid', an integer >= 0, \[height, "
        r"width\] or \[top, left, bottom, right\], got the list \[1, 1, 1\]"),
    Bad("missing_attribute", IMAGE + "  - {name: c1, type: conv2d, kernel: 3}\n", ":4:5", "c1",
        r"layer type 'conv2d' needs attribute 'filters' \(an integer >= 1\)"),
    # the graph: positions are the layer's, or the offending input's
    Bad("shape_mismatch_linear", IMAGE + "  - {name: fc, type: linear, units: 4}\n", ":4:5", "fc",
        r"linear takes a flat input of shape \(features,\), got 3x8x8; put a flatten layer before it"),
    Bad("shape_mismatch_add", IMAGE + "  - {name: a, type: conv2d, filters: 4, kernel: 3}\n"
        "  - {name: b, type: conv2d, filters: 4, kernel: 1, inputs: [input]}\n"
        "  - name: sum\n    type: add\n    inputs: [a, b]\n", ":6:5", "sum",
        r"add needs inputs of one shape, got 4x6x6, 4x8x8"),
    Bad("kernel_larger_than_input", IMAGE + "  - {name: c1, type: conv2d, filters: 4, kernel: 9}\n",
        ":4:5", "c1", r".*\b9x9\b.*\b8x8\b.*"),
    Bad("add_of_one", FLAT + "  - {name: a, type: relu}\n  - {name: s, type: add}\n", ":5:5", "s",
        r"layer type 'add' takes 2 or more inputs, got 1; list them with 'inputs: \[a, b\]'"),
    Bad("cycle", FLAT + "  - {name: a, type: relu, inputs: [c]}\n  - {name: b, type: relu, inputs: [a]}\n"
        "  - {name: c, type: relu, inputs: [b]}\n", ":4:36", "a",
        r"the layers form a cycle a -> b -> c -> a through their 'inputs'; a layer can only take outputs of "
        r"layers that do not depend on it"),
    Bad("own_output_as_input", FLAT + "  - {name: a, type: relu, inputs: [a]}\n", ":4:36", "a",
        r"a layer cannot take its own output as input; expected 'input' or another layer's name"),
    Bad("dangling_input", IMAGE + "  - {name: pool, type: max_pool2d, kernel: 2}\n"
        "  - {name: relu, type: relu, inputs: [poool]}\n", ":5:39", "relu",
        r"input 'poool' is not a layer of this spec; expected 'input' or a layer name; "
        r"did you mean 'pool'\?"),
    Bad("duplicate_name", FLAT + "  - {name: a, type: relu}\n  - {name: a, type: relu}\n", ":5:5", "a",
        r"duplicate layer name 'a' \(first used by layer 1\); layer names must be unique"),
    Bad("reserved_name", FLAT + "  - {name: input, type: relu}\n", ":4:5", "input",
        r"'input' is reserved for the network input; rename the layer"),
    Bad("unused_layer", FLAT + "  - {name: a, type: relu}\n  - {name: b, type: relu, inputs: [input]}\n",
        ":4:5", "a",
        r"the output of layer 'a' is never used; the network's output is the last layer \('b'\), .*"),
    # the train section (needs the built-in datasets, optimizers, schedules and losses)
    Bad("unknown_dataset", TRAIN + "  data: {dataset: shapez, classes: 4}\n", ":6:19", None,
        r"unknown dataset 'shapez'; did you mean 'shapes'\?"),
    Bad("misspelt_dataset_attribute", TRAIN + "  data: {dataset: shapes, clases: 4}\n", ":6:27", None,
        r"unknown attribute 'clases' for dataset 'shapes'; did you mean 'classes'\?"),
    Bad("unknown_optimizer", TRAIN + "  data: {dataset: shapes}\n  optimizer: {type: adamm, lr: 0.001}\n",
        ":7:21", None, r"unknown optimizer 'adamm'; did you mean 'adam'\?"),
    Bad("unknown_optimizer_by_name", TRAIN + "  data: {dataset: shapes}\n  optimizer: sgdd\n", ":7:14", None,
        r"unknown optimizer 'sgdd'; did you mean 'sgd'\?"),
    Bad("bad_lr_type", TRAIN + "  data: {dataset: shapes}\n  optimizer: {type: sgd, lr: fast}\n",
        ":7:30", None,
        r"attribute 'lr' of optimizer 'sgd': expected a number >= 0, got the string 'fast'"),
    Bad("quoted_lr", TRAIN + "  data: {dataset: shapes}\n  optimizer: {type: sgd, lr: '0.05'}\n",
        ":7:30", None,
        r"attribute 'lr' of optimizer 'sgd': expected a number >= 0, got the string '0.05'; for the number "
        r"write 0.05 \(plain digits, no quotes or '_'\)"),
    Bad("zero_epochs", TRAIN + "  data: {dataset: shapes}\n  epochs: 0\n", ":7:11", None,
        r"attribute 'epochs' of 'train': expected an integer >= 1, got 0"),
    Bad("unknown_train_key", TRAIN + "  data: {dataset: shapes}\n  lr: 0.1\n", ":7:3", None,
        r"unknown key 'lr' in 'train'; known: .*"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_spec_gives_one_located_line(tmp_path, case):
    path = case.write(tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    prefix = f"{path}{case.where}:" + (f" layer '{case.layer}':" if case.layer else "") + " "
    assert message.startswith(prefix), message
    assert re.fullmatch(case.message, message[len(prefix):]), message


def test_at_least_25_cases():
    assert len(CASES) >= 25 and len({case.id for case in CASES}) == len(CASES)
