"""Learning-rate schedules: pure functions of the optimizer step (0-based), so a resumed run gets the same
rates without saving anything.

Every schedule takes `warmup_epochs`: over the first W = round(warmup_epochs * steps_per_epoch) steps the
rate ramps linearly, lr * (step + 1) / W, reaching the schedule's own rate at step W - 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from cnnkit.attrs import Attr
from cnnkit.hookspecs import hookimpl
from cnnkit.registry import Schedule

LearningRate = Callable[[int], float]


def _with_warmup(rate: LearningRate, warmup_steps: int) -> LearningRate:
    if warmup_steps <= 0:
        return rate
    return lambda step: rate(step) * min(1.0, (step + 1) / warmup_steps)


def _warmup_steps(warmup_epochs: float, steps_per_epoch: int) -> int:
    return int(round(warmup_epochs * steps_per_epoch))


def constant(base_lr: float, total_steps: int, steps_per_epoch: int,
             warmup_epochs: float = 0.0) -> LearningRate:
    """base_lr throughout."""
    return _with_warmup(lambda step: base_lr, _warmup_steps(warmup_epochs, steps_per_epoch))


def step_decay(base_lr: float, total_steps: int, steps_per_epoch: int, step_epochs: int, gamma: float = 0.1,
               warmup_epochs: float = 0.0) -> LearningRate:
    """base_lr * gamma ** (epoch // step_epochs), epoch = step // steps_per_epoch (counted from step 0)."""
    def rate(step: int) -> float:
        return base_lr * gamma ** ((step // steps_per_epoch) // step_epochs)

    return _with_warmup(rate, _warmup_steps(warmup_epochs, steps_per_epoch))


def cosine(base_lr: float, total_steps: int, steps_per_epoch: int, min_lr: float = 0.0,
           warmup_epochs: float = 0.0) -> LearningRate:
    """min_lr + (base_lr - min_lr) (1 + cos(pi t)) / 2, t going from 0 at the end of warm-up to 1 at
    total_steps (as torch's CosineAnnealingLR with T_max = the steps after warm-up)."""
    warmup = _warmup_steps(warmup_epochs, steps_per_epoch)
    span = max(1, total_steps - warmup)

    def rate(step: int) -> float:
        t = min(1.0, max(0.0, (step - warmup) / span))
        return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * t)) / 2

    return _with_warmup(rate, warmup)


WARMUP = Attr("warmup_epochs", "float", 0.0, doc="epochs (may be fractional) of linear warm-up from "
              "lr / warm-up steps to the full rate", minimum=0)

SCHEDULES = (
    Schedule(name="none", attrs=(WARMUP,), make=constant, doc="The optimizer's lr throughout."),
    Schedule(name="step", make=step_decay, attrs=(
        Attr("step_epochs", "int", doc="epochs between decays", minimum=1),
        Attr("gamma", "float", 0.1, doc="factor applied at each decay", minimum=0),
        WARMUP,
    ), doc="Multiply the rate by gamma every step_epochs epochs."),
    Schedule(name="cosine", make=cosine, attrs=(
        Attr("min_lr", "float", 0.0, doc="rate at the end of training", minimum=0),
        WARMUP,
    ), doc="Cosine decay from lr to min_lr over the steps after warm-up."),
)


@hookimpl
def cnnkit_register_schedules(register) -> None:
    for schedule in SCHEDULES:
        register(schedule)
