"""Train several models under the same conditions and put their results side by side."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digits.atomic import atomic_write_text
from digits.data import DigitData
from digits.models import REGISTRY
from digits.train import TrainConfig, fit, read_metrics


@dataclass
class ComparisonRow:
    """One model's results, averaged over seeds."""

    model: str
    parameters: int
    epochs: int
    seeds: int
    train_seconds: float
    accuracy_mean: float
    accuracy_std: float
    loss: float
    macro_f1: float
    claimed_accuracy: float | None
    runs: list[str]


def compare(
    configs: Sequence[TrainConfig],
    out_dir: Path,
    seeds: int = 1,
    data: DigitData | None = None,
    progress: bool = False,
) -> list[ComparisonRow]:
    """Train each config with seeds 0..seeds-1 into out_dir/<model>-seed<S>; reuse finished runs."""
    rows = []
    for config in configs:
        metrics = []
        runs = []
        for seed in range(seeds):
            run_config = TrainConfig.from_dict({**config.__dict__, "seed": config.seed + seed})
            run_dir = out_dir / f"{config.recipe or config.model}-seed{run_config.seed}"
            if not (run_dir / "metrics.json").exists():
                fit(
                    run_config,
                    run_dir,
                    resume=(run_dir / "config.json").exists(),
                    progress=progress,
                    data=data,
                )
            metrics.append(read_metrics(run_dir))
            runs.append(str(run_dir))
        tests = [m["test"] for m in metrics if m["test"] is not None]
        if not tests:
            raise ValueError("comparison needs a data set with a test split")
        accuracies = np.array([t["accuracy"] for t in tests])
        rows.append(
            ComparisonRow(
                model=config.recipe or config.model,
                parameters=metrics[0]["parameters"],
                epochs=config.epochs,
                seeds=seeds,
                train_seconds=float(np.mean([m["train_seconds"] for m in metrics])),
                accuracy_mean=float(accuracies.mean()),
                accuracy_std=float(accuracies.std()),
                loss=float(np.mean([t["loss"] for t in tests])),
                macro_f1=float(np.mean([t["macro_f1"] for t in tests])),
                claimed_accuracy=REGISTRY[config.model].claimed_accuracy,
                runs=runs,
            )
        )
    write_tables(rows, out_dir)
    return rows


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def markdown_table(rows: Sequence[ComparisonRow]) -> str:
    header = (
        "| model | parameters | epochs | train s | test accuracy | loss | macro F1 "
        "| seed claims |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| `{r.model}` | {r.parameters:,} | {r.epochs} | {r.train_seconds:.1f} | "
        f"{_percent(r.accuracy_mean)}"
        + (f" ± {100 * r.accuracy_std:.2f}" if r.seeds > 1 else "")
        + f" | {r.loss:.4f} | {r.macro_f1:.4f} | {_percent(r.claimed_accuracy)} |"
        for r in rows
    ]
    return header + "\n".join(lines) + "\n"


def write_tables(rows: Sequence[ComparisonRow], out_dir: Path) -> None:
    """comparison.md, comparison.csv and comparison.json in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "comparison.md", markdown_table(rows))
    buffer = io.StringIO()
    columns = [name for name in ComparisonRow.__dataclass_fields__ if name != "runs"]
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.__dict__)
    atomic_write_text(out_dir / "comparison.csv", buffer.getvalue())
    payload: list[dict[str, Any]] = [row.__dict__ for row in rows]
    atomic_write_text(out_dir / "comparison.json", json.dumps(payload, indent=2))
