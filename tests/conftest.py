"""Shared fixtures: real MNIST (fetched once into the cache), small data files, a trained run.

The fixtures train on subsets so the whole suite stays quick on two cores; full-data checks are
marked `slow` and also run as benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator
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
    from digits.finish import fit
    from digits.train import TrainConfig

    out = tmp_path_factory.mktemp("runs") / "cnn"
    config = TrainConfig(model="cnn", epochs=1, lr=0.004, schedule="onecycle", val_split=0.0)
    return fit(config, out, data=mnist)


@pytest.fixture(scope="session")
def refusing_run(mnist: DigitData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small bn-cnn with the class "not a digit", trained with a small generated set of
    negatives (not the cached 20 000, which take half a minute to draw): ~10 s."""
    import torch

    from digits import train
    from digits.data.negatives import generate
    from digits.finish import fit
    from digits.train import TrainConfig

    small = DigitData(
        mnist.x_train[:8000], mnist.y_train[:8000], mnist.x_test[:1000], mnist.y_test[:1000],
        mnist.source, mnist.path,
    )  # fmt: skip
    drawn = torch.from_numpy(generate("train", 1500, seed=7).images).float().div(255).unsqueeze(1)
    patch = pytest.MonkeyPatch()
    patch.setattr(train, "_negative_images", lambda: drawn)
    config = TrainConfig(
        model="bn-cnn", model_args={"width": 16}, epochs=2, lr=0.01, batch_size=128,
        schedule="onecycle", val_split=0.0, negatives=0.2,
    )  # fmt: skip
    try:
        return fit(config, tmp_path_factory.mktemp("runs") / "refusing", data=small)
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on loopback for the whole session (tests/postgres.py)."""
    from tests.postgres import postgres_server

    with postgres_server() as url:
        yield url
