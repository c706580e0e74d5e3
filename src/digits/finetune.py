"""Transfer learning: a finished run adapted to new labelled digits (`digits finetune`).

A fine-tuning run is an ordinary run directory. Its config names the parent run whose best
weights it starts from, the model it keeps, and the images it trains on, copied into the run
directory as `finetune-data.npz` once they are read and prepared: the run resumes, evaluates and
records exactly what it saw, even if the folder or the feedback store changes afterwards.

Small labelled sets (tens to hundreds of digits) are the use: every batch is topped up with as
many MNIST training images again (`replay`), so the model learns the new handwriting without
forgetting the old (MNIST test accuracy moves by tenths of a point, docs/results.md), and with
generated non-digits when the parent has the class "not a digit". The parent's augmentation is
kept: with few images, distorted copies are most of what there is to learn from.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from digits.config import TrainConfig, absolute_data_path
from digits.data import DigitData, load_dataset
from digits.data.readers import write_npz_atomic
from digits.run_files import FINETUNE_DATA_FILE, is_ensemble, run_state

FEEDBACK_PREFIX = "feedback:"
STEPS = 400
"""Optimizer steps a fine-tuning run takes by default (its epochs are as many as that needs):
on a few hundred images, enough to learn them and few enough not to drift from the parent."""
BATCH_SIZE = 64
LR = 1e-3
REPLAY = 1.0


def read_source(source: str) -> tuple[DigitData, str]:
    """The labelled images of `source` and how to name it in the run's record: a data file or
    folder (digits.data.load_dataset), or `feedback:URL`, the corrections kept by the service."""
    if source.startswith(FEEDBACK_PREFIX):
        from digits.feedback import read_feedback, shown_url

        url = source.removeprefix(FEEDBACK_PREFIX)
        images, labels = read_feedback(url)  # an empty store is an error naming it
        shown = FEEDBACK_PREFIX + shown_url(url)
        return DigitData(images, labels, None, None, "feedback", Path(shown)), shown
    return load_dataset(source), absolute_data_path(source)


def default_epochs(count: int, batch_size: int, steps: int = STEPS) -> int:
    """Epochs over `count` images that make about `steps` optimizer steps."""
    return max(1, math.ceil(steps / math.ceil(count / batch_size)))


def finetune_config(
    parent_dir: Path,
    parent: TrainConfig,
    data_file: Path,
    source: str,
    count: int,
    *,
    epochs: int | None = None,
    lr: float = LR,
    batch_size: int = BATCH_SIZE,
    freeze: str = "none",
    replay: float = REPLAY,
    seed: int = 0,
    val_split: float = 0.0,
) -> TrainConfig:
    """The parent's config turned into a fine-tuning one: the same model, augmentation and
    non-digits; new data, a fresh cosine schedule from `lr`, no early stopping, no averaging."""
    batch_size = min(batch_size, count)
    return replace(
        parent,
        data=str(data_file),
        source=source,
        parent=str(parent_dir),
        recipe=None,
        epochs=epochs or default_epochs(count, batch_size),
        batch_size=batch_size,
        lr=lr,
        optimizer="adam",
        schedule="cosine",
        ema_decay=None,
        patience=0,
        seed=seed,
        val_split=val_split,
        limit=None,
        freeze=freeze,
        replay=replay,
        world_size=1,
    )


def finetune(
    parent: str | Path,
    source: str,
    out: str | Path,
    *,
    epochs: int | None = None,
    lr: float = LR,
    batch_size: int = BATCH_SIZE,
    freeze: str = "none",
    replay: float = REPLAY,
    seed: int = 0,
    val_split: float = 0.0,
    progress: bool = False,
    device: str = "auto",
    stop_after_epoch: int | None = None,
) -> Path:
    """Fine-tune the finished run `parent` on `source` into the new run directory `out`
    (`stop_after_epoch` ends it there unfinished, as a kill would: for tests of resuming)."""
    from digits.finish import fit
    from digits.run import RunError, read_config, require_finished

    parent_dir = Path(absolute_data_path(parent))
    require_finished(parent_dir)
    if is_ensemble(parent_dir):
        raise RunError(f"{parent}: an ensemble; fine-tune one of its member runs instead")
    out = Path(out)
    if run_state(out) not in ("empty", "created"):
        raise RunError(
            f"{out} already holds a run; continue it with `digits train --resume --out {out}` "
            "or choose another --out"
        )
    data, shown = read_source(source)  # before anything is written: bad data leaves no run
    data_file = (out / FINETUNE_DATA_FILE).resolve()
    config = finetune_config(  # and a bad option (the config checks every field) neither
        parent_dir,
        read_config(parent_dir),
        data_file,
        shown,
        len(data.y_train),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        freeze=freeze,
        replay=replay,
        seed=seed,
        val_split=val_split,
    )
    out.mkdir(parents=True, exist_ok=True)
    empty = np.zeros((0, 28, 28), np.uint8)
    write_npz_atomic(
        data_file,
        {
            "x_train": data.x_train,
            "y_train": data.y_train.astype(np.uint8),
            "x_test": data.x_test if data.x_test is not None else empty,
            "y_test": (data.y_test if data.y_test is not None else np.zeros(0)).astype(np.uint8),
        },
    )
    return fit(config, out, progress=progress, device=device, stop_after_epoch=stop_after_epoch)
