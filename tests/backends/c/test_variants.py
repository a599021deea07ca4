"""Every instruction-set variant this CPU runs, not only the one loaded: a child pytest re-runs the layer
battery (on "c") and the C kernel tests with CNNKIT_C_VARIANT naming the variant."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnkit.backends.c import library

TESTS = Path(__file__).resolve().parents[2]
BATTERY = ["layers", "backends/c/test_conv_paths.py", "backends/c/test_kernels.py",
           "backends/c/test_training.py"]


def other_variants() -> list[str]:
    if os.environ.get(library.LIBRARY_ENV) or os.environ.get(library.VARIANT_ENV) or library.unavailable():
        return []
    return library.runnable_variants()[1:]


@pytest.mark.parametrize("variant", other_variants())
def test_the_kernels_of_each_variant_pass_the_battery(lib, variant):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", "not numpy",
         *(str(TESTS / path) for path in BATTERY)],
        capture_output=True, text=True, timeout=300, cwd=TESTS.parent,
        env={**os.environ, library.VARIANT_ENV: variant})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
