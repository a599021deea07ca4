"""Pictures of a trained network: its learned filters, the feature maps of one picture, its training curves.

Each `plot_*` computes what it shows, draws it with matplotlib on the Agg canvas (no display needed),
writes a PNG and returns the data it drew, so a test or a notebook can check the picture against the
network. The `draw_*` functions return the matplotlib Figure of such data.

- filters: a layer's 4-d weight (filters F, input channels C, kh, kw), each filter scaled to [0, 1] by its
  own minimum and maximum (mid grey or colour is the filter's middle value, not necessarily zero).
  C = 3: one RGB tile per filter; C = 1: one grey tile per filter; both in a near-square grid.
  Any other C: one grey tile per (filter, input channel), a row per filter and a column per channel.
- maps: a layer's output (C, H, W) for one picture, one tile per channel in a near-square grid, all on one
  colour scale (with a colour bar, so brightness compares across channels), next to the picture as the
  network sees it (converted to the spec's input).
- curves: loss and accuracy per epoch, train and validation, from the run's metrics.jsonl.

Needs the optional extra: pip install "cnnkit[viz]" (matplotlib, and Pillow for reading pictures).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.graph import Network
from cnnkit.registry import did_you_mean

DPI = 100
GRID_SIDE = 640
"""About how many pixels the longer side of a grid of tiles is drawn at (whole pixels per value)."""
MARGIN = 12
TITLE = 40
TITLE_LINE = 16
MIN_WIDTH = 400
COLOUR_BAR = 16
COLOUR_BAR_LABELS = 56
PICTURE_SIDE = 256
"""Largest side of the picture panel next to the feature maps."""
CURVES_SIZE = (900, 340)
CURVES = ("train_loss", "val_loss", "train_acc", "val_acc")


# --- grids of tiles ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """`count` tiles of `tile_shape` (height, width) laid out row by row in `cols` columns, `gap` pixels
    apart: tile i is at row i // cols, column i % cols. image: float32 (height, width) or (height, width,
    3), NaN in the gaps and unused cells."""

    image: np.ndarray
    count: int
    rows: int
    cols: int
    tile_shape: tuple[int, int]
    gap: int = 1

    def tile(self, i: int) -> np.ndarray:
        """Tile i of the image (a view)."""
        if not 0 <= i < self.count:
            raise IndexError(f"tile {i} of a grid of {self.count}")
        row, col = divmod(i, self.cols)
        height, width = self.tile_shape
        top, left = row * (height + self.gap), col * (width + self.gap)
        return self.image[top:top + height, left:left + width]


def tile_grid(tiles: np.ndarray, cols: int, gap: int = 1) -> Grid:
    """Tiles (T, h, w) or (T, h, w, 3) laid out in a Grid of `cols` columns."""
    count, height, width = tiles.shape[:3]
    cols = max(1, min(cols, count))
    rows = math.ceil(count / cols)
    image = np.full((rows * (height + gap) - gap, cols * (width + gap) - gap, *tiles.shape[3:]), np.nan,
                    np.float32)
    grid = Grid(image, count, rows, cols, (height, width), gap)
    for i, tile in enumerate(tiles):
        grid.tile(i)[...] = tile
    return grid


def square_cols(count: int) -> int:
    """Columns of a near-square grid of `count` tiles."""
    return math.ceil(math.sqrt(count))


# --- filters -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """A layer's weight (F, C, kh, kw) as the network holds it, and its grid: colour is True for RGB tiles
    (C = 3, one per filter); otherwise grey tiles, one per filter (C = 1) or per (filter, channel)."""

    layer: str
    weight: np.ndarray
    grid: Grid
    colour: bool


def filter_layers(net: Network) -> list[str]:
    """The layers with filters: a 4-d parameter 'weight' (conv2d and the like)."""
    return [node.name for node in net.nodes if np.ndim(net.layer_params(node.name).get("weight")) == 4]


def _layer(net: Network, layer: str | None) -> str:
    """`layer`, checked to be a layer of the network; None: the first layer with filters."""
    with_filters = filter_layers(net)
    if layer is None:
        if not with_filters:
            raise CnnkitError(f"network '{net.spec.name}' has no layer with filters (a conv layer); name "
                              f"one with --layer")
        return with_filters[0]
    names = [node.name for node in net.nodes]
    if layer not in names:
        raise CnnkitError(f"network '{net.spec.name}' has no layer '{layer}'{did_you_mean(layer, names)}")
    return layer


def filters(net: Network, layer: str | None = None) -> Filters:
    """The filters of `layer` (default: the first layer with filters), scaled for display in a Grid."""
    layer = _layer(net, layer)
    weight = net.layer_params(layer).get("weight")
    if np.ndim(weight) != 4:
        raise CnnkitError(f"layer '{layer}' has no filters (a 4-d weight); layers with filters: "
                          f"{', '.join(filter_layers(net)) or 'none'}")
    weight = np.array(weight, dtype=np.float32)
    count, channels = weight.shape[:2]
    low = weight.min(axis=(1, 2, 3), keepdims=True)
    span = weight.max(axis=(1, 2, 3), keepdims=True) - low
    scaled = np.where(span > 0, (weight - low) / np.where(span > 0, span, 1), np.float32(0.5))
    if channels == 3:
        grid = tile_grid(scaled.transpose(0, 2, 3, 1), square_cols(count))
    elif channels == 1:
        grid = tile_grid(scaled[:, 0], square_cols(count))
    else:
        grid = tile_grid(scaled.reshape(count * channels, *weight.shape[2:]), channels)
    return Filters(layer, weight, grid, colour=channels == 3)


def draw_filters(result: Filters) -> Any:
    count, channels, height, width = result.weight.shape
    if result.colour:
        kind = " in RGB"
    elif channels == 1:
        kind = " in grey"
    else:
        kind = "\nin grey: a row per filter, a column per input channel"
    title = (f"{result.layer}: {count} filters of {channels}x{height}x{width}{kind}\n"
             f"each filter scaled to its own min..max")
    figure, axes = _grid_figure(result.grid, title)
    image = np.where(np.isnan(result.grid.image), np.float32(1), result.grid.image)
    axes.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    return figure


def plot_filters(net: Network, layer: str | None, out: str | os.PathLike) -> Filters:
    """Write the filters of `layer` as a PNG; returns what was drawn."""
    require_matplotlib()
    result = filters(net, layer)
    save_png(draw_filters(result), out)
    return result


# --- feature maps --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Maps:
    """The output of `layer` (C, H, W) for one picture: pixels (the picture in [0, 1] at the network's
    input shape), inputs (1, C, H, W) as the network got them, and the grid of maps (raw values)."""

    layer: str
    picture: str
    pixels: np.ndarray
    inputs: np.ndarray
    maps: np.ndarray
    grid: Grid


def feature_maps(net: Network, picture: str | os.PathLike, layer: str | None = None) -> Maps:
    """The feature maps of `layer` (default: the first layer with filters) for one picture file, read and
    prepared as the network's training data was (cnnkit.data.images.read_inputs)."""
    from cnnkit.data.images import read_inputs

    layer = _layer(net, layer)
    shape = next(node.out_shape for node in net.nodes if node.name == layer)
    if len(shape) != 3:
        raise CnnkitError(f"layer '{layer}' outputs {'x'.join(map(str, shape))} values, not feature maps "
                          f"(channels x height x width); choose a conv, activation or pooling layer")
    pixels, inputs = read_inputs(net, [picture])
    maps = net.activations(inputs, [layer])[layer][0]
    return Maps(layer, str(picture), pixels[0], inputs, maps, tile_grid(maps, square_cols(len(maps))))


def draw_maps(result: Maps) -> Any:
    grid = result.grid
    scale = _scale(grid)
    grid_height, grid_width = grid.image.shape[0] * scale, grid.image.shape[1] * scale
    side = max(result.pixels.shape[1:])
    picture_scale = max(1, min(grid_height, PICTURE_SIDE) // side)
    picture_height, picture_width = (d * picture_scale for d in result.pixels.shape[1:])
    width = 4 * MARGIN + picture_width + grid_width + COLOUR_BAR + COLOUR_BAR_LABELS
    height = TITLE + max(grid_height, picture_height) + MARGIN
    figure = _new_figure(width, height)
    picture = _axes_at(figure, (width, height), MARGIN, TITLE, picture_width, picture_height)
    pixels = result.pixels.transpose(1, 2, 0)
    picture.imshow(pixels if pixels.shape[2] == 3 else pixels[:, :, 0], cmap="gray", vmin=0, vmax=1,
                   interpolation="nearest", aspect="auto")
    picture.set_title(Path(result.picture).name, fontsize=9)
    left = 3 * MARGIN + picture_width
    axes = _axes_at(figure, (width, height), left, TITLE, grid_width, grid_height)
    low, high = float(result.maps.min()), float(result.maps.max())
    shown = axes.imshow(grid.image, cmap=_colour_map("viridis"), vmin=low, vmax=max(high, low + 1e-6),
                        interpolation="nearest", aspect="auto")
    c, h, w = result.maps.shape
    axes.set_title(f"{result.layer}: {c} feature maps of {h}x{w}, one colour scale", fontsize=9)
    bar = _axes_at(figure, (width, height), left + grid_width + MARGIN, TITLE, COLOUR_BAR, grid_height,
                   frame=True)
    figure.colorbar(shown, cax=bar).ax.tick_params(labelsize=8)
    return figure


def plot_maps(net: Network, picture: str | os.PathLike, layer: str | None,
              out: str | os.PathLike) -> Maps:
    """Write the feature maps of `layer` for one picture as a PNG; returns what was drawn."""
    require_matplotlib()
    result = feature_maps(net, picture, layer)
    save_png(draw_maps(result), out)
    return result


# --- training curves -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Curves:
    """Per finished epoch: epochs (1-based) and the series train_loss, val_loss, train_acc, val_acc as the
    run's metrics.jsonl holds them (None where a run has no validation split)."""

    epochs: list[int]
    series: dict[str, list[float | None]]


def curves(run_dir: str | os.PathLike) -> Curves:
    """The training curves of a run folder, from its metrics.jsonl."""
    from cnnkit.train.checkpoint import read_history

    history = read_history(run_dir)
    if not history:
        raise CnnkitError(f"{run_dir}: no finished epoch in its metrics.jsonl yet, so there are no curves")
    return Curves([record["epoch"] for record in history],
                  {key: [record.get(key) for record in history] for key in CURVES})


def draw_curves(result: Curves) -> Any:
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    figure = _new_figure(*CURVES_SIZE)
    loss, accuracy = figure.subplots(1, 2)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.15, top=0.9, wspace=0.22)
    for axes, what in ((loss, "loss"), (accuracy, "acc")):
        for split, label, style in (("train", "train", "-"), ("val", "validation", "--")):
            values = result.series[f"{split}_{what}"]
            if any(v is not None for v in values):
                axes.plot(result.epochs, [np.nan if v is None else v for v in values], style, marker="o",
                          markersize=3, label=label)
        axes.set_xlabel("epoch")
        axes.set_title("loss" if what == "loss" else "accuracy", fontsize=10)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    accuracy.yaxis.set_major_formatter(PercentFormatter(1.0))
    return figure


def plot_curves(run_dir: str | os.PathLike, out: str | os.PathLike) -> Curves:
    """Write loss and accuracy per epoch of a run folder as a PNG; returns what was drawn."""
    require_matplotlib()
    result = curves(run_dir)
    save_png(draw_curves(result), out)
    return result


# --- figures -------------------------------------------------------------------------------------------


def require_matplotlib() -> None:
    """Nothing when matplotlib imports, else CnnkitError naming the extra that installs it."""
    try:
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise CnnkitError('plotting needs matplotlib: pip install "cnnkit[viz]"') from None


def _new_figure(width: int, height: int) -> Any:
    """A matplotlib Figure of width x height pixels on an Agg canvas."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _colour_map(name: str) -> Any:
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad="white")


def _scale(grid: Grid) -> int:
    """Screen pixels per grid pixel: whole, so every value is a crisp square."""
    return max(1, GRID_SIDE // max(grid.image.shape[:2]))


def _grid_figure(grid: Grid, title: str) -> tuple[Any, Any]:
    """A figure with a title band and axes sized to show `grid` at whole pixels per value, centred."""
    scale = _scale(grid)
    grid_height, grid_width = grid.image.shape[0] * scale, grid.image.shape[1] * scale
    top = MARGIN + TITLE_LINE * (title.count("\n") + 1)
    width, height = max(MIN_WIDTH, grid_width + 2 * MARGIN), top + grid_height + MARGIN
    figure = _new_figure(width, height)
    figure.text(0.5, 1 - 6 / height, title, ha="center", va="top", fontsize=9, linespacing=1.3)
    return figure, _axes_at(figure, (width, height), (width - grid_width) // 2, top, grid_width, grid_height)


def _axes_at(figure: Any, size: tuple[int, int], left: int, top: int, width: int, height: int,
             frame: bool = False) -> Any:
    """Axes covering the given pixel rectangle of a figure of `size` (width, height) pixels."""
    axes = figure.add_axes((left / size[0], 1 - (top + height) / size[1], width / size[0], height / size[1]))
    if not frame:
        axes.set_axis_off()
    return axes


def save_png(figure: Any, path: str | os.PathLike) -> Path:
    """Write a figure as a PNG at its own size (no Software tag, so the same figure gives the same bytes)."""
    path = Path(path)
    try:
        figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    except OSError as error:
        raise CnnkitError(f"{path}: cannot write: {error.strerror or error}") from None
    return path
