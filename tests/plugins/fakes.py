"""Installed distributions made by hand: a dist-info folder (METADATA, entry_points.txt) and modules in a
folder that goes on sys.path, which is all importlib.metadata and the plugin loader look at. Quicker than
pip for the many small broken plugins the tests need."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path


def fake_distribution(root: Path, name: str, entry_points: Mapping[str, str],
                      modules: Mapping[str, str] = {}, version: str = "0.1") -> Path:  # noqa: B006
    """Write distribution `name` into the folder `root`: modules (module name -> source) and entry points
    of group `cnnkit` (entry-point name -> "module" or "module:attribute"). Returns root."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[cnnkit]\n{lines}")
    return root


GOOD_PLUGIN = """
    import numpy as np
    from cnnkit import hookimpl
    from cnnkit.registry import Kernel, LayerType

    class Double:
        def __init__(self, setup):
            self.out = np.empty(setup.out_shape, setup.dtype)
            self.grad = np.empty(setup.in_shapes[0], setup.dtype)
        def forward(self, inputs, params, buffers, training):
            return np.multiply(inputs[0], 2, out=self.out)
        def backward(self, grad_out, params, grads):
            return [np.multiply(grad_out, 2, out=self.grad)]

    @hookimpl
    def cnnkit_register_layers(register):
        register(LayerType(name="double", attrs=(), infer_shape=lambda attrs, shapes: shapes[0]))

    @hookimpl
    def cnnkit_register_kernels(register):
        register(Kernel(layer="double", backend="numpy", make=Double))
"""
"""A working plugin with a layer type `double` (y = 2x), installed next to each broken one."""
