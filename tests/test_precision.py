"""'auto' precision on a CPU: measured once per CPU, model and batch size, then remembered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from digits import precision
from digits.data import DigitData
from digits.finish import fit
from digits.models import create_model
from digits.run import load_checkpoint
from digits.train import TrainConfig, read_metrics


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path))
    return tmp_path


def _timings(monkeypatch: pytest.MonkeyPatch, fp32: float, bf16: float) -> list[bool]:
    """step_seconds replaced by fixed timings; the list records each measurement asked for."""
    asked: list[bool] = []

    def fake(model: torch.nn.Module, batch_size: int, bf16_on: bool) -> float:
        asked.append(bf16_on)
        return bf16 if bf16_on else fp32

    monkeypatch.setattr(precision, "step_seconds", lambda m, b, bf16: fake(m, b, bf16))
    return asked


@pytest.mark.parametrize(
    ("fp32", "bf16", "expected"),
    [(0.040, 0.020, True), (0.040, 0.039, False), (0.020, 0.040, False)],
    ids=["bf16-twice-as-fast", "a-tie-keeps-fp32", "bf16-slower"],
)
def test_bf16_is_chosen_only_when_clearly_faster(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, fp32: float, bf16: float, expected: bool
) -> None:
    asked = _timings(monkeypatch, fp32, bf16)
    model = create_model("ann")
    assert precision.faster_on_cpu(model, "ann {}", 64) is expected
    assert asked == [False, True, False, True]  # in turn, twice
    cached = json.loads((cache_dir / precision.CACHE_FILE).read_text())
    assert cached == {precision.cache_key("ann {}", 64): "bf16" if expected else "fp32"}


def test_the_choice_is_remembered_per_model_and_batch(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _timings(monkeypatch, 0.040, 0.020)
    model = create_model("ann")
    assert precision.faster_on_cpu(model, "ann {}", 64)
    asked.clear()
    _timings(monkeypatch, 0.020, 0.040)  # the machine would now say otherwise: not asked
    assert precision.faster_on_cpu(model, "ann {}", 64)
    assert asked == []
    assert not precision.faster_on_cpu(model, "ann {}", 128)  # another batch: measured
    assert len(json.loads((cache_dir / precision.CACHE_FILE).read_text())) == 2


def test_a_damaged_cache_is_measured_again_and_rewritten(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (cache_dir / precision.CACHE_FILE).write_text("{not json")
    asked = _timings(monkeypatch, 0.020, 0.040)
    assert not precision.faster_on_cpu(create_model("ann"), "ann {}", 64)
    assert len(asked) == 4
    assert json.loads((cache_dir / precision.CACHE_FILE).read_text()) == {
        precision.cache_key("ann {}", 64): "fp32"
    }


def test_measuring_leaves_the_model_and_the_global_generator_alone() -> None:
    torch.manual_seed(3)
    model = create_model("fast-cnn", first=16, crop=2).to(memory_format=torch.channels_last)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    generator_state = torch.get_rng_state()
    for bf16 in (False, True):
        assert 0 < precision.step_seconds(model, 32, bf16) < 10
    after = model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)  # BN statistics too
    assert torch.equal(torch.get_rng_state(), generator_state)


def test_auto_on_the_cpu_trains_in_the_measured_precision_and_resumes_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_mnist: DigitData
) -> None:
    monkeypatch.setattr("digits.train.use_bf16", lambda name, device=None: name != "fp32")
    config = TrainConfig.from_dict(
        {"model": "ann", "epochs": 2, "limit": 600, "batch_size": 64, "val_split": 0.0}
    )
    monkeypatch.setattr(precision, "faster_on_cpu", lambda model, key, batch: True)
    run = fit(config, tmp_path / "run", data=small_mnist, stop_after_epoch=1, device="cpu")
    assert load_checkpoint(run)["precision"] == "bf16"
    # The machine now measures otherwise; the resumed run keeps the precision it started in.
    monkeypatch.setattr(precision, "faster_on_cpu", lambda model, key, batch: False)
    fit(config, run, resume=True, data=small_mnist, device="cpu")
    assert read_metrics(run)["precision"] == "bf16"
    fresh = fit(config, tmp_path / "fresh", data=small_mnist, device="cpu")
    assert read_metrics(fresh)["precision"] == "fp32"


def test_an_explicit_precision_is_never_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_mnist: DigitData
) -> None:
    def refuse(*args: object) -> bool:
        raise AssertionError("measured although the config names its precision")

    monkeypatch.setattr(precision, "faster_on_cpu", refuse)
    config = TrainConfig.from_dict(
        {"model": "ann", "epochs": 1, "limit": 600, "val_split": 0.0, "precision": "fp32"}
    )
    assert read_metrics(fit(config, tmp_path / "run", data=small_mnist))["precision"] == "fp32"
