"""The main job's promise: the seed picture's CNN learns `shapes` to >= 95% with its default recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cnnkit

SPEC = Path(__file__).parents[2] / "specs" / "seed_convnet.yaml"


@pytest.mark.slow
def test_seed_convnet_reaches_95_percent_and_reloads(tmp_path):
    net = cnnkit.build(SPEC, seed=0)
    history = cnnkit.train(net, out=tmp_path, progress=False)
    final = history.epochs[-1]
    assert final["val_acc"] >= 0.95, final
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(logged) == net.spec.train.epochs and logged[-1]["val_acc"] == final["val_acc"]
    again = cnnkit.load(tmp_path)
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32))
    assert (again.predict(x) == net.predict(x)).all()
