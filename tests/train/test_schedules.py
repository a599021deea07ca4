from __future__ import annotations

import math

import numpy as np
import pytest

from cnnkit.errors import SpecError
from cnnkit.plugins import registry
from cnnkit.train import from_section
from tests.oracles import require_torch

STEPS_PER_EPOCH = 10
EPOCHS = 6
TOTAL = STEPS_PER_EPOCH * EPOCHS


def curve(section, base_lr=0.1, total=TOTAL, per_epoch=STEPS_PER_EPOCH):
    rate = from_section(registry().schedule, section, base_lr=base_lr, total_steps=total,
                        steps_per_epoch=per_epoch)
    return np.array([rate(step) for step in range(total)])


def test_none_is_constant():
    assert np.all(curve({"type": "none"}) == 0.1)


def test_step_decays_every_step_epochs():
    lr = curve({"type": "step", "step_epochs": 2, "gamma": 0.5})
    expected = 0.1 * 0.5 ** (np.arange(TOTAL) // (2 * STEPS_PER_EPOCH))
    np.testing.assert_allclose(lr, expected, rtol=1e-15)
    assert lr[19] == 0.1 and lr[20] == 0.05


def test_step_needs_step_epochs():
    with pytest.raises(SpecError, match="needs attribute 'step_epochs'"):
        curve({"type": "step"})


def test_cosine_goes_from_lr_to_min_lr():
    lr = curve({"type": "cosine", "min_lr": 0.01})
    assert lr[0] == pytest.approx(0.1)
    assert lr[TOTAL // 2] == pytest.approx(0.055)
    assert np.all(np.diff(lr) < 0) and lr[-1] > 0.01
    assert lr[-1] == pytest.approx(0.01 + 0.09 * (1 + math.cos(math.pi * (TOTAL - 1) / TOTAL)) / 2)


@pytest.mark.torch
def test_cosine_matches_torch():
    torch = require_torch()
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=TOTAL, eta_min=0.01)
    expected = []
    for _ in range(TOTAL):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(curve({"type": "cosine", "min_lr": 0.01}), expected, rtol=1e-12)


@pytest.mark.parametrize("section", [{"type": "none"}, {"type": "step", "step_epochs": 3},
                                     {"type": "cosine"}], ids=lambda s: s["type"])
def test_warmup_ramps_linearly_to_the_schedule(section):
    warm = curve({**section, "warmup_epochs": 1.5})
    plain = curve(section)
    steps = 15
    np.testing.assert_allclose(warm[:steps], 0.1 * np.arange(1, steps + 1) / steps, rtol=1e-12)
    assert warm[0] == pytest.approx(0.1 / steps)
    if section["type"] != "cosine":
        np.testing.assert_array_equal(warm[steps:], plain[steps:])


def test_cosine_after_warmup_spans_the_remaining_steps():
    lr = curve({"type": "cosine", "warmup_epochs": 1})
    after = lr[STEPS_PER_EPOCH:]
    span = TOTAL - STEPS_PER_EPOCH
    expected = 0.1 * (1 + np.cos(np.pi * np.arange(span) / span)) / 2
    np.testing.assert_allclose(after, expected, rtol=1e-12)
    assert lr[STEPS_PER_EPOCH - 1] == pytest.approx(0.1)


def test_warmup_must_not_be_negative():
    with pytest.raises(SpecError, match="warmup_epochs"):
        curve({"type": "none", "warmup_epochs": -1})
