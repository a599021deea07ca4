"""image_folder: classes from folder names, pictures converted to the spec's input, clear errors for broken
files, normalisation shared with predict, and a run that trains on a generated folder."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import yaml

from cnnkit import build
from cnnkit.data.images import IMAGE_FOLDER_DATASET, normalise, read_inputs, read_picture, to_inputs
from cnnkit.errors import DataError
from cnnkit.plugins import registry
from cnnkit.spec import load_spec
from cnnkit.train.checkpoint import read_checkpoint
from cnnkit.train.trainer import fit, load_data
from tests.pictures import CLASSES, Image, picture, truncated_png, write_folder
from tests.pictures import picture_spec as spec

DEFAULTS = {"mean": (), "std": (), "crop_padding": 0, "flip": False, "val_fraction": 0.25}


def load(root, input_shape=(3, 16, 16), **attrs):
    return IMAGE_FOLDER_DATASET.load({**DEFAULTS, "path": str(root), **attrs}, input_shape, 0)


def test_registered_as_a_builtin_with_its_attrs():
    record = registry().dataset("image_folder")
    assert record.plugin == "cnnkit.data.builtin"
    assert record.from_pixels is normalise
    data = load_spec(spec("pets")).train.data
    assert data == {"dataset": "image_folder", "path": "pets", **DEFAULTS, "val_fraction": 0.2}


def test_classes_are_the_sorted_folder_names_and_pixels_are_scaled(tmp_path):
    files = write_folder(tmp_path / "pets", per_class=5)
    (tmp_path / "pets" / "zebra").mkdir()
    picture("circle", (16, 16), np.random.default_rng(1)).save(tmp_path / "pets" / "zebra" / "a.PNG")
    nested = tmp_path / "pets" / "aardvark" / "nested"
    nested.mkdir(parents=True)
    picture("square", (16, 16), np.random.default_rng(2)).save(nested / "b.bmp")
    data = load(tmp_path / "pets")
    assert data.class_names == ("aardvark", *CLASSES, "zebra")
    assert data.y.tolist() == [0] + [1] * 5 + [2] * 5 + [3]
    assert data.x.shape == (12, 3, 16, 16) and data.x.dtype == np.float32
    assert 0 <= data.x.min() and data.x.max() <= 1
    exact = np.asarray(Image.open(files[0]), np.float32).transpose(2, 0, 1) / 255  # a PNG at the input size
    assert np.allclose(data.x[1], exact, atol=1e-7)
    assert data.augment is None


def test_pictures_of_other_sizes_and_modes_are_converted_with_one_notice(tmp_path, capsys):
    write_folder(tmp_path / "odd", per_class=8, odd=True)
    data = load(tmp_path / "odd", input_shape=(1, 12, 10))
    assert data.x.shape == (16, 1, 12, 10)
    notices = [line for line in capsys.readouterr().err.splitlines() if "converted" in line]
    assert len(notices) == 1
    assert "converted 16 of 16 pictures to the spec's input 1x12x10 (L); they were RGB 16x16 (12), " \
        "RGBA 20x24 (2), L 16x16 (2) (mode height x width)" in notices[0]


def test_reading_matches_pillow_conversion(tmp_path):
    path = tmp_path / "p.png"
    picture("square", (20, 30), np.random.default_rng(3)).save(path)
    pixels, was = read_picture(path, (1, 15, 10))
    expected = np.asarray(Image.open(path).convert("L").resize((10, 15), Image.Resampling.BILINEAR))
    assert was == "RGB 30x20"
    assert np.array_equal(pixels[0], expected.astype(np.float32) * np.float32(1 / 255))
    assert read_picture(path, (3, 30, 20))[1] is None


def test_transparency_is_flattened_onto_black_and_16_bit_grey_scaled(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:2, :, 3] = 255  # the top half opaque white, the bottom half transparent white
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    pixels, _ = read_picture(tmp_path / "alpha.png", (3, 4, 4))
    assert np.all(pixels[:, :2] == 1) and np.all(pixels[:, 2:] == 0)
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "deep.png")
    assert np.all(read_picture(tmp_path / "deep.png", (1, 4, 4))[0] == 1)


def test_jpeg_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: displayed turned by 90 degrees
    Image.new("RGB", (20, 10), (0, 0, 0)).save(tmp_path / "turned.jpg", exif=exif)
    assert read_picture(tmp_path / "turned.jpg", (3, 20, 10))[1] == "RGB 10x20"
    assert read_picture(tmp_path / "turned.jpg", (3, 20, 10))[0].shape == (3, 20, 10)


def broken_zero_bytes(path):
    path.write_bytes(b"")


def broken_text(path):
    path.write_text("not a picture\n")


def broken_gif(path):
    picture("circle", (16, 16), np.random.default_rng(0)).save(path, format="GIF")


@pytest.mark.parametrize("name, damage, reason", [
    ("cut.png", truncated_png, "truncated"),
    ("empty.png", broken_zero_bytes, "empty file (0 bytes)"),
    ("notes.png", broken_text, "no PNG, JPEG or BMP image found"),
    ("anim.png", broken_gif, "no PNG, JPEG or BMP image found"),
])
def test_broken_files_are_named(tmp_path, name, damage, reason):
    write_folder(tmp_path / "pets", per_class=3)
    damage(tmp_path / "pets" / "square" / name)
    with pytest.raises(DataError, match="not a readable|empty file") as error:
        load(tmp_path / "pets")
    assert str(tmp_path / "pets" / "square" / name) in str(error.value)
    assert reason in str(error.value)


def test_an_empty_class_folder_is_an_error(tmp_path):
    write_folder(tmp_path / "pets", per_class=2)
    (tmp_path / "pets" / "dog").mkdir()
    (tmp_path / "pets" / "dog" / "readme.txt").write_text("no pictures yet")
    with pytest.raises(DataError, match=r"class folder .*dog holds no pictures \(.png, .jpg, .jpeg, .bmp\)"):
        load(tmp_path / "pets")


def test_no_class_folders_or_no_folder_is_an_error(tmp_path):
    (tmp_path / "flat").mkdir()
    picture("circle", (16, 16), np.random.default_rng(0)).save(tmp_path / "flat" / "a.png")
    (tmp_path / "flat" / ".cache").mkdir()
    with pytest.raises(DataError, match=r"holds no class folders; put each class's pictures in a sub-folder"):
        load(tmp_path / "flat")
    with pytest.raises(DataError, match=r"path '.*missing' does not exist"):
        load(tmp_path / "missing")
    with pytest.raises(DataError, match=r"is a file, not a folder"):
        load(tmp_path / "flat" / "a.png")


def test_hidden_and_other_files_are_skipped_with_a_notice(tmp_path, capsys):
    write_folder(tmp_path / "pets", per_class=2)
    (tmp_path / "pets" / "circle" / "notes.txt").write_text("x")
    (tmp_path / "pets" / "circle" / ".thumb.png").write_text("x")
    (tmp_path / "pets" / ".trash").mkdir()
    assert len(load(tmp_path / "pets")) == 4
    assert "skipped 1 files that are not .png, .jpg, .jpeg, .bmp" in capsys.readouterr().err


@pytest.mark.parametrize("input_shape", [(2, 16, 16), (16,), (4, 8, 8)])
def test_inputs_that_are_not_grey_or_rgb_pictures_are_refused(tmp_path, input_shape):
    with pytest.raises(DataError, match=r"'image_folder': pictures become inputs of shape \[1 or 3, height, "
                       r"width\] \(grayscale or RGB\), but the spec's input is"):
        load(tmp_path, input_shape=input_shape)


def test_mean_and_std_per_channel_or_for_all(tmp_path):
    write_folder(tmp_path / "pets", per_class=2)
    plain = load(tmp_path / "pets").x
    per_channel = load(tmp_path / "pets", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5)).x
    expected = (plain - np.array([0.5, 0.4, 0.3], np.float32)[:, None, None]) / \
        np.array([0.2, 0.25, 0.5], np.float32)[:, None, None]
    assert np.allclose(per_channel, expected, atol=1e-6)
    assert np.allclose(load(tmp_path / "pets", mean=(0.5,), std=(0.5,)).x, (plain - 0.5) / 0.5, atol=1e-6)
    with pytest.raises(DataError, match=r"mean has 2 values for pictures of 3 channels"):
        load(tmp_path / "pets", mean=(0.5, 0.5))


def test_predict_prepares_pictures_as_training_did(tmp_path):
    files = write_folder(tmp_path / "pets", per_class=2)
    net = build(spec("pets", mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2]))
    data = load(tmp_path / "pets", mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    pixels, inputs = read_inputs(net, files)
    assert np.array_equal(inputs, data.x)
    assert np.array_equal(pixels, load(tmp_path / "pets").x)
    shapes_net = build({**spec("pets"), "train": {"data": {"dataset": "shapes"}}})
    assert np.array_equal(to_inputs(shapes_net, pixels), pixels - np.float32(0.5))
    npz_net = build({**spec("pets"), "train": {"data": {"dataset": "npz", "path": "x.npz"}}})
    assert to_inputs(npz_net, pixels) is pixels
    flat_net = build({"name": "flat", "input": [16], "layers": [{"name": "fc", "type": "linear",
                                                                 "units": 2}]})
    with pytest.raises(DataError, match=r"network 'flat': pictures become inputs of shape \[1 or 3"):
        read_inputs(flat_net, files)


def test_without_pillow_the_error_says_what_to_install(tmp_path, monkeypatch):
    write_folder(tmp_path / "pets", per_class=1)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(DataError, match=r'reading pictures needs Pillow: pip install "cnnkit\[images\]"'):
        load(tmp_path / "pets")


def test_a_spec_trains_on_a_folder_relative_to_it(tmp_path):
    write_folder(tmp_path / "data" / "pets", per_class=12)
    path = tmp_path / "pets.yaml"
    path.write_text(yaml.safe_dump(spec("data/pets", mean=[0.5], std=[0.25], crop_padding=1, flip=True,
                                        val_fraction=0.25)))
    net = build(str(path))
    train, val = load_data(net)
    assert (len(train), len(val)) == (18, 6) and train.augment is not None
    history = fit(net, out=tmp_path / "run", progress=False)
    assert len(history) == 3 and history[-1]["val_acc"] >= 0.8
    assert read_checkpoint(tmp_path / "run").class_names == list(CLASSES)
