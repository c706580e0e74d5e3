"""The names of a run directory's files and its state, read without torch.

`digits.run` owns the files (writing, loading); this floor under it only knows their names and
tells how far a run got, so that the predictor and the service, which never import torch, judge
a run directory the same way the training side does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
ONNX_FILE = "model.onnx"
FINISHED_FILE = "finished.json"
ENSEMBLE_FILE = "ensemble.json"
MEMBERS_DIR = "members"
FINETUNE_DATA_FILE = "finetune-data.npz"  # the prepared images a fine-tuning run trained on

State = Literal["empty", "created", "training", "finished"]


def is_ensemble(run_dir: str | Path) -> bool:
    return (Path(run_dir) / ENSEMBLE_FILE).exists()


def run_state(run_dir: str | Path) -> State:
    """empty (nothing there), created (a config, no epoch yet), training (epochs saved, not
    finished) or finished (finished.json, written after metrics, calibration and model.onnx)."""
    run_dir = Path(run_dir)
    # The marker is written last; a run missing a file it promises (removed since) is not done.
    promised = (FINISHED_FILE, METRICS_FILE, ONNX_FILE)
    if all((run_dir / name).exists() for name in promised):
        return "finished"
    if not (run_dir / FINISHED_FILE).exists() and _finished_before_marker(run_dir):
        return "finished"
    if is_ensemble(run_dir) or any(
        (run_dir / name).exists() for name in (CHECKPOINT_FILE, HISTORY_FILE, WEIGHTS_FILE)
    ):
        return "training"
    return "created" if (run_dir / CONFIG_FILE).exists() else "empty"


def _finished_before_marker(run_dir: Path) -> bool:
    """Runs made before finished.json existed: metrics with a calibration, and model.onnx."""
    if not ((run_dir / METRICS_FILE).exists() and (run_dir / ONNX_FILE).exists()):
        return False
    try:
        metrics = json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(metrics, dict) and "calibration" in metrics


def unfinished_message(run_dir: str | Path) -> str:
    """What to tell a user who hands over a run that has not finished, and how to finish it."""
    run_dir = Path(run_dir)
    if is_ensemble(run_dir):
        return (
            f"{run_dir}: the ensemble was not finished (no {FINISHED_FILE}); "
            "run the same `digits train --ensemble` command again to finish it"
        )
    return (
        f"{run_dir}: training has not finished (no {FINISHED_FILE}); "
        f"finish it with `digits train --resume --out {run_dir}`"
    )
