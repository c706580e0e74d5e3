"""Readers for IDX, Kaggle CSV and NPZ: good files round-trip, bad ones name file and place."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from digits.data import DataFormatError, load_dataset, read_idx, read_kaggle_csv, read_npz
from tests.helpers import idx_bytes, idx_gz_bytes, kaggle_csv, random_digits


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_idx_images_and_labels_round_trip(tmp_path: Path, compress: bool) -> None:
    images, labels = random_digits(5)
    encode = idx_gz_bytes if compress else idx_bytes
    (tmp_path / "images").write_bytes(encode(images))
    (tmp_path / "labels").write_bytes(encode(labels))
    np.testing.assert_array_equal(read_idx(tmp_path / "images"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), labels)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"\x00\x00\x0d\x03" + b[4:], "wrong magic"),
        (lambda b: b[:-10], "truncated at offset"),
        (lambda b: b[:6], "truncated at offset 6"),
        (lambda b: b + b"xx", "unexpected trailing bytes"),
    ],
    ids=["magic", "short-payload", "short-header", "trailing"],
)
def test_idx_damage_is_named(tmp_path: Path, mutate: object, message: str) -> None:
    images, _ = random_digits(3)
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(mutate(idx_bytes(images)))  # type: ignore[operator]
    with pytest.raises(DataFormatError, match=message) as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_idx_label_out_of_range_names_index(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.array([1, 2, 12], dtype=np.uint8)))
    with pytest.raises(DataFormatError, match="label 12 at index 2"):
        read_idx(path)


def test_idx_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8)))[:-8])
    with pytest.raises(DataFormatError, match="corrupt gzip"):
        read_idx(path)


def test_kaggle_train_and_test_csv(tmp_path: Path) -> None:
    images, labels = random_digits(4)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text(kaggle_csv(images, labels))
    test.write_text(kaggle_csv(images, None))
    with_labels = read_kaggle_csv(train)
    np.testing.assert_array_equal(with_labels.images, images)
    assert with_labels.labels is not None
    np.testing.assert_array_equal(with_labels.labels, labels)
    without = read_kaggle_csv(test)
    assert without.labels is None
    np.testing.assert_array_equal(without.images, images)


def _bad_csv(tmp_path: Path, row: int, column: int, value: str) -> Path:
    images, labels = random_digits(4)
    lines = kaggle_csv(images, labels).splitlines()
    cells = lines[row - 1].split(",")
    cells[column - 1] = value
    lines[row - 1] = ",".join(cells)
    path = tmp_path / "train.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("row", "column", "value", "message"),
    [
        (3, 5, "abc", r"row 3, column 5: not a number: 'abc'"),
        (4, 10, "300", r"row 4, column 10: pixel 300 is outside 0–255"),
        (2, 1, "11", r"row 2: label 11 is outside 0–9"),
        (5, 7, "-1", r"row 5, column 7: pixel -1 is outside 0–255"),
    ],
)
def test_kaggle_bad_cells_name_the_row(
    tmp_path: Path, row: int, column: int, value: str, message: str
) -> None:
    path = _bad_csv(tmp_path, row, column, value)
    with pytest.raises(DataFormatError, match=message) as error:
        read_kaggle_csv(path)
    assert str(path) in str(error.value)


def test_kaggle_wrong_column_count_names_the_row(tmp_path: Path) -> None:
    images, labels = random_digits(3)
    lines = kaggle_csv(images, labels).splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0]
    path = tmp_path / "train.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match="row 3: 784 columns .expected 785."):
        read_kaggle_csv(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "empty file"), ("label,pixel0\n1,2\n", "header.*2 columns"), (None, "no data rows")],
)
def test_kaggle_empty_or_wrong_header(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "train.csv"
    path.write_text(
        kaggle_csv(np.zeros((0, 28, 28), np.uint8), None) if content is None else content
    )
    with pytest.raises(DataFormatError, match=message):
        read_kaggle_csv(path)


def _body(images: np.ndarray, labels: np.ndarray | None) -> str:
    """The CSV rows without the header line, as `to_csv(header=False)` or `np.savetxt` write."""
    return kaggle_csv(images, labels).split("\n", 1)[1]


@pytest.mark.parametrize("labelled", [False, True], ids=["test.csv", "train.csv"])
def test_kaggle_csv_without_header_keeps_every_row(tmp_path: Path, labelled: bool) -> None:
    images, labels = random_digits(20, seed=4)
    path = tmp_path / "noheader.csv"
    path.write_text(_body(images, labels if labelled else None))
    table = read_kaggle_csv(path)
    np.testing.assert_array_equal(table.images, images)  # all 20, the first row included
    if labelled:
        assert table.labels is not None
        np.testing.assert_array_equal(table.labels, labels)
    else:
        assert table.labels is None


def test_kaggle_csv_without_header_names_a_bad_row(tmp_path: Path) -> None:
    images, _ = random_digits(3)
    lines = _body(images, None).splitlines()
    cells = lines[1].split(",")
    cells[1] = "x"
    lines[1] = ",".join(cells)
    path = tmp_path / "noheader.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match="row 2, column 2: not a number: 'x'"):
        read_kaggle_csv(path)
    path.write_text(",".join(["1"] * 100) + "\n")
    with pytest.raises(DataFormatError, match="row 1: 100 columns .expected 784 pixels"):
        read_kaggle_csv(path)


def test_kaggle_first_row_half_numbers_is_refused(tmp_path: Path) -> None:
    # A data row with one typo must not pass for a header: that would drop an image.
    images, _ = random_digits(2)
    path = tmp_path / "test.csv"
    path.write_text("12a," + _body(images, None).split(",", 1)[1])
    with pytest.raises(DataFormatError, match="row 1: 783 of 784 cells are numbers"):
        read_kaggle_csv(path)


@pytest.mark.parametrize("labelled", [False, True], ids=["test.csv", "train.csv"])
def test_kaggle_csv_with_byte_order_mark(tmp_path: Path, labelled: bool) -> None:
    images, labels = random_digits(3)
    path = tmp_path / "excel.csv"
    path.write_text(kaggle_csv(images, labels if labelled else None), encoding="utf-8-sig")
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    table = read_kaggle_csv(path)
    np.testing.assert_array_equal(table.images, images)
    assert (table.labels is not None) == labelled


def test_kaggle_csv_quoted_header_crlf_and_blank_lines(tmp_path: Path) -> None:
    images, labels = random_digits(3)
    lines = kaggle_csv(images, labels).splitlines()
    lines[0] = ",".join(f'"{name}"' for name in lines[0].split(","))
    path = tmp_path / "train.csv"
    path.write_bytes(("\r\n".join([*lines[:2], "", *lines[2:]]) + "\r\n\r\n").encode())
    table = read_kaggle_csv(path)
    np.testing.assert_array_equal(table.images, images)


def test_kaggle_csv_hash_row_is_an_error_not_a_comment(tmp_path: Path) -> None:
    images, _ = random_digits(3)
    lines = kaggle_csv(images, None).splitlines()
    lines[2] = "#" + lines[2]
    path = tmp_path / "test.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match="row 3, column 1: not a number"):
        read_kaggle_csv(path)


@pytest.mark.parametrize(
    ("encode", "message"),
    [
        (lambda text: text.encode("utf-16"), "UTF-16 text, not a UTF-8 CSV"),
        (lambda text: text.encode("utf-16-le"), "UTF-16 text, not a UTF-8 CSV"),
        (lambda text: gzip.compress(text.encode()), "not a UTF-8 CSV"),
        (lambda text: bytes(range(256)) * 4, "binary data, not a UTF-8 CSV"),
        (lambda text: text.encode("latin-1") + "é".encode("latin-1"), "not a UTF-8 CSV .byte 0xe9"),
    ],
    ids=["utf-16", "utf-16-le", "gzip", "binary", "latin-1"],
)
def test_kaggle_csv_not_utf8_names_the_file(tmp_path: Path, encode: object, message: str) -> None:
    images, _ = random_digits(2)
    path = tmp_path / "test.csv"
    path.write_bytes(encode(kaggle_csv(images, None)))  # type: ignore[operator]
    with pytest.raises(DataFormatError, match=message) as error:
        read_kaggle_csv(path)
    assert str(error.value).startswith(f"{path}: ")


def test_kaggle_csv_that_is_not_a_file(tmp_path: Path) -> None:
    fifo = tmp_path / "test.csv"
    os.mkfifo(fifo)  # reading it would block until a writer comes
    with pytest.raises(DataFormatError, match="is a FIFO, not a file"):
        read_kaggle_csv(fifo)
    with pytest.raises(DataFormatError, match="is a folder, not a CSV file"):
        read_kaggle_csv(tmp_path)
    with pytest.raises(DataFormatError, match="missing.csv: no such file"):
        read_kaggle_csv(tmp_path / "missing.csv")


def test_npz_round_trip_and_load_dataset(tmp_path: Path) -> None:
    images, labels = random_digits(6)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=images, y_train=labels, x_test=images[:2], y_test=labels[:2])
    arrays = read_npz(path)
    np.testing.assert_array_equal(arrays["x_train"], images)
    data = load_dataset(path)
    assert data.has_test
    assert data.x_train.shape == (6, 28, 28)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros((2, 28, 28))}, "missing arrays"),
        (
            {
                "x_train": np.zeros((2, 27, 28)),
                "y_train": np.zeros(2),
                "x_test": np.zeros((1, 28, 28)),
                "y_test": np.zeros(1),
            },
            "x_train has shape",
        ),
        (
            {
                "x_train": np.zeros((2, 28, 28)),
                "y_train": np.array([1, 10]),
                "x_test": np.zeros((1, 28, 28)),
                "y_test": np.zeros(1),
            },
            r"y_train\[1\] has a value outside 0–9",
        ),
        (
            {
                "x_train": np.zeros((2, 28, 28)),
                "y_train": np.zeros(2),
                "x_test": np.zeros((1, 28, 28)),
                "y_test": np.array([object()], dtype=object),
            },
            "pickle",
        ),
    ],
    ids=["missing", "shape", "label", "object-array"],
)
def test_npz_problems(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataFormatError, match=message):
        read_npz(path)


def test_npz_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataFormatError, match="not a readable NPZ"):
        read_npz(path)


def test_idx_folder_and_unknown_formats(tmp_path: Path) -> None:
    images, labels = random_digits(5)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(idx_gz_bytes(images))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(idx_gz_bytes(labels))
    data = load_dataset(tmp_path)
    assert not data.has_test
    np.testing.assert_array_equal(data.y_train, labels)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels[:3]))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images[:2]))
    with pytest.raises(DataFormatError, match="2 test images but 3 test labels"):
        load_dataset(tmp_path)
    odd = tmp_path / "data.txt"
    odd.write_text("x")
    with pytest.raises(DataFormatError, match="unknown data format"):
        load_dataset(odd)
    with pytest.raises(DataFormatError, match="no such file"):
        load_dataset(tmp_path / "missing.npz")


def test_kaggle_test_csv_cannot_train(tmp_path: Path) -> None:
    images, _ = random_digits(2)
    path = tmp_path / "test.csv"
    path.write_text(kaggle_csv(images, None))
    with pytest.raises(DataFormatError, match="no 'label' column"):
        load_dataset(path)
