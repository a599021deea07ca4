"""Shared test setup: plugins from the environment are not loaded unless a test asks for them.

Every test that runs the C backend (those in tests/backends/c, and any test parametrised with
backend="c") is marked `sanitize`, so scripts/sanitize.sh can run exactly those against a sanitizer build.
"""

from __future__ import annotations

import os

os.environ.setdefault("CNNKIT_DISABLE_PLUGIN_AUTOLOAD", "1")


def pytest_collection_modifyitems(items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_c = callspec is not None and callspec.params.get("backend") == "c"
        if on_c or item.nodeid.startswith("tests/backends/c/"):
            item.add_marker("sanitize")
