"""The training loop: data from the registry, mini-batch steps, per-epoch metrics and checkpoints.

Everything a step depends on is either saved in the checkpoint (weights, buffers, optimizer state, the
network's RNG, the running sums of the unfinished epoch) or recomputed from the recipe (the data and its
split from the seed, each epoch's shuffle from (seed, epoch), each batch's augmentation from (seed, epoch,
step), the learning rate from the global step), so `resume=True` continues bit for bit where the
checkpoint left off, even in the middle of an epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.data import BASE_DIR
from cnnkit.data.dataset import ArrayDataset
from cnnkit.errors import CheckpointError, DataError, SpecError
from cnnkit.graph import Network
from cnnkit.spec import Spec, TrainSpec, dump_spec, load_spec, spec_to_dict
from cnnkit.train import from_section, on_backend
from cnnkit.train.checkpoint import (
    META_FILE,
    METRICS_FILE,
    SPEC_FILE,
    Checkpoint,
    history_lines,
    read_checkpoint,
    restore,
    tensors_of,
    write_checkpoint,
    write_text,
)
from cnnkit.train.metrics import evaluate

Callback = Callable[[dict[str, Any]], None]


@dataclass
class History(Sequence):
    """The per-epoch records of a run, as written to metrics.jsonl: epoch (1-based), step (global steps
    done), lr (of the epoch's last step), train_loss, train_acc, val_loss, val_acc (None without a
    validation split) and seconds. Indexing and iterating go over the records."""

    epochs: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, index: Any) -> Any:
        return self.epochs[index]

    def metric(self, name: str) -> list[Any]:
        """One column, e.g. history.metric("val_acc")."""
        return [record[name] for record in self.epochs]


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (or a callback raising KeyboardInterrupt) at a step boundary, after a
    checkpoint of that step was written; `fit(..., resume=True)` continues from it.

    epoch is 1-based (the epoch in progress), step the steps done in it; history the finished epochs.
    """

    def __init__(self, epoch: int, step: int, steps_per_epoch: int, out: Path | None,
                 history: History) -> None:
        self.epoch, self.step, self.steps_per_epoch, self.out, self.history = (
            epoch, step, steps_per_epoch, out, history)
        saved = f"checkpoint saved in {out}" if out is not None else "nothing saved (no run folder)"
        super().__init__(f"stopped at epoch {epoch} step {step} of {steps_per_epoch}; {saved}")


def fit(net: Network, recipe: TrainSpec | Mapping[str, Any] | None = None,
        out: str | os.PathLike | None = None, *, resume: bool = False, overwrite: bool = False,
        progress: bool | None = None, callbacks: Sequence[Callback] = ()) -> History:
    """Train `net` in place and return its per-epoch history.

    recipe: a TrainSpec or a dict like a spec's `train:` section; default: net.spec.train.
    out: the run folder (spec.yaml, checkpoint, metrics.jsonl); None keeps nothing on disk.
    resume: continue the run in `out` from its checkpoint; the spec and recipe must be the ones it used.
    overwrite: start afresh even if `out` holds a run (otherwise that is a CheckpointError).
    progress: True: a tqdm bar; False: one plain line per epoch; None (default): a bar on a terminal.
    callbacks: called with {"event": "step", epoch, step, global_step, loss, lr} after every step and with
    {"event": "epoch", **record} after every epoch; raising KeyboardInterrupt stops training like Ctrl-C.

    Ctrl-C stops at the end of the current step, writes a checkpoint of it and raises TrainingInterrupted;
    a second Ctrl-C stops at once (the previous checkpoint stays).
    """
    spec = run_spec(net, recipe)
    train, val = load_data(net, spec.train)
    trainer = _Trainer(net, spec, train, val, Path(out) if out is not None else None,
                       _Progress(progress), tuple(callbacks))
    if resume:
        trainer.resume()
    else:
        trainer.start(overwrite)
    with _deferred_interrupt() as stop:
        trainer.run(stop)
    return History(trainer.history)


def run_spec(net: Network, recipe: TrainSpec | Mapping[str, Any] | None) -> Spec:
    """net.spec with `recipe` as its train section, validated like a spec file's."""
    if recipe is None:
        if net.spec.train is None:
            raise SpecError(f"network '{net.spec.name}' has no 'train' section; add one to the spec or pass "
                            f"a recipe", source=net.spec.source)
        return net.spec
    if isinstance(recipe, TrainSpec):
        recipe = spec_to_dict(dataclasses.replace(net.spec, train=recipe))["train"]
    if not isinstance(recipe, Mapping):
        raise SpecError(f"a recipe is a TrainSpec or a mapping like a spec's 'train' section, got "
                        f"{type(recipe).__name__}")
    return load_spec({**spec_to_dict(net.spec), "train": dict(recipe)}, net.registry)


def load_data(net: Network, recipe: TrainSpec | None = None) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, validation) from the recipe's dataset (default: the spec's), checked against the network's
    input and output."""
    recipe = recipe if recipe is not None else run_spec(net, None).train
    attrs = {k: v for k, v in recipe.data.items() if k != "dataset"}
    if not net.spec.source.startswith("<"):
        attrs[BASE_DIR] = Path(net.spec.source).parent
    name = recipe.data["dataset"]
    dataset = net.registry.dataset(name).load(attrs, net.input_shape, recipe.seed)
    if not isinstance(dataset, ArrayDataset):
        raise DataError(f"dataset '{name}' returned {type(dataset).__name__}, expected an ArrayDataset")
    shape = tuple(dataset.x.shape[1:])
    if shape != net.input_shape:
        raise DataError(f"dataset '{name}' holds examples of shape {_fmt(shape)}, but network "
                        f"'{net.spec.name}' takes input {_fmt(net.input_shape)}; make the spec's 'input' "
                        f"match the data")
    output = net.output_shape
    if len(output) != 1:
        raise DataError(f"network '{net.spec.name}' outputs shape {_fmt(output)}; a classifier needs a flat "
                        f"output (classes,), e.g. a final linear layer")
    if dataset.classes > output[0]:
        raise DataError(f"dataset '{name}' has {dataset.classes} classes, but the output layer "
                        f"'{net.nodes[-1].name}' has {output[0]} units; give it units: {dataset.classes}")
    train, val = dataset.split(attrs.get("val_fraction", 0.0), recipe.seed)
    if len(train) == 0:
        raise DataError(f"dataset '{name}' leaves no training examples ({len(dataset)} examples, "
                        f"val_fraction {attrs.get('val_fraction', 0.0)})")
    return train, val


def absolute_source(source: str) -> str:
    """A spec file's absolute path; "<dict>"-style names of specs that came from no file stay as they are."""
    return source if source.startswith("<") else str(Path(source).resolve())


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffle of epoch `epoch` (0-based), a function of (seed, epoch) alone: a resume recomputes it."""
    return np.random.default_rng([seed, 0x5A4E, epoch]).permutation(n)


def augment_rng(seed: int, epoch: int, step: int) -> np.random.Generator:
    """The generator that augments training batch `step` of epoch `epoch` (both 0-based): a function of
    (seed, epoch, step) alone, so a resume in the middle of an epoch draws the same."""
    return np.random.default_rng([seed, 0xA467, epoch, step])


class _Trainer:
    """The loop's state: position (epoch, step_in_epoch, global_step), running sums and history."""

    def __init__(self, net: Network, spec: Spec, train: ArrayDataset, val: ArrayDataset, out: Path | None,
                 progress: _Progress, callbacks: tuple[Callback, ...]) -> None:
        self.net, self.spec, self.recipe = net, spec, spec.train
        self.train, self.val, self.out = train, val, out
        self.progress, self.callbacks = progress, callbacks
        self.steps_per_epoch = math.ceil(len(train) / self.recipe.batch_size)
        self.loss = from_section(on_backend(net.registry.loss, net), self.recipe.loss)
        try:
            self.optimizer = from_section(on_backend(net.registry.optimizer, net), self.recipe.optimizer,
                                          net.params, net.grads)
        except SpecError as error:
            raise error.located(source=spec.source, mark=spec.mark("train", "optimizer")) from None
        if "lr" not in self.recipe.optimizer:
            raise SpecError(f"optimizer '{self.recipe.optimizer['type']}' has no 'lr' attribute, which the "
                            f"schedule scales", source=spec.source, mark=spec.mark("train", "optimizer"))
        self.schedule = from_section(net.registry.schedule, self.recipe.schedule,
                                     base_lr=self.recipe.optimizer["lr"],
                                     total_steps=self.recipe.epochs * self.steps_per_epoch,
                                     steps_per_epoch=self.steps_per_epoch)
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.partial = _new_partial()
        self.history: list[dict[str, Any]] = []

    def start(self, overwrite: bool) -> None:
        if self.out is not None and (self.out / META_FILE).exists() and not overwrite:
            raise CheckpointError(f"{self.out} already holds a training run; resume it (resume=True, "
                                  f"--resume), overwrite it, or choose another folder")
        self.progress.message(f"training '{self.spec.name}': {len(self.train)} examples "
                              f"({len(self.val)} held out), {self.steps_per_epoch} steps per epoch")
        if self.out is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        write_text(self.out / SPEC_FILE, dump_spec(self.spec))
        write_text(self.out / METRICS_FILE, "")
        self.save()

    def resume(self) -> None:
        if self.out is None:
            raise CheckpointError("resuming needs the run folder (out) that holds the checkpoint")
        checkpoint = read_checkpoint(self.out)
        source = str(self.out / META_FILE)
        _check_same_run(source, checkpoint, dump_spec(self.spec), self.net, self.train)
        restore(self.net, checkpoint, self.optimizer, source)
        self.epoch, self.step_in_epoch = checkpoint.epoch, checkpoint.step_in_epoch
        self.global_step, self.history = checkpoint.global_step, checkpoint.history
        self.partial = {**_new_partial(), **checkpoint.partial}
        write_text(self.out / METRICS_FILE, history_lines(self.history))
        self.progress.message(f"resuming '{self.spec.name}' at epoch {self.epoch + 1} step "
                              f"{self.step_in_epoch} of {self.steps_per_epoch}")

    def run(self, stop: _StopFlag) -> None:
        while self.epoch < self.recipe.epochs:
            self.train_epoch(stop)
            self.end_epoch(stop)

    def train_epoch(self, stop: _StopFlag) -> None:
        order = epoch_order(self.recipe.seed, self.epoch, len(self.train))
        started = time.perf_counter() - self.partial["seconds"]
        with self.progress.epoch(self.epoch, self.recipe.epochs, self.steps_per_epoch,
                                 self.step_in_epoch) as advance:
            for x, y in self.train.batches(self.recipe.batch_size, order, start=self.step_in_epoch):
                if self.train.augment is not None:
                    x = self.train.augment(x, augment_rng(self.recipe.seed, self.epoch, self.step_in_epoch))
                loss, lr = self.step(x, y)
                self.partial["seconds"] = time.perf_counter() - started
                advance(loss)
                self.boundary(stop, {"event": "step", "epoch": self.epoch + 1, "step": self.step_in_epoch,
                                     "global_step": self.global_step, "loss": loss, "lr": lr}, saved=False)

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """One optimizer step on a batch; returns its loss and learning rate."""
        lr = self.schedule(self.global_step)
        logits = self.net.forward(x, training=True)
        loss = self.loss.forward(logits, y)
        correct = int(np.count_nonzero(logits.argmax(axis=1) == y))
        self.net.backward(self.loss.backward())
        self.optimizer.step(lr)
        self.global_step += 1
        self.step_in_epoch += 1
        self.partial["loss_sum"] += loss * len(y)
        self.partial["correct"] += correct
        self.partial["seen"] += len(y)
        return loss, lr

    def end_epoch(self, stop: _StopFlag) -> None:
        val = evaluate(self.net, self.val, self.recipe.batch_size, self.recipe.loss) if len(self.val) else {}
        seen, lr = self.partial["seen"], self.schedule(self.global_step - 1)
        record = {"epoch": self.epoch + 1, "step": self.global_step, "lr": lr,
                  "train_loss": self.partial["loss_sum"] / seen, "train_acc": self.partial["correct"] / seen,
                  "val_loss": val.get("loss"), "val_acc": val.get("accuracy"),
                  "seconds": round(self.partial["seconds"], 3)}
        self.history.append(record)
        self.epoch, self.step_in_epoch, self.partial = self.epoch + 1, 0, _new_partial()
        self.save()
        if self.out is not None:
            with open(self.out / METRICS_FILE, "a", encoding="utf-8") as file:
                file.write(history_lines([record]))
        self.progress.epoch_done(record, self.recipe.epochs)
        self.boundary(stop, {"event": "epoch", **record}, saved=True)

    def boundary(self, stop: _StopFlag, event: dict[str, Any], saved: bool) -> None:
        """Between steps the state is consistent: run the callbacks, and stop here if asked to."""
        try:
            for callback in self.callbacks:
                callback(event)
            if stop.requested:
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            if not saved:
                self.save()
            if self.step_in_epoch == 0 and self.epoch > 0:  # stopped between epochs: report the last one
                epoch, step = self.epoch, self.steps_per_epoch
            else:
                epoch, step = self.epoch + 1, self.step_in_epoch
            raise TrainingInterrupted(epoch, step, self.steps_per_epoch, self.out,
                                      History(self.history)) from None

    def save(self) -> None:
        if self.out is None:
            return
        write_checkpoint(self.out, Checkpoint(
            spec=dump_spec(self.spec), dtype=self.net.dtype.name, epoch=self.epoch,
            step_in_epoch=self.step_in_epoch, global_step=self.global_step,
            rng=self.net.rng.bit_generator.state, class_names=list(self.train.class_names),
            history=self.history, partial=dict(self.partial), tensors=tensors_of(self.net, self.optimizer),
            spec_source=absolute_source(self.net.spec.source)))


def _new_partial() -> dict[str, Any]:
    return {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}


def _check_same_run(source: str, checkpoint: Checkpoint, spec_text: str, net: Network,
                    train: ArrayDataset) -> None:
    if checkpoint.spec != spec_text:
        diff = [line for line in difflib.unified_diff(checkpoint.spec.splitlines(), spec_text.splitlines(),
                                                      lineterm="", n=0) if line[:1] in "+-"][2:]
        raise CheckpointError(f"{source}: the run used a different spec or recipe (saved vs now: "
                              f"{' | '.join(diff[:2])}); resume with the spec in its spec.yaml, or start "
                              f"a new run")
    if checkpoint.dtype != net.dtype.name:
        raise CheckpointError(f"{source}: the run trained in {checkpoint.dtype}, this network is "
                              f"{net.dtype.name}")
    if checkpoint.class_names != list(train.class_names):
        raise CheckpointError(f"{source}: the run's classes {checkpoint.class_names} differ from the "
                              f"dataset's now {list(train.class_names)}")


@dataclass
class _StopFlag:
    requested: bool = False


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[_StopFlag]:
    """While training, the first Ctrl-C only asks to stop at the next step boundary; the second one
    interrupts at once. Only in the main thread, and only over Python's default handler."""
    stop = _StopFlag()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        print("\ncnnkit: stopping after this step (Ctrl-C again to stop at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


class _Progress:
    """What the user sees: a tqdm bar per epoch (on stderr) or not, and one line per finished epoch."""

    def __init__(self, bar: bool | None) -> None:
        self.bar = sys.stderr.isatty() if bar is None else bool(bar)

    def message(self, text: str) -> None:
        print(text, flush=True)

    @contextlib.contextmanager
    def epoch(self, epoch: int, epochs: int, steps: int, done: int) -> Iterator[Callable[[float], None]]:
        if not self.bar:
            yield lambda loss: None
            return
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=done, desc=f"epoch {epoch + 1}/{epochs}", unit="step", leave=False)

        def advance(loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update(1)

        try:
            yield advance
        finally:
            bar.close()

    def epoch_done(self, record: Mapping[str, Any], epochs: int) -> None:
        line = (f"epoch {record['epoch']}/{epochs}  step {record['step']}  lr {record['lr']:.4g}  "
                f"train loss {record['train_loss']:.4f} acc {record['train_acc']:.1%}")
        if record["val_loss"] is not None:
            line += f"  val loss {record['val_loss']:.4f} acc {record['val_acc']:.1%}"
        print(f"{line}  {record['seconds']:.1f}s", flush=True)
