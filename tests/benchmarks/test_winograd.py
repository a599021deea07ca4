"""benchmarks/winograd.py, the measurements behind the README's note on Winograd: its transforms must be
exact in float64 (else the errors it reports would be its own), and both of its tables must come out."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "winograd.py"


def load():
    spec = importlib.util.spec_from_file_location("benchmarks_winograd_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["F(2x2,3x3)", "F(4x4,3x3)"])
@pytest.mark.parametrize("size", [8, 7, 10])
def test_the_transforms_are_exact_in_float64(name, size):
    script = load()
    rng = np.random.default_rng(size)
    x = rng.standard_normal((2, 3, size, size + 1))
    w = rng.standard_normal((4, 3, 3, 3))
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    np.testing.assert_allclose(script.direct(x, w), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(script.winograd(x, w, name), expected, rtol=1e-10, atol=1e-10)


def test_the_accuracy_table_has_a_row_per_layer_and_method(capsys):
    assert load().main(["--batch", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| conv")]
    assert len(rows) == 4 * 3
    assert all(row.endswith(" |") and " of " in row for row in rows)


def test_the_time_table_has_a_row_per_layer_and_a_total(capsys):
    from cnnkit.backends.c import library

    if library.unavailable():
        pytest.skip(f"the C backend is not available: {library.unavailable()}")
    import cnnkit

    count = cnnkit.get_num_threads()
    try:
        load().gemm_time(threads=1, batch=2)
    finally:
        cnnkit.set_num_threads(count)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| conv") or
            line.startswith("| all four")]
    assert len(rows) == 5
    for row in rows:
        times = [float(cell) for cell in row.strip("| ").split(" | ")[1:]]
        assert len(times) == 3 and all(t > 0 for t in times)
