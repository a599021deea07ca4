"""Shared test setup: plugins from the environment are not loaded unless a test asks for them."""

from __future__ import annotations

import os

os.environ.setdefault("CNNKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
