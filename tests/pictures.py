"""Small folders of generated pictures for the image_folder, predict and viz tests (needs Pillow).

Two classes a small network tells apart in a few epochs: red-ish discs and blue-ish squares, at random
places and sizes on a light background, written as PNG, JPEG and BMP in turn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")
ImageDraw = pytest.importorskip("PIL.ImageDraw")

CLASSES = ("circle", "square")
FORMATS = (".png", ".jpg", ".bmp")


def picture(kind: str, size: tuple[int, int], rng: np.random.Generator, mode: str = "RGB") -> Image.Image:
    """A disc ("circle") or square on a light background, in a red-ish or blue-ish colour by kind."""
    width, height = size
    background = tuple(int(v) for v in rng.integers(200, 256, 3))
    image = Image.new("RGB", size, background)
    side = int(rng.integers(min(size) // 2, min(size) - 1))
    left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    box = (left, top, left + side - 1, top + side - 1)
    shade = int(rng.integers(0, 60))
    draw = ImageDraw.Draw(image)
    if kind == "circle":
        draw.ellipse(box, fill=(200 + shade, shade, shade))
    else:
        draw.rectangle(box, fill=(shade, shade, 200 + shade))
    return image.convert(mode)


def write_folder(root: Path, per_class: int = 8, size: tuple[int, int] = (16, 16), seed: int = 0,
                 odd: bool = False) -> list[Path]:
    """root/<class>/<i><ext> for both classes; with `odd`, every fourth picture has another size and mode
    (RGBA at 24x20, or grayscale L). Returns the files written, in the order image_folder reads them."""
    rng = np.random.default_rng(seed)
    written = []
    for kind in CLASSES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            ext = FORMATS[i % len(FORMATS)]
            shape, mode = size, "RGB"
            if odd and i % 4 == 3:
                shape, mode = ((24, 20), "RGBA") if ext == ".png" else (size, "L")
            path = root / kind / f"{i:03d}{ext}"
            picture(kind, shape, rng, mode).save(path)
            written.append(path)
    return written


def truncated_png(path: Path) -> Path:
    picture("circle", (16, 16), np.random.default_rng(0)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def picture_spec(path: str, input_shape=(3, 16, 16), **data) -> dict:
    """A small conv net for 2 classes of pictures, training 3 epochs on image_folder `path` with `data`."""
    return {"name": "pics", "input": list(input_shape), "layers": [
        {"name": "conv1", "type": "conv2d", "filters": 4, "kernel": 3, "padding": "same"},
        {"name": "relu1", "type": "relu"},
        {"name": "pool1", "type": "max_pool2d", "kernel": 4},
        {"name": "flatten", "type": "flatten"},
        {"name": "fc", "type": "linear", "units": 2}],
        "train": {"data": {"dataset": "image_folder", "path": path, **data}, "batch_size": 4, "epochs": 3,
                  "optimizer": {"type": "adam", "lr": 0.02}}}
