"""Every hook in cnnkit.hookspecs is documented (in its docstring and in docs/plugins.md) and exercised: one
plugin implements them all, and for each hook a check uses what it registered the way cnnkit does.

A new hook makes test_every_hook_has_an_exercise fail until EXERCISES covers it.
"""

from __future__ import annotations

import inspect
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cnnkit import hookimpl, hookspecs
from cnnkit.attrs import Attr
from cnnkit.backends.numpy.activation import Elementwise, leaky_relu
from cnnkit.data import SPLIT_ATTRS, ArrayDataset
from cnnkit.graph import Network
from cnnkit.onnx import export_onnx, verify_onnx
from cnnkit.plugins import HOOK_RECORDS, HOOKS
from cnnkit.registry import Backend, Dataset, Kernel, LayerType, Loss, Optimizer, Schedule
from cnnkit.spec import load_spec
from cnnkit.testing import check_gradients, plugin_registry
from cnnkit.train.losses import CrossEntropy
from cnnkit.train.optimizers import SGD
from cnnkit.train.trainer import fit

GUIDE = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()


class Everything:
    """A plugin implementing every hook, counting how often cnnkit calls what it registered."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def counted(self, key: str, make):
        def wrapper(*args, **kwargs):
            self.calls[key] += 1
            return make(*args, **kwargs)
        return wrapper

    @hookimpl
    def cnnkit_register_layers(self, register):
        def to_onnx(ctx):
            ctx.node("LeakyRelu", ctx.inputs, alpha=ctx.attrs["slope"])

        register(LayerType(name="bent", attrs=(Attr("slope", "float", 0.5, minimum=0, maximum=1),),
                           infer_shape=lambda attrs, shapes: shapes[0], to_onnx=to_onnx,
                           doc="x where x > 0, slope * x elsewhere"))

    @hookimpl
    def cnnkit_register_backends(self, register):
        register(Backend(name="counting", description="the reference, counting its ops"))

    @hookimpl
    def cnnkit_register_kernels(self, register):
        def bent(setup):
            return Elementwise(setup, lambda attrs: leaky_relu(attrs["slope"]))

        register(Kernel(layer="bent", backend="numpy", make=bent))
        register(Kernel(layer="bent", backend="counting", make=self.counted("kernel", bent)))

    @hookimpl
    def cnnkit_register_datasets(self, register):
        def load(attrs, input_shape, seed):
            rng = np.random.default_rng(seed)
            y = rng.integers(0, 2, attrs["examples"])
            x = rng.standard_normal((attrs["examples"], *input_shape)) + y.reshape(-1, 1)
            return ArrayDataset(x.astype(np.float32), y, ("low", "high"))

        register(Dataset(name="two_blobs", attrs=(Attr("examples", "int", 32, minimum=2), *SPLIT_ATTRS),
                         load=self.counted("dataset", load)))

    @hookimpl
    def cnnkit_register_losses(self, register):
        register(Loss(name="counted_cross_entropy", attrs=(), make=self.counted("loss", CrossEntropy)))

    @hookimpl
    def cnnkit_register_optimizers(self, register):
        register(Optimizer(name="counted_sgd", attrs=(Attr("lr", "float", 0.1),),
                           make=self.counted("optimizer", SGD)))

    @hookimpl
    def cnnkit_register_schedules(self, register):
        def halving(base_lr, total_steps, steps_per_epoch):
            return self.counted("schedule", lambda step: base_lr / 2 ** (step // steps_per_epoch))

        register(Schedule(name="halving", attrs=(), make=halving))


SPEC = {"name": "everything", "input": [3], "layers": [
    {"name": "fc1", "type": "linear", "units": 4},
    {"name": "act", "type": "bent", "slope": 0.25},
    {"name": "fc2", "type": "linear", "units": 2}],
    "train": {"data": {"dataset": "two_blobs", "examples": 30, "val_fraction": 0.2}, "batch_size": 8,
              "epochs": 2, "loss": {"type": "counted_cross_entropy"},
              "optimizer": {"type": "counted_sgd", "lr": 0.2}, "schedule": {"type": "halving"}}}


@pytest.fixture(scope="module")
def trained():
    """The plugin's registry, and a network that used all of its records through a two-epoch run."""
    plugin = Everything()
    reg = plugin_registry(plugin)
    net = Network(load_spec(SPEC, reg), reg, backend="counting")
    history = fit(net, progress=False)
    return plugin, reg, net, history


def exercise_layers(plugin, reg, net, history, tmp_path):
    assert reg.layer("bent").plugin == "Everything"
    check_gradients("bent", {"slope": 0.25}, [np.array([[-1.5, 0.5, 2.0]])], registry=reg)
    path = export_onnx(net, tmp_path / "everything.onnx")
    assert verify_onnx(net, path).passed


def exercise_backends(plugin, reg, net, history, tmp_path):
    assert reg.backend("counting").unavailable() is None
    assert net.kernels[1].backend == "counting" and net.kernels[0].backend == "numpy"


def exercise_kernels(plugin, reg, net, history, tmp_path):
    assert plugin.calls["kernel"] >= 1  # one op per batch size the network met


def exercise_datasets(plugin, reg, net, history, tmp_path):
    assert plugin.calls["dataset"] >= 1
    assert history[-1]["train_acc"] > 0.5


def exercise_losses(plugin, reg, net, history, tmp_path):
    assert plugin.calls["loss"] >= 1
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def exercise_optimizers(plugin, reg, net, history, tmp_path):
    assert plugin.calls["optimizer"] == 1


def exercise_schedules(plugin, reg, net, history, tmp_path):
    assert plugin.calls["schedule"] >= 6  # every step of both epochs asks for its rate
    assert [epoch["lr"] for epoch in history] == [0.2, 0.1]  # halved after the first epoch


EXERCISES = {
    "cnnkit_register_layers": exercise_layers,
    "cnnkit_register_backends": exercise_backends,
    "cnnkit_register_kernels": exercise_kernels,
    "cnnkit_register_datasets": exercise_datasets,
    "cnnkit_register_losses": exercise_losses,
    "cnnkit_register_optimizers": exercise_optimizers,
    "cnnkit_register_schedules": exercise_schedules,
}


def hookspec_names() -> set[str]:
    return {name for name, value in vars(hookspecs).items() if hasattr(value, "cnnkit_spec")}


def test_every_hook_has_an_exercise_and_a_record_type():
    assert set(EXERCISES) == set(HOOKS) == set(HOOK_RECORDS) == hookspec_names()
    assert all(hasattr(Everything, hook) for hook in HOOKS)


@pytest.mark.parametrize("hook", sorted(hookspec_names()))
def test_every_hook_is_documented_in_hookspecs_and_the_guide(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook))
    assert doc and "register(" in doc and HOOK_RECORDS[hook].__name__ in doc
    assert f"`{hook}`" in GUIDE
    assert HOOK_RECORDS[hook].__name__ in GUIDE


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_exercised(hook, trained, tmp_path):
    EXERCISES[hook](*trained, tmp_path)
