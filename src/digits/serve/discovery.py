"""Find the model to serve when none is named: the best finished run under a runs folder.

"Best" is the highest test accuracy in the run's metrics.json. Only finished runs are served
(finished.json, written after calibration and model.onnx): the service runs on ONNX Runtime and
never loads torch, and an unfinished run's model.onnx may be missing or not yet calibrated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from digits.run_files import METRICS_FILE, ONNX_FILE, run_state

HOW_TO_TRAIN = "digits train --model cnn --epochs 1 --val-split 0 --lr 0.004 --schedule onecycle"


class NoModelError(FileNotFoundError):
    """No servable model was found; the message says how to get one."""


@dataclass(frozen=True)
class RunCandidate:
    path: Path
    accuracy: float | None
    finished: bool


def _test_accuracy(metrics_path: Path) -> float | None:
    try:
        metrics = json.loads(metrics_path.read_text())
        accuracy = (metrics.get("test") or {}).get("accuracy")
    except (OSError, ValueError, AttributeError):
        return None
    return float(accuracy) if isinstance(accuracy, int | float) else None


def list_runs(runs_dir: Path) -> list[RunCandidate]:
    """Every run that got as far as its metrics.json, at any depth under `runs_dir`."""
    if not runs_dir.is_dir():
        return []
    return [
        RunCandidate(path.parent, _test_accuracy(path), run_state(path.parent) == "finished")
        for path in sorted(runs_dir.rglob(METRICS_FILE))
    ]


def find_best_run(runs_dir: Path) -> Path:
    """The servable run with the highest test accuracy, or NoModelError saying what to do."""
    runs = list_runs(runs_dir)
    servable = [run for run in runs if run.finished]
    if servable:
        # Runs without a test score rank last but can still be served.
        best = max(servable, key=lambda run: -1.0 if run.accuracy is None else run.accuracy)
        return best.path
    if runs:
        newest = max(runs, key=lambda run: (run.path / METRICS_FILE).stat().st_mtime)
        raise NoModelError(
            f"no run under {runs_dir}/ has finished (calibrated, with its {ONNX_FILE}); finish "
            f"one with `digits train --resume --out {newest.path}`, or pass MODEL (a run "
            "directory or an .onnx file)"
        )
    raise NoModelError(
        f"no trained model found under {runs_dir}/; train one with `{HOW_TO_TRAIN}` "
        "(under a minute on two cores; needs the train extra: pip install -e '.[train]'), "
        "or pass MODEL (a run directory or an .onnx file)"
    )
