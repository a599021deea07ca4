"""Augmentation: shifts with zeros and mirror images, drawn per (seed, epoch, step) for training batches only,
so a resumed run is bitwise the same."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit import build
from cnnkit.data.augment import Augmentation, random_crop, random_flip
from cnnkit.train import trainer
from cnnkit.train.metrics import evaluate
from cnnkit.train.trainer import TrainingInterrupted, augment_rng, fit, load_data
from tests.pictures import picture_spec, write_folder


def batch(n=64, shape=(2, 5, 6)):
    return np.random.default_rng(0).standard_normal((n, *shape)).astype(np.float32)


def test_random_crop_shifts_each_image_with_zeros_shifted_in():
    x, padding = batch(), 2
    out = random_crop(x, padding, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    offsets = set()
    for image, source in zip(out, padded):
        matches = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
                   if np.array_equal(image, source[:, dy:dy + 5, dx:dx + 6])]
        assert matches
        offsets.add(matches[0])
    assert len(offsets) > 10  # the offsets vary from image to image
    assert np.array_equal(out, random_crop(x, padding, np.random.default_rng(1)))
    assert np.array_equal(x, batch())  # the input is left as it is


def test_random_flip_mirrors_about_half():
    x = batch()
    out = random_flip(x, np.random.default_rng(2))
    flipped = [np.array_equal(o, i[..., ::-1]) for o, i in zip(out, x)]
    kept = [np.array_equal(o, i) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48
    assert np.array_equal(out, random_flip(x, np.random.default_rng(2)))


def test_augmentation_combines_both_and_nothing_is_identity():
    x = batch()
    assert Augmentation()(x, np.random.default_rng(0)) is x
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    expected = random_flip(random_crop(x, 1, rng_b), rng_b)
    assert np.array_equal(Augmentation(crop_padding=1, flip=True)(x, rng_a), expected)


@pytest.fixture(scope="module")
def augmented_spec(tmp_path_factory):
    root = tmp_path_factory.mktemp("pictures")
    write_folder(root / "pets", per_class=10)
    return picture_spec(str(root / "pets"), crop_padding=2, flip=True, val_fraction=0.2)


def test_training_batches_are_augmented_per_seed_epoch_and_step(augmented_spec, monkeypatch):
    calls = []

    def spy(seed, epoch, step):
        calls.append((seed, epoch, step))
        return augment_rng(seed, epoch, step)

    monkeypatch.setattr(trainer, "augment_rng", spy)
    net = build(augmented_spec)
    history = fit(net, progress=False)
    assert calls == [(0, epoch, step) for epoch in range(3) for step in range(4)]  # 16 examples, batch 4
    _, val = load_data(net)
    assert history[-1]["val_loss"] == evaluate(net, val, 4)["loss"]  # validation is never augmented


def test_an_augmented_run_resumes_bitwise(augmented_spec, tmp_path):
    straight = build(augmented_spec)
    fit(straight, out=tmp_path / "straight", progress=False)

    def stop_at_step_6(event):
        if event["event"] == "step" and event["global_step"] == 6:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        fit(build(augmented_spec), out=tmp_path / "resumed", progress=False, callbacks=[stop_at_step_6])
    resumed = build(augmented_spec, seed=1)
    fit(resumed, out=tmp_path / "resumed", resume=True, progress=False)
    for key, value in straight.params.items():
        assert np.array_equal(resumed.params[key], value), key


def test_augmentation_changes_what_is_learned(augmented_spec):
    plain = {**augmented_spec, "train": {**augmented_spec["train"], "data": {
        **augmented_spec["train"]["data"], "crop_padding": 0, "flip": False}}}
    a, b = build(augmented_spec), build(plain)
    fit(a, progress=False)
    fit(b, progress=False)
    assert not np.array_equal(a.params["conv1.weight"], b.params["conv1.weight"])
