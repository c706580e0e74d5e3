"""The command line: JSON documents on stdout, one-line errors on stderr, exit statuses."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from digits.cli import app
from digits.data import DigitData
from tests.helpers import kaggle_csv, tiny_model

runner = CliRunner()


def test_models_json_lists_every_seed_with_its_claim() -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["cnn"]["parameters"] == 93_322
    assert rows["cnn"]["claimed_accuracy"] == 0.9912
    assert rows["ann"]["claimed_accuracy"] == 0.9777


def test_data_info_json_counts_every_class(small_npz: Path) -> None:
    result = runner.invoke(app, ["data", "info", "--json", "--data", str(small_npz)])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["splits"]["train"]["count"] == 6000
    assert sum(info["splits"]["train"]["class_counts"]) == 6000
    assert info["splits"]["test"]["shape"] == [1000, 28, 28]
    assert info["dtype"] == "uint8"


def test_data_info_on_full_mnist(mnist: DigitData) -> None:
    result = runner.invoke(app, ["data", "info", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["splits"]["train"]["class_counts"] == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert info["splits"]["test"]["class_counts"] == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]


def test_train_then_evaluate_json(tmp_path: Path, small_npz: Path) -> None:
    run = tmp_path / "run"
    trained = runner.invoke(
        app,
        [
            "train",
            "--model",
            "ann",
            "--epochs",
            "1",
            "--data",
            str(small_npz),
            "--out",
            str(run),
            "--quiet",
        ],
    )
    assert trained.exit_code == 0, trained.output
    assert "test accuracy" in trained.stdout
    result = runner.invoke(app, ["evaluate", str(run), "--json", "--data", str(small_npz)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {"accuracy", "loss", "macro_f1", "confusion_matrix"} <= set(document)
    assert sum(map(sum, document["confusion_matrix"])) == 1000
    table = runner.invoke(app, ["evaluate", str(run), "--data", str(small_npz)])
    assert "confusion matrix" in table.stdout


def test_train_on_kaggle_csv(tmp_path: Path, mnist: DigitData) -> None:
    path = tmp_path / "train.csv"
    path.write_text(kaggle_csv(mnist.x_train[:300], mnist.y_train[:300]))
    result = runner.invoke(
        app,
        [
            "train",
            "--model",
            "fnn",
            "--epochs",
            "1",
            "--data",
            str(path),
            "--out",
            str(tmp_path / "run"),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "validation accuracy" in result.stdout


def test_errors_are_one_line_naming_the_input(tmp_path: Path) -> None:
    bad = tmp_path / "train.csv"
    bad.write_text(
        "label,"
        + ",".join(f"pixel{i}" for i in range(784))
        + "\n"
        + "3,"
        + ",".join(["0"] * 783)
        + ",x\n"
    )
    result = runner.invoke(
        app, ["train", "--model", "ann", "--data", str(bad), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {bad}: row 2, column 785: not a number: 'x'"
    missing = runner.invoke(app, ["evaluate", str(tmp_path / "none")])
    assert missing.exit_code == 1
    assert "no such run directory" in missing.stderr
    unknown = runner.invoke(app, ["train", "--model", "resnet"])
    assert unknown.exit_code == 1
    assert "unknown model 'resnet'" in unknown.stderr


# --- digits predict on mixed folders: every input gets its own entry ------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def _digit_image(path: Path) -> Path:
    image = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(image).ellipse((16, 10, 48, 54), outline=0, width=6)
    image.save(path)
    return path


def _entries(output: str) -> dict[str, dict[str, object]]:
    return {str(entry["file"]): entry for entry in json.loads(output)}


def test_predict_folder_reports_every_file_whatever_the_others(tmp_path: Path, model: Path) -> None:
    folder = tmp_path / "scans"
    (folder / "deeper").mkdir(parents=True)
    good = [_digit_image(folder / "a.png"), _digit_image(folder / "deeper" / "b.png")]
    lab = folder / "lab.tif"
    Image.open(good[0]).convert("RGB").convert("LAB").save(lab)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    os.mkfifo(folder / "pipe.png")
    (folder / "dangling.png").symlink_to("gone.png")
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "deeper" / "up").symlink_to("..")
    (folder / "notes.txt").write_text("not an image by its name: not an entry")
    named_fifo = tmp_path / "named.png"
    os.mkfifo(named_fifo)
    result = runner.invoke(app, ["predict", str(model), str(folder), str(named_fifo), "--json"])
    assert result.exit_code == 1
    entries = _entries(result.stdout)
    expected_errors = {
        "broken.png": "not a",  # preprocessing words it by the damage
        "pipe.png": "is a FIFO, not a file",
        "named.png": "is a FIFO, not a file",
        "dangling.png": "dangling symbolic link (to gone.png)",
        "loop.png": "symbolic link loop",
        "up": "symbolic link to a folder that contains it (..): a loop",
    }
    names = {Path(file).name for file in entries}
    assert names == {"a.png", "b.png", "lab.tif", *expected_errors}
    for file, entry in entries.items():
        name = Path(file).name
        if name in expected_errors:
            assert entry["answer"] == "error" and entry["digit"] is None
            error = str(entry["error"])
            assert error.startswith(f"{file}: ") and expected_errors[name] in error, error
            assert error in result.stderr
        elif name != "lab.tif":
            assert entry["error"] is None and entry["answer"] != "error"
    # Whatever preprocessing makes of a LAB TIFF, it is an entry of its own, naming the file.
    lab_entry = entries[str(lab)]
    assert lab_entry["error"] is None or str(lab_entry["error"]).startswith(f"{lab}: ")


def test_predict_an_unexpected_failure_costs_only_its_file(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digits.predictor

    real = digits.predictor.preprocess

    def failing(source: object, name: str | None = None) -> object:
        if name is not None and name.endswith("odd.png"):
            raise ZeroDivisionError("float division by zero")  # what an unhandled mode raises
        return real(source, name=name)  # type: ignore[arg-type]

    monkeypatch.setattr(digits.predictor, "preprocess", failing)
    files = [_digit_image(tmp_path / name) for name in ("a.png", "odd.png", "z.png")]
    result = runner.invoke(app, ["predict", str(model), *map(str, files), "--json"])
    assert result.exit_code == 1
    entries = json.loads(result.stdout)
    assert [entry["file"] for entry in entries] == list(map(str, files))
    assert entries[0]["error"] is None and entries[2]["error"] is None
    assert entries[1]["error"] == (
        f"{files[1]}: could not be processed (ZeroDivisionError: float division by zero)"
    )


def test_predict_unreadable_folder_and_file_are_entries(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root here, where chmod 000 denies nothing: the refusals are simulated at the
    # system calls, with the errors the kernel gives a normal user.
    folder = tmp_path / "scans"
    (folder / "locked").mkdir(parents=True)
    _digit_image(folder / "locked" / "hidden.png")
    secret = _digit_image(folder / "secret.png")
    _digit_image(folder / "ok.png")
    real_scandir, real_open = os.scandir, os.open

    def scandir(path: str | os.PathLike[str]) -> Any:
        if Path(str(path)).name == "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    def open_(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if Path(str(path)) == secret:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "open", open_)
    result = runner.invoke(app, ["predict", str(model), str(folder), "--json"])
    assert result.exit_code == 1
    entries = _entries(result.stdout)
    assert set(entries) == {str(folder / "locked"), str(secret), str(folder / "ok.png")}
    locked = folder / "locked"
    assert entries[str(locked)]["error"] == f"{locked}: folder cannot be read (Permission denied)"
    assert entries[str(secret)]["error"] == f"{secret}: cannot be read (Permission denied)"
    assert entries[str(folder / "ok.png")]["error"] is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 folder regardless")
def test_predict_chmod_000_folder_is_an_entry(tmp_path: Path, model: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    _digit_image(locked / "x.png")
    locked.chmod(0)
    try:
        result = runner.invoke(app, ["predict", str(model), str(tmp_path), "--json"])
    finally:
        locked.chmod(0o755)
    assert "folder cannot be read" in str(_entries(result.stdout)[str(locked)]["error"])


@pytest.mark.parametrize("name", ["[bold]x].png", "[red]y[.png", "[link=z]w.png"])
def test_names_with_rich_markup_print_as_they_are(
    tmp_path: Path, model: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Relative names, so that a long temporary path cannot wrap in the table and hide them.
    monkeypatch.chdir(tmp_path)
    folder = Path("a[")  # with the name below, the path holds a closing tag: "[/b]"
    folder.mkdir()
    good = _digit_image(folder / name)
    bad = folder / "b].png"
    bad.write_bytes(b"not an image")
    wide = {"COLUMNS": "400"}
    table = runner.invoke(app, ["predict", str(model), str(good), str(bad)], env=wide)
    assert table.exit_code == 1, table.output  # the bad file, not a markup error
    assert str(good) in table.stdout and str(bad) in table.stdout
    assert f"error: {bad}: not a" in table.stderr
    read = runner.invoke(app, ["read", str(model), str(good)], env=wide)
    assert read.exit_code == 0, read.output
    assert read.stdout.startswith(f"{good}: ")


def test_read_refuses_a_fifo_at_once(tmp_path: Path, model: Path) -> None:
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    result = runner.invoke(app, ["read", str(model), str(fifo)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {fifo}: is a FIFO, not a file"


def test_read_names_an_image_preprocessing_fails_on(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digits.segment

    def failing(*args: object, **kwargs: object) -> object:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(digits.segment, "segment", failing)
    image = _digit_image(tmp_path / "odd.png")
    result = runner.invoke(app, ["read", str(model), str(image)])
    assert result.exit_code == 1
    expected = f"error: {image}: could not be processed (ZeroDivisionError: float division by zero)"
    assert result.stderr.strip() == expected


def test_predict_json_entries_all_have_the_same_keys(tmp_path: Path, model: Path) -> None:
    digit = _digit_image(tmp_path / "digit.png")
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    for extra in ([], ["--top", "3"]):
        args = ["predict", str(model), str(digit), str(blank), str(broken), "--json", *extra]
        result = runner.invoke(app, args)
        assert result.exit_code == 1  # the broken file
        entries = _entries(result.stdout)
        assert len({frozenset(entry) for entry in entries.values()}) == 1
        assert {"box", "not_digit", "reason", "error"} <= set(entries[str(blank)])
    assert entries[str(blank)]["box"] is None and entries[str(broken)]["box"] is None
    box = entries[str(digit)]["box"]
    assert isinstance(box, dict) and set(box) == {"x", "y", "width", "height"}
    # The ellipse drawn from (16, 10) to (48, 54), pen width included, in pixels of the image.
    assert 14 <= box["x"] <= 18 and 8 <= box["y"] <= 12
    assert 30 <= box["width"] <= 36 and 42 <= box["height"] <= 48


def test_read_json_boxes_have_x_y_width_height(tmp_path: Path, model: Path) -> None:
    image = Image.new("L", (200, 80), 255)
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 12, 60, 68), outline=0, width=6)
    draw.ellipse((120, 12, 160, 68), outline=0, width=6)
    path = tmp_path / "two.png"
    image.save(path)
    result = runner.invoke(app, ["read", str(model), str(path), "--json"])
    assert result.exit_code == 0, result.output
    boxes = [digit["box"] for digit in json.loads(result.stdout)["digits"]]
    assert len(boxes) == 2
    assert all(set(box) == {"x", "y", "width", "height"} for box in boxes)
    assert boxes[0]["x"] < boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"]
    assert all(36 <= box["width"] <= 44 and 52 <= box["height"] <= 60 for box in boxes)


def test_a_relative_data_path_is_stored_absolute_so_the_run_works_from_anywhere(
    tmp_path: Path, small_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "small.npz").symlink_to(small_npz)
    monkeypatch.chdir(tmp_path)
    args = ["train", "--model", "ann", "--epochs", "1", "--limit", "300", "--quiet"]
    trained = runner.invoke(app, [*args, "--data", "sets/small.npz", "--out", "run"])
    assert trained.exit_code == 0, trained.output
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert stored == str(tmp_path / "sets" / "small.npz")
    # Resuming with the same relative path is no contradiction of the stored absolute one.
    from digits.cli.training import _resumed_config

    assert _resumed_config(Path("run"), {"--data": "sets/small.npz"}).data == stored
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["path"] == stored
    assert json.loads(result.stdout)["count"] == 1000  # small.npz's test split, not MNIST's
