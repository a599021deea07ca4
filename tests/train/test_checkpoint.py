"""Run folders: layout, load_network, one-line errors for damaged files, and atomic saves."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest
import safetensors.numpy

from cnnkit.errors import CheckpointError
from cnnkit.spec import load_spec
from cnnkit.train.checkpoint import (
    FORMAT,
    META_FILE,
    SPEC_FILE,
    load_network,
    read_checkpoint,
    write_checkpoint,
)
from cnnkit.train.trainer import fit
from tests.train.conftest import tiny_net, tiny_spec

X = np.random.default_rng(5).standard_normal((7, 4)).astype(np.float32)


@pytest.fixture
def run(tmp_path):
    """A finished one-epoch run with Adam (so the checkpoint holds optimizer state)."""
    net = tiny_net(epochs=1, optimizer={"type": "adam", "lr": 0.01})
    fit(net, out=tmp_path, progress=False)
    return tmp_path, net


def meta(folder):
    return json.loads((folder / META_FILE).read_text())


def weights_path(folder):
    return folder / meta(folder)["weights"]


def set_meta(folder, **changes):
    (folder / META_FILE).write_text(json.dumps({**meta(folder), **changes}))


def replace_weights(folder, data):
    """Put `data` in place of the weights file, with a matching checksum: only the content is wrong."""
    weights_path(folder).write_bytes(data)
    set_meta(folder, sha256=hashlib.sha256(data).hexdigest())


def test_layout(run):
    folder, net = run
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted([META_FILE, SPEC_FILE, "metrics.jsonl", weights_path(folder).name])
    info = meta(folder)
    assert (info["format"], info["format_version"], info["dtype"]) == (FORMAT, 1, "float32")
    assert (info["epoch"], info["step_in_epoch"], info["global_step"]) == (1, 0, 6)
    assert info["class_names"] == ["blob0", "blob1", "blob2"] and len(info["history"]) == 1
    assert load_spec(info["spec"]) == load_spec(folder / SPEC_FILE) == load_spec(tiny_spec(
        epochs=1, optimizer={"type": "adam", "lr": 0.01}))
    data = weights_path(folder).read_bytes()
    assert hashlib.sha256(data).hexdigest() == info["sha256"]
    tensors = safetensors.numpy.load(data)
    assert sorted(tensors) == sorted(
        [f"param/{k}" for k in net.params] + ["optim/step"]
        + [f"optim/{slot}/{k}" for slot in ("exp_avg", "exp_avg_sq") for k in net.params])
    assert tensors["optim/step"].shape == () and int(tensors["optim/step"]) == 6


def test_load_network_predicts_like_the_trained_one(run):
    folder, net = run
    loaded = load_network(folder)
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))


def test_load_network_keeps_the_dtype(tmp_path):
    from cnnkit import build

    net = build(tiny_spec(epochs=1), dtype=np.float64)
    fit(net, out=tmp_path, progress=False)
    loaded = load_network(tmp_path)
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))


def damage_missing_folder(folder):
    return folder / "nowhere", "no such run folder"


def damage_missing_json(folder):
    (folder / META_FILE).unlink()
    return folder, "no checkpoint"


def damage_truncated_json(folder):
    text = (folder / META_FILE).read_text()
    (folder / META_FILE).write_text(text[: len(text) // 2])
    return folder, "not valid JSON"


def damage_binary_json(folder):
    (folder / META_FILE).write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    return folder, "not valid JSON"


def damage_json_list(folder):
    (folder / META_FILE).write_text("[1, 2, 3]")
    return folder, "not a cnnkit checkpoint"


def damage_foreign_json(folder):
    (folder / META_FILE).write_text('{"name": "package.json", "version": "1.0"}')
    return folder, "not a cnnkit checkpoint"


def damage_newer_format(folder):
    set_meta(folder, format_version=2)
    return folder, "format_version 2"


def damage_missing_field(folder):
    info = meta(folder)
    del info["sha256"]
    (folder / META_FILE).write_text(json.dumps(info))
    return folder, "field 'sha256' is missing"


def damage_wrong_field_type(folder):
    set_meta(folder, global_step="six")
    return folder, "field 'global_step' is missing or not an integer"


def damage_weights_outside_folder(folder):
    set_meta(folder, weights="../../etc/passwd")
    return folder, "not a checkpoint file name"


def damage_missing_weights(folder):
    weights_path(folder).unlink()
    return folder, "missing"


def damage_flipped_byte(folder):
    data = bytearray(weights_path(folder).read_bytes())
    data[-3] ^= 0x40
    weights_path(folder).write_bytes(bytes(data))
    return folder, "checksum mismatch"


def damage_truncated_weights(folder):
    data = weights_path(folder).read_bytes()
    weights_path(folder).write_bytes(data[: len(data) // 2])
    return folder, "checksum mismatch"


def damage_truncated_weights_matching_checksum(folder):
    replace_weights(folder, weights_path(folder).read_bytes()[:100])
    return folder, "not a readable safetensors file"


def damage_foreign_safetensors(folder):
    replace_weights(folder, safetensors.numpy.save({"model.embed": np.zeros(3, np.float32)}))
    return folder, "lack the param/, buffer/ or optim/ prefix"


def damage_wrong_shape(folder):
    tensors = safetensors.numpy.load(weights_path(folder).read_bytes())
    tensors["param/fc1.weight"] = np.zeros((3, 4), np.float32)
    replace_weights(folder, safetensors.numpy.save(tensors))
    return folder, r"'param/fc1.weight' is float32 \(3, 4\), the network expects float32 \(8, 4\)"


def damage_missing_key(folder):
    tensors = safetensors.numpy.load(weights_path(folder).read_bytes())
    del tensors["param/fc2.bias"]
    replace_weights(folder, safetensors.numpy.save(tensors))
    return folder, r"missing \['param/fc2.bias'\]"


def damage_spec_text(folder):
    set_meta(folder, spec="name: tiny\ninput: [4]\nlayers: []\n")
    return folder, "the saved spec does not build here"


DAMAGE = [value for name, value in dict(globals()).items() if name.startswith("damage_")]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.removeprefix("damage_"))
def test_damage_is_a_one_line_checkpoint_error(run, damage):
    folder, expected = damage(run[0])
    with pytest.raises(CheckpointError, match=expected) as error:
        load_network(folder)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("damage", [damage_wrong_shape, damage_flipped_byte, damage_foreign_json],
                         ids=lambda f: f.__name__.removeprefix("damage_"))
def test_resume_reports_damage_too(run, damage):
    folder, expected = damage(run[0])
    with pytest.raises(CheckpointError, match=expected):
        fit(tiny_net(epochs=1, optimizer={"type": "adam", "lr": 0.01}), out=folder, resume=True)


def test_missing_optimizer_state_is_reported_on_resume(run):
    folder, _ = run
    tensors = safetensors.numpy.load(weights_path(folder).read_bytes())
    del tensors["optim/step"]
    replace_weights(folder, safetensors.numpy.save(tensors))
    load_network(folder)  # predicting needs no optimizer state
    with pytest.raises(CheckpointError, match=r"missing \['optim/step'\]"):
        fit(tiny_net(epochs=1, optimizer={"type": "adam", "lr": 0.01}), out=folder, resume=True)


def newer(checkpoint):
    """The same checkpoint one step later with other weights."""
    tensors = {k: v + 1 if k.startswith("param/") else v for k, v in checkpoint.tensors.items()}
    return dataclasses.replace(checkpoint, global_step=checkpoint.global_step + 1, tensors=tensors)


def failing_replace(monkeypatch, target):
    """os.replace dies (as a killed process would) when it is about to install `target`."""
    real = os.replace

    def replace(src, dst):
        if os.path.basename(dst).startswith(target):
            raise KeyboardInterrupt("killed")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("target", ["checkpoint-", META_FILE])
def test_a_kill_mid_save_leaves_the_previous_checkpoint(run, monkeypatch, target):
    folder, net = run
    previous = read_checkpoint(folder)
    failing_replace(monkeypatch, target)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(folder, newer(previous))
    monkeypatch.undo()
    again = read_checkpoint(folder)
    assert again.global_step == previous.global_step
    for key, value in previous.tensors.items():
        assert np.array_equal(again.tensors[key], value)
    np.testing.assert_array_equal(load_network(folder).predict(X), net.predict(X))

    write_checkpoint(folder, newer(previous))  # the next save succeeds and tidies up
    assert read_checkpoint(folder).global_step == previous.global_step + 1
    assert len(list(folder.glob("checkpoint-*.safetensors"))) == 1
    assert not list(folder.glob(".*.tmp"))


def test_leftovers_of_a_killed_save_do_not_matter(run):
    folder, net = run
    data = weights_path(folder).read_bytes()
    (folder / ".checkpoint-000007-0badc0de.safetensors.123.tmp").write_bytes(data[:50])
    (folder / "checkpoint-000007-0badc0de.safetensors").write_bytes(data[:50])
    (folder / f".{META_FILE}.123.tmp").write_text('{"format": "cnnk')
    np.testing.assert_array_equal(load_network(folder).predict(X), net.predict(X))


def test_a_run_killed_while_saving_an_epoch_resumes_exactly(tmp_path, monkeypatch):
    straight = tiny_net(epochs=2)
    fit(straight, out=tmp_path / "straight", progress=False)

    calls = {"n": 0}
    real = os.replace

    def replace(src, dst):
        if os.path.basename(dst) == META_FILE:
            calls["n"] += 1
            if calls["n"] == 3:  # saves: at the start, after epoch 1, after epoch 2
                raise KeyboardInterrupt("killed")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_net(epochs=2), out=tmp_path / "killed", progress=False)
    monkeypatch.undo()
    assert read_checkpoint(tmp_path / "killed").epoch == 1
    resumed = tiny_net(epochs=2)
    fit(resumed, out=tmp_path / "killed", resume=True, progress=False)
    for key in straight.params:
        assert np.array_equal(resumed.params[key], straight.params[key])
