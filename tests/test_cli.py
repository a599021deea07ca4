"""The `cnnkit` command, in-process through main(argv) and as a real process through `python -m cnnkit`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cnnkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
SEED = str(ROOT / "specs" / "seed_convnet.yaml")
COMMANDS = ["summary", "train", "eval", "predict", "viz", "export", "verify", "inspect", "schema", "backends",
            "plugins"]

TINY = """\
name: tiny
input: [1, 8, 8]
layers:
  - {name: conv, type: conv2d, filters: 4, kernel: 3, padding: same}
  - {name: relu, type: relu}
  - {name: pool, type: max_pool2d, kernel: 2}
  - {name: flatten, type: flatten}
  - {name: fc, type: linear, units: 3}
train:
  data: {dataset: shapes, classes: 3, samples: 48, val_fraction: 0.25}
  batch_size: 12
  epochs: 2
  optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
"""

BAD_TYPE = """\
name: bad
input: [3, 8, 8]
layers:
  - {name: conv, type: conv2d, filters: 4, kernel: 3}
  - {name: act, type: rleu}
"""


def run(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CNNKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "cnnkit", *argv], capture_output=True, text=True,
                          timeout=120, env=env)


def assert_one_error_line(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("cnnkit: error: ")
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_summary(capsys):
    assert main(["summary", SEED]) == 0
    out = capsys.readouterr().out
    assert out.startswith("network 'seed_convnet': input 3x32x32, 8 layers")
    assert any(line.split()[:4] == ["conv1", "conv2d", "6x28x28", "456"] for line in out.splitlines())
    assert "parameters: 4,476" in out


def test_summary_as_a_process():
    result = run("summary", SEED)
    assert result.returncode == 0, result.stderr
    assert any(line.split()[:3] == ["pool2", "max_pool2d", "16x5x5"] for line in result.stdout.splitlines())
    assert result.stderr == ""


def test_schema_is_json(capsys, tmp_path):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert isinstance(schema, dict) and schema
    assert main(["schema", "-o", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text()) == schema


def test_bad_spec_is_one_line_with_its_position(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_TYPE)
    result = run("summary", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert_one_error_line(result.stderr, f"{path}:5:", "layer 'act'", "rleu", "relu")


@pytest.mark.parametrize("argv", [["summary", "missing.yaml"], ["train", "missing.yaml", "-o", "run"],
                                  ["eval", "no-such-run"]])
def test_missing_files(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert_one_error_line(capsys.readouterr().err, argv[1])
    assert not (tmp_path / "run").exists()


def test_invalid_yaml(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ninput: [3, 8, 8\nlayers: []\n")
    assert main(["summary", str(path)]) == 2
    assert_one_error_line(capsys.readouterr().err, str(path), "YAML")


def test_train_then_eval(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    out = tmp_path / "run"
    assert main(["train", str(spec), "-o", str(out), "--epochs", "1", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert f"cnnkit eval {out}" in captured.out
    assert (out / "metrics.jsonl").read_text().strip()

    assert main(["eval", str(out)]) == 0
    text = capsys.readouterr().out
    assert "val split, 12 examples" in text
    assert "accuracy" in text and "loss" in text
    table = text[text.index("true \\ predicted"):].splitlines()
    assert [line.split()[0] for line in table[1:]] == ["circle", "square", "triangle"]
    assert sum(int(line.split()[-1]) for line in table[1:]) == 12  # the examples column

    assert main(["train", str(spec), "-o", str(out), "--epochs", "1", "--resume", "--no-progress"]) == 0
    assert "epoch 1 of 1 done" in capsys.readouterr().out
    assert main(["train", str(spec), "-o", str(out), "--resume", "--no-progress"]) == 2  # 2 epochs now
    assert_one_error_line(capsys.readouterr().err, "different spec or recipe")
    assert main(["train", str(spec), "-o", str(out), "--epochs", "1"]) == 2
    assert_one_error_line(capsys.readouterr().err, "already holds a training run")
    assert main(["train", str(spec), "-o", str(out), "--epochs", "1", "--overwrite", "--no-progress"]) == 0


def test_export_and_inspect(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    out, model = tmp_path / "run", tmp_path / "tiny.onnx"
    assert main(["train", str(spec), "-o", str(out), "--epochs", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["export", str(out), "-o", str(model)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {model}" in text and "PASS" in text
    assert main(["inspect", str(model)]) == 0
    assert "Conv" in capsys.readouterr().out
    assert main(["inspect", str(spec)]) == 2
    assert_one_error_line(capsys.readouterr().err, str(spec))

    assert main(["verify", str(model), str(out)]) == 0
    assert "PASS: onnxruntime vs cnnkit" in capsys.readouterr().out
    assert main(["verify", str(model), str(tmp_path / "no-run")]) == 2
    assert_one_error_line(capsys.readouterr().err, "no-run", "no such run folder")
    assert main(["verify", str(spec), str(out)]) == 2
    assert_one_error_line(capsys.readouterr().err, "not an ONNX model")
    assert main(["export", str(out), "-o", str(tmp_path / "missing" / "m.onnx")]) == 2
    assert_one_error_line(capsys.readouterr().err, "cannot write")


def test_ctrl_c_says_how_to_resume(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY.replace("samples: 48", "samples: 12000").replace("epochs: 2", "epochs: 3"))
    out = tmp_path / "run"
    env = {**os.environ, "CNNKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    process = subprocess.Popen([sys.executable, "-m", "cnnkit", "train", str(spec), "-o", str(out),
                                "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    for line in process.stdout:
        if line.startswith("epoch 1/3"):
            process.send_signal(signal.SIGINT)
            break
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    assert re.search(r"^cnnkit: interrupted: stopped (in|after) epoch [12] of 3", stderr, re.MULTILINE)
    assert f"cnnkit: resume with: cnnkit train {spec} -o {out} --resume" in stderr

    assert main(["train", str(spec), "-o", str(out), "--resume", "--no-progress"]) == 0
    assert "epoch 3 of 3 done" in capsys.readouterr().out


def test_train_needs_a_train_section(tmp_path, capsys):
    spec = tmp_path / "untrainable.yaml"
    spec.write_text(TINY[:TINY.index("train:")])
    assert main(["train", str(spec), "-o", str(tmp_path / "run")]) == 2
    assert_one_error_line(capsys.readouterr().err, "train")


def test_backends(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("numpy  available")
    assert "conv2d" in out and "linear" in out


def test_plugins(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "cnnkit.layers.conv (built-in)" in out
    assert "layer types: conv2d" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cnnkit {command}")
    assert "examples:\n  cnnkit " + command in out


def test_help_and_usage_errors(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(command in out for command in COMMANDS)
    assert main([]) == 2
    assert "usage: cnnkit" in capsys.readouterr().err
    assert main(["train", SEED]) == 2  # -o is required
    assert "required: -o/--out" in capsys.readouterr().err


def test_help_as_a_process():
    result = run("--help")
    assert result.returncode == 0 and "cnnkit summary specs/seed_convnet.yaml" in result.stdout


def test_relative_data_paths_follow_the_spec_file(tmp_path, capsys, monkeypatch):
    import numpy as np

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(project / "data" / "set.npz", x=rng.standard_normal((40, 1, 8, 8)).astype(np.float32),
             y=np.arange(40) % 3)
    spec = project / "net.yaml"
    spec.write_text(TINY.replace("{dataset: shapes, classes: 3, samples: 48, val_fraction: 0.25}",
                                 "{dataset: npz, path: data/set.npz, val_fraction: 0.25}"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", str(spec), "-o", "run", "--epochs", "1", "--no-progress"]) == 0
    assert main(["eval", "run"]) == 0
    assert "val split, 10 examples" in capsys.readouterr().out
