"""Argument checks for the C binding: everything C would have to trust is verified here first.

C reads and writes raw float32 memory at the sizes it is told, so every array handed to it is checked to
be a float32 ndarray of the expected shape, C-contiguous (or, for GEMM, rows of unit stride), small
enough for the C types (fewer than 2**31 elements), writable when C writes it, and not overlapping
another argument it writes. A failed check is a BackendError that says what was wrong and what to do.

Op classes use `Operand`: an array of fixed shape that is passed on every call, whose address is taken
once per array object (PERF-NOTES: taking it costs about 1 us a call) and which is copied into a buffer
of its own when it is not float32 and C-contiguous (a non-contiguous view, say). Ops with one input
start from `OneInputBuffers`: their output, input gradient and those two operands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnkit.errors import BackendError
from cnnkit.registry import OpSetup

FLOAT32 = np.dtype(np.float32)
MAX_SIZE = 2**31 - 1
"""CNK_MAX_SIZE in csrc/common.h: the limit for every size and element count C indexes with."""


def require_float32(setup: OpSetup) -> None:
    """The C kernels compute in float32 only: an Op for another dtype is refused when it is made."""
    if np.dtype(setup.dtype) != FLOAT32:
        raise BackendError(f"layer '{setup.name}': the C backend computes in float32 only, not "
                           f"{np.dtype(setup.dtype).name}; build the network with dtype=float32, or use "
                           f"backend 'numpy' for {np.dtype(setup.dtype).name}")


def check_sizes(what: str, shape: Sequence[int]) -> None:
    """Every dimension >= 1 and at most MAX_SIZE elements in all: what the C types can index."""
    if any(int(d) < 1 for d in shape):
        raise BackendError(f"{what} has shape {tuple(shape)}; the C backend needs every size >= 1")
    total = 1
    for d in shape:
        total *= int(d)
    if total > MAX_SIZE:
        raise BackendError(f"{what} has shape {tuple(shape)}, {total:,} elements; the C backend takes "
                           f"arrays of fewer than 2**31 elements (use backend 'numpy', or smaller batches)")


def array(name: str, value: Any, shape: Sequence[int] | None = None, ndim: int | None = None,
          writable: bool = False) -> np.ndarray:
    """`value` if it is a float32, C-contiguous ndarray of `shape` (or `ndim`) that fits the C sizes."""
    value = _float32_array(name, value, shape, ndim)
    if not value.flags.c_contiguous:
        raise BackendError(f"{name} must be C-contiguous (strides {value.strides} for shape {value.shape}); "
                           f"pass np.ascontiguousarray({name})")
    if writable and not value.flags.writeable:
        raise BackendError(f"{name} is read-only, but the C backend writes its result there")
    return value


def rows(name: str, value: Any, writable: bool = False) -> int:
    """The leading dimension of a float32 matrix whose rows are contiguous (a C-contiguous array or a
    slice of rows and columns of one), for GEMM."""
    value = _float32_array(name, value, None, 2)
    row_stride, item_stride = value.strides
    unit_items = value.shape[1] == 1 or item_stride == FLOAT32.itemsize
    if not unit_items or row_stride % FLOAT32.itemsize or row_stride < FLOAT32.itemsize * value.shape[1]:
        raise BackendError(f"{name} must have contiguous rows in increasing memory order (strides "
                           f"{value.strides} for shape {value.shape}); pass np.ascontiguousarray({name})")
    if writable and not value.flags.writeable:
        raise BackendError(f"{name} is read-only, but the C backend writes its result there")
    leading = row_stride // FLOAT32.itemsize
    if (value.shape[0] - 1) * leading + value.shape[1] > MAX_SIZE:
        raise BackendError(f"{name} spans more than 2**31 elements of memory; the C backend cannot index it")
    return leading


def _float32_array(name: str, value: Any, shape: Sequence[int] | None, ndim: int | None) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise BackendError(f"{name} must be a NumPy array, got {type(value).__name__}")
    if value.dtype != FLOAT32:
        raise BackendError(f"{name} must be float32, got {value.dtype}; convert it with .astype(np.float32)")
    if ndim is not None and value.ndim != ndim:
        raise BackendError(f"{name} must have {ndim} dimensions, got shape {value.shape}")
    if shape is not None and value.shape != tuple(shape):
        raise BackendError(f"{name} must have shape {tuple(shape)}, got {value.shape}")
    check_sizes(name, value.shape)
    return value


def no_overlap(out_name: str, out: np.ndarray, **inputs: np.ndarray | None) -> None:
    """The C kernels write `out` while reading the inputs: they must not share memory."""
    for name, value in inputs.items():
        if value is not None and np.may_share_memory(out, value):
            raise BackendError(f"{out_name} overlaps {name}; the C backend needs an output that shares no "
                               f"memory with its inputs")


class Operand:
    """An array argument of fixed shape that an Op passes to C on every call.

    address(x) checks x once per array object and returns its address; an input that is not float32 and
    C-contiguous, or that overlaps one of `avoid` (the Op's own outputs), is copied into a buffer kept for
    it. An output (output=True) must already be float32, C-contiguous and writable: C writes into it.
    """

    def __init__(self, name: str, shape: Sequence[int], output: bool = False,
                 avoid: Sequence[np.ndarray] = ()) -> None:
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.output = output
        self.avoid = tuple(avoid)
        self._array: np.ndarray | None = None
        self._address = 0
        self._copy: np.ndarray | None = None
        self._copy_address = 0

    def address(self, value: Any) -> int:
        if value is self._array:
            return self._address
        if not isinstance(value, np.ndarray) or value.shape != self.shape:
            got = value.shape if isinstance(value, np.ndarray) else type(value).__name__
            raise BackendError(f"{self.name} must be an array of shape {self.shape}, got {got}")
        if self.output:
            array(self.name, value, self.shape, writable=True)
        elif value.dtype != FLOAT32 or not value.flags.c_contiguous or \
                any(np.may_share_memory(value, other) for other in self.avoid):
            return self._copied(value)
        self._array, self._address = value, value.ctypes.data
        return self._address

    def _copied(self, value: np.ndarray) -> int:
        if not np.can_cast(value.dtype, FLOAT32, casting="same_kind"):
            raise BackendError(f"{self.name} must hold real numbers, got dtype {value.dtype}")
        if self._copy is None:
            self._copy = np.empty(self.shape, FLOAT32)
            self._copy_address = self._copy.ctypes.data
        np.copyto(self._copy, value, casting="same_kind")
        self._array = None
        return self._copy_address

    @property
    def current(self) -> int:
        """The address the last address() call returned (for backward, which re-reads forward's input)."""
        return self._address if self._array is not None else self._copy_address


class OneInputBuffers:
    """What a kernel with one input owns, made once: its output, its input gradient (None when the input is
    the network's and needs none), their addresses, and the checked operands for the input and the output
    gradient, each kept apart from what C writes next to it."""

    def __init__(self, setup: OpSetup, input_grad: bool = True) -> None:
        require_float32(setup)
        in_shape, out_shape = setup.in_shapes[0], setup.out_shape
        for what, shape in (("the input", in_shape), ("the output", out_shape)):
            check_sizes(f"layer '{setup.name}': {what}", shape)
        self.out = np.empty(out_shape, FLOAT32)
        self.grad_x = np.empty(in_shape, FLOAT32) if input_grad else None
        self.out_address = self.out.ctypes.data
        self.grad_x_address = None if self.grad_x is None else self.grad_x.ctypes.data
        self.x = Operand(f"layer '{setup.name}': input", in_shape, avoid=(self.out,))
        self.grad_out = Operand(f"layer '{setup.name}': output gradient", out_shape,
                                avoid=() if self.grad_x is None else (self.grad_x,))
