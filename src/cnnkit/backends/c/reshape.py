"""flatten on the C backend: the NumPy kernel's views, since reshaping a C-contiguous array copies nothing."""

from __future__ import annotations

from cnnkit.backends.numpy.reshape import Flatten
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="flatten", backend="c", make=Flatten))
