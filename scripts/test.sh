#!/usr/bin/env bash
# Sets up .venv (numpy, onnx, onnxruntime, pytest, hypothesis, scikit-learn, Pillow, matplotlib, PyTorch
# 2.13 as an oracle) and runs the lint and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
# PyTorch is an oracle for the parity tests; where this exact CPU build cannot be had they are skipped.
.venv/bin/python -m pip install -q "torch==2.13.0" || echo "PyTorch 2.13.0 not installable: torch parity tests will be skipped"
.venv/bin/python -m ruff check src tests plugins
.venv/bin/python -m pytest "$@"
