"""Pictures of a network: the data each picture shows is checked against the network and the run, and
the files are PNGs of the figure's size."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnkit import build
from cnnkit.errors import CheckpointError, CnnkitError
from cnnkit.train.trainer import fit
from cnnkit.viz import (
    CURVES,
    CURVES_SIZE,
    DPI,
    curves,
    draw_curves,
    draw_filters,
    draw_maps,
    feature_maps,
    filters,
    plot_curves,
    plot_filters,
    plot_maps,
    tile_grid,
)
from tests.pictures import Image, picture, picture_spec, write_folder

pytest.importorskip("matplotlib")

SEED = str(Path(__file__).resolve().parents[1] / "specs" / "seed_convnet.yaml")


@pytest.fixture(scope="module")
def seed_net():
    return build(SEED, seed=3)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    picture("circle", (40, 36), np.random.default_rng(5)).save(path)
    return path


def scaled(weight):
    """Each filter scaled to [0, 1] by its own minimum and maximum."""
    low = weight.min(axis=(1, 2, 3), keepdims=True)
    return (weight - low) / (weight.max(axis=(1, 2, 3), keepdims=True) - low)


def test_tile_grid_places_tile_i_at_row_i_div_cols():
    tiles = np.arange(7 * 2 * 3, dtype=np.float32).reshape(7, 2, 3)
    grid = tile_grid(tiles, cols=3)
    assert (grid.count, grid.rows, grid.cols, grid.tile_shape, grid.gap) == (7, 3, 3, (2, 3), 1)
    assert grid.image.shape == (3 * 3 - 1, 3 * 4 - 1)
    for i in range(7):
        row, col = divmod(i, 3)
        assert np.array_equal(grid.image[row * 3:row * 3 + 2, col * 4:col * 4 + 3], tiles[i])
        assert np.array_equal(grid.tile(i), tiles[i])
    assert np.isnan(grid.image).sum() == grid.image.size - tiles.size  # gaps and the two unused cells
    with pytest.raises(IndexError):
        grid.tile(7)


def test_rgb_filters_make_one_colour_tile_per_filter(seed_net):
    result = filters(seed_net, "conv1")
    weight = seed_net.params["conv1.weight"]
    assert np.array_equal(result.weight, weight) and result.colour
    grid = result.grid
    assert (grid.count, grid.rows, grid.cols, grid.tile_shape) == (6, 2, 3, (5, 5))
    assert result.grid.image.shape[2] == 3
    expected = scaled(weight).transpose(0, 2, 3, 1)
    for i in range(6):
        assert np.allclose(result.grid.tile(i), expected[i], atol=1e-6)


def test_other_filters_make_a_grey_row_per_filter_and_a_column_per_channel(seed_net):
    result = filters(seed_net, "conv2")
    assert not result.colour and result.grid.image.ndim == 2
    assert (result.grid.count, result.grid.rows, result.grid.cols) == (16 * 6, 16, 6)
    expected = scaled(seed_net.params["conv2.weight"])
    for f, c in ((0, 0), (3, 5), (15, 2)):
        assert np.allclose(result.grid.tile(f * 6 + c), expected[f, c], atol=1e-6)


def test_one_channel_filters_make_one_grey_tile_per_filter():
    net = build({"name": "g", "input": [1, 8, 8], "layers": [
        {"name": "conv", "type": "conv2d", "filters": 5, "kernel": 3}, {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "linear", "units": 2}]})
    result = filters(net)
    assert result.layer == "conv" and not result.colour
    assert (result.grid.count, result.grid.rows, result.grid.cols) == (5, 2, 3)
    assert np.allclose(result.grid.tile(4), scaled(net.params["conv.weight"])[4, 0], atol=1e-6)


def test_layer_mistakes_are_clear(seed_net, photo):
    assert filters(seed_net).layer == "conv1"  # the first layer with filters by default
    with pytest.raises(CnnkitError, match=r"has no layer 'conv3'; did you mean 'conv2'"):
        filters(seed_net, "conv3")
    with pytest.raises(CnnkitError, match=r"layer 'relu1' has no filters .* with filters: conv1, conv2"):
        filters(seed_net, "relu1")
    with pytest.raises(CnnkitError, match=r"layer 'fc' outputs 4 values, not feature maps"):
        feature_maps(seed_net, photo, "fc")


def conv_valid(x, weight, bias):
    """A direct cross-correlation (no padding, stride 1) of one image (C, H, W)."""
    kh, kw = weight.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))  # C, H', W', kh, kw
    return np.einsum("chwij,fcij->fhw", windows, weight) + bias[:, None, None]


def test_feature_maps_equal_the_intermediate_activations(seed_net, photo):
    result = feature_maps(seed_net, photo, "conv1")
    seen = np.asarray(Image.open(photo).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    pixels = seen.transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255)
    assert np.array_equal(result.pixels, pixels)
    assert np.array_equal(result.inputs[0], pixels - np.float32(0.5))  # as the shapes data is stored
    conv = conv_valid(result.inputs[0].astype(np.float64), seed_net.params["conv1.weight"],
                      seed_net.params["conv1.bias"])
    assert result.maps.shape == (6, 28, 28)
    assert np.allclose(result.maps, conv, atol=1e-5)
    assert (result.grid.count, result.grid.cols) == (6, 3)
    assert np.array_equal(result.grid.tile(5), result.maps[5])
    relu = feature_maps(seed_net, photo, "relu1").maps
    assert np.array_equal(relu, np.maximum(result.maps, 0))
    pool = feature_maps(seed_net, photo, "pool1").maps
    assert np.array_equal(pool, relu.reshape(6, 14, 2, 14, 2).max(axis=(2, 4)))


def test_activations_are_copies_and_leave_forward_alone(seed_net):
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    before = seed_net.forward(x).copy()
    values = seed_net.activations(x, ["conv1", "fc"])
    assert np.array_equal(values["fc"], before)
    seed_net.forward(x[::-1].copy())
    assert np.array_equal(values["fc"], before)  # not overwritten by the next forward
    with pytest.raises(CnnkitError, match=r"no layer 'conv9'"):
        seed_net.activations(x, ["conv9"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("viz-run")
    write_folder(root / "pets", per_class=6)
    fit(build(picture_spec(str(root / "pets"))), out=root / "run", progress=False)
    return root / "run"


def test_curves_come_from_the_metrics_log(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    result = curves(run)
    assert result.epochs == [1, 2, 3]
    for key in CURVES:
        assert result.series[key] == [record[key] for record in records]
    figure = draw_curves(result)
    loss, accuracy = figure.axes[:2]
    for axes, keys in ((loss, ("train_loss", "val_loss")), (accuracy, ("train_acc", "val_acc"))):
        assert [list(line.get_xdata()) for line in axes.lines] == [[1, 2, 3]] * 2
        assert [list(line.get_ydata()) for line in axes.lines] == [result.series[k] for k in keys]


def test_curves_without_validation_draw_only_training(tmp_path):
    lines = [{"epoch": e, "step": 3 * e, "lr": 0.1, "train_loss": 1.0 / e, "train_acc": 0.5 + e / 10,
              "val_loss": None, "val_acc": None, "seconds": 0.1} for e in (1, 2)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    figure = draw_curves(curves(tmp_path))
    assert [len(axes.lines) for axes in figure.axes[:2]] == [1, 1]
    assert list(figure.axes[1].lines[0].get_ydata()) == [0.6, 0.7]


def test_bad_or_empty_metrics_logs_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="no metrics.jsonl"):
        curves(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(CnnkitError, match="no finished epoch"):
        curves(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2, \n')
    with pytest.raises(CheckpointError, match=r"metrics.jsonl:2: not valid JSON"):
        curves(tmp_path)


def png_size(path):
    with Image.open(path) as image:
        image.load()
        return image.format, image.size


def figure_size(figure):
    width, height = figure.get_size_inches() * DPI
    return round(width), round(height)


def test_the_files_are_pngs_of_the_figure_size(seed_net, photo, run, tmp_path):
    drawn = plot_filters(seed_net, "conv1", tmp_path / "filters.png")
    assert png_size(tmp_path / "filters.png") == ("PNG", figure_size(draw_filters(drawn)))
    drawn = plot_maps(seed_net, photo, "relu1", tmp_path / "maps.png")
    assert png_size(tmp_path / "maps.png") == ("PNG", figure_size(draw_maps(drawn)))
    plot_curves(run, tmp_path / "curves.png")
    assert png_size(tmp_path / "curves.png") == ("PNG", CURVES_SIZE)
    first = (tmp_path / "filters.png").read_bytes()
    plot_filters(seed_net, "conv1", tmp_path / "filters.png")
    assert (tmp_path / "filters.png").read_bytes() == first  # the same picture gives the same bytes


def test_grids_are_drawn_at_whole_pixels_per_value(seed_net):
    result = filters(seed_net, "conv1")
    figure = draw_filters(result)
    figure.canvas.draw()
    box = figure.axes[0].get_window_extent()
    scale = box.width / result.grid.image.shape[1]
    assert scale == int(scale) and box.height == scale * result.grid.image.shape[0]


def test_without_matplotlib_the_error_says_what_to_install(run, tmp_path, monkeypatch):
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(CnnkitError, match=r'plotting needs matplotlib: pip install "cnnkit\[viz\]"'):
        plot_curves(run, tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()
