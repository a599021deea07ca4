"""The `winograd` backend for cnnkit: conv2d by Winograd's F(2x2, 3x3) minimal filtering, in NumPy.

A backend is a name plus kernels. This one has a single kernel, conv2d; every other layer type of a
network built with backend="winograd" runs on cnnkit's NumPy reference (cnnkit says so once). Its conv2d
uses Winograd for 3x3 kernels with stride 1, dilation 1 and groups 1, any padding, and hands every other
conv2d to the reference kernel.
"""

from __future__ import annotations

from cnnkit import hookimpl
from cnnkit.registry import Backend, Kernel
from cnnkit_winograd.conv import make_conv2d

__version__ = "0.1.0"

BACKEND = Backend(name="winograd", description="conv2d by Winograd F(2x2, 3x3) for 3x3 stride-1 convs "
                                                 "(NumPy); the rest on the numpy reference")


@hookimpl
def cnnkit_register_backends(register) -> None:
    register(BACKEND)


@hookimpl
def cnnkit_register_kernels(register) -> None:
    register(Kernel(layer="conv2d", backend="winograd", make=make_conv2d))
