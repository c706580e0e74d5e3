"""Weight averaging and augmentation inside training: the math, the saved weights, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from digits.data import DigitData
from digits.ema import WeightAverage
from digits.finish import fit
from digits.train import TrainConfig, read_history

AUGMENT = {"rotation": 10.0, "zoom": 0.1, "shift": 0.1, "shear": 5.0, "elastic": 1.0}


@pytest.fixture(scope="module")
def tiny(mnist: DigitData) -> DigitData:
    return DigitData(
        mnist.x_train[:900],
        mnist.y_train[:900],
        mnist.x_test[:300],
        mnist.y_test[:300],
        "mnist subset",
        mnist.path,
    )


def test_average_follows_the_exponential_formula() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = WeightAverage(model, decay=0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    decay = min(0.9, 2 / 11)  # warm-up at the first step
    expected = decay * start + (1 - decay) * (start + 1)
    assert torch.allclose(ema.module[0].weight, expected)
    assert ema.module[1].num_batches_tracked.item() == 7  # counters are copied, not averaged
    assert not ema.module[0].weight.requires_grad


def test_bad_decay_is_an_error() -> None:
    with pytest.raises(ValueError, match="EMA decay must be in"):
        WeightAverage(nn.Linear(1, 1), 1.0)
    with pytest.raises(ValueError, match="ema_decay must be in"):
        TrainConfig(model="cnn", ema_decay=0.0)


def _config(**overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "model": "bn-cnn",
        "model_args": {"width": 8},
        "epochs": 2,
        "batch_size": 100,
        "lr": 0.003,
        "ema_decay": 0.9,
        "augment": AUGMENT,
    }
    values.update(overrides)
    return TrainConfig.from_dict(values)


def test_saved_weights_are_the_average_not_the_last_step(tiny: DigitData, tmp_path: Path) -> None:
    with_ema = fit(_config(epochs=1), tmp_path / "ema", data=tiny)
    saved = load_file(str(with_ema / "model.safetensors"))
    state = torch.load(with_ema / "checkpoint.pt", weights_only=True)
    assert state["ema"]["steps"] == 9  # 810 training images / 100 per step
    last_step = state["model"]
    averaged = state["ema"]["module"]
    name = "0.weight"
    assert torch.equal(saved[name], averaged[name])
    assert not torch.equal(saved[name], last_step[name])


def test_resume_with_ema_and_augmentation_is_exact(tiny: DigitData, tmp_path: Path) -> None:
    config = _config()
    straight = fit(config, tmp_path / "straight", data=tiny)
    stopped = fit(config, tmp_path / "stopped", data=tiny, stop_after_epoch=1)
    resumed = fit(config, stopped, data=tiny, resume=True)
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["val_accuracy"] for r in read_history(straight)] == [
        r["val_accuracy"] for r in read_history(resumed)
    ]


def test_augmentation_changes_what_training_sees(tiny: DigitData, tmp_path: Path) -> None:
    # Same seed, same batches: only the distortion differs (reproducibility with augmentation on
    # is covered by the exact-resume test above).
    plain = fit(_config(epochs=1, augment=None), tmp_path / "plain", data=tiny)
    augmented = fit(_config(epochs=1), tmp_path / "augmented", data=tiny)
    losses = [read_history(run)[0]["train_loss"] for run in (plain, augmented)]
    assert losses[0] != losses[1]
