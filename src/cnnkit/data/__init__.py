"""Datasets: what a spec's `train: data:` section names, and the in-memory form training reads.

A dataset is a plugin record, `cnnkit.registry.Dataset(name, attrs, load, doc)`, registered from the
`cnnkit_register_datasets` hook; the built-ins (shapes, digits, npz, idx, image_folder) live in
cnnkit.data.builtin.
For plugin authors, the contract of `load(attrs, input_shape, seed) -> ArrayDataset`:

- `attrs` holds the spec's data attributes, parsed and with defaults filled in. Every dataset declares
  SPLIT_ATTRS (append them to its own attrs): the trainer holds out `val_fraction` of the examples with
  `ArrayDataset.split(val_fraction, seed)`, so `load` returns all of them and ignores it.
- `attrs` may also hold BASE_DIR, the folder that relative file paths are relative to: the trainer sets it
  to the spec file's folder; without it they are relative to the current directory. A dataset that reads
  files resolves its paths with `resolve_path(attrs, name)`.
- `input_shape` is the spec's input, (C, H, W) or (F,): return x of shape (N, *input_shape), float32 and
  roughly zero-mean, unit-scale, and y of int64 class indices; raise DataError for shapes you cannot serve.
- The same attrs and seed must give bitwise the same arrays.
- Augmentation belongs to training batches only: set the ArrayDataset's `augment(x, rng)`, which the
  trainer applies to each training batch with a generator drawn from (seed, epoch, step).
- A dataset of pictures declares `from_pixels(pixels, attrs)` on its record, so `cnnkit predict` and
  `cnnkit viz maps` turn a picture file into an input the way training did (see cnnkit.data.images).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnkit.attrs import Attr
from cnnkit.data.dataset import ArrayDataset

__all__ = ["ArrayDataset", "BASE_DIR", "SPLIT_ATTRS", "resolve_path"]

SPLIT_ATTRS: tuple[Attr, ...] = (
    Attr("val_fraction", "float", 0.2, doc="fraction of the examples held out for validation",
         minimum=0.0, maximum=1.0, exclusive_max=True),
)
"""The attributes every dataset accepts; append them to a Dataset record's own attrs."""

BASE_DIR = "base_dir"
"""The attrs key for the folder that relative paths in the other attributes are relative to."""


def resolve_path(attrs: Mapping[str, Any], name: str) -> Path:
    """attrs[name] as a path; a relative one is taken relative to attrs[BASE_DIR] when that is set."""
    path = Path(attrs[name]).expanduser()
    base = attrs.get(BASE_DIR)
    return path if path.is_absolute() or base is None else Path(base) / path
