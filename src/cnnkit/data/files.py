"""npz and idx: labelled images from files, checked before training rather than failing inside it.

npz: `{dataset: npz, path: train.npz}`, an archive written by `np.savez(path, x=images, y=labels)` with an
optional `class_names` array of strings. Never unpickled: object arrays are refused.

idx: `{dataset: idx, images: train-images-idx3-ubyte.gz, labels: train-labels-idx1-ubyte.gz}`, the MNIST
format (big-endian header: two zero bytes, a type code, the number of dimensions, then each size as a
uint32), gzipped or not (told apart by the gzip magic bytes, not the file name).

Images (both formats) may be laid out (N, C, H, W), (N, H, W, C), or (N, H, W) when C is 1; when the
spec's input fits both of the first two, (N, C, H, W) is meant. uint8 pixels are scaled by 1/255,
floating-point pixels are kept as they are; labels are integers from 0. Class names come from the
`class_names` attribute, else the npz's `class_names` array, else "0", "1", ... up to the largest label.
Relative paths are relative to the spec file's folder (see cnnkit.data.resolve_path).
"""

from __future__ import annotations

import gzip
import math
import struct
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.attrs import Attr
from cnnkit.data import SPLIT_ATTRS, resolve_path
from cnnkit.data.dataset import ArrayDataset
from cnnkit.errors import DataError
from cnnkit.registry import Dataset

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
"""IDX type code -> element type (big-endian)."""

MAX_INFERRED_CLASSES = 10_000
"""Beyond this many classes, labels must come with class_names (a stray huge label is not a class count)."""

CORRUPT = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


# --- reading files -------------------------------------------------------------------------------------


def existing_file(attrs: Mapping[str, Any], name: str, dataset: str) -> Path:
    """The resolved path of attribute `name`, or DataError when no file is there."""
    path = resolve_path(attrs, name)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"dataset '{dataset}': {name} '{attrs[name]}' {what} (looked at {path.absolute()})")
    return path


def read_bytes(path: Path) -> bytes:
    """The file's contents, decompressed when it starts with the gzip magic bytes 1f 8b."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except CORRUPT as error:
            raise DataError(f"{path}: corrupt gzip data ({error})") from None
    return data


def parse_idx(data: bytes, source: str) -> np.ndarray:
    """The array in an IDX file's bytes; DataError for a bad magic, type code, or a size mismatch."""
    if len(data) < 4:
        raise DataError(f"{source}: {len(data)} bytes is too short for an IDX header (at least 4)")
    if data[0] or data[1]:
        raise DataError(f"{source}: not an IDX file: it must start with two zero bytes, got "
                        f"{data[:4].hex(' ')}")
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X} ({t.name})" for c, t in IDX_TYPES.items())
        raise DataError(f"{source}: unknown IDX type code 0x{code:02X}; expected one of {known}")
    if ndim == 0:
        raise DataError(f"{source}: the IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header: {ndim} dimensions need {header} bytes, the "
                        f"file has {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_TYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(f"{source}: the IDX header declares {_shape(dims)} {dtype.name} values "
                        f"({expected} bytes) but {len(data) - header} bytes follow the header")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def read_idx(path: Path) -> np.ndarray:
    return parse_idx(read_bytes(path), str(path))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays x, y and, when present, class_names from an .npz archive, without unpickling anything."""
    try:
        archive = np.load(path, allow_pickle=False)
    except CORRUPT as error:
        # numpy's ValueError here means "neither zip nor .npy" (it suggests unpickling, which we never do)
        detail = "" if isinstance(error, ValueError) else f" ({error})"
        raise DataError(f"{path}: not an .npz archive{detail}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single .npy array, not an .npz archive; write one with "
                        f"np.savez(path, x=images, y=labels)")
    with archive:
        missing = [key for key in ("x", "y") if key not in archive.files]
        if missing:
            raise DataError(f"{path}: no array {' or '.join(map(repr, missing))}; the archive holds "
                            f"{', '.join(map(repr, archive.files)) or 'nothing'}, expected 'x' (images) "
                            f"and 'y' (labels)")
        return {key: _npz_member(archive, key, path) for key in ("x", "y", "class_names")
                if key in archive.files}


def _npz_member(archive: Any, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise DataError(f"{path}: array '{key}' holds Python objects, which cnnkit does not unpickle; "
                            f"store numbers (or strings for class_names)") from None
        raise DataError(f"{path}: array '{key}' is corrupt ({error})") from None
    except CORRUPT as error:
        raise DataError(f"{path}: array '{key}' is corrupt ({error})") from None


# --- checking arrays -----------------------------------------------------------------------------------


def to_images(x: np.ndarray, input_shape: tuple[int, ...], source: str) -> np.ndarray:
    """float32 (N, *input_shape) from NCHW, NHWC or NHW images; DataError for a shape, dtype or NaN."""
    want = tuple(input_shape)
    each = x.shape[1:]
    if each == want:
        pass
    elif len(want) == 3 and each == (want[1], want[2], want[0]):
        x = x.transpose(0, 3, 1, 2)
    elif len(want) == 3 and want[0] == 1 and each == want[1:]:
        x = x[:, None]
    else:
        layouts = f"(N, {', '.join(map(str, want))})"
        if len(want) == 3:
            c, h, w = want
            layouts += f" or (N, {h}, {w}, {c})" + (f" or (N, {h}, {w})" if c == 1 else "")
        raise DataError(f"{source}: images of shape {x.shape} do not fit the spec's input {_shape(want)}; "
                        f"expected {layouts}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) * np.float32(1 / 255)
    if x.dtype.kind != "f":
        raise DataError(f"{source}: images must be uint8 (scaled by 1/255) or floating point, got "
                        f"{x.dtype.name}")
    images = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(images)
    if bad.any():
        first = int(np.flatnonzero(bad.reshape(len(images), -1).any(axis=1))[0])
        raise DataError(f"{source}: images hold {int(bad.sum())} NaN or infinite values (the first in "
                        f"example {first})")
    return images


def to_labels(y: np.ndarray, source: str) -> np.ndarray:
    """int64 (N,) from any integer array of non-negative labels."""
    if y.ndim != 1:
        raise DataError(f"{source}: labels must be a 1-d array, got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise DataError(f"{source}: labels must be integers, got {y.dtype.name}")
    if len(y) and y.min() < 0:
        first = int(np.argmax(y < 0))
        raise DataError(f"{source}: labels must be >= 0, found {y[first]} (example {first})")
    if len(y) and y.max() > np.iinfo(np.int64).max:
        raise DataError(f"{source}: label {y.max()} is too large")
    return y.astype(np.int64)


def to_class_names(labels: np.ndarray, names: Any, source: str) -> tuple[str, ...]:
    """`names` checked against the labels, or "0", "1", ... up to the largest label."""
    top = int(labels.max())
    if names is None or len(names) == 0:
        if top >= MAX_INFERRED_CLASSES:
            raise DataError(f"{source}: largest label {top} would make {top + 1} classes; give class_names "
                            f"if that is meant")
        return tuple(str(k) for k in range(top + 1))
    names = np.asarray(names)
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(f"{source}: class_names must be a 1-d array of strings, got {names.dtype.name} "
                        f"with shape {names.shape}")
    if top >= len(names):
        first = int(np.argmax(labels >= len(names)))
        raise DataError(f"{source}: label {labels[first]} (example {first}) is out of range for "
                        f"{len(names)} class names (labels 0..{len(names) - 1})")
    decode = (lambda s: s.decode("utf-8", "replace")) if names.dtype.kind == "S" else str
    return tuple(decode(s) for s in names)


def to_dataset(x: np.ndarray, y: np.ndarray, names: Any, input_shape: tuple[int, ...], x_source: str,
               y_source: str) -> ArrayDataset:
    """The checked ArrayDataset for images x and labels y read from the named sources."""
    images = to_images(x, input_shape, x_source)
    labels = to_labels(y, y_source)
    if len(images) != len(labels):
        raise DataError(f"{x_source} holds {len(images)} images but {y_source} holds {len(labels)} labels")
    if not len(labels):
        raise DataError(f"{x_source} holds no examples")
    return ArrayDataset(images, labels, to_class_names(labels, names, y_source))


# --- the datasets --------------------------------------------------------------------------------------


def load_npz(attrs: Mapping[str, Any], input_shape: tuple[int, ...], seed: int) -> ArrayDataset:
    path = existing_file(attrs, "path", "npz")
    arrays = read_npz(path)
    names = attrs["class_names"] or arrays.get("class_names")
    return to_dataset(arrays["x"], arrays["y"], names, input_shape, f"{path} (array 'x')",
                      f"{path} (array 'y')")


def load_idx(attrs: Mapping[str, Any], input_shape: tuple[int, ...], seed: int) -> ArrayDataset:
    images_path = existing_file(attrs, "images", "idx")
    labels_path = existing_file(attrs, "labels", "idx")
    return to_dataset(read_idx(images_path), read_idx(labels_path), attrs["class_names"], input_shape,
                      str(images_path), str(labels_path))


CLASS_NAMES = Attr("class_names", "strs", (), doc="class names in label order (default: from the file, "
                   "else '0', '1', ... up to the largest label)")

NPZ_DATASET = Dataset(
    name="npz",
    attrs=(Attr("path", "str", doc=".npz archive with arrays x (images) and y (integer labels), "
                "relative to the spec's folder"), CLASS_NAMES, *SPLIT_ATTRS),
    load=load_npz,
    doc="Images and labels from an .npz archive (np.savez(path, x=..., y=..., class_names=...)); "
        "x as NCHW, NHWC or NHW, uint8 (scaled by 1/255) or float.",
)

IDX_DATASET = Dataset(
    name="idx",
    attrs=(Attr("images", "str", doc="IDX file of images (MNIST format, optionally gzipped), relative to "
                "the spec's folder"),
           Attr("labels", "str", doc="IDX file of integer labels, relative to the spec's folder"),
           CLASS_NAMES, *SPLIT_ATTRS),
    load=load_idx,
    doc="Images and labels in IDX files, the MNIST format (gzipped or not).",
)
