"""PyTorch as an independent oracle: tests that use it are skipped with a reason where it is missing."""

from __future__ import annotations

import pytest


def require_torch():
    """The torch module, or a skip saying how to get it."""
    return pytest.importorskip("torch", reason="PyTorch oracle: pip install torch==2.13.0")
