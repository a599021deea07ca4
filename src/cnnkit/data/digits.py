"""digits: scikit-learn's bundled 8x8 handwritten digits (1,797 images, classes "0".."9"), no download.

Needs the optional extra: pip install "cnnkit[digits]". Pixels (0..16 in the source) are scaled to [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cnnkit.data import SPLIT_ATTRS
from cnnkit.data.dataset import ArrayDataset
from cnnkit.errors import DataError
from cnnkit.registry import Dataset

INPUT_SHAPE = (1, 8, 8)


def load(attrs: Mapping[str, Any], input_shape: tuple[int, ...], seed: int) -> ArrayDataset:
    if tuple(input_shape) != INPUT_SHAPE:
        raise DataError(f"dataset 'digits' holds 1x8x8 grayscale images, but the spec's input is "
                        f"{'x'.join(map(str, input_shape))}; use input: [1, 8, 8]")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError('dataset \'digits\' needs scikit-learn: pip install "cnnkit[digits]"') from None
    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0))[:, None]
    return ArrayDataset(x, np.asarray(bunch.target, dtype=np.int64), tuple(str(d) for d in range(10)))


DIGITS_DATASET = Dataset(
    name="digits",
    attrs=SPLIT_ATTRS,
    load=load,
    doc="scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes); input [1, 8, 8]. "
        'Needs pip install "cnnkit[digits]".',
)
