from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit.attrs import parse_attrs
from cnnkit.data import BASE_DIR, ArrayDataset
from cnnkit.data.files import IDX_TYPES, parse_idx
from cnnkit.errors import DataError
from cnnkit.plugins import registry

IDX_CODES = {dtype: code for code, dtype in IDX_TYPES.items()}


def load_dataset(section: dict, input_shape: tuple[int, ...], seed: int,
                 base_dir: Path | str | None = None) -> ArrayDataset:
    """What the trainer does with a spec's data section: parse the attrs, add the spec's folder, load."""
    record = registry().dataset(section["dataset"])
    attrs = parse_attrs(record.attrs, {k: v for k, v in section.items() if k != "dataset"})
    if base_dir is not None:
        attrs[BASE_DIR] = base_dir
    return record.load(attrs, tuple(input_shape), seed)


def idx_bytes(array: np.ndarray, code: int | None = None, dims: tuple[int, ...] | None = None) -> bytes:
    """An IDX file: magic 00 00 <type code> <ndim>, the sizes as big-endian uint32, then the values."""
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    code = IDX_CODES[big] if code is None else code
    dims = array.shape if dims is None else dims
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + array.astype(big).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def load_npz(tmp_path: Path, input_shape=(1, 4, 4), spec_class_names=(), **arrays) -> ArrayDataset:
    np.savez(tmp_path / "d.npz", **arrays)
    section = {"dataset": "npz", "path": "d.npz", "class_names": list(spec_class_names)}
    return load_dataset(section, input_shape, 0, base_dir=tmp_path)


def load_idx(tmp_path: Path, images: np.ndarray, labels: np.ndarray, input_shape=(1, 4, 4),
             compress: bool = False, class_names=()) -> ArrayDataset:
    write_idx(tmp_path / "images.idx", images, compress)
    write_idx(tmp_path / "labels.idx", labels, compress)
    section = {"dataset": "idx", "images": "images.idx", "labels": "labels.idx",
               "class_names": list(class_names)}
    return load_dataset(section, input_shape, 0, base_dir=tmp_path)


def pixels(*shape: int, dtype=np.uint8) -> np.ndarray:
    return (np.arange(math.prod(shape)) % 256).reshape(shape).astype(dtype)


LABELS = np.array([0, 1, 2, 1, 0], dtype=np.uint8)


# --- npz -----------------------------------------------------------------------------------------------


def test_npz_nchw_float_images_are_kept(tmp_path):
    x = np.random.default_rng(0).standard_normal((5, 3, 4, 4))
    data = load_npz(tmp_path, (3, 4, 4), x=x, y=LABELS)
    assert data.x.dtype == np.float32 and data.y.dtype == np.int64
    np.testing.assert_array_equal(data.x, x.astype(np.float32))
    np.testing.assert_array_equal(data.y, LABELS)
    assert data.class_names == ("0", "1", "2")


def test_npz_nhwc_uint8_images_are_transposed_and_scaled(tmp_path):
    x = pixels(5, 4, 4, 3)
    data = load_npz(tmp_path, (3, 4, 4), x=x, y=LABELS)
    np.testing.assert_allclose(data.x, x.transpose(0, 3, 1, 2) / 255, rtol=1e-6)
    assert data.x.max() <= 1.0


def test_npz_nhw_images_get_a_channel_axis(tmp_path):
    x = pixels(5, 4, 4)
    data = load_npz(tmp_path, (1, 4, 4), x=x, y=LABELS)
    np.testing.assert_allclose(data.x[:, 0], x / 255, rtol=1e-6)


def test_npz_layout_that_fits_both_is_read_as_nchw(tmp_path):
    x = np.random.default_rng(1).random((5, 2, 2, 2))
    np.testing.assert_array_equal(load_npz(tmp_path, (2, 2, 2), x=x, y=LABELS).x, x.astype(np.float32))


def test_npz_flat_features(tmp_path):
    x = np.random.default_rng(2).random((5, 6)).astype(np.float32)
    np.testing.assert_array_equal(load_npz(tmp_path, (6,), x=x, y=LABELS).x, x)


def test_npz_class_names_from_the_file_or_the_spec(tmp_path):
    x = pixels(5, 4, 4)
    assert load_npz(tmp_path, x=x, y=LABELS, class_names=np.array(["a", "b", "c", "d"])).class_names == (
        "a", "b", "c", "d")
    assert load_npz(tmp_path, spec_class_names=("p", "q", "r"), x=x, y=LABELS,
                    class_names=np.array(["a", "b", "c"])).class_names == ("p", "q", "r")
    assert load_npz(tmp_path, x=x, y=LABELS, class_names=np.array([b"u", b"v", b"w"])).class_names == (
        "u", "v", "w")


def test_relative_paths_follow_base_dir_else_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "sub" / "d.npz", x=pixels(5, 4, 4), y=LABELS)
    assert len(load_dataset({"dataset": "npz", "path": "sub/d.npz", }, (1, 4, 4), 0,
                            base_dir=tmp_path)) == 5
    monkeypatch.chdir(tmp_path / "sub")
    assert len(load_dataset({"dataset": "npz", "path": "d.npz", }, (1, 4, 4), 0)) == 5
    absolute = str(tmp_path / "sub" / "d.npz")
    assert len(load_dataset({"dataset": "npz", "path": absolute, }, (1, 4, 4), 0,
                            base_dir="/nonexistent")) == 5


BAD_ARRAYS = [
    pytest.param({"x": pixels(5, 3, 8, 8)}, (3, 4, 4),
                 r"images of shape \(5, 3, 8, 8\) do not fit the spec's input 3x4x4; "
                 r"expected \(N, 3, 4, 4\) or \(N, 4, 4, 3\)$", id="wrong-shape"),
    pytest.param({"x": pixels(5, 4, 4)}, (3, 4, 4), r"images of shape \(5, 4, 4\) .* input 3x4x4",
                 id="nhw-for-rgb"),
    pytest.param({"x": pixels(5)}, (1, 4, 4), r"images of shape \(5,\) .* or \(N, 4, 4\)$", id="1-d"),
    pytest.param({"x": pixels(5, 4, 4, dtype=np.int32)}, (1, 4, 4),
                 r"images must be uint8 \(scaled by 1/255\) or floating point, got int32", id="int-images"),
    pytest.param({"x": pixels(5, 4, 4, dtype=bool)}, (1, 4, 4), r"got bool", id="bool-images"),
    pytest.param({"x": np.where(pixels(5, 4, 4) == 20, np.nan, 0.5)}, (1, 4, 4),
                 r"1 NaN or infinite values \(the first in example 1\)", id="nan"),
    pytest.param({"x": np.full((5, 1, 4, 4), np.inf, dtype=np.float32)}, (1, 4, 4),
                 r"80 NaN or infinite values \(the first in example 0\)", id="inf"),
    pytest.param({"y": LABELS.astype(np.float64)}, (1, 4, 4), r"labels must be integers, got float64",
                 id="float-labels"),
    pytest.param({"y": LABELS[:, None]}, (1, 4, 4), r"labels must be a 1-d array, got shape \(5, 1\)",
                 id="2-d-labels"),
    pytest.param({"y": np.array([0, 1, -1, 1, 0])}, (1, 4, 4), r"labels must be >= 0, found -1 \(example 2\)",
                 id="negative-label"),
    pytest.param({"y": LABELS[:4]}, (1, 4, 4), r"holds 5 images but .*\(array 'y'\) holds 4 labels",
                 id="length-mismatch"),
    pytest.param({"x": pixels(0, 4, 4), "y": LABELS[:0]}, (1, 4, 4), r"holds no examples", id="empty"),
    pytest.param({"class_names": np.array(["a", "b"])}, (1, 4, 4),
                 r"label 2 \(example 2\) is out of range for 2 class names \(labels 0..1\)",
                 id="label-range"),
    pytest.param({"class_names": np.array([1, 2, 3])}, (1, 4, 4),
                 r"class_names must be a 1-d array of strings, got int64", id="numeric-class-names"),
    pytest.param({"y": np.array([0, 1, 20000, 1, 0])}, (1, 4, 4),
                 r"largest label 20000 would make 20001 classes; give class_names", id="huge-label"),
    pytest.param({"x": np.array([{"a": 1}] * 5, dtype=object)}, (1, 4, 4),
                 r"array 'x' holds Python objects, which cnnkit does not unpickle", id="object-array"),
]


@pytest.mark.parametrize("arrays,input_shape,match", BAD_ARRAYS)
def test_npz_bad_arrays_are_refused_with_the_reason(tmp_path, arrays, input_shape, match):
    arrays = {"x": pixels(5, 4, 4), "y": LABELS, **arrays}
    with pytest.raises(DataError, match=match):
        load_npz(tmp_path, input_shape, **arrays)


def test_npz_spec_class_names_are_checked_against_labels(tmp_path):
    with pytest.raises(DataError, match=r"out of range for 2 class names"):
        load_npz(tmp_path, spec_class_names=("a", "b"), x=pixels(5, 4, 4), y=LABELS)


def test_npz_without_y_names_what_it_holds(tmp_path):
    with pytest.raises(DataError, match=r"no array 'y'; the archive holds 'x', 'labels'"):
        load_npz(tmp_path, x=pixels(5, 4, 4), labels=LABELS)


def npz_file(tmp_path: Path, content: bytes | None) -> dict:
    path = tmp_path / "d.npz"
    if content is not None:
        path.write_bytes(content)
    return {"dataset": "npz", "path": "d.npz", }


def valid_npz_bytes(tmp_path: Path) -> bytes:
    np.savez(tmp_path / "good.npz", x=pixels(5, 4, 4), y=LABELS)
    return (tmp_path / "good.npz").read_bytes()


def test_npz_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"dataset 'npz': path 'd.npz' does not exist \(looked at .*d.npz\)"):
        load_dataset(npz_file(tmp_path, None), (1, 4, 4), 0, base_dir=tmp_path)


def test_npz_path_that_is_a_folder(tmp_path):
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(DataError, match=r"path 'd.npz' is a folder, not a file"):
        load_dataset(npz_file(tmp_path, None), (1, 4, 4), 0, base_dir=tmp_path)


def test_npz_that_is_text(tmp_path):
    with pytest.raises(DataError, match=r"d.npz: not an .npz archive$"):
        load_dataset(npz_file(tmp_path, b"x,y\n1,2\n" * 20), (1, 4, 4), 0, base_dir=tmp_path)


def test_npz_that_is_a_single_npy_array(tmp_path):
    np.save(tmp_path / "a.npy", pixels(5, 4, 4))
    content = (tmp_path / "a.npy").read_bytes()
    with pytest.raises(DataError, match=r"a single .npy array, not an .npz archive; write one with np.savez"):
        load_dataset(npz_file(tmp_path, content), (1, 4, 4), 0, base_dir=tmp_path)


def test_npz_truncated(tmp_path):
    content = valid_npz_bytes(tmp_path)
    with pytest.raises(DataError, match=r"d.npz: not an .npz archive|d.npz: array 'x' is corrupt"):
        load_dataset(npz_file(tmp_path, content[: len(content) // 2]), (1, 4, 4), 0, base_dir=tmp_path)


def test_npz_with_a_corrupt_member(tmp_path):
    content = bytearray(valid_npz_bytes(tmp_path))
    start = content.index(b"\x93NUMPY") + 128  # inside x's values, past its .npy header
    content[start:start + 8] = b"\xff" * 8
    with pytest.raises(DataError, match=r"array 'x' is corrupt \(.*CRC"):
        load_dataset(npz_file(tmp_path, bytes(content)), (1, 4, 4), 0, base_dir=tmp_path)


# --- idx -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_idx_mnist_layout(tmp_path, compress):
    images = pixels(5, 28, 28)
    data = load_idx(tmp_path, images, LABELS, (1, 28, 28), compress)
    assert data.x.shape == (5, 1, 28, 28) and data.x.dtype == np.float32
    np.testing.assert_allclose(data.x[:, 0], images / 255, rtol=1e-6)
    np.testing.assert_array_equal(data.y, LABELS)
    assert data.class_names == ("0", "1", "2")


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_idx_float_nhwc_images_and_wide_labels(tmp_path, compress):
    images = np.random.default_rng(3).standard_normal((5, 4, 4, 3)).astype(np.float32)
    labels = np.array([3, 0, 1, 2, 3], dtype=np.int32)
    data = load_idx(tmp_path, images, labels, (3, 4, 4), compress, class_names=["a", "b", "c", "d"])
    np.testing.assert_array_equal(data.x, images.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(data.y, labels)
    assert data.class_names == ("a", "b", "c", "d")


def test_idx_missing_labels_file(tmp_path):
    write_idx(tmp_path / "images.idx", pixels(5, 4, 4))
    data = {"dataset": "idx", "images": "images.idx", "labels": "nope.idx", }
    with pytest.raises(DataError, match=r"dataset 'idx': labels 'nope.idx' does not exist"):
        load_dataset(data, (1, 4, 4), 0, base_dir=tmp_path)


def test_idx_integer_images_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"images.idx: images must be uint8 .* got int16"):
        load_idx(tmp_path, pixels(5, 4, 4, dtype=np.int16), LABELS)


def test_idx_float_labels_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"labels.idx: labels must be integers, got float32"):
        load_idx(tmp_path, pixels(5, 4, 4), LABELS.astype(np.float32))


def test_idx_length_mismatch_names_both_files(tmp_path):
    with pytest.raises(DataError, match=r"images.idx holds 5 images but .*labels.idx holds 3 labels"):
        load_idx(tmp_path, pixels(5, 4, 4), LABELS[:3])


def test_idx_corrupt_gzip(tmp_path):
    (tmp_path / "images.idx").write_bytes(gzip.compress(idx_bytes(pixels(5, 4, 4)))[:-12])
    write_idx(tmp_path / "labels.idx", LABELS)
    data = {"dataset": "idx", "images": "images.idx", "labels": "labels.idx", }
    with pytest.raises(DataError, match=r"images.idx: corrupt gzip data"):
        load_dataset(data, (1, 4, 4), 0, base_dir=tmp_path)


BAD_HEADERS = [
    pytest.param(b"\x00\x00\x08", r"3 bytes is too short for an IDX header", id="too-short"),
    pytest.param(b"PK\x03\x04" + bytes(8),
                 r"not an IDX file: it must start with two zero bytes, got 50 4b 03 04", id="magic"),
    pytest.param(idx_bytes(LABELS, code=0x0A), r"unknown IDX type code 0x0A; expected one of 0x08 \(uint8\)",
                 id="type-code"),
    pytest.param(b"\x00\x00\x08\x00", r"declares 0 dimensions", id="no-dims"),
    pytest.param(b"\x00\x00\x08\x03" + bytes(8),
                 r"truncated IDX header: 3 dimensions need 16 bytes, the file has 12", id="truncated-header"),
    pytest.param(idx_bytes(LABELS, dims=(6,)), r"declares 6 uint8 values \(6 bytes\) but 5 bytes follow",
                 id="too-few-values"),
    pytest.param(idx_bytes(pixels(5, 4, 4, dtype=np.float32))[:-1],
                 r"declares 5x4x4 float32 values \(320 bytes\) but 319 bytes follow", id="truncated-values"),
    pytest.param(idx_bytes(LABELS) + b"\x00", r"declares 5 uint8 values \(5 bytes\) but 6 bytes follow",
                 id="trailing-bytes"),
]


@pytest.mark.parametrize("raw,match", BAD_HEADERS)
def test_idx_bad_files_are_refused_with_the_reason(tmp_path, raw, match):
    with pytest.raises(DataError, match=match):
        parse_idx(raw, "f.idx")
    (tmp_path / "labels.idx").write_bytes(gzip.compress(raw))
    write_idx(tmp_path / "images.idx", pixels(5, 4, 4))
    data = {"dataset": "idx", "images": "images.idx", "labels": "labels.idx", }
    with pytest.raises(DataError, match=match):
        load_dataset(data, (1, 4, 4), 0, base_dir=tmp_path)


@given(dims=st.lists(st.integers(0, 6), min_size=1, max_size=4), code=st.sampled_from(sorted(IDX_TYPES)),
       cut=st.integers(1, 64), extra=st.binary(min_size=1, max_size=8))
def test_idx_round_trip_and_any_length_change_is_refused(dims, code, cut, extra):
    array = (np.arange(math.prod(dims)) % 100 - 50 * (code != 0x08)).reshape(dims).astype(IDX_TYPES[code])
    raw = idx_bytes(array)
    parsed = parse_idx(raw, "f")
    assert parsed.shape == tuple(dims) and parsed.dtype == IDX_TYPES[code]
    np.testing.assert_array_equal(parsed, array)
    with pytest.raises(DataError):
        parse_idx(raw[:-cut], "f")
    with pytest.raises(DataError):
        parse_idx(raw + extra, "f")


@given(code=st.integers(0, 255), dims=st.lists(st.integers(0, 2**32 - 1), max_size=4),
       body=st.integers(0, 64))
def test_idx_header_parses_exactly_when_its_sizes_match_the_file(code, dims, body):
    raw = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + bytes(body)
    fits = code in IDX_TYPES and dims and math.prod(dims) * IDX_TYPES[code].itemsize == body
    if fits:
        assert parse_idx(raw, "f").shape == tuple(dims)
    else:
        with pytest.raises(DataError):
            parse_idx(raw, "f")
