"""Run folders and checkpoints: safetensors for arrays, JSON for everything else, no pickle.

    out/spec.yaml                               the spec with the recipe used (for people; dump_spec)
    out/checkpoint.json                         the latest checkpoint: format, version, position, RNG state,
                                                class names, history, spec text, and the weights file's
                                                name and sha256
    out/checkpoint-<step>-<sha8>.safetensors    "param/<layer.name>", "buffer/<layer.name>", "optim/<key>"
    out/metrics.jsonl                           one JSON object per finished epoch (written by the trainer)

Every file is written atomically (temp file in the same folder, fsync, os.replace, fsync the folder). A save
writes a new weights file under a new name (its step and checksum), then replaces checkpoint.json, and only
then removes older weights files, so a kill at any moment leaves checkpoint.json naming a complete file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy

from cnnkit.errors import CheckpointError, CnnkitError
from cnnkit.graph import Network

FORMAT = "cnnkit-checkpoint"
FORMAT_VERSION = 1
META_FILE = "checkpoint.json"
SPEC_FILE = "spec.yaml"
METRICS_FILE = "metrics.jsonl"
WEIGHTS_NAME = re.compile(r"checkpoint-\d{6,}-[0-9a-f]{8}\.safetensors")
PREFIXES = ("param/", "buffer/", "optim/")

_FIELDS: dict[str, type | tuple[type, ...]] = {
    "cnnkit_version": str, "spec": str, "dtype": str, "epoch": int, "step_in_epoch": int,
    "global_step": int, "rng": dict, "class_names": list, "history": list, "partial": dict,
    "weights": str, "sha256": str, "spec_source": str,
}


@dataclass
class Checkpoint:
    """One point of a training run.

    epoch: epochs finished; step_in_epoch: steps done in the next one; partial: the trainer's running sums
    for that unfinished epoch. tensors: "param/...", "buffer/..." and "optim/..." arrays. spec_source: the
    spec file trained (absolute), so relative data paths in it still resolve when the run is reloaded.
    """

    spec: str
    dtype: str
    epoch: int
    step_in_epoch: int
    global_step: int
    rng: dict[str, Any]
    class_names: list[str]
    history: list[dict[str, Any]]
    partial: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    spec_source: str = "<spec>"


def tensors_of(net: Network, optimizer: Any = None) -> dict[str, np.ndarray]:
    """The arrays a checkpoint holds, by their prefixed keys (the live arrays, not copies)."""
    tensors = {f"param/{k}": v for k, v in net.params.items()}
    tensors.update({f"buffer/{k}": v for k, v in net.buffers.items()})
    if optimizer is not None:
        tensors.update({f"optim/{k}": v for k, v in optimizer.state().items()})
    return tensors


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a reader sees the old or the new content, never a mix."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):
        return  # Windows cannot open a folder; os.replace is already durable there
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(run_dir: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """Save `checkpoint` as the folder's latest; returns the weights file written."""
    from cnnkit import __version__

    run_dir = Path(run_dir)
    tensors = {k: np.require(v, requirements="C") for k, v in checkpoint.tensors.items()}  # keeps 0-d
    data = safetensors.numpy.save(tensors, metadata={"format": FORMAT})
    digest = hashlib.sha256(data).hexdigest()
    weights = run_dir / f"checkpoint-{checkpoint.global_step:06d}-{digest[:8]}.safetensors"
    atomic_write(weights, data)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "cnnkit_version": __version__,
            **{k: v for k, v in asdict(checkpoint).items() if k != "tensors"},
            "weights": weights.name, "sha256": digest}
    atomic_write(run_dir / META_FILE, (json.dumps(meta, indent=1) + "\n").encode())
    for old in run_dir.glob("checkpoint-*.safetensors"):
        if old.name != weights.name:
            old.unlink(missing_ok=True)
    for temp in run_dir.glob(".*.tmp"):
        temp.unlink(missing_ok=True)
    return weights


def read_checkpoint(run_dir: str | os.PathLike) -> Checkpoint:
    """The latest checkpoint of a run folder, verified; anything wrong is a one-line CheckpointError."""
    run_dir = Path(run_dir)
    meta = _read_meta(run_dir)
    weights = run_dir / meta["weights"]
    try:
        data = weights.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{weights}: missing; {run_dir / META_FILE} refers to it") from None
    except OSError as error:
        raise CheckpointError(f"{weights}: cannot read: {error.strerror}") from None
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"{weights}: checksum mismatch; the file is truncated, corrupt or was changed "
                              f"after it was written")
    try:
        tensors = safetensors.numpy.load(data)
    except Exception as error:  # safetensors raises its own error types for every kind of damage
        raise CheckpointError(f"{weights}: not a readable safetensors file: {error}") from None
    foreign = sorted(k for k in tensors if not k.startswith(PREFIXES))
    if foreign:
        raise CheckpointError(f"{weights}: not a cnnkit checkpoint; keys {foreign[:3]} lack the "
                              f"param/, buffer/ or optim/ prefix")
    return Checkpoint(**{k: meta[k] for k in Checkpoint.__dataclass_fields__ if k != "tensors"},
                      tensors=tensors)


def _read_meta(run_dir: Path) -> dict[str, Any]:
    path = run_dir / META_FILE
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir}: no checkpoint ({META_FILE} is missing)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error}); the file is truncated or corrupt") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read: {error.strerror}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: not a cnnkit checkpoint (format {found!r}, expected {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format_version {meta.get('format_version')!r}; this "
                              f"cnnkit reads version {FORMAT_VERSION} (written by a different cnnkit?)")
    for key, kind in _FIELDS.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise CheckpointError(f"{path}: field '{key}' is missing or not {_kind_name(kind)}; the "
                                  f"file is damaged")
    if not WEIGHTS_NAME.fullmatch(meta["weights"]):
        raise CheckpointError(f"{path}: field 'weights' ({meta['weights']!r}) is not a checkpoint file name")
    return meta


def _kind_name(kind: Any) -> str:
    return {str: "a string", int: "an integer", dict: "a mapping", list: "a list"}[kind]


def restore(net: Network, checkpoint: Checkpoint, optimizer: Any = None, source: str = "checkpoint") -> None:
    """Copy a checkpoint's arrays into `net` (and `optimizer`), after checking every name, shape and dtype;
    nothing changes on a mismatch. Without an optimizer, its state in the checkpoint is ignored."""
    own = tensors_of(net, optimizer)
    saved = {k: v for k, v in checkpoint.tensors.items()
             if optimizer is not None or not k.startswith("optim/")}
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{source}: arrays do not fit network '{net.spec.name}': missing "
                              f"{missing or 'none'}, unexpected {unexpected or 'none'}")
    for key, value in saved.items():
        if value.shape != own[key].shape or value.dtype != own[key].dtype:
            raise CheckpointError(f"{source}: '{key}' is {value.dtype} {value.shape}, the network expects "
                                  f"{own[key].dtype} {own[key].shape}")
    for key, value in saved.items():
        np.copyto(own[key], value)
    try:
        net.rng.bit_generator.state = checkpoint.rng
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: the saved random-generator state does not load: {error}") from None


def load_network(run_dir: str | os.PathLike, backend: str = "numpy") -> Network:
    """The network of a run folder's latest checkpoint: its spec, dtype and weights, ready to predict."""
    from cnnkit.plugins import registry
    from cnnkit.spec import load_spec

    checkpoint = read_checkpoint(run_dir)
    source = str(Path(run_dir) / META_FILE)
    try:
        spec = dataclasses.replace(load_spec(checkpoint.spec, registry()), source=checkpoint.spec_source)
        net = Network(spec, registry(), backend=backend, dtype=np.dtype(checkpoint.dtype))
    except (CnnkitError, TypeError) as error:
        raise CheckpointError(f"{source}: the saved spec does not build here: {error}") from None
    restore(net, checkpoint, source=source)
    return net


def write_text(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def history_lines(history: list[Mapping[str, Any]]) -> str:
    """metrics.jsonl content: one JSON object per epoch record."""
    return "".join(json.dumps(record) + "\n" for record in history)


def read_history(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The epoch records of a run folder's metrics.jsonl; a line that is not a JSON object is a
    CheckpointError naming it."""
    path = Path(run_dir) / METRICS_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir}: no {METRICS_FILE}; is it a run folder written by "
                              f"'cnnkit train'?") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: cannot read: {error}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or "epoch" not in record:
            raise CheckpointError(f"{path}:{number}: not an epoch record (a JSON object with 'epoch')")
        records.append(record)
    return records
