"""The NumPy backend: the readable reference every other backend is checked against."""

from __future__ import annotations

from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Backend


@hookimpl
def cnnkit_register_backends(register) -> None:
    register(Backend(name="numpy", description="vectorised NumPy reference kernels (float32 and float64)"))
