"""Turning a trained run into a finished one, and the calls that train and finish in one go.

Finishing: test metrics into metrics.json, a temperature fitted on held-out data, model.onnx,
then finished.json, written last (digits.run). Each step can be run again, so a run killed while
finishing is finished by `digits train --resume`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from digits.config import EpochRecord, TrainConfig
from digits.data import DigitData, load_mnist
from digits.devices import use_bf16
from digits.distributed import current
from digits.evaluate import evaluate_model
from digits.export import finish_run as calibrate_and_export
from digits.models import count_parameters
from digits.run import (
    CONFIG_FILE,
    RunError,
    load_checkpoint,
    load_data,
    load_model,
    mark_finished,
    read_config,
    run_state,
    split_data,
    write_metrics,
)
from digits.train import train_run


def fit(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    data: DigitData | None = None,
    stop_after_epoch: int | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    device: str = "auto",
) -> Path:
    """Train (digits.train.train_run) on `device`, then finish the run unless stopped early;
    return it."""
    trained = train_run(
        config,
        out_dir,
        resume=resume,
        progress=progress,
        data=data,
        stop_after_epoch=stop_after_epoch,
        on_epoch=on_epoch,
        device=device,
    )
    group = current()
    if trained.complete and group.main:  # one process writes the run directory
        finish(trained.run_dir, trained.data)
    group.barrier()  # the others wait, so that all end with a finished run on disk
    return trained.run_dir


def finish(run_dir: str | Path, data: DigitData | None = None) -> Path:
    """Metrics, calibration, model.onnx, then the finished marker, for a run whose epochs ran."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    data = load_data(config) if data is None else data
    state = load_checkpoint(run_dir)
    if state is None:
        raise RunError(f"{run_dir}: no epoch has been trained; nothing to finish")
    history = [EpochRecord(**row) for row in json.loads(state["history"])]
    # Where the epochs ran and in what precision, as the loop recorded them (checkpoints from
    # before it did: the CPU, and what the config asked for there).
    device = state.get("device", "cpu")
    precision = state.get("precision") or ("bf16" if use_bf16(config.precision) else "fp32")
    best_epoch = int(state["best_epoch"])
    # A fine-tuning run that replayed MNIST is scored and calibrated on it too: loaded once.
    mnist = load_mnist() if config.replay > 0 else None
    write_metrics(
        run_dir,
        run_metrics(run_dir, config, data, history, best_epoch, device, precision, mnist),
    )
    split = split_data(config, data)
    x_pool, y_pool = split.x_train, split.y_train
    if mnist is not None and len(split.y_val) == 0:
        x_pool, y_pool = _replayed_pool(config, x_pool, y_pool, mnist)
    calibrate_and_export(run_dir, split.x_val, split.y_val, x_pool, y_pool)
    mark_finished(run_dir)
    return run_dir


def _replayed_pool(
    config: TrainConfig, images: np.ndarray, labels: np.ndarray, mnist: DigitData
) -> tuple[np.ndarray, np.ndarray]:
    """What a fine-tuning run without a validation split is calibrated on views of: its own
    images and MNIST's, half and half as its batches mixed them (its images repeated when
    fewer), so that the temperature fits both the new handwriting and the old."""
    from digits.calibration import VIEWS

    half = VIEWS // 2
    generator = np.random.default_rng(config.seed)
    own = generator.choice(len(labels), half, replace=len(labels) < half)
    old = generator.choice(len(mnist.y_train), half, replace=False)
    return (
        np.concatenate([images[own], mnist.x_train[old]]),
        np.concatenate([labels[own], mnist.y_train[old]]),
    )


def run_metrics(
    run_dir: Path,
    config: TrainConfig,
    data: DigitData,
    history: list[EpochRecord],
    best_epoch: int,
    device: str,
    precision: str,
    mnist: DigitData | None = None,
) -> dict[str, Any]:
    """metrics.json of a trained run: its best epoch, speed, and the test metrics if any (and,
    for a fine-tuning run given `mnist`, its MNIST test metrics)."""
    model = load_model(run_dir)
    best = history[best_epoch - 1]
    has_val = best.val_accuracy is not None
    metrics: dict[str, Any] = {
        "model": config.model,
        "recipe": config.recipe,
        "parameters": count_parameters(model),
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "train_seconds": sum(record.seconds for record in history),
        "samples_per_s": float(np.mean([record.samples_per_s for record in history])),
        "device": device,
        "precision": precision,
        "val_accuracy": best.val_accuracy if has_val else None,
        "val_loss": best.val_loss if has_val else None,
        "test": None,
    }
    if data.x_test is not None and data.y_test is not None:
        metrics["test"] = evaluate_model(model, data.x_test, data.y_test).to_dict()
    if config.parent is not None:
        metrics["parent"] = config.parent
        if mnist is not None:  # what it still knows of MNIST, beside what it learnt
            assert mnist.x_test is not None
            assert mnist.y_test is not None
            metrics["mnist_test"] = evaluate_model(model, mnist.x_test, mnist.y_test).to_dict()
    return metrics


def train_or_reuse(
    config: TrainConfig,
    run_dir: Path,
    *,
    data: DigitData | None = None,
    progress: bool = False,
    device: str = "auto",
) -> Path:
    """Train into run_dir unless it already holds this very config: a finished run is reused,
    an unfinished one resumed (and finished), a created-but-never-trained one started afresh."""
    state = run_state(run_dir)
    if state in ("training", "finished"):
        saved = read_config(run_dir)
        if saved != config:
            changed = [
                f.name for f in fields(config) if getattr(saved, f.name) != getattr(config, f.name)
            ]
            raise RunError(
                f"{run_dir} holds a run with a different config ({', '.join(changed)}); "
                "remove it or choose another --out"
            )
        if state == "finished":
            return run_dir
    resume = state == "training" and (run_dir / CONFIG_FILE).exists()
    return fit(config, run_dir, resume=resume, progress=progress, data=data, device=device)
