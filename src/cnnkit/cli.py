"""The `cnnkit` command: summary, train, eval, predict, viz, export, verify, inspect, schema, backends,
plugins.

Every mistake a user can make (a CnnkitError, which includes every spec and YAML problem) is printed as
one line, `cnnkit: error: <message>`, with exit status 2 and no traceback. Ctrl-C during training says
where it stopped and how to resume, with exit status 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import __version__
from cnnkit.errors import CnnkitError, SpecError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (the console script passes it to sys.exit)."""
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors: argparse has printed already
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.run(args)
    except CnnkitError as error:
        return fail(error)
    except KeyboardInterrupt:
        print("cnnkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `cnnkit schema | head`: the reader left; say nothing more, even at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def fail(error: BaseException) -> int:
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"cnnkit: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _command(sub: Any, name: str, run: Callable[[argparse.Namespace], int], summary: str,
             description: str, examples: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=summary, description=description, epilog="examples:\n" + examples,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=run)
    return parser


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnkit", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Declare a CNN in YAML, train it on the CPU, extend it with plugins.",
        epilog="examples:\n"
               "  cnnkit summary specs/seed_convnet.yaml\n"
               "  cnnkit train specs/seed_convnet.yaml -o runs/seed\n"
               "  cnnkit eval runs/seed\n"
               "run 'cnnkit COMMAND --help' for each command's options.")
    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _command(sub, "summary", cmd_summary, "layers, output shapes, parameters and MACs of a spec",
                 "Print every layer's output shape, parameter count and multiply-accumulates per example,\n"
                 "with totals and activation memory, computed from the spec alone (nothing is trained).\n"
                 "For conv2d layers it also shows the weights a dense layer between the same volumes needs.",
                 "  cnnkit summary specs/seed_convnet.yaml\n"
                 "  cnnkit summary specs/resnet_small.yaml")
    p.add_argument("spec", metavar="SPEC", help="a YAML spec file")

    p = _command(sub, "train", cmd_train, "train a spec into a run folder",
                 "Train the network in SPEC with its 'train:' recipe. The run folder gets the spec,\n"
                 "checkpoints and metrics.jsonl (one line per epoch). Ctrl-C stops after the current step\n"
                 "and saves it; --resume (with the same spec and options) continues exactly from there.",
                 "  cnnkit train specs/seed_convnet.yaml -o runs/seed\n"
                 "  cnnkit train specs/seed_convnet.yaml -o runs/seed --resume\n"
                 "  cnnkit train specs/lenet5.yaml -o runs/lenet --epochs 3 --seed 1 --no-progress")
    p.add_argument("spec", metavar="SPEC", help="a YAML spec file with a 'train:' section")
    p.add_argument("-o", "--out", metavar="RUN", required=True, help="the run folder to write")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh even if RUN already holds a run (its checkpoints are replaced)")
    p.add_argument("--epochs", type=_positive_int, metavar="N", help="override the recipe's epochs")
    p.add_argument("--backend", default="numpy", help="the kernels to run on (see 'cnnkit backends')")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="threads of the C backend (default: CNNKIT_NUM_THREADS, else every CPU)")
    p.add_argument("--seed", type=_natural_int, metavar="N",
                   help="override the seed of weight initialisation, shuffling and data")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, one line per epoch")

    p = _command(sub, "eval", cmd_eval, "loss, accuracy and confusion matrix of a trained run",
                 "Evaluate a run folder's latest weights on a split of its spec's dataset: loss, accuracy,\n"
                 "per-class accuracy and the confusion matrix (rows: true class, columns: predicted).",
                 "  cnnkit eval runs/seed\n"
                 "  cnnkit eval runs/seed --split train")
    p.add_argument("run_dir", metavar="RUN", help="a run folder written by 'cnnkit train'")
    p.add_argument("--split", choices=("val", "train"), default="val",
                   help="held-out 'val' (default) or 'train' examples")
    p.add_argument("--backend", default="numpy", help="the kernels to run on (see 'cnnkit backends')")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="threads of the C backend (default: CNNKIT_NUM_THREADS, else every CPU)")
    p.add_argument("--batch-size", type=_positive_int, default=256, metavar="N", help="default: 256")

    p = _command(sub, "predict", cmd_predict, "the most probable classes of pictures",
                 "Classify picture files (PNG, JPEG, BMP) with a run folder's latest weights: each is\n"
                 "converted to the spec's input (size, grayscale or RGB) and prepared as the training data\n"
                 "was (e.g. the same mean/std), and its most probable classes are printed with their\n"
                 'probabilities (softmax of the outputs). Needs pip install "cnnkit[images]".',
                 "  cnnkit predict runs/seed docs/images/example.png\n"
                 "  cnnkit predict runs/pets cat.jpg dog.png --top 1")
    p.add_argument("run_dir", metavar="RUN", help="a run folder written by 'cnnkit train'")
    p.add_argument("pictures", metavar="PICTURE", nargs="+", help="picture files to classify")
    p.add_argument("--top", type=_positive_int, default=3, metavar="K", help="classes shown (default: 3)")
    p.add_argument("--backend", default="numpy", help="the kernels to run on (see 'cnnkit backends')")

    p = _command(sub, "viz", cmd_viz, "pictures of learned filters, feature maps, training curves",
                 "Draw a PNG of a trained run: 'filters' shows a layer's learned filters (RGB tiles for 3\n"
                 "input channels, else grey tiles, one per filter and input channel), 'maps' the feature\n"
                 "maps one picture makes at a layer, 'curves' loss and accuracy per epoch (train and\n"
                 "validation) from metrics.jsonl. --layer defaults to the first conv layer.\n"
                 'Needs pip install "cnnkit[viz]".',
                 "  cnnkit viz filters runs/seed --layer conv1 -o filters.png\n"
                 "  cnnkit viz maps runs/seed docs/images/example.png --layer conv1 -o maps.png\n"
                 "  cnnkit viz curves runs/seed -o curves.png")
    views = p.add_subparsers(dest="view", metavar="VIEW", required=True)
    for view, summary in (("filters", "a layer's learned filters"),
                          ("maps", "the feature maps of one picture at a layer"),
                          ("curves", "loss and accuracy per epoch, train and validation")):
        q = views.add_parser(view, help=summary, description=summary[0].upper() + summary[1:] + ".")
        q.add_argument("run_dir", metavar="RUN", help="a run folder written by 'cnnkit train'")
        if view == "maps":
            q.add_argument("picture", metavar="PICTURE", help="a PNG, JPEG or BMP file")
        if view != "curves":
            q.add_argument("--layer", metavar="NAME", help="a layer name (default: the first conv layer)")
        q.add_argument("-o", "--out", metavar="FILE", required=True, help="the .png file to write")

    p = _command(sub, "schema", cmd_schema, "JSON Schema of the spec format",
                 "Print the JSON Schema of specs, built from every installed layer type, dataset, loss,\n"
                 "optimizer and schedule (so plugins' attributes are included). Editors such as VS Code\n"
                 "use it to complete and check spec files.",
                 "  cnnkit schema\n"
                 "  cnnkit schema -o cnnkit-spec.schema.json")
    p.add_argument("-o", "--out", metavar="FILE", help="write to FILE instead of standard output")

    p = _command(sub, "export", cmd_export, "write a trained run as an ONNX file, checked with onnxruntime",
                 "Export a run folder's latest weights as an ONNX model (eval mode, dynamic batch size),\n"
                 "then run it in onnxruntime next to cnnkit on batches of 1, 7 and 64 held-out examples and\n"
                 "print the largest differences (exit status 1 if they are out of tolerance).",
                 "  cnnkit export runs/seed -o seed.onnx\n"
                 "  cnnkit export runs/resnet -o resnet.onnx --fold-batchnorm --softmax --opset 13")
    p.add_argument("run_dir", metavar="RUN", help="a run folder written by 'cnnkit train'")
    p.add_argument("-o", "--out", metavar="FILE", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=_positive_int, metavar="N", help="ONNX opset (default: 17)")
    p.add_argument("--fold-batchnorm", action="store_true", help="fold batch norms into the convs before")
    p.add_argument("--softmax", action="store_true", help="output probabilities instead of logits")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")

    p = _command(sub, "verify", cmd_verify, "compare an ONNX file in onnxruntime with a trained run",
                 "Run FILE in onnxruntime and the run's network in cnnkit on the same batches (of 1, 7 and\n"
                 "64 held-out examples) and print the largest absolute and relative differences; exit\n"
                 "status 1 if any is out of tolerance. Safe for files cnnkit did not write: external data\n"
                 "outside the file's folder is refused before onnxruntime opens it.",
                 "  cnnkit verify seed.onnx runs/seed\n"
                 "  cnnkit verify seed.onnx runs/seed --rtol 1e-3")
    p.add_argument("file", metavar="FILE", help="an .onnx file")
    p.add_argument("run_dir", metavar="RUN", help="a run folder written by 'cnnkit train'")
    p.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance (default: 1e-4)")
    p.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance (default: 1e-5)")

    p = _command(sub, "inspect", cmd_inspect, "what an ONNX file holds",
                 "Print an ONNX file's inputs, outputs, opsets, metadata, parameter count and operators.\n"
                 "Safe for files cnnkit did not write.",
                 "  cnnkit inspect seed.onnx")
    p.add_argument("file", metavar="FILE", help="an .onnx file")

    _command(sub, "backends", cmd_backends, "backends, whether they run here, their kernels",
             "List every registered backend: available on this machine or why not, and the layer\n"
             "types it has kernels for (the others fall back to the numpy reference).",
             "  cnnkit backends")

    _command(sub, "plugins", cmd_plugins, "installed plugins and what each registered",
             "List the built-in and installed plugins (entry-point group 'cnnkit') with their\n"
             "distributions and versions, the layer types, kernels (per backend), backends, datasets,\n"
             "losses, optimizers and schedules each one registered, and every plugin error (exit status\n"
             "1 if there is any). Set CNNKIT_DISABLE_PLUGIN_AUTOLOAD=1 to load no third-party plugin, or\n"
             "CNNKIT_PLUGINS=a,b to load only the plugins named a and b. Writing one: docs/plugins.md.",
             "  cnnkit plugins\n"
             "  CNNKIT_PLUGINS=swish cnnkit plugins")
    return parser


def _positive_int(text: str) -> int:
    value = _natural_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _natural_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def cmd_summary(args: argparse.Namespace) -> int:
    from cnnkit.summary import summarize

    print(summarize(args.spec))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from cnnkit import build, load_spec
    from cnnkit.train.trainer import TrainingInterrupted, fit

    spec = load_spec(args.spec)
    if spec.train is None:
        raise SpecError("the spec has no 'train:' section, so there is no recipe to train with; add one, "
                        "e.g. train: {data: {dataset: shapes}, epochs: 10}", source=spec.source)
    changes = {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed)) if v is not None}
    recipe = dataclasses.replace(spec.train, **changes)
    _use_threads(args)
    net = build(spec, backend=args.backend, seed=recipe.seed)
    started = time.perf_counter()
    try:
        history = fit(net, recipe, out=args.out, resume=args.resume, overwrite=args.overwrite,
                      progress=False if args.no_progress else None)
    except TrainingInterrupted as stopped:
        if stopped.step == stopped.steps_per_epoch:
            where = f"stopped after epoch {stopped.epoch} of {recipe.epochs}"
        else:
            where = f"stopped in epoch {stopped.epoch} of {recipe.epochs} after step {stopped.step} of " \
                    f"{stopped.steps_per_epoch}"
        where += f"; the checkpoint of that point is in {args.out}"
        return _interrupted(where, args)
    except KeyboardInterrupt:
        return _interrupted(_where_stopped(args.out, recipe.epochs), args)
    print(_trained_text(history, recipe.epochs, time.perf_counter() - started, args.out))
    return 0


def _interrupted(where: str, args: argparse.Namespace) -> int:
    print(f"cnnkit: interrupted: {where}", file=sys.stderr)
    print(f"cnnkit: resume with: {_resume_command(args)}", file=sys.stderr)
    return EXIT_INTERRUPTED


def _resume_command(args: argparse.Namespace) -> str:
    words = ["cnnkit", "train", args.spec, "-o", args.out, "--resume"]
    for flag, value in (("--epochs", args.epochs), ("--seed", args.seed)):
        if value is not None:
            words += [flag, str(value)]
    if args.backend != "numpy":
        words += ["--backend", args.backend]
    return " ".join(shlex.quote(word) for word in words)


def _where_stopped(run_dir: str, epochs: int) -> str:
    """Where the run folder's latest checkpoint stands, after an interruption the trainer did not catch."""
    from cnnkit.train.checkpoint import read_checkpoint

    try:
        checkpoint = read_checkpoint(run_dir)
    except CnnkitError:
        return f"no checkpoint was saved in {run_dir} yet"
    where = f"the checkpoint in {run_dir} is from after epoch {checkpoint.epoch} of {epochs}"
    if checkpoint.step_in_epoch:
        where += f" and {checkpoint.step_in_epoch} steps of epoch {checkpoint.epoch + 1}"
    return where


def _trained_text(history: Sequence[dict[str, Any]], epochs: int, seconds: float, run_dir: str) -> str:
    if not history:
        return f"nothing trained; run folder: {run_dir}"
    final = history[-1]
    parts = [f"{label} {_metric_text(key, final[key])}" for key, label in
             (("train_loss", "train loss"), ("train_acc", "train accuracy"), ("val_loss", "val loss"),
              ("val_acc", "val accuracy")) if final.get(key) is not None]
    return "\n".join([f"epoch {final['epoch']} of {epochs} done ({seconds:.1f} s): " + ", ".join(parts),
                      f"run folder: {run_dir} (evaluate with: cnnkit eval {run_dir})"])


def _metric_text(key: str, value: Any) -> str:
    if key.endswith("_acc"):
        return f"{100 * value:.1f} %"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def cmd_eval(args: argparse.Namespace) -> int:
    from cnnkit import load
    from cnnkit.train.metrics import evaluate
    from cnnkit.train.trainer import load_data

    _use_threads(args)
    net = load(args.run_dir, backend=args.backend)
    train_data, val_data = load_data(net)
    data = val_data if args.split == "val" else train_data
    if len(data) == 0:
        raise CnnkitError(f"the '{args.split}' split of {args.run_dir} is empty (val_fraction 0?); try "
                          f"--split {'train' if args.split == 'val' else 'val'}")
    result = evaluate(net, data, args.batch_size)
    print(f"run {args.run_dir}: network '{net.spec.name}', {args.split} split, {len(data)} examples")
    print(f"loss {result['loss']:.4f}   accuracy {100 * result['accuracy']:.2f} %")
    print()
    print(confusion_text(result))
    return 0


def confusion_text(result: dict[str, Any]) -> str:
    """evaluate()'s confusion matrix as a table (rows: true class), with each class's accuracy and count."""
    confusion = np.asarray(result["confusion"])
    names = [str(n) for n in result["class_names"]]
    names += [f"class {i}" for i in range(len(names), len(confusion))]
    per_class = list(result["per_class_accuracy"]) + [None] * (len(names) - len(result["per_class_accuracy"]))
    header = ["true \\ predicted", *names, "accuracy", "examples"]
    rows = []
    for i, name in enumerate(names):
        accuracy = "-" if per_class[i] is None else f"{100 * per_class[i]:.1f} %"
        rows.append([name, *(str(int(v)) for v in confusion[i]), accuracy, str(int(confusion[i].sum()))])
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), *map(line, rows)])


def cmd_predict(args: argparse.Namespace) -> int:
    from cnnkit import load
    from cnnkit.data.images import read_inputs
    from cnnkit.train.checkpoint import read_checkpoint
    from cnnkit.train.metrics import probabilities, top_classes

    net = load(args.run_dir, backend=args.backend)
    names = read_checkpoint(args.run_dir).class_names
    _, inputs = read_inputs(net, args.pictures)
    classes, probs = top_classes(probabilities(net, net.predict(inputs)), args.top)
    for picture, row, row_probs in zip(args.pictures, classes, probs):
        ranked = ", ".join(f"{names[k] if k < len(names) else f'class {k}'} {100 * q:.1f} %"
                           for k, q in zip(row, row_probs))
        print(f"{picture}: {ranked}")
    return 0


def cmd_viz(args: argparse.Namespace) -> int:
    from cnnkit import viz

    if args.view == "curves":
        result = viz.plot_curves(args.run_dir, args.out)
        print(f"wrote {args.out}: {len(result.epochs)} epochs of {args.run_dir}")
        return 0
    from cnnkit import load

    net = load(args.run_dir)
    if args.view == "filters":
        drawn = viz.plot_filters(net, args.layer, args.out)
        print(f"wrote {args.out}: {drawn.grid.count} tiles of the filters of layer '{drawn.layer}'")
    else:
        drawn = viz.plot_maps(net, args.picture, args.layer, args.out)
        print(f"wrote {args.out}: {len(drawn.maps)} feature maps of layer '{drawn.layer}'")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from cnnkit.plugins import registry
    from cnnkit.spec.schema import json_schema

    text = json.dumps(json_schema(registry()), indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as error:
        raise CnnkitError(f"{args.out}: cannot write: {error.strerror}") from None
    print(f"wrote the spec JSON Schema to {args.out}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cnnkit import load
    from cnnkit.onnx import DEFAULT_OPSET, export_onnx, verify_onnx
    from cnnkit.train.checkpoint import read_checkpoint

    net = load(args.run_dir)
    class_names = read_checkpoint(args.run_dir).class_names
    path = export_onnx(net, args.out, opset=args.opset or DEFAULT_OPSET, fold_batchnorm=args.fold_batchnorm,
                       softmax=args.softmax, class_names=class_names)
    print(f"wrote {path}: network '{net.spec.name}', input (N, {', '.join(map(str, net.input_shape))})")
    if args.no_verify:
        return 0
    report = verify_onnx(net, path, inputs=held_out_inputs(net))
    print(report)
    return 0 if report.passed else 1


def cmd_verify(args: argparse.Namespace) -> int:
    from cnnkit import load
    from cnnkit.onnx import verify_onnx

    net = load(args.run_dir)
    report = verify_onnx(net, args.file, inputs=held_out_inputs(net), rtol=args.rtol, atol=args.atol)
    print(report)
    return 0 if report.passed else 1


def held_out_inputs(net: Any) -> np.ndarray | None:
    """The run's validation images, so verification sees real inputs; None (random inputs) without any."""
    from cnnkit.train.trainer import load_data

    if net.spec.train is None:
        return None
    _, val = load_data(net)
    return val.x if len(val) else None


def cmd_inspect(args: argparse.Namespace) -> int:
    from cnnkit.onnx.describe import describe_model, format_description

    print(format_description(describe_model(args.file)))
    return 0


def _use_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        from cnnkit import set_num_threads

        set_num_threads(args.threads)


def cmd_backends(args: argparse.Namespace) -> int:
    from cnnkit.graph import REFERENCE_BACKEND
    from cnnkit.plugins import registry

    reg = registry()
    width = max(len(name) for name in reg.backends)
    for name, backend in reg.backends.items():
        reason = backend.unavailable()
        state = "available" if reason is None else f"not available: {reason}"
        kernels = sorted(layer for layer, on in reg.kernels if on == name)
        missing = sorted(set(reg.layers) - set(kernels))
        print(f"{name:<{width}}  {state}")
        print(f"{'':<{width}}  {backend.description} (plugin {backend.plugin})")
        details = backend.details() if reason is None else None
        if details:
            print(f"{'':<{width}}  {details}")
        print(f"{'':<{width}}  kernels ({len(kernels)}): {', '.join(kernels) or 'none'}")
        if missing and name != REFERENCE_BACKEND:
            print(f"{'':<{width}}  on '{REFERENCE_BACKEND}' instead: {', '.join(missing)}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from cnnkit.plugins import plugin_manager, registry

    reg = registry()
    pm = plugin_manager()
    for name, _ in pm.list_name_plugin():
        print(f"{name} ({pm.origins.get(name, 'registered at run time')})")
        for item in plugin_records(reg, name) or ["registers nothing"]:
            print(f"    {item}")
    if reg.errors:
        print(f"\n{len(reg.errors)} plugin error{'s' * (len(reg.errors) > 1)}:")
        for error in reg.errors:
            print(f"    {error}")
    return 1 if reg.errors else 0


def plugin_records(reg: Any, plugin: str) -> list[str]:
    """What one plugin registered, one line per kind: "layer types: swish", "kernels on numpy: swish"."""
    kinds = [("layer types", reg.layers), ("backends", reg.backends), ("datasets", reg.datasets),
             ("losses", reg.losses), ("optimizers", reg.optimizers), ("schedules", reg.schedules)]
    lines = [f"{kind}: {', '.join(sorted(n for n, r in table.items() if r.plugin == plugin))}"
             for kind, table in kinds if any(r.plugin == plugin for r in table.values())]
    by_backend: dict[str, list[str]] = {}
    for (layer, backend), kernel in reg.kernels.items():
        if kernel.plugin == plugin:
            by_backend.setdefault(backend, []).append(layer)
    lines += [f"kernels on {backend}: {', '.join(sorted(layers))}"
              for backend, layers in sorted(by_backend.items())]
    return lines
