"""Digit data: MNIST fetched and cached offline-first, and readers for IDX, Kaggle CSV and NPZ.

`load_mnist()` is the one call most code needs; `load_dataset(path)` reads any supported file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digits.data.image_folder import is_image_folder, read_image_folders
from digits.data.readers import (
    DataFormatError,
    LabelledImages,
    read_idx,
    read_kaggle_csv,
    read_npz,
)
from digits.data.sources import FetchError, data_dir, fetch_mnist
from digits.data.splits import stratified_split

__all__ = [
    "DataFormatError",
    "DigitData",
    "FetchError",
    "LabelledImages",
    "data_dir",
    "fetch_mnist",
    "load_dataset",
    "load_mnist",
    "read_idx",
    "read_kaggle_csv",
    "read_npz",
    "stratified_split",
]


@dataclass(frozen=True)
class DigitData:
    """A training set and, when the source has one, a labelled test set (uint8, N×28×28 and N)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    source: str
    path: Path

    @property
    def has_test(self) -> bool:
        return self.x_test is not None and self.y_test is not None


def load_mnist(folder: Path | None = None) -> DigitData:
    """MNIST from the cache, fetching it first if needed (see `digits.data.sources`)."""
    result = fetch_mnist(folder)
    arrays = result.arrays
    return DigitData(
        arrays["x_train"],
        arrays["y_train"],
        arrays["x_test"],
        arrays["y_test"],
        result.source,
        result.path,
    )


_IDX_NAMES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _find_idx(folder: Path, key: str) -> Path | None:
    for stem in _IDX_NAMES[key]:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.exists():
                return candidate
    return None


def _load_idx_folder(folder: Path) -> DigitData:
    found = {key: _find_idx(folder, key) for key in _IDX_NAMES}
    if found["x_train"] is None or found["y_train"] is None:
        raise DataFormatError(
            f"{folder}: no train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] in it"
        )
    arrays = {key: (read_idx(path) if path else None) for key, path in found.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images is not None and labels is not None and len(images) != len(labels):
            raise DataFormatError(
                f"{folder}: {len(images)} {split} images but {len(labels)} {split} labels"
            )
    x_train, y_train = arrays["x_train"], arrays["y_train"]
    assert x_train is not None
    assert y_train is not None
    return DigitData(x_train, y_train, arrays["x_test"], arrays["y_test"], "idx", folder)


def load_dataset(path: str | Path) -> DigitData:
    """Read a data set from an IDX folder, a folder of images in digit subfolders (prepared as
    predictions are; see digits.data.image_folder), a Kaggle `train.csv` or a Keras-style `.npz`."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path}: no such file or directory")
    if path.is_dir():
        if is_image_folder(path):
            train, test = read_image_folders(path)
            assert train.labels is not None
            return DigitData(
                train.images,
                train.labels,
                None if test is None else test.images,
                None if test is None else test.labels,
                "image-folder",
                path,
            )
        return _load_idx_folder(path)
    if path.suffix == ".npz":
        arrays = read_npz(path)
        # Empty test arrays are an NPZ without a test split (as `digits finetune` writes one).
        has_test = len(arrays["y_test"]) > 0
        return DigitData(
            arrays["x_train"],
            arrays["y_train"],
            arrays["x_test"] if has_test else None,
            arrays["y_test"] if has_test else None,
            "npz",
            path,
        )
    if path.suffix == ".csv":
        table = read_kaggle_csv(path)
        if table.labels is None:
            raise DataFormatError(f"{path}: no 'label' column, so it cannot be used for training")
        return DigitData(table.images, table.labels, None, None, "kaggle-csv", path)
    raise DataFormatError(
        f"{path}: unknown data format (expected an IDX folder, a folder of digit "
        "subfolders 0-9 of images, a Kaggle .csv or an .npz)"
    )
