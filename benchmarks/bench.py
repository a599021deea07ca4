"""The C backend next to NumPy and PyTorch: times and ratios measured in one run, on one machine.

Cases (each at 1 and 2 threads):
- gemm 1024^3: GFLOP/s of our SGEMM (cnnkit.backends.c.gemm) and of NumPy's matmul (OpenBLAS).
- conv 3x3 32->64 fwd+bwd: batch 64 of 32x32x32, pad 1, forward then backward with the input gradient,
  on the C backend, the NumPy backend (both as bound kernels, as inside a network) and PyTorch's
  functional conv2d with autograd, all with the same weights and inputs (checked to agree first).
- max_pool / avg_pool 2x2 fwd: batch 64 of 32x32x32, stride 2, bound kernels against F.max_pool2d /
  F.avg_pool2d on the same NCHW tensor.
- lenet5 / vgg_small train step: batch 64, forward, cross-entropy, backward and an SGD (momentum 0.9) step;
  each backend with its own loss and optimizer (the C ones on "c"), PyTorch as nn.Sequential with the same
  weights (checked to agree in eval first).
The ratio columns are the other side's time over C's: above 1, C is faster.

Threads: cnnkit.set_num_threads for C, torch.set_num_threads for PyTorch and threadpoolctl for NumPy's
OpenBLAS (see bench_numpy.py, whose helpers this reuses, for the caveats: sides run one after the other,
and OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are removed for this run because they slow NumPy down). For a
PyTorch peer that does not page-fault its buffers back in on every call, run with
GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824 .

    .venv/bin/python benchmarks/bench.py [--repeats 7] [--threads 1 2] [--cases gemm conv max_pool ...]
                                         [--no-torch]
"""

from __future__ import annotations

import os
import sys

_SLOW_BLAS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if __name__ == "__main__" and any(k in os.environ for k in _SLOW_BLAS):
    print(f"bench: restarting without {', '.join(k for k in _SLOW_BLAS if k in os.environ)} "
          f"(they make OpenBLAS pick a slower kernel)", file=sys.stderr, flush=True)
    os.execve(sys.executable, [sys.executable, *sys.argv],
              {k: v for k, v in os.environ.items() if k not in _SLOW_BLAS})

import argparse  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from bench_numpy import blas_text, median_time, threads, torch_module, torch_train_step  # noqa: E402

import cnnkit  # noqa: E402
from cnnkit.attrs import parse_attrs  # noqa: E402
from cnnkit.backends.c import backend_info, gemm  # noqa: E402
from cnnkit.plugins import registry  # noqa: E402
from cnnkit.registry import OpSetup  # noqa: E402
from cnnkit.train import from_section, on_backend  # noqa: E402

BATCH = 64


@dataclass
class Case:
    """One thing to time on several sides; `flops` (if known) gives GFLOP/s."""

    name: str
    sides: dict[str, Callable[[], Any]]
    flops: float | None = None


def gemm_case(size: int = 1024) -> Case:
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    ours, theirs = np.empty((size, size), np.float32), np.empty((size, size), np.float32)
    np.testing.assert_allclose(gemm(a, b, ours), np.matmul(a, b, out=theirs), rtol=1e-3, atol=1e-3)
    sides = {"c": lambda: gemm(a, b, ours), "numpy": lambda: np.matmul(a, b, out=theirs)}
    return Case(f"gemm {size}^3", sides, flops=2.0 * size**3)


def bound_layer(layer_type: str, backend: str, input_shape: tuple[int, ...], params: dict[str, np.ndarray],
                **attrs: Any) -> Any:
    """The layer's kernel on `backend` bound to batch 64, computing its input gradient (as in a network)."""
    layer = registry().layer(layer_type)
    attrs = parse_attrs(layer.attrs, attrs)
    out_shape = tuple(layer.infer_shape(attrs, [input_shape]))
    setup = OpSetup(name=layer_type, attrs=attrs, in_shapes=((BATCH, *input_shape),),
                    out_shape=(BATCH, *out_shape), dtype=np.dtype(np.float32), rng=np.random.default_rng(0))
    return registry().kernel(layer_type, backend).make(setup)


def conv_case(torch: Any | None) -> Case:
    rng = np.random.default_rng(1)
    shape, attrs = (32, 32, 32), {"filters": 64, "kernel": 3, "padding": 1}
    params = {"weight": rng.standard_normal((64, 32, 3, 3), dtype=np.float32) * 0.1,
              "bias": rng.standard_normal(64, dtype=np.float32)}
    x = rng.standard_normal((BATCH, *shape), dtype=np.float32)
    grad_out = rng.standard_normal((BATCH, 64, 32, 32), dtype=np.float32)
    sides: dict[str, Callable[[], Any]] = {}
    outputs = {}
    for backend in ("c", "numpy"):
        op = bound_layer("conv2d", backend, shape, params, **attrs)
        grads = {k: np.zeros_like(v) for k, v in params.items()}
        outputs[backend] = op.forward([x], params, {}, True).copy()

        def run(op=op, grads=grads) -> None:
            op.forward([x], params, {}, True)
            op.backward(grad_out, params, grads)

        sides[backend] = run
    np.testing.assert_allclose(outputs["c"], outputs["numpy"], rtol=1e-3, atol=1e-3)
    if torch is not None:
        conv2d = torch.nn.functional.conv2d
        tx = torch.from_numpy(x).requires_grad_()
        tw, tb = (torch.from_numpy(params[k]).requires_grad_() for k in ("weight", "bias"))
        tg = torch.from_numpy(grad_out)
        np.testing.assert_allclose(conv2d(tx, tw, tb, padding=1).detach().numpy(), outputs["c"], rtol=1e-3,
                                   atol=1e-3)
        sides["torch"] = lambda: conv2d(tx, tw, tb, padding=1).backward(tg)
    flops = 3 * 2.0 * BATCH * 64 * 32 * 9 * 32 * 32  # forward, weight gradient, input gradient
    return Case("conv 3x3 32->64 fwd+bwd", sides, flops=flops)


def pool_case(torch: Any | None, layer: str) -> Case:
    x = np.random.default_rng(2).standard_normal((BATCH, 32, 32, 32), dtype=np.float32)
    sides: dict[str, Callable[[], Any]] = {}
    outputs = {}
    for backend in ("c", "numpy"):
        op = bound_layer(layer, backend, (32, 32, 32), {}, kernel=2)
        outputs[backend] = op.forward([x], {}, {}, True).copy()
        sides[backend] = lambda op=op: op.forward([x], {}, {}, True)
    np.testing.assert_allclose(outputs["c"], outputs["numpy"], rtol=1e-5, atol=1e-6)
    if torch is not None:
        pool = getattr(torch.nn.functional, layer)
        tx = torch.from_numpy(x)
        np.testing.assert_allclose(pool(tx, 2).numpy(), outputs["c"], rtol=1e-5, atol=1e-6)
        sides["torch"] = lambda: pool(tx, 2)
    return Case(f"{layer.split('_')[0]}_pool 2x2 fwd", sides)


def train_step(net: cnnkit.Network, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    """One SGD step with the network's backend's own loss and optimizer (bench_numpy's recipe)."""
    loss = from_section(on_backend(registry().loss, net), {"type": "cross_entropy"})
    sgd = from_section(on_backend(registry().optimizer, net), {"type": "sgd", "lr": 0.01, "momentum": 0.9},
                       net.params, net.grads)

    def run() -> None:
        loss.forward(net.forward(x, training=True), y)
        net.backward(loss.backward())
        sgd.step(0.01)

    return run


def train_case(torch: Any | None, name: str) -> Case:
    spec = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "specs", f"{name}.yaml")
    rng = np.random.default_rng(3)
    nets = {backend: cnnkit.build(spec, backend=backend, seed=0) for backend in ("c", "numpy")}
    x = rng.standard_normal((BATCH, *nets["c"].input_shape), dtype=np.float32)
    y = rng.integers(0, nets["c"].output_shape[0], BATCH)
    np.testing.assert_allclose(nets["c"].forward(x), nets["numpy"].forward(x), rtol=1e-3, atol=1e-4)
    sides = {backend: train_step(net, x, y) for backend, net in nets.items()}
    if torch is not None:
        module = torch_module(nets["numpy"], torch)
        with torch.no_grad():
            module.eval()
            expected = nets["numpy"].forward(x)
            np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), expected, rtol=1e-3, atol=1e-4)
        sides["torch"] = torch_train_step(torch, module, torch.from_numpy(x), torch.from_numpy(y))
    return Case(f"{name} train step", sides)


CASES: dict[str, Callable[[Any | None], Case]] = {
    "gemm": lambda torch: gemm_case(),
    "conv": conv_case,
    "max_pool": lambda torch: pool_case(torch, "max_pool2d"),
    "avg_pool": lambda torch: pool_case(torch, "avg_pool2d"),
    "lenet5": lambda torch: train_case(torch, "lenet5"),
    "vgg_small": lambda torch: train_case(torch, "vgg_small"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    args = parser.parse_args(argv)
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("bench: PyTorch not importable, leaving it out (pip install torch==2.13.0)")
    print(f"cnnkit C backend: {backend_info() or 'not available'}; NumPy {np.__version__} ({blas_text()}); "
          f"PyTorch {torch.__version__ if torch else 'not used'}; median of {args.repeats}; GLIBC_TUNABLES "
          f"{'set' if os.environ.get('GLIBC_TUNABLES') else 'unset'}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} (other work skews the times)")
    header = ("case", "threads", "side", "ms", "GFLOP/s", "side / c (time)")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|")
    for name in args.cases:
        case = CASES[name](torch)
        for count in args.threads:
            with threads(count, torch):
                cnnkit.set_num_threads(count)
                times = {side: median_time(run, args.repeats) for side, run in case.sides.items()}
            for side, seconds in times.items():
                cells = [case.name, str(count), side, f"{seconds * 1e3:.2f}",
                         "-" if case.flops is None else f"{case.flops / seconds / 1e9:.1f}",
                         f"{seconds / times['c']:.2f}"]
                print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
