"""Labelled image folders (digits.data.image_folder): DIR/0/*.png … DIR/9/*.png, or train/ and
test/ beside each other, prepared as predictions are; every unusable file named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from digits.cli import app
from digits.data import DataFormatError, load_dataset
from digits.data.image_folder import is_image_folder, read_image_folder
from digits.preprocess import preprocess

runner = CliRunner()


def digit_image(seed: int) -> Image.Image:
    """A dark stroke on white paper, 40×40: a '1' leaning a little, seeded."""
    canvas = np.full((40, 40), 255, np.uint8)
    shift = seed % 5
    for row in range(6, 34):
        column = 18 + shift + (row - 6) // 9
        canvas[row, column : column + 4] = 20
    return Image.fromarray(canvas)


def make_folder(root: Path, per_digit: dict[int, int]) -> Path:
    for digit, count in per_digit.items():
        (root / str(digit)).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            digit_image(index + digit).save(root / str(digit) / f"{index:03d}.png")
    return root


def test_a_folder_per_digit_reads_as_prepared_images_and_labels(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "set", {0: 2, 3: 3, 9: 1})
    (folder / "3" / ".hidden.png").write_bytes(b"not read")
    (folder / "3" / "notes.txt").write_text("not an image suffix: not read")
    read = read_image_folder(folder)
    assert read.labels is not None
    assert read.labels.tolist() == [0, 0, 3, 3, 3, 9]
    assert read.images.shape == (6, 28, 28)
    assert read.images.dtype == np.uint8
    # Each is what prediction would see of the same file.
    expected = preprocess(folder / "3" / "001.png").pixels
    np.testing.assert_array_equal(read.images[3], expected)


def test_train_and_test_folders_give_both_splits(tmp_path: Path) -> None:
    make_folder(tmp_path / "d" / "train", {1: 2, 2: 2})
    make_folder(tmp_path / "d" / "test", {1: 1})
    assert is_image_folder(tmp_path / "d")
    data = load_dataset(tmp_path / "d")
    assert data.source == "image-folder"
    assert data.y_train.tolist() == [1, 1, 2, 2]
    assert data.y_test is not None
    assert data.y_test.tolist() == [1]


def test_an_idx_folder_is_not_taken_for_an_image_folder(tmp_path: Path) -> None:
    (tmp_path / "idx").mkdir()
    assert not is_image_folder(tmp_path / "idx")
    with pytest.raises(DataFormatError, match="no train-images-idx3-ubyte"):
        load_dataset(tmp_path / "idx")


def test_unusable_files_are_all_named(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "bad", {4: 2})
    (folder / "4" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.new("L", (40, 40), 255).save(folder / "4" / "blank.png")
    with pytest.raises(DataFormatError) as caught:
        read_image_folder(folder)
    message = str(caught.value)
    assert "2 of 4 images cannot be used" in message
    assert "broken.png" in message
    assert "blank.png: no digit" in message


def test_an_empty_folder_says_what_layout_it_expects(tmp_path: Path) -> None:
    (tmp_path / "e" / "5").mkdir(parents=True)
    with pytest.raises(DataFormatError, match=r"no images in digit subfolders \(expected"):
        load_dataset(tmp_path / "e")


def test_evaluate_scores_a_run_on_an_image_folder(trained_cnn_run: Path, tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "ones", {1: 6})
    result = runner.invoke(app, ["evaluate", str(trained_cnn_run), "--data", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    assert scored["data"]["source"] == "image-folder"
    assert scored["count"] == 6
