"""The built-in datasets, registered through the same hook as any plugin's: shapes, digits, npz, idx,
image_folder."""

from __future__ import annotations

from cnnkit.data.digits import DIGITS_DATASET
from cnnkit.data.files import IDX_DATASET, NPZ_DATASET
from cnnkit.data.images import IMAGE_FOLDER_DATASET
from cnnkit.data.shapes import SHAPES_DATASET
from cnnkit.hookspecs import Register, hookimpl

DATASETS = (SHAPES_DATASET, DIGITS_DATASET, NPZ_DATASET, IDX_DATASET, IMAGE_FOLDER_DATASET)


@hookimpl
def cnnkit_register_datasets(register: Register) -> None:
    for dataset in DATASETS:
        register(dataset)
