from __future__ import annotations

import numpy as np
import pytest

import cnnkit
from cnnkit.summary import Summary, render, size_text, summarize

MLP = {"name": "mlp", "input": [20], "layers": [
    {"name": "fc1", "type": "linear", "units": 30},
    {"name": "fc2", "type": "linear", "units": 4, "bias": False},
]}

CONVNET = {"name": "tiny", "input": [3, 8, 8], "layers": [
    {"name": "conv", "type": "conv2d", "filters": 4, "kernel": 3},          # 4x6x6
    {"name": "relu", "type": "relu"},
    {"name": "flat", "type": "flatten"},                                   # 144
    {"name": "fc", "type": "linear", "units": 2},
]}

BRANCHES = {"name": "branches", "input": [6], "layers": [
    {"name": "a", "type": "linear", "units": 5},
    {"name": "b", "type": "linear", "units": 5, "inputs": ["input"]},
    {"name": "sum", "type": "add", "inputs": ["a", "b"]},
    {"name": "out", "type": "linear", "units": 2},
]}


def test_counts_come_from_the_spec_alone():
    s = summarize(MLP)
    assert [(r.name, r.type, r.out_shape, r.params, r.macs) for r in s.layers] == [
        ("fc1", "linear", (30,), 20 * 30 + 30, 20 * 30),
        ("fc2", "linear", (4,), 30 * 4, 30 * 4),
    ]
    assert (s.params, s.macs, s.buffers) == (750, 720, 0)
    assert s.activations == 20 + 30 + 4
    assert s.activation_bytes == 4 * s.activations


def test_a_network_and_its_spec_give_the_same_numbers():
    from_spec = summarize(CONVNET)
    from_net = summarize(cnnkit.build(CONVNET))
    assert from_spec == from_net
    as_float64 = summarize(cnnkit.build(CONVNET, dtype=np.float64))
    assert as_float64.activation_bytes == 2 * from_spec.activation_bytes


def test_conv_rows_show_the_dense_layer_they_replace():
    s = summarize(CONVNET)
    conv = s.layers[0]
    assert conv.out_shape == (4, 6, 6)
    assert conv.params == 4 * 3 * 3 * 3 + 4
    assert conv.macs == 4 * 6 * 6 * 3 * 3 * 3
    assert conv.dense_weights == (3 * 8 * 8) * (4 * 6 * 6)
    assert all(r.dense_weights is None for r in s.layers[1:])
    text = render(s)
    assert "as dense layer" in text and f"{conv.dense_weights:,}" in text


def test_table_lists_every_layer_and_the_totals():
    text = str(summarize(MLP))
    lines = text.splitlines()
    assert lines[0] == "network 'mlp': input 20, 2 layers"
    assert any(line.split()[:3] == ["fc1", "linear", "30"] for line in lines)
    assert any(line.split() == ["total", "750", "720"] for line in lines)
    assert "parameters: 750 (2.9 KiB as float32)" in text
    assert "as dense layer" not in text and "inputs" not in lines[2]


def test_inputs_column_appears_only_for_branching_graphs():
    text = render(summarize(BRANCHES))
    assert "inputs" in text.splitlines()[2]
    assert any(line.split()[:4] == ["sum", "add", "a,", "b"] for line in text.splitlines())


def test_summary_reads_spec_files(tmp_path):
    path = tmp_path / "mlp.yaml"
    cnnkit.save_spec(cnnkit.load_spec(MLP), path)
    assert summarize(str(path)) == summarize(MLP)
    assert isinstance(summarize(path), Summary)


@pytest.mark.parametrize("nbytes, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                          (5 * 2**20, "5.0 MiB"), (3 * 2**30, "3.0 GiB")])
def test_size_text(nbytes, text):
    assert size_text(nbytes) == text
