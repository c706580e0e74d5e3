"""The accuracy gate: the seed `cnn`, one epoch over all 60 000 images, ≥ 98.5 % on the test set."""

from __future__ import annotations

from pathlib import Path

from digits.train import read_history, read_metrics


def test_one_epoch_of_the_seed_cnn_reaches_98_5_percent(trained_cnn_run: Path) -> None:
    metrics = read_metrics(trained_cnn_run)
    assert metrics["model"] == "cnn"
    assert len(read_history(trained_cnn_run)) == 1
    assert metrics["test"]["count"] == 10_000
    assert metrics["test"]["accuracy"] >= 0.985, metrics["test"]["accuracy"]
