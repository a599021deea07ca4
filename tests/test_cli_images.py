"""`cnnkit predict` and `cnnkit viz` on a run trained on a generated picture folder."""

from __future__ import annotations

import sys

import pytest
import yaml

from cnnkit import graph
from cnnkit.cli import main
from tests.pictures import CLASSES, Image, picture_spec, truncated_png, write_folder
from tests.test_cli import assert_one_error_line

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def pictures_run(tmp_path_factory):
    """(run folder, the training pictures by class) after `cnnkit train` on a spec next to its data."""
    root = tmp_path_factory.mktemp("cli-pictures")
    files = write_folder(root / "data" / "pets", per_class=12, odd=True)
    spec = root / "pets.yaml"
    spec.write_text(yaml.safe_dump(picture_spec("data/pets", mean=[0.8, 0.5, 0.5], std=[0.3], flip=True,
                                                crop_padding=1)))
    assert main(["train", str(spec), "-o", str(root / "run"), "--epochs", "4", "--no-progress"]) == 0
    return root / "run", {kind: [f for f in files if f.parent.name == kind] for kind in CLASSES}


def test_predict_shows_the_class_names_with_probabilities(pictures_run, capsys):
    run, files = pictures_run
    pictures = files["circle"][:3] + files["square"][:3]
    assert main(["predict", str(run), *map(str, pictures)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6
    for line, picture in zip(lines, pictures):
        name, ranked = line.split(": ", 1)
        assert name == str(picture)
        classes = [item.rsplit(" ", 2) for item in ranked.split(", ")]
        assert [c[0] for c in classes][0] == picture.parent.name  # right, and named by its folder
        assert sorted(c[0] for c in classes) == sorted(CLASSES)  # --top 3 shows both of 2 classes
        percents = [float(c[1]) for c in classes]
        assert percents == sorted(percents, reverse=True) and abs(sum(percents) - 100) < 0.2
    assert main(["predict", str(run), str(pictures[0]), "--top", "1"]) == 0
    assert capsys.readouterr().out == f"{pictures[0]}: circle {lines[0].split()[2]} %\n"


def test_eval_names_the_folders(pictures_run, capsys):
    run, _ = pictures_run
    assert main(["eval", str(run)]) == 0
    table = capsys.readouterr().out.split("true \\ predicted")[1].splitlines()
    assert [line.split()[0] for line in table[1:]] == list(CLASSES)


def test_predict_converts_other_pictures_with_a_notice(pictures_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(graph, "_notices_given", set())  # notices are once per process
    run, files = pictures_run
    big = tmp_path / "big.jpg"
    Image.open(files["square"][0]).convert("L").resize((64, 48)).save(big)
    assert main(["predict", str(run), str(big)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{big}: ")
    assert captured.err.startswith("cnnkit: converted 1 of 1 pictures to the spec's input 3x16x16 (RGB); "
                                   "they were L 48x64 (1)")


def test_predict_names_a_broken_or_missing_picture(pictures_run, tmp_path, capsys):
    run, _ = pictures_run
    broken = truncated_png(tmp_path / "broken.png")
    assert main(["predict", str(run), str(broken)]) == 2
    assert_one_error_line(capsys.readouterr().err, str(broken), "not a readable PNG, JPEG or BMP picture")
    assert main(["predict", str(run), str(tmp_path / "nope.png")]) == 2
    assert_one_error_line(capsys.readouterr().err, "nope.png: no such file")


def test_predict_without_pillow_says_which_extra(pictures_run, monkeypatch, capsys):
    run, files = pictures_run
    monkeypatch.setitem(sys.modules, "PIL", None)
    assert main(["predict", str(run), str(files["circle"][0])]) == 2
    assert_one_error_line(capsys.readouterr().err, 'pip install "cnnkit[images]"')


def png(path):
    with Image.open(path) as image:
        image.load()
        return image.format


def test_viz_writes_the_three_pictures(pictures_run, tmp_path, capsys):
    run, files = pictures_run
    assert main(["viz", "filters", str(run), "--layer", "conv1", "-o", str(tmp_path / "f.png")]) == 0
    assert "4 tiles of the filters of layer 'conv1'" in capsys.readouterr().out
    assert main(["viz", "maps", str(run), str(files["circle"][0]), "-o", str(tmp_path / "m.png")]) == 0
    assert "4 feature maps of layer 'conv1'" in capsys.readouterr().out
    assert main(["viz", "curves", str(run), "-o", str(tmp_path / "c.png")]) == 0
    assert "4 epochs" in capsys.readouterr().out
    assert [png(tmp_path / name) for name in ("f.png", "m.png", "c.png")] == ["PNG"] * 3


def test_viz_mistakes_are_one_line(pictures_run, tmp_path, capsys, monkeypatch):
    run, _ = pictures_run
    assert main(["viz", "filters", str(run), "--layer", "relu", "-o", str(tmp_path / "f.png")]) == 2
    assert_one_error_line(capsys.readouterr().err, "no layer 'relu'", "did you mean 'relu1'")
    assert main(["viz", "curves", str(run), "-o", str(tmp_path / "missing" / "c.png")]) == 2
    assert_one_error_line(capsys.readouterr().err, "c.png: cannot write")
    assert main(["viz", str(run)]) == 2  # no VIEW
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert main(["viz", "curves", str(run), "-o", str(tmp_path / "c.png")]) == 2
    assert_one_error_line(capsys.readouterr().err, 'pip install "cnnkit[viz]"')
