from __future__ import annotations

import json

import numpy as np
import pytest

import cnnkit
from cnnkit import build
from cnnkit.errors import CheckpointError, DataError, SpecError
from cnnkit.spec import TrainSpec, load_spec
from cnnkit.train import from_section, on_backend
from cnnkit.train.checkpoint import METRICS_FILE, SPEC_FILE, read_checkpoint, restore
from cnnkit.train.trainer import History, epoch_order, fit, load_data
from tests.train.conftest import BLOBS, tiny_net, tiny_spec

FIELDS = ["epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]


def test_fit_learns_and_writes_the_run_folder(tmp_path):
    net = tiny_net(epochs=4)
    history = fit(net, out=tmp_path / "run", progress=False)
    assert isinstance(history, History) and len(history) == 4
    assert [list(record) for record in history] == [FIELDS] * 4
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert [r["step"] for r in history] == [6, 12, 18, 24]  # 45 training examples in batches of 8
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_acc"] >= 0.8
    lines = (tmp_path / "run" / METRICS_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == history.epochs
    assert load_spec(tmp_path / "run" / SPEC_FILE) == load_spec(tiny_spec(epochs=4))
    assert read_checkpoint(tmp_path / "run").epoch == 4


def test_public_train_and_load(tmp_path):
    net = tiny_net()
    history = cnnkit.train(net, out=tmp_path, progress=False)
    again = cnnkit.load(tmp_path)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    assert len(history) == 2
    np.testing.assert_array_equal(again.predict(x), net.predict(x))


def test_recipe_as_dict_or_trainspec_overrides_the_spec():
    net = tiny_net()
    history = fit(net, {"data": {"dataset": BLOBS, "val_fraction": 0.0}, "epochs": 1, "batch_size": 60},
                  progress=False)
    assert len(history) == 1 and history[0]["step"] == 1 and history[0]["val_loss"] is None
    recipe = TrainSpec(data={"dataset": BLOBS}, epochs=1, batch_size=15, optimizer={"type": "adam"})
    assert fit(tiny_net(), recipe, progress=False)[0]["step"] == 3


def test_a_bad_recipe_is_a_spec_error():
    with pytest.raises(SpecError, match="epochs"):
        fit(tiny_net(), {"data": {"dataset": BLOBS}, "epochs": 0})
    with pytest.raises(SpecError, match="nesterov"):
        fit(tiny_net(optimizer={"type": "sgd", "nesterov": True}))


def test_no_recipe_at_all():
    spec = tiny_spec()
    del spec["train"]
    with pytest.raises(SpecError, match="no 'train' section"):
        fit(build(spec))


def test_same_seed_same_run():
    first, second = tiny_net(noise=True), tiny_net(noise=True)
    assert fit(first, progress=False).metric("train_loss") == fit(second, progress=False).metric("train_loss")
    for key in first.params:
        assert np.array_equal(first.params[key], second.params[key])


def test_each_epoch_has_its_own_shuffle():
    orders = [epoch_order(3, epoch, 45) for epoch in range(3)]
    assert not np.array_equal(orders[0], orders[1])
    np.testing.assert_array_equal(orders[2], epoch_order(3, 2, 45))
    assert sorted(orders[1]) == list(range(45))


def test_input_shape_mismatch_names_both_shapes():
    net = tiny_net(data={"dataset": BLOBS, "features": 5})
    with pytest.raises(DataError, match=r"shape 5, but network 'tiny' takes input 4"):
        fit(net)


def test_more_classes_than_output_units():
    net = tiny_net(data={"dataset": BLOBS, "classes": 5})
    with pytest.raises(DataError, match="5 classes, but the output layer 'fc2' has 3 units"):
        fit(net)


def test_fewer_classes_than_output_units_is_fine():
    assert len(fit(tiny_net(data={"dataset": BLOBS, "classes": 2}, epochs=1), progress=False)) == 1


def test_load_data_splits_with_the_recipe_seed():
    net = tiny_net()
    train, val = load_data(net)
    assert (len(train), len(val)) == (45, 15)
    again, _ = load_data(net)
    np.testing.assert_array_equal(train.x, again.x)


def test_plain_progress_prints_one_line_per_epoch(capsys):
    fit(tiny_net(epochs=3), progress=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("training 'tiny': 45 examples (15 held out), 6 steps per epoch")
    assert [line.split()[:2] for line in lines[1:]] == [["epoch", "1/3"], ["epoch", "2/3"], ["epoch", "3/3"]]
    assert "val loss" in lines[1] and "train loss" in lines[1]


def test_progress_bar(capsys):
    fit(tiny_net(epochs=1), progress=True)
    captured = capsys.readouterr()
    assert "epoch 1/1" in captured.err and "epoch 1/1  step 6" in captured.out


def test_callbacks_see_every_step_and_epoch():
    events = []
    fit(tiny_net(epochs=2), progress=False, callbacks=[events.append])
    assert [e["event"] for e in events] == (["step"] * 6 + ["epoch"]) * 2
    assert [e["global_step"] for e in events if e["event"] == "step"] == list(range(1, 13))
    assert events[6]["epoch"] == 1 and events[6]["train_loss"] > 0


def test_an_existing_run_is_not_overwritten_by_accident(tmp_path):
    fit(tiny_net(epochs=1), out=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="already holds a training run"):
        fit(tiny_net(epochs=1), out=tmp_path, progress=False)
    assert len(fit(tiny_net(epochs=1), out=tmp_path, overwrite=True, progress=False)) == 1
    assert len(list(tmp_path.glob("checkpoint-*.safetensors"))) == 1


@pytest.mark.parametrize("optimizer", [{"type": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
                                       {"type": "adamw", "lr": 0.01}], ids=["sgd", "adamw"])
def test_a_c_network_trains_with_the_c_loss_and_optimizer_like_numpy(tmp_path, optimizer):
    """The trainer takes the backend's own cross-entropy and optimizer: the same history as NumPy's, and
    checkpoints with the same tensors (so a run moves between backends)."""
    from cnnkit.backends.c import unavailable

    if unavailable():
        pytest.skip(f"the C backend is not available: {unavailable()}")
    histories, checkpoints = {}, {}
    for backend in ("numpy", "c"):
        net = build(tiny_spec(optimizer=optimizer, epochs=3), seed=1, backend=backend)
        histories[backend] = fit(net, out=tmp_path / backend, progress=False)
        checkpoints[backend] = read_checkpoint(tmp_path / backend)
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose([r[key] for r in histories["c"]], [r[key] for r in histories["numpy"]],
                                   rtol=1e-4)
    tensors = {backend: checkpoint.tensors for backend, checkpoint in checkpoints.items()}
    assert {k: v.shape for k, v in tensors["c"].items()} == {k: v.shape for k, v in tensors["numpy"].items()}
    assert any(key.startswith("optim/") for key in tensors["c"]), list(tensors["c"])
    resumed = build(tiny_spec(optimizer=optimizer, epochs=3), seed=1, backend="c")
    own = from_section(on_backend(resumed.registry.optimizer, resumed), optimizer, resumed.params,
                       resumed.grads)
    assert type(own).__module__ == "cnnkit.backends.c.optimizers"
    restore(resumed, checkpoints["numpy"], own)
    for key, value in own.state().items():
        np.testing.assert_array_equal(value, tensors["numpy"][f"optim/{key}"])
