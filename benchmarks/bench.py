"""cnnkit's NumPy and C backends next to onnxruntime and PyTorch: times and ratios measured in one run.

Per-layer cases (batch 64, float32, NCHW; `--cases gemm conv max_pool avg_pool`):
- gemm 1024^3: GFLOP/s of our SGEMM (cnnkit.backends.c.gemm) and of NumPy's matmul (OpenBLAS).
- conv 3x3 32->64 fwd+bwd: 32x32x32 inputs, pad 1, forward then backward with the input gradient, on the
  C and NumPy backends (bound kernels, as inside a network) and PyTorch's functional conv2d with autograd.
- max_pool / avg_pool 2x2, forward and forward+backward: 32x32x32 inputs, stride 2, bound kernels against
  F.max_pool2d / F.avg_pool2d on the same NCHW tensor.
Whole networks (`--cases lenet5 vgg_small`; specs/*.yaml), at each of `--batches` (default 1 and 64):
- train step: forward, cross-entropy, backward and an SGD (momentum 0.9) step; each backend with its own
  loss and optimizer (the C ones on "c"); PyTorch as nn.Sequential with torch.optim.SGD.
- inference: Network.forward in eval mode; onnxruntime on the file cnnkit.export_onnx writes from the same
  weights (a session per thread count, intra_op_num_threads set to it); PyTorch eval under inference_mode.
Every side starts from the same weights and inputs and is checked to compute the same outputs first.

Columns: ms per call (the median of --repeats timed repeats), its spread ((slowest - fastest) / median:
how noisy it is), "others": the share of the machine other processes used while that case was timed at
that thread count (from /proc/stat; above 5 % the figure is skewed, and a target judged from it is flagged
UNRELIABLE in the summary), images/second (and GFLOP/s where the work is known: for networks, the conv and
linear layers' multiply-adds, forward and, in training, both gradients), then speed ratios: "x
torch" is PyTorch's time over the side's (above 1, the side is faster than PyTorch) and "x c" the same
against the C backend. A repeat runs the call enough times to last at least 20 ms (batch-1 calls take
microseconds). The repeats are taken in --rounds rounds (default 3): in each round the sides take turns,
each warmed up for at least 0.1 s and then timed for its share of the repeats, so a burst of other work on
the machine spoils one round of every side rather than all of one side. Sides are not interleaved call by
call: the worker threads of OpenBLAS, PyTorch's OpenMP and onnxruntime keep spinning for a while after a
call and would steal the second core from the next library; the warm-up outlasts that. The last lines
check the targets of the C-backend issue against the figures of this run (the C-vs-NumPy one with its
ceiling: the least time the step's multiply-adds take at the fastest rate anything reached in the run) and
say how much CPU other
processes took meanwhile. Compare ratios, not absolute times across machines (see
/work/shared/PERF-NOTES.md).

Threads: cnnkit.set_num_threads for C, torch.set_num_threads for PyTorch, intra_op_num_threads for
onnxruntime and, for NumPy's OpenBLAS, threadpoolctl (optional, not a cnnkit dependency:
`.venv/bin/pip install threadpoolctl`; without it NumPy keeps the thread count fixed at start-up, e.g. by
OPENBLAS_NUM_THREADS, and the header says so). OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, when set, make
OpenBLAS pick a slower kernel: the script restarts itself without them (for this run only) and prints the
kernel threadpoolctl reports. For a PyTorch peer that does not page-fault its buffers back in on every
call, run with GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824
(the header says whether it was set).

    .venv/bin/python benchmarks/bench.py [--cases gemm conv max_pool avg_pool lenet5 vgg_small]
        [--modes train infer] [--batches 1 64] [--threads 1 2] [--repeats 7] [--rounds 3]
        [--wait-quiet SECONDS] [--no-torch] [--quick]
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
import contextlib  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import cnnkit  # noqa: E402
from cnnkit.attrs import parse_attrs  # noqa: E402
from cnnkit.graph import Network  # noqa: E402
from cnnkit.layers.conv import resolve_padding  # noqa: E402
from cnnkit.plugins import registry  # noqa: E402
from cnnkit.registry import OpSetup  # noqa: E402
from cnnkit.spec.model import INPUT  # noqa: E402
from cnnkit.train import from_section, on_backend  # noqa: E402

SPECS = Path(__file__).resolve().parents[1] / "specs"
BATCH = 64
"""Batch of the per-layer cases (and of every target)."""
SIDES = ("numpy", "c", "onnxruntime", "torch")
"""Row order within a case."""
WARMUP_SECONDS = 0.1
NOISY = 0.05
"""Other processes using more than this share of the machine make a figure untrustworthy."""
REPEAT_SECONDS = 0.02


@dataclass
class Case:
    """One thing to time on several sides. `sides` run it once per call; `by_threads` holds sides that
    depend on the thread count (an onnxruntime session per count). `flops` (if known) gives GFLOP/s and
    `batch` (images per call, if any) images/second."""

    name: str
    sides: dict[str, Callable[[], Any]]
    flops: float | None = None
    batch: int | None = BATCH
    by_threads: dict[int, dict[str, Callable[[], Any]]] = field(default_factory=dict)

    def at(self, count: int) -> dict[str, Callable[[], Any]]:
        sides = {**self.sides, **self.by_threads.get(count, {})}
        return {side: sides[side] for side in SIDES if side in sides}


@dataclass
class Peers:
    """What this run compares with: the imported peer modules (None when left out) and why they are not."""

    torch: Any | None
    ort: Any | None
    c_missing: str | None
    threads: list[int]
    notes: list[str] = field(default_factory=list)


# --- timing and threads ---------------------------------------------------------------------------------

def warm_up(run: Callable[[], Any], seconds: float) -> float:
    """Calls `run` for at least `seconds` (and at least once), which also outlasts the previous library's
    worker threads still spinning; returns the mean seconds per call."""
    calls, start = 0, time.perf_counter()
    while True:
        run()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls


def time_sides(sides: dict[str, Callable[[], Any]], repeats: int, rounds: int, warmup: float = WARMUP_SECONDS,
               repeat_seconds: float = REPEAT_SECONDS) -> dict[str, list[float]]:
    """Seconds per call of each side, `repeats` samples each, taken in `rounds` rounds: in each round
    every side in turn is warmed up for `warmup` seconds, then timed for its share of the repeats. A burst
    of other work on the machine so spoils one round of every side rather than all of one side. A
    repeat makes as many calls as last `repeat_seconds` (judged from the first warm-up)."""
    samples: dict[str, list[float]] = {side: [] for side in sides}
    per_repeat: dict[str, int] = {}
    rounds = max(1, min(rounds, repeats))
    for index in range(rounds):
        count = repeats // rounds + (index < repeats % rounds)
        for side, run in sides.items():
            seconds = warm_up(run, warmup)
            calls = per_repeat.setdefault(side, max(1, math.ceil(repeat_seconds / seconds)))
            for _ in range(count):
                start = time.perf_counter()
                for _ in range(calls):
                    run()
                samples[side].append((time.perf_counter() - start) / calls)
    return samples


def busy_seconds() -> tuple[float, float] | None:
    """(CPU seconds every process on the machine has used, CPU seconds this process has used), from
    /proc/stat (Linux only; None elsewhere): their difference over a run is other work skewing it."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
    mine = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), mine.user + mine.system


def others_share(before: tuple[float, float] | None, after: tuple[float, float] | None,
                 seconds: float) -> float | None:
    """The share of the machine (0..1) other processes used between two busy_seconds() readings."""
    if before is None or after is None or seconds <= 0:
        return None
    used = max(0.0, (after[0] - before[0]) - (after[1] - before[1]))
    return min(1.0, used / seconds / (os.cpu_count() or 1))


def wait_quiet(limit: float, window: float = 0.5) -> None:
    """Waits (up to `limit` seconds) until other processes use at most NOISY of the machine over `window`."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        before, start = busy_seconds(), time.perf_counter()
        time.sleep(window)
        share = others_share(before, busy_seconds(), time.perf_counter() - start)
        if share is None or share <= NOISY:
            return


def spread(samples: list[float]) -> float:
    """(slowest - fastest) / median of the samples: how noisy the figure is."""
    return (max(samples) - min(samples)) / statistics.median(samples)


@contextlib.contextmanager
def threads(count: int, peers: Peers) -> Iterator[None]:
    """`count` threads for C, PyTorch and NumPy's OpenBLAS (onnxruntime: a session per count)."""
    if peers.c_missing is None:
        cnnkit.set_num_threads(count)
    if peers.torch is not None:
        peers.torch.set_num_threads(count)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=count, user_api="blas"):
        yield


def blas_text() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ("threadpoolctl not installed (optional: pip install threadpoolctl), so NumPy's OpenBLAS "
                "threads stay as the environment set them for every thread count")
    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    libraries = [f"{i['internal_api']} {i.get('version')} kernel {i.get('architecture')}" for i in infos]
    return "threads via threadpoolctl: " + "; ".join(libraries)


# --- per-layer cases ------------------------------------------------------------------------------------

def bound_layer(layer_type: str, backend: str, input_shape: tuple[int, ...], **attrs: Any) -> Any:
    """The layer's kernel on `backend` bound to batch 64, computing its input gradient (as in a network)."""
    layer = registry().layer(layer_type)
    attrs = parse_attrs(layer.attrs, attrs)
    out_shape = tuple(layer.infer_shape(attrs, [input_shape]))
    setup = OpSetup(name=layer_type, attrs=attrs, in_shapes=((BATCH, *input_shape),),
                    out_shape=(BATCH, *out_shape), dtype=np.dtype(np.float32), rng=np.random.default_rng(0),
                    needs_input_grad=True)
    return registry().kernel(layer_type, backend).make(setup)


def backends(peers: Peers) -> tuple[str, ...]:
    return ("numpy",) if peers.c_missing else ("numpy", "c")


def gemm_cases(peers: Peers, size: int = 1024) -> list[Case]:
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    theirs = np.empty((size, size), np.float32)
    sides: dict[str, Callable[[], Any]] = {"numpy": lambda: np.matmul(a, b, out=theirs)}
    if not peers.c_missing:
        from cnnkit.backends.c import gemm

        ours = np.empty((size, size), np.float32)
        np.testing.assert_allclose(gemm(a, b, ours), np.matmul(a, b, out=theirs), rtol=1e-3, atol=1e-3)
        sides["c"] = lambda: gemm(a, b, ours)
    return [Case(f"gemm {size}^3", sides, flops=2.0 * size**3, batch=None)]


def conv_cases(peers: Peers) -> list[Case]:
    rng = np.random.default_rng(1)
    shape, attrs = (32, 32, 32), {"filters": 64, "kernel": 3, "padding": 1}
    params = {"weight": rng.standard_normal((64, 32, 3, 3), dtype=np.float32) * 0.1,
              "bias": rng.standard_normal(64, dtype=np.float32)}
    x = rng.standard_normal((BATCH, *shape), dtype=np.float32)
    grad_out = rng.standard_normal((BATCH, 64, 32, 32), dtype=np.float32)
    sides: dict[str, Callable[[], Any]] = {}
    outputs = {}
    for backend in backends(peers):
        op = bound_layer("conv2d", backend, shape, **attrs)
        grads = {k: np.zeros_like(v) for k, v in params.items()}
        outputs[backend] = op.forward([x], params, {}, True).copy()

        def run(op=op, grads=grads) -> None:
            op.forward([x], params, {}, True)
            op.backward(grad_out, params, grads)

        sides[backend] = run
    check(outputs, rtol=1e-3, atol=1e-3)
    torch = peers.torch
    if torch is not None:
        conv2d = torch.nn.functional.conv2d
        tx = torch.from_numpy(x).requires_grad_()
        tw, tb = (torch.from_numpy(params[k]).requires_grad_() for k in ("weight", "bias"))
        tg = torch.from_numpy(grad_out)
        np.testing.assert_allclose(conv2d(tx, tw, tb, padding=1).detach().numpy(), outputs["numpy"],
                                   rtol=1e-3, atol=1e-3)
        sides["torch"] = lambda: conv2d(tx, tw, tb, padding=1).backward(tg)
    flops = 3 * 2.0 * BATCH * 64 * 32 * 9 * 32 * 32  # forward, weight gradient, input gradient
    return [Case("conv 3x3 32->64 fwd+bwd", sides, flops=flops)]


def pool_cases(peers: Peers, layer: str) -> list[Case]:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((BATCH, 32, 32, 32), dtype=np.float32)
    grad_out = rng.standard_normal((BATCH, 32, 16, 16), dtype=np.float32)
    forward: dict[str, Callable[[], Any]] = {}
    both: dict[str, Callable[[], Any]] = {}
    outputs = {}
    for backend in backends(peers):
        op = bound_layer(layer, backend, (32, 32, 32), kernel=2)
        outputs[backend] = op.forward([x], {}, {}, True).copy()
        forward[backend] = lambda op=op: op.forward([x], {}, {}, True)

        def run(op=op) -> None:
            op.forward([x], {}, {}, True)
            op.backward(grad_out, {}, {})

        both[backend] = run
    check(outputs, rtol=1e-5, atol=1e-6)
    torch = peers.torch
    if torch is not None:
        pool = getattr(torch.nn.functional, layer)
        tx = torch.from_numpy(x)
        tx_grad = torch.from_numpy(x).requires_grad_()
        tg = torch.from_numpy(grad_out)
        np.testing.assert_allclose(pool(tx, 2).numpy(), outputs["numpy"], rtol=1e-5, atol=1e-6)
        forward["torch"] = lambda: pool(tx, 2)
        both["torch"] = lambda: pool(tx_grad, 2).backward(tg)
    kind = layer.split("_")[0]
    return [Case(f"{kind}_pool 2x2 fwd", forward), Case(f"{kind}_pool 2x2 fwd+bwd", both)]


def check(outputs: dict[str, np.ndarray], rtol: float, atol: float) -> None:
    """Every side's output agrees with the NumPy backend's before anything is timed."""
    for side, out in outputs.items():
        np.testing.assert_allclose(out, outputs["numpy"], rtol=rtol, atol=atol, err_msg=f"{side} vs numpy")


# --- whole networks -------------------------------------------------------------------------------------

def torch_module(net: Network, torch: Any) -> Any:
    """nn.Sequential with the network's weights, for chain-shaped specs of the common layer types."""
    nn = torch.nn
    modules = []
    for node in net.nodes:
        a, kind = node.spec.attrs, node.layer.name
        if kind == "conv2d":
            top, left, bottom, right = resolve_padding(a["padding"], node.in_shapes[0][1:], a["kernel"],
                                                       a["stride"], a["dilation"])
            if (top, left) != (bottom, right):
                raise NotImplementedError(f"{node.name}: asymmetric padding")
            module = nn.Conv2d(node.in_shapes[0][0], a["filters"], a["kernel"], a["stride"], (top, left),
                               a["dilation"], a["groups"], a["bias"])
        elif kind == "max_pool2d":
            module = nn.MaxPool2d(a["kernel"], a["stride"] or a["kernel"], ceil_mode=a["ceil_mode"])
        elif kind == "relu":
            module = nn.ReLU()
        elif kind == "flatten":
            module = nn.Flatten()
        elif kind == "linear":
            module = nn.Linear(node.in_shapes[0][0], a["units"], a["bias"])
        elif kind == "batch_norm2d":
            module = nn.BatchNorm2d(node.in_shapes[0][0], a["eps"], a["momentum"], a["affine"])
        else:
            raise NotImplementedError(f"{node.name}: layer type {kind} in the PyTorch peer")
        with torch.no_grad():
            for key, value in module.state_dict().items():
                source = net.state_dict().get(f"{node.name}.{key}")
                if source is not None:
                    value.copy_(torch.from_numpy(source))
        modules.append(module)
    return nn.Sequential(*modules)


def train_step(net: Network, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    """One SGD step with the network's backend's own loss and optimizer."""
    loss = from_section(on_backend(registry().loss, net), {"type": "cross_entropy"})
    sgd = from_section(on_backend(registry().optimizer, net), {"type": "sgd", "lr": 0.01, "momentum": 0.9},
                       net.params, net.grads)

    def run() -> None:
        loss.forward(net.forward(x, training=True), y)
        net.backward(loss.backward())
        sgd.step(0.01)

    return run


def torch_train_step(torch: Any, module: Any, x: Any, y: Any) -> Callable[[], None]:
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)

    def run() -> None:
        module.train()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(x), y).backward()
        optimizer.step()

    return run


def torch_inference(torch: Any, module: Any, x: Any) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode():
            return module(x)

    module.eval()
    return run


def ort_sessions(peers: Peers, net: Network, x: np.ndarray, expected: np.ndarray) -> dict[int, Callable]:
    """An onnxruntime session per thread count on the file cnnkit.export_onnx writes for `net`."""
    ort = peers.ort
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.onnx"
        cnnkit.export_onnx(net, path)
        model = path.read_bytes()
    out: dict[int, Callable] = {}
    for count in peers.threads:
        options = ort.SessionOptions()
        options.intra_op_num_threads = count
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        (name,) = [i.name for i in session.get_inputs()]
        (output,) = [o.name for o in session.get_outputs()]
        np.testing.assert_allclose(session.run([output], {name: x})[0], expected, rtol=1e-3, atol=1e-4)
        out[count] = lambda session=session, output=output, feed={name: x}: session.run([output], feed)
    return out


def gemm_flops(net: Network, batch: int, training: bool) -> float:
    """The floating-point work of the layers with weights (conv, linear: GEMM-class multiply-adds, 2 flops
    each) for one call: the forward pass, plus in training the weight gradient and, except where the input
    is the network's, the input gradient, each as much work again. The rest (pooling, activations, the
    optimizer) is memory-bound and left out: this is the work a kernel at peak FLOP/s cannot avoid."""
    total = 0.0
    for node in net.nodes:
        if node.layer.macs is None or not any(name == "weight" for name in net.layer_params(node.name)):
            continue
        passes = 1 + (1 + any(name != INPUT for name in node.inputs) if training else 0)
        total += 2.0 * node.layer.macs(node.spec.attrs, node.in_shapes, node.out_shape) * passes
    return total * batch


def network_cases(peers: Peers, name: str, modes: list[str], batches: list[int]) -> list[Case]:
    spec = SPECS / f"{name}.yaml"
    cases = []
    for batch in batches:
        for mode in modes:
            # fresh networks per case: a timed training step changes the weights
            nets = {backend: cnnkit.build(spec, backend=backend, seed=0) for backend in backends(peers)}
            rng = np.random.default_rng(3)
            x = rng.standard_normal((batch, *nets["numpy"].input_shape), dtype=np.float32)
            y = rng.integers(0, nets["numpy"].output_shape[0], batch)
            expected = nets["numpy"].forward(x)
            check({backend: net.forward(x) for backend, net in nets.items()}, rtol=1e-3, atol=1e-4)
            if mode == "train":
                sides = {backend: train_step(net, x, y) for backend, net in nets.items()}
            else:
                sides = {backend: lambda net=net, x=x: net.forward(x) for backend, net in nets.items()}
            case = Case(f"{name} {'train step' if mode == 'train' else 'inference'}", sides, batch=batch,
                        flops=gemm_flops(nets["numpy"], batch, mode == "train"))
            if mode == "infer" and peers.ort is not None:
                for count, run in ort_sessions(peers, nets["numpy"], x, expected).items():
                    case.by_threads[count] = {"onnxruntime": run}
            torch = peers.torch
            if torch is not None:
                module = torch_module(nets["numpy"], torch)
                tx = torch.from_numpy(x)
                with torch.no_grad():
                    module.eval()
                    np.testing.assert_allclose(module(tx).numpy(), expected, rtol=1e-3, atol=1e-4)
                case.sides["torch"] = (torch_train_step(torch, module, tx, torch.from_numpy(y))
                                       if mode == "train" else torch_inference(torch, module, tx))
            cases.append(case)
    return cases


# --- the run --------------------------------------------------------------------------------------------

LAYER_CASES: dict[str, Callable[[Peers], list[Case]]] = {
    "gemm": gemm_cases,
    "conv": conv_cases,
    "max_pool": lambda peers: pool_cases(peers, "max_pool2d"),
    "avg_pool": lambda peers: pool_cases(peers, "avg_pool2d"),
}
NETWORKS = ("lenet5", "vgg_small")

Results = dict[tuple[str, int, int, str], float]
"""(case name, batch or 0, threads, side) -> median seconds per call."""


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


Busy = dict[tuple[str, int, int], float]
"""(case name, batch or 0, threads) -> share of the machine other processes used while it was timed."""

Work = dict[tuple[str, int], float]
"""(case name, batch or 0) -> its flops per call, where known."""


def run_case(case: Case, peers: Peers, repeats: int, rounds: int, quick: bool, results: Results,
             busy: Busy, work: Work, wait: float = 0.0) -> None:
    if case.flops is not None:
        work[(case.name, case.batch or 0)] = case.flops
    for count in peers.threads:
        if wait > 0:
            wait_quiet(wait)
        with threads(count, peers):
            before, start = busy_seconds(), time.perf_counter()
            samples = time_sides(case.at(count), repeats, rounds, *((0.0, 0.0) if quick else ()))
            share = others_share(before, busy_seconds(), time.perf_counter() - start)
        if share is not None:
            busy[(case.name, case.batch or 0, count)] = share
        times = {side: statistics.median(values) for side, values in samples.items()}
        for side, seconds in times.items():
            results[(case.name, case.batch or 0, count, side)] = seconds
            vs = {ref: times[ref] / seconds if ref in times else None for ref in ("torch", "c")}
            cells = [case.name, "-" if case.batch is None else str(case.batch), str(count), side,
                     f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.2f}",
                     f"{spread(samples[side]):.0%}", "-" if share is None else f"{share:.0%}",
                     "-" if case.batch is None else f"{case.batch / seconds:,.0f}",
                     "-" if case.flops is None else f"{case.flops / seconds / 1e9:.1f}",
                     fmt_ratio(vs["torch"]), fmt_ratio(vs["c"])]
            print("| " + " | ".join(cells) + " |", flush=True)


def fastest_rate(results: Results, work: Work) -> tuple[float, str] | None:
    """The most flops per second any side reached in this run (SGEMM, a conv, a whole network), and which:
    at least that much the machine can do."""
    rates = [(work[(case, batch)] / seconds, f"{side} on {case}" + (f" at batch {batch}" if batch else ""))
             for (case, batch, _, side), seconds in results.items() if (case, batch) in work]
    return max(rates) if rates else None


def ceiling_text(flops: float | None, fastest: tuple[float, str] | None, numpy_seconds: float | None) -> str:
    """How fast the C backend could be at best: the step's GEMM-class work at the fastest rate measured on
    this machine in this run, as a ratio to the NumPy backend's measured time."""
    if flops is None or fastest is None or numpy_seconds is None:
        return ""
    rate, where = fastest
    least = flops / rate
    return (f"; ceiling: the step is {flops / 1e9:.1f} GFLOP of conv and linear multiply-adds, >= "
            f"{least * 1e3:.0f} ms at the fastest rate measured in this run ({rate / 1e9:.0f} GFLOP/s, "
            f"{where}), so at most {numpy_seconds / least:.1f}x the NumPy backend's "
            f"{numpy_seconds * 1e3:.0f} ms")


def summary(results: Results, peers: Peers, busy: Busy | None = None, work: Work | None = None) -> list[str]:
    """The issue's targets (batch 64, 2 threads), each met / not met with the figures of this run, flagged
    when other processes took more than NOISY of the machine while its figures were timed."""
    t = 2
    busy = busy or {}
    work = work or {}

    def get(case: str, side: str, batch: int = BATCH, count: int = t) -> float | None:
        return results.get((case, batch, count, side))

    def speedup(case: str, side: str, ref: str, batch: int = BATCH) -> tuple[float | None, str]:
        mine, theirs = get(case, side, batch), get(case, ref, batch)
        if mine is None or theirs is None:
            return None, f"{case} {side} / {ref} at {t} threads not measured"
        unit = "GFLOP/s" if batch == 0 else "img/s"
        work = 2.0 * 1024**3 / 1e9 if batch == 0 else batch
        return theirs / mine, f"{side} {work / mine:,.1f} vs {ref} {work / theirs:,.1f} {unit}"

    vgg, lenet = "vgg_small train step", "lenet5 train step"
    checks: list[tuple[str, float, tuple[float | None, str], list[tuple[str, int, int]]]] = [
        ("lenet5 train step, C vs PyTorch img/s", 1.0, speedup(lenet, "c", "torch"), [(lenet, BATCH, t)]),
        ("vgg_small train step, C vs PyTorch img/s", 0.7, speedup(vgg, "c", "torch"), [(vgg, BATCH, t)]),
        ("SGEMM 1024^3, ours vs NumPy matmul GFLOP/s", 0.6, speedup("gemm 1024^3", "c", "numpy", batch=0),
         [("gemm 1024^3", 0, t)]),
    ]
    one, two = get(vgg, "c", count=1), get(vgg, "c", count=2)
    checks.append(("vgg_small train step, C 2 threads vs 1 thread", 1.7,
                   (one / two, f"{BATCH / two:,.1f} vs {BATCH / one:,.1f} img/s") if one and two
                   else (None, "C at 1 and 2 threads not both measured"), [(vgg, BATCH, 1), (vgg, BATCH, t)]))
    ratio, detail = speedup(vgg, "c", "numpy")
    ceiling = ceiling_text(work.get((vgg, BATCH)), fastest_rate(results, work), get(vgg, "numpy"))
    checks += [
        ("vgg_small train step, C vs NumPy backend", 5.0, (ratio, detail + ceiling), [(vgg, BATCH, t)]),
        ("max_pool 2x2 fwd, C vs PyTorch", 5.0, speedup("max_pool 2x2 fwd", "c", "torch"),
         [("max_pool 2x2 fwd", BATCH, t)]),
        ("avg_pool 2x2 fwd, C vs PyTorch", 5.0, speedup("avg_pool 2x2 fwd", "c", "torch"),
         [("avg_pool 2x2 fwd", BATCH, t)]),
    ]
    lines = [f"Targets (batch {BATCH}, {t} threads, this run):"]
    for what, target, (ratio, detail), blocks in checks:
        worst = max((busy[b] for b in blocks if b in busy), default=0.0)
        if ratio is not None and worst > NOISY:
            detail += (f"; UNRELIABLE: other processes took {worst:.0%} of the machine while this was "
                       f"timed")
        if ratio is None:
            verdict = "NOT MEASURED"
            if peers.torch is None and "PyTorch" in what:
                detail = "PyTorch left out"
            elif peers.c_missing and "C" in what:
                detail = f"C backend unavailable: {peers.c_missing}"
            lines.append(f"- {what} >= {target:.1f}x: {verdict} ({detail})")
        else:
            verdict = "met" if ratio >= target else "NOT MET"
            lines.append(f"- {what} >= {target:.1f}x: {verdict}: {ratio:.2f}x ({detail})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    choices = [*LAYER_CASES, *NETWORKS]
    parser.add_argument("--cases", nargs="+", choices=choices, default=choices,
                        help="what to run (default: all)")
    parser.add_argument("--modes", nargs="+", choices=["train", "infer"], default=["train", "infer"],
                        help="network cases: training step and/or inference (default: both)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, BATCH],
                        help=f"batch sizes of the network cases (default: 1 {BATCH}; layers use {BATCH})")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per figure (default 7)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds the repeats are spread over, sides taking turns (default 3)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each case and thread count, wait up to SECONDS until other processes "
                             f"use at most {NOISY * 100:.0f}%% of the machine (default 0: don't wait)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--quick", action="store_true",
                        help="2 repeats (unless --repeats), no warm-up beyond one call: a smoke test")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 7)

    torch = ort = None
    notes = []
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            notes.append("PyTorch not importable, left out (pip install torch==2.13.0)")
    try:
        import onnxruntime as ort
    except ImportError:
        notes.append("onnxruntime not importable, left out")
    from cnnkit.backends.c import backend_info, unavailable

    peers = Peers(torch, ort, unavailable(), args.threads, notes)
    if peers.c_missing:
        notes.append(f"C backend unavailable ({peers.c_missing}): NumPy and peers only")
    print(f"cnnkit C backend: {backend_info() or 'not available'}; NumPy {np.__version__} ({blas_text()}); "
          f"onnxruntime {ort.__version__ if ort else 'not used'}; "
          f"PyTorch {torch.__version__ if torch else 'not used'}; median of {repeats} in "
          f"{max(1, min(args.rounds, repeats))} rounds"
          f"{' (--quick: no warm-up)' if args.quick else ''}; GLIBC_TUNABLES "
          f"{'set' if os.environ.get('GLIBC_TUNABLES') else 'unset'}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} (other work skews the times)")
    for note in notes:
        print(f"bench: {note}")
    header = ("case", "batch", "threads", "side", "ms", "spread", "others", "img/s", "GFLOP/s", "x torch",
              "x c")
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] * 4 + ["---:"] * (len(header) - 4)) + "|", flush=True)
    results: Results = {}
    busy: Busy = {}
    work: Work = {}
    start, before = time.perf_counter(), busy_seconds()
    for name in args.cases:
        cases = (LAYER_CASES[name](peers) if name in LAYER_CASES
                 else network_cases(peers, name, args.modes, args.batches))
        for case in cases:
            run_case(case, peers, repeats, args.rounds, args.quick, results, busy, work, args.wait_quiet)
    print()
    print("\n".join(summary(results, peers, busy, work)))
    elapsed = time.perf_counter() - start
    after = busy_seconds()
    share = others_share(before, after, elapsed)
    others = "" if share is None else (
        f"; other processes used {share:.0%} of the machine meanwhile (column 'others': while each row was "
        f"timed); more than {NOISY:.0%} skews the times, 2-thread figures most")
    print(f"\n(timing took {elapsed:.0f} s{others})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
