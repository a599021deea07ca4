from __future__ import annotations

import sys

import numpy as np
import pytest

from cnnkit.data.digits import DIGITS_DATASET
from cnnkit.errors import DataError


def test_loads_all_digits_as_one_channel_8x8_in_unit_range():
    pytest.importorskip("sklearn")
    data = DIGITS_DATASET.load({"val_fraction": 0.2}, (1, 8, 8), 0)
    assert data.x.shape == (1797, 1, 8, 8) and data.x.dtype == np.float32
    assert data.x.min() == 0.0 and data.x.max() == 1.0
    assert data.class_names == tuple("0123456789")
    assert np.bincount(data.y).min() > 170


@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 8, 8), (64,)])
def test_other_input_shapes_are_refused(input_shape):
    with pytest.raises(DataError, match=r"1x8x8 .* use input: \[1, 8, 8\]"):
        DIGITS_DATASET.load({}, input_shape, 0)


def test_without_scikit_learn_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match=r'pip install "cnnkit\[digits\]"'):
        DIGITS_DATASET.load({}, (1, 8, 8), 0)
