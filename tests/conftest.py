"""Shared fixtures: real MNIST (fetched once into the cache), small data files, a trained run.

The fixtures train on subsets so the whole suite stays quick on two cores; full-data checks are
marked `slow` and also run as benchmarks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digits.data import DigitData, load_mnist


@pytest.fixture(scope="session")
def mnist() -> DigitData:
    """The real MNIST, from the user cache (or `$DIGITS_DATA_DIR`), fetched on first use."""
    return load_mnist()


@pytest.fixture(scope="session")
def small_mnist(mnist: DigitData) -> DigitData:
    """6 000 training and 1 000 test images of real MNIST, in memory."""
    return DigitData(
        mnist.x_train[:6000],
        mnist.y_train[:6000],
        mnist.x_test[:1000],
        mnist.y_test[:1000],
        "mnist subset",
        mnist.path,
    )


@pytest.fixture(scope="session")
def small_npz(mnist: DigitData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Keras-style NPZ with 6 000 training and 1 000 test images of real MNIST."""
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(
        path,
        x_train=mnist.x_train[:6000],
        y_train=mnist.y_train[:6000],
        x_test=mnist.x_test[:1000],
        y_test=mnist.y_test[:1000],
    )
    return path


@pytest.fixture(scope="session")
def trained_cnn_run(mnist: DigitData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seed `cnn` run: one epoch on all 60 000 images (~10 s, ~98.7 % test accuracy)."""
    from digits.train import TrainConfig, fit

    out = tmp_path_factory.mktemp("runs") / "cnn"
    config = TrainConfig(model="cnn", epochs=1, lr=0.004, schedule="onecycle", val_split=0.0)
    return fit(config, out, data=mnist)
