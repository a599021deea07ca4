"""Keeps benchmarks/bench.py from rotting: a tiny subset runs end to end, and the target summary reads the
right figures. Timings themselves are never checked here (see the script for those)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("cnnkit_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_subset_runs_end_to_end():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--cases", "gemm", "lenet5", "--modes", "infer",
         "--batches", "1", "--threads", "1"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "| case | batch | threads | side | ms | spread | others | img/s | GFLOP/s | x torch | x c |" in out
    assert "| gemm 1024^3 | - | 1 | numpy |" in out
    assert "| lenet5 inference | 1 | 1 | numpy |" in out
    assert "| lenet5 inference | 1 | 1 | onnxruntime |" in out
    assert "Targets (batch 64, 2 threads, this run):" in out
    # nothing at batch 64 and 2 threads ran, so no target can be judged
    assert out.count("NOT MEASURED") == 7


def test_summary_judges_each_target_from_the_figures():
    bench = load_bench()
    ms = 1e-3
    results = {
        ("lenet5 train step", 64, 2, "c"): 4 * ms, ("lenet5 train step", 64, 2, "torch"): 5 * ms,
        ("vgg_small train step", 64, 2, "c"): 100 * ms, ("vgg_small train step", 64, 2, "torch"): 50 * ms,
        ("vgg_small train step", 64, 1, "c"): 180 * ms, ("vgg_small train step", 64, 2, "numpy"): 600 * ms,
        ("gemm 1024^3", 0, 2, "c"): 20 * ms, ("gemm 1024^3", 0, 2, "numpy"): 11 * ms,
        ("max_pool 2x2 fwd", 64, 2, "c"): 0.1 * ms, ("max_pool 2x2 fwd", 64, 2, "torch"): 5 * ms,
    }
    peers = bench.Peers(torch=object(), ort=None, c_missing=None, threads=[1, 2])
    lines = bench.summary(results, peers)
    assert lines[1].startswith("- lenet5 train step, C vs PyTorch img/s >= 1.0x: met: 1.25x")
    assert lines[2].startswith("- vgg_small train step, C vs PyTorch img/s >= 0.7x: NOT MET: 0.50x")
    assert lines[3].startswith("- SGEMM 1024^3, ours vs NumPy matmul GFLOP/s >= 0.6x: NOT MET: 0.55x")
    assert lines[4].startswith("- vgg_small train step, C 2 threads vs 1 thread >= 1.7x: met: 1.80x")
    assert lines[5].startswith("- vgg_small train step, C vs NumPy backend >= 5.0x: met: 6.00x")
    assert lines[6].startswith("- max_pool 2x2 fwd, C vs PyTorch >= 5.0x: met: 50.00x")
    assert lines[7].startswith("- avg_pool 2x2 fwd, C vs PyTorch >= 5.0x: NOT MEASURED")
    assert not any("UNRELIABLE" in line for line in lines)
    busy = {("gemm 1024^3", 0, 2): 0.3, ("vgg_small train step", 64, 1): 0.01}
    lines = bench.summary(results, peers, busy)
    assert lines[3].endswith("UNRELIABLE: other processes took 30% of the machine while this was timed)")
    assert [i for i, line in enumerate(lines) if "UNRELIABLE" in line] == [3]


def test_help_lists_every_option(capsys):
    bench = load_bench()
    with pytest.raises(SystemExit) as exit:
        bench.main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    for option in ("--cases", "--modes", "--batches", "--threads", "--repeats", "--rounds", "--wait-quiet",
                   "--no-torch", "--quick"):
        assert option in out


def test_the_c_vs_numpy_target_says_the_ceiling_the_machine_allows():
    bench = load_bench()
    ms = 1e-3
    vgg, gemm = "vgg_small train step", "gemm 1024^3"
    results = {(vgg, 64, 2, "c"): 80 * ms, (vgg, 64, 2, "numpy"): 180 * ms, (vgg, 64, 2, "torch"): 75 * ms,
               (gemm, 0, 2, "c"): 2 * 1024**3 / 180e9, (gemm, 0, 2, "numpy"): 2 * 1024**3 / 200e9}
    work = {(vgg, 64): 12e9, (gemm, 0): 2 * 1024**3}
    peers = bench.Peers(torch=None, ort=None, c_missing=None, threads=[2])
    line = bench.summary(results, peers, work=work)[5]
    assert line.startswith("- vgg_small train step, C vs NumPy backend >= 5.0x: NOT MET: 2.25x")
    # PyTorch's 160 GFLOP/s on the step is slower than NumPy's SGEMM: the ceiling takes the fastest
    assert line.endswith("; ceiling: the step is 12.0 GFLOP of conv and linear multiply-adds, >= 60 ms at "
                         "the fastest rate measured in this run (200 GFLOP/s, numpy on gemm 1024^3), so at "
                         "most 3.0x the NumPy backend's 180 ms)")


def test_gemm_flops_counts_forward_weight_and_input_gradients():
    import cnnkit

    bench = load_bench()
    net = cnnkit.build(cnnkit.load_spec(SCRIPT.parents[1] / "specs" / "vgg_small.yaml"))
    # multiply-adds per image: (input channels * 9) * filters * pixels per conv, then the linear layer
    convs = [(3, 32, 1024), (32, 32, 1024), (32, 64, 256), (64, 64, 256), (64, 128, 64)]
    macs = [c * 9 * f * p for c, f, p in convs] + [2048 * 8]
    assert bench.gemm_flops(net, 2, training=False) == 2 * 2 * sum(macs)
    # the first conv reads the network's input: no input gradient there
    assert bench.gemm_flops(net, 2, training=True) == 2 * 2 * (3 * sum(macs) - macs[0])
