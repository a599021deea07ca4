from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from cnnkit.errors import ShapeError, SpecError
from cnnkit.plugins import registry
from cnnkit.train import from_section
from tests.oracles import require_torch

SECTIONS = [
    {"type": "sgd", "lr": 0.1},
    {"type": "sgd", "lr": 0.1, "momentum": 0.9},
    {"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    {"type": "sgd", "lr": 0.1, "weight_decay": 0.1},
    {"type": "adam"},
    {"type": "adam", "lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1},
    {"type": "adamw"},
    {"type": "adamw", "lr": 0.01, "weight_decay": 0.3},
]
STEPS = 7
LR_SCALE = [1.0, 0.5, 1.5, 1.0, 0.25, 2.0, 1.0]  # a changing rate, as a schedule gives


def make(section, params, grads):
    return from_section(registry().optimizer, section, params, grads)


def ids(section):
    return "-".join(f"{k}={v}" for k, v in section.items())


def problem(dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = {"a.weight": rng.standard_normal((3, 4)).astype(dtype),
              "a.bias": rng.standard_normal(3).astype(dtype)}
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()} for _ in range(STEPS)]
    return params, grads


def full(section):
    """The section with every default filled in, as the spec validator would."""
    from cnnkit.attrs import parse_attrs

    record = registry().optimizer(section["type"])
    given = {k: v for k, v in section.items() if k != "type"}
    return {"type": section["type"], **parse_attrs(record.attrs, given)}


def run_cnnkit(section, params, grads, state=None):
    """Fresh copies of `params` after steps with `grads`, starting from an optimizer `state` if given;
    returns (params, optimizer)."""
    params = {k: v.copy() for k, v in params.items()}
    own = {k: np.zeros_like(v) for k, v in params.items()}
    optimizer = make(section, params, own)
    if state is not None:
        optimizer.load_state(state)
    done = int(optimizer.state()["step"])
    base = full(section)["lr"]
    for scale, step_grads in zip(LR_SCALE[done:], grads):
        for k, g in step_grads.items():
            own[k][...] = g
        optimizer.step(base * scale)
    return params, optimizer


def run_torch(torch, section, params, grads):
    attrs = full(section)
    kind = attrs.pop("type")
    tensors = {k: torch.tensor(v.copy()) for k, v in params.items()}
    if kind == "sgd":
        optimizer = torch.optim.SGD(list(tensors.values()), **attrs)
    else:
        beta1, beta2 = attrs.pop("beta1"), attrs.pop("beta2")
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        optimizer = cls(list(tensors.values()), betas=(beta1, beta2), foreach=False, **attrs)
    for scale, step_grads in zip(LR_SCALE, grads):
        for group in optimizer.param_groups:
            group["lr"] = attrs["lr"] * scale
        for k, t in tensors.items():
            t.grad = torch.tensor(step_grads[k])
        optimizer.step()
    return {k: t.numpy() for k, t in tensors.items()}


@pytest.mark.torch
@pytest.mark.parametrize("section", SECTIONS, ids=ids)
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_matches_torch(section, dtype, rtol):
    torch = require_torch()
    params, grads = problem(dtype)
    ours, _ = run_cnnkit(section, params, grads)
    theirs = run_torch(torch, section, params, grads)
    for key in params:
        assert ours[key].dtype == dtype
        np.testing.assert_allclose(ours[key], theirs[key], rtol=rtol, atol=rtol * 1e-2, err_msg=key)


@pytest.mark.parametrize("section", SECTIONS, ids=ids)
def test_state_round_trip_resumes_exactly(section):
    params, grads = problem(np.float32, seed=1)
    straight, _ = run_cnnkit(section, params, grads)
    halfway, optimizer = run_cnnkit(section, params, grads[:3])
    saved = {k: v.copy() for k, v in optimizer.state().items()}
    assert saved["step"].dtype == np.int64 and int(saved["step"]) == 3
    resumed, _ = run_cnnkit(section, halfway, grads[3:], state=saved)
    for key in params:
        assert np.array_equal(resumed[key], straight[key]), key


@pytest.mark.parametrize("section", SECTIONS, ids=ids)
def test_step_allocates_nothing(section):
    rng = np.random.default_rng(2)
    params = {"big.weight": rng.standard_normal((300, 300))}
    grads = {"big.weight": rng.standard_normal((300, 300))}
    optimizer = make(section, params, grads)
    optimizer.step(0.01)
    optimizer.step(0.01)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        optimizer.step(0.01)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - before < params["big.weight"].nbytes // 10


def test_load_state_checks_names_and_shapes():
    params = {"a.weight": np.zeros((2, 2))}
    optimizer = make({"type": "adam"}, params, {"a.weight": np.zeros((2, 2))})
    state = {k: v.copy() for k, v in optimizer.state().items()}
    with pytest.raises(ShapeError, match="missing"):
        optimizer.load_state({k: v for k, v in state.items() if k != "step"})
    state["exp_avg/a.weight"] = np.zeros((3, 2))
    with pytest.raises(ShapeError, match=r"exp_avg/a.weight.*\(3, 2\)"):
        optimizer.load_state(state)


def test_nesterov_needs_momentum():
    with pytest.raises(SpecError, match="nesterov needs momentum"):
        make({"type": "sgd", "lr": 0.1, "nesterov": True}, {}, {})


def test_defaults_follow_torch():
    assert full({"type": "adam"}) == {"type": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                      "weight_decay": 0.0}
    assert full({"type": "adamw"})["weight_decay"] == 0.01
    assert full({"type": "sgd"}) == {"type": "sgd", "lr": 0.01, "momentum": 0.0, "nesterov": False,
                                     "weight_decay": 0.0}
