"""A summary of a data set: counts per split and class, shapes, dtype, where it came from."""

from __future__ import annotations

from typing import Any

import numpy as np

from digits.data import DigitData
from digits.data.sources import data_dir


def describe(data: DigitData) -> dict[str, Any]:
    splits: dict[str, Any] = {}
    for name, images, labels in (
        ("train", data.x_train, data.y_train),
        ("test", data.x_test, data.y_test),
    ):
        if images is None or labels is None:
            continue
        splits[name] = {
            "name": name,
            "count": len(labels),
            "shape": list(images.shape),
            "class_counts": np.bincount(labels, minlength=10).tolist(),
        }
    return {
        "source": data.source,
        "path": str(data.path),
        "cache_dir": str(data_dir()),
        "dtype": str(data.x_train.dtype),
        "splits": splits,
    }
