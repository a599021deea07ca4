"""cnnkit: declare a CNN in YAML, train it on the CPU, extend it with plugins, deploy it through ONNX."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.graph import Network
from cnnkit.hookspecs import hookimpl
from cnnkit.spec import Spec, load_spec, save_spec

__version__ = "0.1.0"

# Importing a submodule sets it as an attribute of its parent package, so the first import of cnnkit.train
# (by the plugin manager, say) would replace the train() function below; importing it first prevents that.
importlib.import_module("cnnkit.train")


def build(spec: Any, backend: str = "numpy", seed: int = 0, dtype: Any = np.float32) -> Network:
    """A network with freshly initialised weights from a spec (path, YAML text, dict or Spec)."""
    from cnnkit.plugins import registry

    return Network(load_spec(spec), registry(), backend=backend, seed=seed, dtype=dtype)


def train(net: Network, recipe: Any = None, out: Any = None, **options: Any) -> Any:
    """Train `net` with `recipe` (default: its spec's train section); see cnnkit.train.trainer.fit."""
    from cnnkit.train.trainer import fit

    return fit(net, recipe, out=out, **options)


def load(run_dir: Any, backend: str = "numpy") -> Network:
    """The network saved in a run folder (spec + latest checkpoint weights), ready to predict."""
    from cnnkit.train.checkpoint import load_network

    return load_network(run_dir, backend=backend)


def export_onnx(net: Network, path: Any, opset: int = 17, fold_batchnorm: bool = False, softmax: bool = False,
                class_names: Any = None) -> Any:
    """Write `net` as an ONNX file (eval mode, dynamic batch); see cnnkit.onnx.export.export_onnx."""
    from cnnkit.onnx.export import export_onnx as write

    return write(net, path, opset=opset, fold_batchnorm=fold_batchnorm, softmax=softmax,
                 class_names=class_names)


def set_num_threads(count: int) -> None:
    """Size the C backend's thread pool (default: CNNKIT_NUM_THREADS, else every CPU this process may use).

    Results do not depend on it: the C kernels split their work the same way for every thread count.
    """
    from cnnkit.backends.c.library import set_num_threads as set_threads

    set_threads(count)


def get_num_threads() -> int:
    """The C backend's thread count."""
    from cnnkit.backends.c.library import get_num_threads as get_threads

    return get_threads()


def verify_onnx(net: Network, path: Any, **options: Any) -> Any:
    """Run the file in onnxruntime and `net` in cnnkit on the same batches; see cnnkit.onnx.verify."""
    from cnnkit.onnx.verify import verify_onnx as verify

    return verify(net, path, **options)


__all__ = ["CnnkitError", "Network", "Spec", "build", "export_onnx", "get_num_threads", "hookimpl", "load",
           "load_spec", "save_spec", "set_num_threads", "train", "verify_onnx", "__version__"]
