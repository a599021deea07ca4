from __future__ import annotations

from pathlib import Path

import pytest

from cnnkit.data import BASE_DIR, SPLIT_ATTRS, resolve_path
from cnnkit.errors import SpecError
from cnnkit.plugins import registry
from cnnkit.spec import load_spec

BUILTIN = ("shapes", "digits", "npz", "idx")


def test_builtin_datasets_are_registered_by_the_builtin_plugin():
    for name in BUILTIN:
        assert registry().dataset(name).plugin == "cnnkit.data.builtin"


@pytest.mark.parametrize("name", sorted(registry().datasets))
def test_every_dataset_takes_the_split_attrs(name):
    attrs = {a.name: a for a in registry().dataset(name).attrs}
    for shared in SPLIT_ATTRS:
        assert attrs[shared.name] == shared
    assert registry().dataset(name).doc


def spec_with(data: dict) -> dict:
    return {"name": "t", "input": [8], "layers": [{"name": "out", "type": "linear", "units": 4}],
            "train": {"data": data}}


def test_a_spec_data_section_is_validated_against_the_dataset_attrs():
    spec = load_spec(spec_with({"dataset": "shapes", "classes": 4, "samples": 6000, "val_fraction": 0.2}))
    assert spec.train.data == {"dataset": "shapes", "classes": 4, "samples": 6000, "noise": 0.03,
                               "val_fraction": 0.2}
    assert load_spec(spec_with({"dataset": "npz", "path": "a.npz"})).train.data["val_fraction"] == 0.2
    with pytest.raises(SpecError, match=r"val_fraction.*< 1"):
        load_spec(spec_with({"dataset": "digits", "val_fraction": 1.0}))
    with pytest.raises(SpecError, match=r"needs attribute 'images'"):
        load_spec(spec_with({"dataset": "idx", "labels": "l.idx"}))


def test_relative_paths_are_resolved_against_base_dir(tmp_path):
    assert resolve_path({"path": "a/b.npz"}, "path") == Path("a/b.npz")
    assert resolve_path({"path": "a/b.npz", BASE_DIR: tmp_path}, "path") == tmp_path / "a" / "b.npz"
    assert resolve_path({"path": "/x/b.npz", BASE_DIR: tmp_path}, "path") == Path("/x/b.npz")


def test_a_validated_section_loads():
    data = load_spec(spec_with({"dataset": "shapes", "classes": 3, "samples": 60})).train.data
    record = registry().dataset(data["dataset"])
    dataset = record.load({k: v for k, v in data.items() if k != "dataset"}, (3, 16, 16), 0)
    train, val = dataset.split(data["val_fraction"], 0)
    assert (len(train), len(val)) == (48, 12) and dataset.class_names == ("circle", "square", "triangle")
