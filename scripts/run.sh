#!/usr/bin/env bash
# The main job, on a fresh machine: set up .venv, train specs/seed_convnet.yaml on the built-in `shapes`
# data, evaluate it on the held-out split, export it to ONNX and verify the file with onnxruntime.
# Extra arguments go to `cnnkit train` (e.g. --epochs 3).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
.venv/bin/cnnkit train specs/seed_convnet.yaml -o runs/seed --overwrite "$@"
.venv/bin/cnnkit eval runs/seed
.venv/bin/cnnkit export runs/seed -o runs/seed/seed_convnet.onnx --no-verify
.venv/bin/cnnkit verify runs/seed/seed_convnet.onnx runs/seed
.venv/bin/cnnkit inspect runs/seed/seed_convnet.onnx
