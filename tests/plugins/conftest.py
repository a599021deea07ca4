"""The example plugins in plugins/, installed once per test session the way a user installs them.

`pip install --no-deps --no-build-isolation --target DIR` builds each package from a copy of its folder
(so no build/ or .egg-info is left in the checkout) with the setuptools of this environment (so no network
is needed) into a throwaway folder: the environment itself is never changed. Tests put that folder on
sys.path, or on PYTHONPATH for a `cnnkit` subprocess.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cnnkit import graph
from cnnkit.plugins import plugin_manager, registry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {"swish": ROOT / "plugins" / "cnnkit-swish", "winograd": ROOT / "plugins" / "cnnkit-winograd"}
"""Entry-point name -> the example package's folder."""


@dataclass(frozen=True)
class Installed:
    """Where the example plugins were installed, and how to run cnnkit with them."""

    target: Path

    def env(self, **changes: str | None) -> dict[str, str]:
        """The environment of a subprocess that sees the installed plugins, with autoload on unless
        `changes` say otherwise (a value None removes the variable)."""
        env = {**os.environ, "PYTHONPATH": str(self.target)}
        env.pop("CNNKIT_DISABLE_PLUGIN_AUTOLOAD", None)
        env.pop("CNNKIT_PLUGINS", None)
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def run(self, *args: str, cwd: Path | None = None, **env: str | None) -> subprocess.CompletedProcess:
        """`python -m cnnkit ARGS` (or `python -c CODE` when args[0] is "-c") with the plugins installed."""
        command = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", "cnnkit", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env=self.env(**env),
                              cwd=cwd)


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Installed:
    work = tmp_path_factory.mktemp("plugins")
    sources = [shutil.copytree(folder, work / "src" / folder.name,
                               ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
               for folder in EXAMPLES.values()]
    target = work / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
           "--no-index"]
    result = subprocess.run([*pip, "--target", str(target), *map(str, sources)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"pip could not install the example plugins:\n{result.stderr}"
    return Installed(target)


@pytest.fixture
def with_installed(installed, monkeypatch) -> Installed:
    """This process sees the installed example plugins through the default registry, as a user's would
    (loaded from their entry points, selected by CNNKIT_PLUGINS); cnnkit's one-time notices are reset."""
    monkeypatch.syspath_prepend(str(installed.target))
    monkeypatch.setenv("CNNKIT_PLUGINS", ",".join(EXAMPLES))
    monkeypatch.setattr(graph, "_notices_given", set())
    plugin_manager.cache_clear()
    registry.cache_clear()
    yield installed
    plugin_manager.cache_clear()
    registry.cache_clear()
