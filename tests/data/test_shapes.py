from __future__ import annotations

import numpy as np
import pytest

from cnnkit.attrs import parse_attrs
from cnnkit.data.shapes import SHAPES, SHAPES_DATASET, _coverage, generate
from cnnkit.errors import DataError

AREAS = {  # in units of the radius squared
    "circle": np.pi * 0.9**2, "square": 1.4**2, "triangle": 3 * np.sqrt(3) / 4,
    "cross": 2 * 1.9 * 0.6 - 0.6**2, "ring": np.pi * (0.95**2 - 0.45**2), "diamond": 2 * 1.2 / 2,
    "bar": 1.9 * 0.6, "frame": 1.4**2 - 0.76**2,
}


def test_same_seed_gives_bitwise_the_same_arrays():
    a = generate(4, 300, 0.03, (3, 16, 16), seed=7)
    b = generate(4, 300, 0.03, (3, 16, 16), seed=7)
    assert a.x.tobytes() == b.x.tobytes()
    assert a.y.tobytes() == b.y.tobytes()
    assert not np.array_equal(a.x, generate(4, 300, 0.03, (3, 16, 16), seed=8).x)


@pytest.mark.parametrize("input_shape", [(3, 32, 32), (1, 28, 28), (3, 20, 40), (1, 8, 8)])
def test_arrays_have_the_input_shape_dtype_and_scale(input_shape):
    data = generate(4, 400, 0.03, input_shape, seed=0)
    assert data.x.shape == (400, *input_shape)
    assert data.x.dtype == np.float32 and data.y.dtype == np.int64
    assert data.x.flags.c_contiguous
    assert abs(float(data.x.mean())) < 0.05
    assert 0.15 < float(data.x.std()) < 0.5
    assert float(np.abs(data.x).max()) < 1.5
    assert data.class_names == ("circle", "square", "triangle", "cross")


@pytest.mark.parametrize("classes", range(2, len(SHAPES) + 1))
def test_classes_are_balanced(classes):
    data = generate(classes, 1001, 0.03, (1, 12, 12), seed=1)
    counts = np.bincount(data.y, minlength=classes)
    assert len(counts) == classes and counts.max() - counts.min() <= 1
    assert data.class_names == tuple(SHAPES)[:classes]


def test_grayscale_images_have_one_channel_and_vary_in_brightness():
    data = generate(4, 500, 0.03, (1, 32, 32), seed=2)
    assert data.x.shape == (500, 1, 32, 32)
    assert np.std(data.x.mean(axis=(1, 2, 3))) > 0.1


def test_mean_colour_does_not_tell_the_classes_apart():
    data = generate(4, 4000, 0.03, (3, 32, 32), seed=3)
    colour = data.x.mean(axis=(2, 3))
    fit, held_out = slice(0, 2000), slice(2000, 4000)
    means = np.stack([colour[fit][data.y[fit] == k].mean(axis=0) for k in range(4)])
    nearest = np.argmin(((colour[held_out, None, :] - means) ** 2).sum(axis=2), axis=1)
    assert np.mean(nearest == data.y[held_out]) < 0.25 + 0.06


@pytest.mark.parametrize("name", SHAPES)
def test_every_shape_lies_inside_its_unit_circle(name):
    grid = np.linspace(-1.5, 1.5, 301)
    u, v = np.meshgrid(grid, grid)
    outside = np.hypot(u, v) > 1.0
    assert (SHAPES[name](u, v)[outside] > 0).all()


@pytest.mark.parametrize("label,name", list(enumerate(SHAPES)))
def test_every_shape_is_drawn_whole_with_its_area(label, name):
    radius = np.array([20.0, 20.0])
    centre = np.array([20.5, 43.5])
    angle = np.array([0.0, 1.0])
    coverage = _coverage(np.array([label, label]), len(SHAPES), radius, centre, centre[::-1], angle, 64, 64)
    np.testing.assert_allclose(coverage.sum(axis=(1, 2)), AREAS[name] * 20.0**2, rtol=0.02)
    assert coverage.min() == 0.0 and coverage.max() == 1.0


def test_noise_attribute_sets_the_pixel_noise():
    quiet = generate(4, 200, 0.0, (3, 16, 16), seed=4)
    noisy = generate(4, 200, 0.2, (3, 16, 16), seed=4)
    assert np.std(noisy.x - quiet.x) == pytest.approx(0.2, rel=0.05)


@pytest.mark.parametrize("input_shape", [(2, 32, 32), (4, 32, 32), (3, 7, 32), (3, 32), (784,)])
def test_unsupported_input_shapes_are_refused(input_shape):
    with pytest.raises(DataError, match=r"\(1 or 3, H, W\) with H, W >= 8.*spec's input is"):
        generate(4, 10, 0.03, input_shape, seed=0)


def test_record_defaults_and_load():
    attrs = parse_attrs(SHAPES_DATASET.attrs, {"classes": 3, "samples": 30})
    assert attrs == {"classes": 3, "samples": 30, "noise": 0.03, "val_fraction": 0.2}
    data = SHAPES_DATASET.load(attrs, (3, 16, 16), 5)
    assert len(data) == 30 and data.classes == 3
    with pytest.raises(ValueError):
        parse_attrs(SHAPES_DATASET.attrs, {"classes": len(SHAPES) + 1})
