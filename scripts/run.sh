#!/usr/bin/env bash
# Sets up .venv and runs the main job: train specs/seed_convnet.yaml on the built-in `shapes` data,
# then evaluate it on the held-out split.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
.venv/bin/cnnkit train specs/seed_convnet.yaml -o runs/seed "$@"
.venv/bin/cnnkit eval runs/seed
