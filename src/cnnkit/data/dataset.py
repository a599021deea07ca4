"""ArrayDataset: images and labels in memory, with the deterministic split and batching training uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from cnnkit.errors import DataError


@dataclass(frozen=True)
class ArrayDataset:
    """x: float32 (N, C, H, W) or (N, F); y: int64 (N,) class indices; class_names: one per class.

    augment(x, rng) -> x: applied by the trainer to every training batch (never to validation or
    evaluation), with a generator drawn from (seed, epoch, step) alone, so a resumed run draws the same.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = field(default=None,
                                                                                  compare=False)

    def __post_init__(self) -> None:
        if self.x.dtype != np.float32:
            raise DataError(f"images must be float32, got {self.x.dtype}")
        if self.y.dtype != np.int64 or self.y.ndim != 1:
            raise DataError(f"labels must be a 1-d int64 array, got {self.y.dtype} with shape {self.y.shape}")
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} images but {len(self.y)} labels")
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= len(self.class_names)):
            raise DataError(f"labels must lie in 0..{len(self.class_names) - 1} for "
                            f"{len(self.class_names)} classes, found {self.y.min()}..{self.y.max()}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def classes(self) -> int:
        return len(self.class_names)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ArrayDataset:
        return ArrayDataset(self.x[indices], self.y[indices], self.class_names, self.augment)

    def split(self, val_fraction: float, seed: int) -> tuple[ArrayDataset, ArrayDataset]:
        """(train, validation): a seeded shuffle, so the same seed always holds out the same examples."""
        order = np.random.default_rng([seed, 0x5917]).permutation(len(self))
        n_val = int(round(len(self) * val_fraction))
        return self.subset(np.sort(order[n_val:])), self.subset(np.sort(order[:n_val]))

    def batches(self, batch_size: int, order: np.ndarray | None = None,
                start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Mini-batches in `order` (default: as stored), beginning at batch number `start`."""
        order = np.arange(len(self)) if order is None else order
        for begin in range(start * batch_size, len(self), batch_size):
            index = order[begin:begin + batch_size]
            yield self.x[index], self.y[index]
