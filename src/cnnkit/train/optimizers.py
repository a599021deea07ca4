"""Optimizers with PyTorch's update rules (torch.optim.SGD, Adam, AdamW), updating parameters in place.

Every array an optimizer needs (moments, scratch) is made in `make`, and `step` writes only through
`out=` and in-place operators, so a step allocates nothing. `state()` is plain arrays (the step count too),
so a checkpoint stores it in safetensors and `load_state` resumes bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cnnkit.attrs import Attr
from cnnkit.errors import ShapeError, SpecError
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Optimizer


class _Stateful:
    """The state()/load_state() pair over `self.slots`: {slot name: {param name: array}} plus a step count."""

    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    slots: dict[str, dict[str, np.ndarray]]

    def __init__(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        missing = sorted(set(params) ^ set(grads))
        if missing:
            raise ShapeError(f"parameters and gradients do not match: {missing}")
        self.params = dict(params)
        self.grads = dict(grads)
        self.steps = np.zeros((), np.int64)
        self.scratch = {name: np.empty_like(p) for name, p in self.params.items()}

    def _slot(self) -> dict[str, np.ndarray]:
        return {name: np.zeros_like(p) for name, p in self.params.items()}

    def state(self) -> dict[str, np.ndarray]:
        """The arrays themselves (not copies): "step" and "<slot>/<param name>"."""
        state = {"step": self.steps}
        for slot, arrays in self.slots.items():
            state.update({f"{slot}/{name}": array for name, array in arrays.items()})
        return state

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy a state() into this optimizer, checking names and shapes first (nothing changes on error)."""
        own = self.state()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ShapeError(f"optimizer state does not fit: missing {missing or 'none'}, "
                             f"unexpected {unexpected or 'none'}")
        for key, value in state.items():
            if np.shape(value) != own[key].shape:
                raise ShapeError(f"optimizer state '{key}' has shape {np.shape(value)}, expected "
                                 f"{own[key].shape}")
        for key, value in state.items():
            np.copyto(own[key], value, casting="same_kind")


class SGD(_Stateful):
    """torch.optim.SGD (dampening 0): g = grad + wd p; b = g on the first step, else m b + g;
    p -= lr (g + m b) with Nesterov, else p -= lr b (p -= lr g without momentum)."""

    def __init__(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], lr: float = 0.01,
                 momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> None:
        if nesterov and momentum <= 0:
            raise SpecError("optimizer 'sgd': nesterov needs momentum > 0; set momentum (e.g. 0.9) or "
                            "drop nesterov")
        super().__init__(params, grads)
        self.lr, self.momentum, self.nesterov, self.weight_decay = lr, momentum, nesterov, weight_decay
        self.slots = {"momentum": self._slot()} if momentum else {}
        self.extra = {name: np.empty_like(p) for name, p in self.params.items()} if nesterov else {}

    def step(self, lr: float) -> None:
        first = int(self.steps) == 0
        for name, p in self.params.items():
            d = self.scratch[name]
            if self.weight_decay:
                np.multiply(p, self.weight_decay, out=d)
                d += self.grads[name]
            else:
                np.copyto(d, self.grads[name])
            if self.momentum:
                buf = self.slots["momentum"][name]
                if first:
                    np.copyto(buf, d)
                else:
                    buf *= self.momentum
                    buf += d
                if self.nesterov:
                    np.multiply(buf, self.momentum, out=self.extra[name])
                    d += self.extra[name]
                else:
                    np.copyto(d, buf)
            d *= lr
            p -= d
        self.steps += 1


class Adam(_Stateful):
    """torch.optim.Adam (weight decay as L2 on the gradient) or, with `decoupled`, torch.optim.AdamW
    (p *= 1 - lr wd before the update):
    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
    """

    def __init__(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], lr: float = 1e-3,
                 beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                 decoupled: bool = False) -> None:
        super().__init__(params, grads)
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.weight_decay, self.decoupled = weight_decay, decoupled
        self.slots = {"exp_avg": self._slot(), "exp_avg_sq": self._slot()}
        self.coupled = {name: np.empty_like(p) for name, p in self.params.items()} \
            if weight_decay and not decoupled else {}

    def step(self, lr: float) -> None:
        self.steps += 1
        t = int(self.steps)
        step_size = lr / (1 - self.beta1 ** t)
        bias_correction2_sqrt = (1 - self.beta2 ** t) ** 0.5
        for name, p in self.params.items():
            g, m, v, tmp = self.grads[name], self.slots["exp_avg"][name], self.slots["exp_avg_sq"][name], \
                self.scratch[name]
            if self.weight_decay and self.decoupled:
                p *= 1 - lr * self.weight_decay
            elif self.weight_decay:
                np.multiply(p, self.weight_decay, out=self.coupled[name])
                self.coupled[name] += g
                g = self.coupled[name]
            # m += (1 - b1) (g - m): PyTorch's lerp, the same rounding as torch
            np.subtract(g, m, out=tmp)
            tmp *= 1 - self.beta1
            m += tmp
            v *= self.beta2
            np.multiply(g, g, out=tmp)
            tmp *= 1 - self.beta2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp /= bias_correction2_sqrt
            tmp += self.eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp


def _adamw(params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], weight_decay: float = 0.01,
           **attrs) -> Adam:
    return Adam(params, grads, weight_decay=weight_decay, decoupled=True, **attrs)


def _lr(default: float) -> Attr:
    return Attr("lr", "float", default, doc="base learning rate (schedules scale it)", minimum=0)


def _adam_attrs(weight_decay: float, doc: str) -> tuple[Attr, ...]:
    return (
        _lr(1e-3),
        Attr("beta1", "float", 0.9, doc="decay of the gradient average", minimum=0, maximum=1,
             exclusive_max=True),
        Attr("beta2", "float", 0.999, doc="decay of the squared-gradient average", minimum=0, maximum=1,
             exclusive_max=True),
        Attr("eps", "float", 1e-8, doc="added to the denominator for stability", minimum=0),
        Attr("weight_decay", "float", weight_decay, doc=doc, minimum=0),
    )


OPTIMIZERS = (
    Optimizer(name="sgd", make=SGD, attrs=(
        _lr(0.01),
        Attr("momentum", "float", 0.0, doc="fraction of the previous update kept", minimum=0),
        Attr("nesterov", "bool", False, doc="Nesterov momentum (needs momentum > 0)"),
        Attr("weight_decay", "float", 0.0, doc="L2 penalty added to the gradient", minimum=0),
    ), doc="Stochastic gradient descent with optional (Nesterov) momentum, as torch.optim.SGD."),
    Optimizer(name="adam", make=Adam, attrs=_adam_attrs(0.0, "L2 penalty added to the gradient"),
              doc="Adam, as torch.optim.Adam."),
    Optimizer(name="adamw", make=_adamw,
              attrs=_adam_attrs(0.01, "decoupled decay: p *= 1 - lr * weight_decay each step"),
              doc="Adam with decoupled weight decay, as torch.optim.AdamW."),
)


@hookimpl
def cnnkit_register_optimizers(register) -> None:
    for optimizer in OPTIMIZERS:
        register(optimizer)
