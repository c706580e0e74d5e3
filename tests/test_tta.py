"""Test-time augmentation: the fixed views, averaged probabilities, `digits evaluate --tta`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn
from typer.testing import CliRunner

from digits.cli import app
from digits.data import DigitData
from digits.evaluate import model_probabilities
from digits.finish import fit
from digits.train import TrainConfig
from digits.tta import VIEWS, transform, tta_probabilities


def test_identity_view_is_the_image_and_a_shift_moves_ink_one_pixel() -> None:
    images = torch.zeros(2, 1, 28, 28)
    images[:, 0, 10, 12] = 1.0
    assert torch.equal(transform(images, 0, 0, 0), images)
    right = transform(images, 1, 0, 0)
    down = transform(images, 0, 1, 0)
    assert right[0, 0, 10, 13].item() == pytest.approx(1.0, abs=1e-5)
    assert down[0, 0, 11, 12].item() == pytest.approx(1.0, abs=1e-5)


def test_rotation_keeps_the_centre_and_the_range() -> None:
    images = torch.rand(3, 1, 28, 28)
    turned = transform(images, 0, 0, 7)
    assert turned.shape == images.shape
    assert turned.min() >= 0.0
    assert turned.max() <= 1.0


def test_probabilities_are_the_mean_over_views(mnist: DigitData) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    images = mnist.x_test[:50]
    averaged = tta_probabilities(model, images)
    np.testing.assert_allclose(averaged.sum(1), 1.0, atol=1e-6)
    only_original = tta_probabilities(model, images, views=((0, 0, 0),))
    np.testing.assert_allclose(only_original, model_probabilities(model, images), atol=1e-5)
    assert not np.allclose(averaged, only_original)
    assert len(VIEWS) == 7
    with pytest.raises(ValueError, match="at least one view"):
        tta_probabilities(model, images, views=())


def test_evaluate_with_tta(mnist: DigitData, small_npz: Path, tmp_path: Path) -> None:
    tiny = DigitData(
        mnist.x_train[:600], mnist.y_train[:600], None, None, "mnist subset", mnist.path
    )
    run = fit(TrainConfig(model="ann", epochs=1, val_split=0.0), tmp_path / "ann", data=tiny)
    args = ["evaluate", str(run), "--data", str(small_npz), "--json"]
    plain = CliRunner().invoke(app, args)
    with_tta = CliRunner().invoke(app, [*args, "--tta"])
    assert plain.exit_code == 0, plain.output
    assert with_tta.exit_code == 0, with_tta.output
    first, second = json.loads(plain.stdout), json.loads(with_tta.stdout)
    assert first["count"] == second["count"] == 1000
    assert first["loss"] != second["loss"]


def test_progress_is_shown_on_a_terminal_and_gone_at_the_end(mnist: DigitData) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    assert mnist.x_test is not None
    images = mnist.x_test[:50]
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)

    watched = tta_probabilities(model, images, progress=terminal)

    np.testing.assert_array_equal(watched, tta_probabilities(model, images))
    drawn = screen.getvalue()
    assert "test-time augmentation" in drawn
    assert f"{len(VIEWS) * len(images)}/{len(VIEWS) * len(images)}" in drawn
    assert drawn.endswith("\x1b[1A\x1b[2K")  # transient: the bar's line is erased at the end


def test_evaluate_tta_draws_no_progress_when_stderr_is_no_terminal(
    mnist: DigitData, small_npz: Path, tmp_path: Path
) -> None:
    tiny = DigitData(
        mnist.x_train[:300], mnist.y_train[:300], None, None, "mnist subset", mnist.path
    )
    run = fit(TrainConfig(model="ann", epochs=1, val_split=0.0), tmp_path / "ann", data=tiny)
    result = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(small_npz), "--tta"])
    assert result.exit_code == 0, result.output
    assert "test-time augmentation" not in result.stderr
    assert "accuracy" in result.stdout
