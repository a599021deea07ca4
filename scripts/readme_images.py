"""Regenerate the README's pictures from the main job's run: docs/images/{example,filters,maps,curves}.png.

    .venv/bin/python scripts/readme_images.py              # uses runs/seed (from bash scripts/run.sh)
    .venv/bin/python scripts/readme_images.py --run runs/x  # another run of specs/seed_convnet.yaml

When the run folder holds no checkpoint, specs/seed_convnet.yaml is trained into it first (about 10 s).
example.png is a held-out kind of picture: a `shapes` drawing at 96x96, which predict and viz maps convert
to the network's 32x32 input. Needs pip install -e ".[viz]".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "seed_convnet.yaml"
EXAMPLE_CLASS = "cross"
EXAMPLE_SIDE = 96
EXAMPLE_SEED = 5
MAX_BYTES = 100_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=str(ROOT / "runs" / "seed"),
                        help="the run folder (default: runs/seed)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"), help="default: docs/images")
    args = parser.parse_args()

    from cnnkit import build, load, train
    from cnnkit.cli import main as cnnkit
    from cnnkit.train.checkpoint import META_FILE
    from cnnkit.viz import plot_curves, plot_filters, plot_maps

    run, out = Path(args.run), Path(args.out)
    if not (run / META_FILE).exists():
        print(f"no run in {run}: training {SPEC.name} into it")
        train(build(str(SPEC)), out=run, progress=False)
    out.mkdir(parents=True, exist_ok=True)
    example = write_example(out / "example.png")
    net = load(run)
    plot_filters(net, "conv1", out / "filters.png")
    plot_maps(net, example, "conv1", out / "maps.png")
    plot_curves(run, out / "curves.png")
    cnnkit(["predict", str(run), str(example)])
    for name in ("example.png", "filters.png", "maps.png", "curves.png"):
        size = (out / name).stat().st_size
        print(f"{out / name}: {size / 1000:.1f} kB")
        if size > MAX_BYTES:
            print(f"{out / name} is larger than {MAX_BYTES // 1000} kB", file=sys.stderr)
            return 1
    return 0


def write_example(path: Path) -> Path:
    """The first EXAMPLE_CLASS drawing of the shapes generator at EXAMPLE_SIDE pixels, as an RGB PNG."""
    from PIL import Image

    from cnnkit.data.shapes import CENTRE, generate

    drawn = generate(4, 8, 0.03, (3, EXAMPLE_SIDE, EXAMPLE_SIDE), EXAMPLE_SEED)
    index = list(drawn.y).index(drawn.class_names.index(EXAMPLE_CLASS))
    colours = np.clip((drawn.x[index] + CENTRE) * 255 + 0.5, 0, 255).astype(np.uint8)
    Image.fromarray(colours.transpose(1, 2, 0)).save(path)
    return path


if __name__ == "__main__":
    sys.exit(main())
