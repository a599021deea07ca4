"""The C backend's optimizer steps: SGD, Adam and AdamW updated in one C pass per parameter (csrc/optim.c).

Each subclasses the reference optimizer (cnnkit.train.optimizers) and replaces step() only, so state()
has the same keys and shapes and checkpoints move between backends. Registered as the Kernels
"optimizer/sgd", "optimizer/adam" and "optimizer/adamw" of backend "c".
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cnnkit.backends.c import checks
from cnnkit.backends.c.library import load
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Kernel
from cnnkit.train.optimizers import SGD, Adam


def addresses(what: str, arrays: Mapping[str, np.ndarray], writable: bool = False) -> dict[str, int]:
    """Each array's address, after checking it is float32, C-contiguous (and writable) for C."""
    return {name: checks.array(f"{what} '{name}'", a, writable=writable).ctypes.data
            for name, a in arrays.items()}


def parameters_in_c(params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]
                    ) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Each parameter's size, and its and its gradient's addresses, checked for C."""
    return ({name: p.size for name, p in params.items()}, addresses("parameter", params, writable=True),
            addresses("gradient", grads))


class CSGD(SGD):
    def __init__(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], **attrs) -> None:
        super().__init__(params, grads, **attrs)
        self.lib = load()
        self.sizes, self.p, self.g = parameters_in_c(self.params, self.grads)
        self.buf = addresses("momentum", self.slots["momentum"], writable=True) if self.momentum else {}

    def step(self, lr: float) -> None:
        first = int(int(self.steps) == 0)
        for name, size in self.sizes.items():
            self.lib.sgd_step(size, self.p[name], self.g[name], self.buf.get(name), lr, self.momentum,
                              self.weight_decay, int(self.nesterov), first)
        self.steps += 1


class CAdam(Adam):
    def __init__(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], **attrs) -> None:
        super().__init__(params, grads, **attrs)
        self.lib = load()
        self.sizes, self.p, self.g = parameters_in_c(self.params, self.grads)
        self.m = addresses("exp_avg", self.slots["exp_avg"], writable=True)
        self.v = addresses("exp_avg_sq", self.slots["exp_avg_sq"], writable=True)

    def step(self, lr: float) -> None:
        self.steps += 1
        t = int(self.steps)
        step_size = lr / (1 - self.beta1 ** t)
        bias_correction2_sqrt = (1 - self.beta2 ** t) ** 0.5
        for name, size in self.sizes.items():
            self.lib.adam_step(size, self.p[name], self.g[name], self.m[name], self.v[name], lr, self.beta1,
                               self.beta2, self.eps, self.weight_decay, int(self.decoupled), step_size,
                               bias_correction2_sqrt)


def adamw(params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], weight_decay: float = 0.01,
          **attrs) -> CAdam:
    return CAdam(params, grads, weight_decay=weight_decay, decoupled=True, **attrs)


@hookimpl
def cnnkit_register_kernels(register) -> None:
    for name, make in (("sgd", CSGD), ("adam", CAdam), ("adamw", adamw)):
        register(Kernel(layer=f"optimizer/{name}", backend="c", make=make))
