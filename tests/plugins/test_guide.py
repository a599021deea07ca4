"""docs/plugins.md works as written: the tutorial's module and its tests, and the datasets/schedules
example with the spec section that uses it."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import yaml

from cnnkit.graph import Network
from cnnkit.spec import load_spec
from cnnkit.testing import plugin_registry
from cnnkit.train.trainer import fit

GUIDE = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()


def block(language: str, starting_with: str) -> str:
    for text in re.findall(rf"```{language}\n(.*?)```", GUIDE, flags=re.S):
        if text.startswith(starting_with):
            return text
    raise AssertionError(f"no {language} block starting with {starting_with!r} in docs/plugins.md")


def module_from(name: str, *sources: str) -> types.ModuleType:
    module = types.ModuleType(name)
    for source in sources:
        exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)
    return module


def test_the_tutorial_plugin_passes_the_tutorial_tests(monkeypatch, tmp_path):
    my_swish = module_from("my_swish", block("python", "# my_swish/__init__.py"),
                           block("python", "class Swish:"))
    monkeypatch.setitem(sys.modules, "my_swish", my_swish)
    tests = module_from("test_my_swish", block("python", "# tests/test_my_swish.py"))
    tests.test_forward()
    tests.test_backward_matches_finite_differences()
    tests.test_exports_and_onnxruntime_agrees(tmp_path)
    assert tests.REGISTRY.layer("swish").plugin == "my_swish"


def test_the_dataset_and_schedule_example_trains_with_its_spec_section():
    extras = module_from("my_extras", "import numpy as np\nfrom cnnkit import hookimpl\n",
                         block("python", "from cnnkit.attrs import Attr"))
    reg = plugin_registry(extras)
    train = yaml.safe_load(block("yaml", "train:"))["train"]
    spec = load_spec({"name": "blobs_net", "input": [3], "layers": [{"name": "fc", "type": "linear",
                                                                      "units": 2}],
                      "train": {**train, "epochs": 4, "batch_size": 50}}, reg)
    history = fit(Network(spec, reg), progress=False)
    assert [round(epoch["lr"], 6) for epoch in history] == [0.1, 0.1, 0.05, 0.05]
    assert history[-1]["val_acc"] > 0.6
    assert np.isfinite(history[-1]["train_loss"])
