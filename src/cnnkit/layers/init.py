"""Parameter initialisers a spec can pick per layer with `init:`."""

from __future__ import annotations

import numpy as np

INITIALISERS = ("he", "xavier", "normal", "zeros")


def initial_weights(method: str, shape: tuple[int, ...], fan_in: int, fan_out: int,
                    rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    """he: N(0, 2/fan_in) for ReLU nets; xavier: U(+-sqrt(6/(fan_in+fan_out))); normal: N(0, 0.01^2)."""
    if method == "he":
        values = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    elif method == "xavier":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        values = rng.uniform(-limit, limit, size=shape)
    elif method == "normal":
        values = rng.standard_normal(shape) * 0.01
    elif method == "zeros":
        values = np.zeros(shape)
    else:
        raise ValueError(f"unknown initialiser '{method}', expected one of {', '.join(INITIALISERS)}")
    return values.astype(dtype)
