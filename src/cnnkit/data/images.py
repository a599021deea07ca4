"""image_folder: pictures in a folder with one sub-folder per class (torchvision's ImageFolder layout).

    {dataset: image_folder, path: data/pets}      data/pets/cat/001.png, data/pets/dog/x.jpg, ...

The classes are the sub-folders of `path` sorted by name (hidden ones are skipped), their class names the
folder names; the examples are the .png, .jpg, .jpeg and .bmp files under each class folder, at any depth,
in sorted order (other files are skipped with a notice). Every picture is read with Pillow and converted to
the spec's input C x H x W: C = 1 is grayscale (Pillow's "L"), C = 3 is RGB; JPEG orientation tags are
applied, 16-bit grey is scaled to 8 bits, transparency is flattened onto black, and the picture is
resized to W x H (bilinear, the aspect ratio is not kept). One notice says how many pictures needed it and
what they were. Pixels are scaled to [0, 1]; with `mean` and `std` (one value per channel, or one for all)
they become (pixel - mean) / std. `crop_padding` and `flip` augment the training batches only (see
cnnkit.data.augment).

`cnnkit predict` and `cnnkit viz maps` read pictures the same way (read_pixels) and then prepare them as
the run's dataset does (to_inputs, through the dataset record's from_pixels).

Needs the optional extra: pip install "cnnkit[images]" (Pillow).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from cnnkit.attrs import Attr
from cnnkit.data import SPLIT_ATTRS, resolve_path
from cnnkit.data.augment import Augmentation
from cnnkit.data.dataset import ArrayDataset
from cnnkit.errors import DataError
from cnnkit.graph import Network, notice
from cnnkit.registry import Dataset

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
FORMATS = ("PNG", "JPEG", "BMP")
MODES = {1: "L", 3: "RGB"}
"""Channels of the spec's input -> the Pillow mode pictures are converted to."""


def pillow() -> ModuleType:
    """PIL.Image, or DataError naming the extra that installs it."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError('reading pictures needs Pillow: pip install "cnnkit[images]"') from None
    return Image


def picture_mode(input_shape: Sequence[int], what: str) -> str:
    """The Pillow mode for an input (C, H, W) with C = 1 or 3, else DataError saying so."""
    if len(input_shape) != 3 or input_shape[0] not in MODES:
        raise DataError(f"{what}: pictures become inputs of shape [1 or 3, height, width] (grayscale or "
                        f"RGB), but the spec's input is {'x'.join(map(str, input_shape))}")
    return MODES[input_shape[0]]


# --- reading pictures ----------------------------------------------------------------------------------


def read_picture(path: Path, input_shape: Sequence[int]) -> tuple[np.ndarray, str | None]:
    """(float32 (C, H, W) in [0, 1], the file's "mode HxW" when it had to be converted, else None)."""
    image_module = pillow()
    from PIL import ImageOps

    mode = picture_mode(input_shape, str(path))
    height, width = int(input_shape[1]), int(input_shape[2])
    if not path.is_file():
        raise DataError(f"{path}: {'is a folder, not a picture' if path.is_dir() else 'no such file'}")
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file (0 bytes), not a picture")
        with image_module.open(path, formats=FORMATS) as opened:
            opened.load()
            source = f"{opened.mode} {opened.height}x{opened.width}"
            converted = opened.mode != mode or opened.size != (width, height)
            image = _convert(ImageOps.exif_transpose(opened), mode, (width, height))
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, image_module.DecompressionBombError) as error:
        unidentified = isinstance(error, image_module.UnidentifiedImageError)
        reason = "no PNG, JPEG or BMP image found" if unidentified else str(error) or type(error).__name__
        raise DataError(f"{path}: not a readable PNG, JPEG or BMP picture ({reason})") from None
    pixels = np.asarray(image, dtype=np.float32).reshape(height, width, -1).transpose(2, 0, 1)
    return pixels * np.float32(1 / 255), source if converted else None


def _convert(image: Any, mode: str, size: tuple[int, int]) -> Any:
    """`image` in `mode` at `size` (width, height)."""
    from PIL import Image

    if image.mode.startswith("I"):  # 16- or 32-bit integer grey: scale 0..65535 to 0..255
        image = image.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    if image.has_transparency_data:
        black = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, image.convert("RGBA"))
    if image.mode != mode:
        image = image.convert(mode)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return image


def read_pixels(paths: Sequence[str | os.PathLike], input_shape: Sequence[int],
                source: str | None = None) -> np.ndarray:
    """float32 (N, C, H, W) in [0, 1] from picture files; one notice tells how many were converted, and from
    what. `source` (e.g. their folder) begins that notice."""
    channels, height, width = input_shape
    pixels = np.empty((len(paths), channels, height, width), dtype=np.float32)
    converted: Counter[str] = Counter()
    for i, path in enumerate(paths):
        pixels[i], was = read_picture(Path(path), input_shape)
        if was is not None:
            converted[was] += 1
    if converted:
        kinds = ", ".join(f"{kind} ({count})" for kind, count in converted.most_common(4))
        more = ", ..." if len(converted) > 4 else ""
        where = f"{source}: " if source else ""
        notice(f"{where}converted {sum(converted.values())} of {len(paths)} pictures to the spec's input "
               f"{channels}x{height}x{width} ({MODES[channels]}); they were {kinds}{more} "
               f"(mode height x width)")
    return pixels


def to_inputs(net: Network, pixels: np.ndarray) -> np.ndarray:
    """Pictures' [0, 1] pixels prepared as the network's training data was: through the from_pixels of the
    dataset in the network's spec (unchanged for a dataset without one, or a spec without training)."""
    if net.spec.train is None:
        return pixels
    data = net.spec.train.data
    record = net.registry.dataset(data["dataset"])
    if record.from_pixels is None:
        return pixels
    return np.asarray(record.from_pixels(pixels, data), dtype=np.float32)


def read_inputs(net: Network, paths: Sequence[str | os.PathLike]) -> tuple[np.ndarray, np.ndarray]:
    """(pixels in [0, 1], the network's inputs) for picture files, converted to the network's input."""
    picture_mode(net.input_shape, f"network '{net.spec.name}'")
    pixels = read_pixels(paths, net.input_shape)
    return pixels, to_inputs(net, pixels)


# --- the dataset ---------------------------------------------------------------------------------------


def class_folders(root: Path, given: str) -> list[tuple[str, list[Path]]]:
    """(class name, its picture files) for each class folder under `root`, sorted by name; DataError for a
    missing root, no class folders, or a class folder without pictures."""
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"dataset 'image_folder': path '{given}' {what} (looked at {root.absolute()})")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"dataset 'image_folder': {root} holds no class folders; put each class's pictures "
                        f"in a sub-folder named after the class, e.g. {root / 'cat' / '001.png'}")
    classes, skipped = [], []
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p, folder))
        pictures = [p for p in files if p.suffix.lower() in EXTENSIONS]
        skipped += [p for p in files if p.suffix.lower() not in EXTENSIONS]
        if not pictures:
            raise DataError(f"dataset 'image_folder': class folder {folder} holds no pictures "
                            f"({', '.join(EXTENSIONS)}); add some or remove the folder")
        classes.append((folder.name, pictures))
    if skipped:
        notice(f"{root}: skipped {len(skipped)} files that are not {', '.join(EXTENSIONS)} "
               f"(e.g. {skipped[0]})")
    return classes


def _hidden(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def normalise(pixels: np.ndarray, attrs: Mapping[str, Any]) -> np.ndarray:
    """(pixels - mean) / std per channel, for the attrs `mean` and `std` (empty: 0 and 1)."""
    channels = pixels.shape[1]
    shift = _per_channel(attrs["mean"], "mean", channels, 0.0)
    scale = _per_channel(attrs["std"], "std", channels, 1.0)
    return (pixels - shift) / scale


def _per_channel(values: Sequence[float], name: str, channels: int, default: float) -> np.ndarray:
    if len(values) not in (0, 1, channels):
        raise DataError(f"dataset 'image_folder': {name} has {len(values)} values for pictures of "
                        f"{channels} channels; give one per channel or one for all")
    column = np.full(channels, default, np.float32) if not values else np.broadcast_to(
        np.asarray(values, np.float32), (channels,))
    return column[None, :, None, None]


def load(attrs: Mapping[str, Any], input_shape: tuple[int, ...], seed: int) -> ArrayDataset:
    picture_mode(input_shape, "dataset 'image_folder'")
    root = resolve_path(attrs, "path")
    classes = class_folders(root, attrs["path"])
    paths = [path for _, pictures in classes for path in pictures]
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), [len(pictures) for _, pictures in classes])
    x = normalise(read_pixels(paths, input_shape, str(root)), attrs)
    augment = Augmentation(attrs["crop_padding"], attrs["flip"]) if attrs["crop_padding"] or attrs["flip"] \
        else None
    return ArrayDataset(x, labels, tuple(name for name, _ in classes), augment)


IMAGE_FOLDER_DATASET = Dataset(
    name="image_folder",
    attrs=(
        Attr("path", "str", doc="folder with one sub-folder of pictures per class, relative to the spec's "
             "folder"),
        Attr("mean", "floats", (), doc="subtracted from the [0, 1] pixels: one value per channel, or one "
             "for all (default: nothing)"),
        Attr("std", "floats", (), doc="the pixels minus mean are divided by it: one value per channel, or "
             "one for all (default: 1)", minimum=0.0, exclusive_min=True),
        Attr("crop_padding", "int", 0, doc="training batches only: pad each side by this many pixels and "
             "crop the input size back out at a random offset", minimum=0),
        Attr("flip", "bool", False, doc="training batches only: mirror each picture left-right with "
             "probability 1/2"),
        *SPLIT_ATTRS,
    ),
    load=load,
    from_pixels=normalise,
    doc="Pictures (PNG, JPEG, BMP) in one sub-folder per class, converted to the spec's input "
        '(grayscale C=1 or RGB C=3); optional mean/std and augmentation. Needs pip install "cnnkit[images]".',
)
