"""Augmentation of training batches: random crop after zero padding, and horizontal flip.

An `Augmentation` is an ArrayDataset's `augment(x, rng)`: the trainer calls it on each training batch
(N, C, H, W) with a generator drawn from (seed, epoch, step), so the same run draws the same crops and
flips, also after a resume. The padding is zeros of the stored values, which after normalisation with a
mean is the mean colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """crop_padding: pad each side by this many pixels, then crop the input size back out at a random
    offset (0 for none); flip: mirror left-right with probability 1/2."""

    crop_padding: int = 0
    flip: bool = False

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, rng)
        if self.flip:
            x = random_flip(x, rng)
        return x


def random_crop(x: np.ndarray, padding: int, rng: np.random.Generator) -> np.ndarray:
    """Each image shifted by up to `padding` pixels in each direction, with zeros shifted in."""
    n, _, height, width = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    top, left = rng.integers(0, 2 * padding + 1, size=(2, n))
    rows = top[:, None] + np.arange(height)
    cols = left[:, None] + np.arange(width)
    return padded[np.arange(n)[:, None, None, None], np.arange(x.shape[1])[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image mirrored left-right with probability 1/2 (a new array; x is left as it is)."""
    flipped = rng.random(len(x)) < 0.5
    return np.where(flipped[:, None, None, None], x[..., ::-1], x)
