"""Calibrate the `shapes` dataset's difficulty with PyTorch: two conv stages must learn it, one must not.

The recipe is the one the NumPy trainer is held to: 4 classes, 6000 images (4800 train / 1200 validation),
SGD(lr 0.05, momentum 0.9, weight decay 5e-4), cosine schedule over 10 epochs stepped per batch, batch 64,
He-normal init (biases zero). Targets: the 2-stage network conv(6, 5x5)-relu-pool-conv(16, 5x5)-relu-pool-
linear reaches ~97-99 % validation accuracy (comfortably above 95 %), while the 1-stage network
conv(6, 5x5)-relu-pool-linear plateaus well below it. Measured (3x32x32, seeds 0-4): 2-stage 97.6-99.8 %,
1-stage 83.9-91.0 %.

    .venv/bin/python benchmarks/calibrate_shapes.py [--seeds 0 1 2] [--noise 0.15] [--input 3 32 32]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from torch import nn

from cnnkit.data.dataset import ArrayDataset
from cnnkit.data.shapes import SHAPES_DATASET, generate


def stage(size: int) -> int:
    """Output size of a valid 5x5 convolution followed by 2x2 max pooling."""
    return (size - 4) // 2


def two_stage(channels: int, height: int, width: int, classes: int) -> nn.Sequential:
    flat = 16 * stage(stage(height)) * stage(stage(width))
    return nn.Sequential(nn.Conv2d(channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(flat, classes))


def one_stage(channels: int, height: int, width: int, classes: int) -> nn.Sequential:
    flat = 6 * stage(height) * stage(width)
    return nn.Sequential(nn.Conv2d(channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(flat, classes))


def he_init(net: nn.Module) -> None:
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(module.bias)


def train(net: nn.Module, train_set: ArrayDataset, val_set: ArrayDataset, seed: int, epochs: int = 10,
          batch_size: int = 64) -> float:
    """Validation accuracy after training with the reference recipe."""
    torch.manual_seed(seed)
    he_init(net)
    steps_per_epoch = math.ceil(len(train_set) / batch_size)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    x, y = torch.from_numpy(train_set.x), torch.from_numpy(train_set.y)
    rng = np.random.default_rng(seed)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        net.train()
        for index in np.array_split(rng.permutation(len(y)), steps_per_epoch):
            optimizer.zero_grad()
            loss_fn(net(x[index]), y[index]).backward()
            optimizer.step()
            schedule.step()
    net.eval()
    with torch.no_grad():
        predicted = net(torch.from_numpy(val_set.x)).argmax(1).numpy()
    return float((predicted == val_set.y).mean())


def main() -> None:
    defaults = {a.name: a.default for a in SHAPES_DATASET.attrs}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--classes", type=int, default=defaults["classes"])
    parser.add_argument("--samples", type=int, default=defaults["samples"])
    parser.add_argument("--noise", type=float, default=defaults["noise"])
    parser.add_argument("--input", type=int, nargs=3, default=[3, 32, 32], metavar=("C", "H", "W"))
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    shape = tuple(args.input)
    print(f"shapes: classes {args.classes}, samples {args.samples}, noise {args.noise}, "
          f"input {'x'.join(map(str, shape))}, {args.epochs} epochs")
    results: dict[str, list[float]] = {"2-stage": [], "1-stage": []}
    for seed in args.seeds:
        data = generate(args.classes, args.samples, args.noise, shape, seed)
        train_set, val_set = data.split(defaults["val_fraction"], seed)
        for name, make in (("2-stage", two_stage), ("1-stage", one_stage)):
            start = time.perf_counter()
            accuracy = train(make(*shape, args.classes), train_set, val_set, seed, args.epochs)
            results[name].append(accuracy)
            print(f"seed {seed}  {name}: val accuracy {accuracy:.4f}  ({time.perf_counter() - start:.1f} s)")
    for name, accuracies in results.items():
        print(f"{name}: mean {np.mean(accuracies):.4f}  min {np.min(accuracies):.4f}  "
              f"max {np.max(accuracies):.4f}")


if __name__ == "__main__":
    main()
