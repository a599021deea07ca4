"""dropout: at train time zero each value with probability `rate` and scale the rest by 1 / (1 - rate).

Inverted dropout keeps the expected value of every output equal to its input, so eval mode is the
identity and an exported network has no dropout node. The mask is drawn from the network's generator,
which checkpoints save, so a resumed run draws the same masks.
"""

from __future__ import annotations

from cnnkit.attrs import Attr
from cnnkit.hookspecs import hookimpl
from cnnkit.layers.activation import same_shape
from cnnkit.registry import LayerType


def to_onnx(ctx) -> str:
    """Eval mode is the identity: the layer's output is its input's value."""
    return ctx.inputs[0]


DROPOUT = LayerType(
    name="dropout",
    attrs=(Attr("rate", "float", 0.5, doc="probability of zeroing each value in training", minimum=0,
                maximum=1, exclusive_max=True),),
    infer_shape=same_shape,
    to_onnx=to_onnx,
    macs=lambda attrs, shapes, out: 0,
    doc="Inverted dropout: zero with probability rate and scale by 1/(1-rate) in training; identity in eval.",
)


@hookimpl
def cnnkit_register_layers(register) -> None:
    register(DROPOUT)
