"""Train several models or recipes under the same conditions and put their results side by side.

Items are recipe names, recipe files or model names (`resolve_items`). Each is trained with seeds
S..S+n-1 into OUT/<name>-seed<S>; finished runs are reused, so an interrupted comparison picks up
where it stopped. The outcome is written as comparison.md, .csv, .json and a plot, comparison.png.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from digits.atomic import atomic_write_bytes, atomic_write_text
from digits.config import TrainConfig
from digits.data import DigitData
from digits.finish import train_or_reuse
from digits.models import REGISTRY
from digits.run import (
    load_data,
    load_model,
    predict_logits,
    read_metrics,
    run_state,
    to_tensor,
)

TABLE_FILES = ("comparison.md", "comparison.csv", "comparison.json", "comparison.png")


@dataclass
class ComparisonRow:
    """One model's or recipe's results, averaged over seeds."""

    model: str
    """The item compared: recipe name, or model name for a plain model."""
    architecture: str
    parameters: int
    epochs: float
    """Epochs actually run (early stopping may end a run before its budget), mean over seeds."""
    seeds: int
    train_seconds: float
    accuracy_mean: float
    accuracy_std: float
    loss: float
    macro_f1: float
    images_per_s: float
    """Inference throughput of the torch model, batches of 1000 test images, fp32."""
    claimed_accuracy: float | None
    claim_note: str
    runs: list[str]


def _recipes_available() -> bool:
    return importlib.util.find_spec("digits.recipes") is not None


def _recipe_names() -> list[str]:
    if not _recipes_available():
        return []
    from digits.recipes import RECIPES

    return list(RECIPES)


def default_items() -> list[str]:
    """The seven seed models (as their recipes when those exist) and the `best` recipe."""
    seeds = [spec.name for spec in REGISTRY.values() if spec.seed]
    recipes = _recipe_names()
    return seeds + (["best"] if "best" in recipes else [])


def resolve_item(item: str) -> TrainConfig:
    """A recipe name, a recipe JSON file or a model name → its training config.

    A name that is both a recipe and a model means the recipe: the seed recipes carry their seed's
    own settings, which a bare model name cannot.
    """
    recipes = _recipe_names()
    if item in recipes or Path(item).is_file():
        if _recipes_available():
            from digits.recipes import get_recipe

            return get_recipe(item)
        try:  # an installation without named recipes still reads recipe files
            return TrainConfig.from_dict(json.loads(Path(item).read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{item}: not a recipe file ({exc})") from None
    if item in REGISTRY:
        # Plain models train on all the training data, scored on the test set.
        return TrainConfig(model=item, val_split=0.0)
    known = ", ".join(recipes + [name for name in REGISTRY if name not in recipes])
    raise ValueError(f"compare: {item!r} is neither a recipe, a recipe file nor a model ({known})")


def resolve_items(
    items: Sequence[str],
    *,
    epochs: int | None = None,
    limit: int | None = None,
    data_path: str | None = None,
) -> list[TrainConfig]:
    """Configs for the items, with the overrides applied to every one of them."""
    if not items:
        raise ValueError("compare: no models or recipes given")
    configs = []
    for item in items:
        config = resolve_item(item)
        overrides: dict[str, Any] = {"epochs": epochs, "limit": limit, "data": data_path}
        configs.append(replace(config, **{k: v for k, v in overrides.items() if v is not None}))
    labels = [label(config) for config in configs]
    duplicates = sorted({name for name in labels if labels.count(name) > 1})
    if duplicates:
        raise ValueError(f"compare: {', '.join(duplicates)} given more than once")
    return configs


def label(config: TrainConfig) -> str:
    return config.recipe or config.model


def inference_speed(
    model: nn.Module, images: np.ndarray, batch_size: int = 1000, repeats: int = 3
) -> float:
    """Images per second through the torch model in batches of `batch_size` (fp32).

    After one warm-up batch, the fastest of `repeats` passes over up to 5 000 images: other work
    on a shared machine only ever slows a pass down, so the fastest is the least disturbed.
    """
    tensor = to_tensor(images[:5000])
    predict_logits(model, tensor[:batch_size], batch_size=batch_size)
    fastest = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        predict_logits(model, tensor, batch_size=batch_size)
        fastest = min(fastest, time.perf_counter() - started)
    return len(tensor) / fastest


@dataclass(frozen=True)
class RunStart:
    """What `compare` is about to train (or reuse), for a heading above its progress bars."""

    item: str
    seed: int
    run_dir: Path
    number: int
    """1 for the first run of the comparison."""
    total: int
    reused: bool
    """The run is finished already and is read, not trained."""


def compare(
    configs: Sequence[TrainConfig],
    out_dir: Path,
    seeds: int = 1,
    data: DigitData | None = None,
    progress: bool = False,
    on_run: Callable[[RunStart], None] | None = None,
) -> list[ComparisonRow]:
    """Train each config with seeds config.seed .. +seeds-1 and write the comparison tables.

    `data` replaces every config's own data set (loaded once per distinct path otherwise).
    `on_run` hears of each run before it starts: every item's progress bars look alike, and
    say neither the item nor the seed.
    """
    if seeds < 1:
        raise ValueError(f"compare: seeds must be >= 1, got {seeds}")
    out_dir = Path(out_dir)
    loaded: dict[str | None, DigitData] = {}
    rows: list[ComparisonRow] = []
    for config in configs:
        if data is None and config.data not in loaded:
            loaded[config.data] = load_data(config)
        dataset = data if data is not None else loaded[config.data]
        if dataset.x_test is None or dataset.y_test is None:
            raise ValueError(f"compare: {dataset.path} has no test split to compare on")
        metrics, runs = [], []
        for offset in range(seeds):
            run_config = replace(config, seed=config.seed + offset)
            run_dir = out_dir / f"{label(config)}-seed{run_config.seed}"
            if on_run is not None:
                start = RunStart(
                    item=label(config),
                    seed=run_config.seed,
                    run_dir=run_dir,
                    number=len(rows) * seeds + offset + 1,
                    total=len(configs) * seeds,
                    reused=run_state(run_dir) == "finished",
                )
                on_run(start)
            train_or_reuse(run_config, run_dir, data=dataset, progress=progress)
            metrics.append(read_metrics(run_dir))
            runs.append(str(run_dir))
        tests = [m["test"] for m in metrics]
        accuracies = np.array([t["accuracy"] for t in tests])
        spec = REGISTRY[config.model]
        rows.append(
            ComparisonRow(
                model=label(config),
                architecture=config.model,
                parameters=metrics[0]["parameters"],
                epochs=float(np.mean([m["epochs_run"] for m in metrics])),
                seeds=seeds,
                train_seconds=float(np.mean([m["train_seconds"] for m in metrics])),
                accuracy_mean=float(accuracies.mean()),
                # Sample standard deviation: a handful of seeds estimates the spread.
                accuracy_std=float(accuracies.std(ddof=1)) if seeds > 1 else 0.0,
                loss=float(np.mean([t["loss"] for t in tests])),
                macro_f1=float(np.mean([t["macro_f1"] for t in tests])),
                images_per_s=inference_speed(load_model(runs[0]), dataset.x_test),
                claimed_accuracy=spec.claimed_accuracy,
                claim_note=spec.claim_note,
                runs=runs,
            )
        )
    write_tables(rows, out_dir)
    return rows


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def accuracy_text(row: ComparisonRow) -> str:
    spread = f" ± {100 * row.accuracy_std:.2f}" if row.seeds > 1 else ""
    return f"{percent(row.accuracy_mean)}{spread}"


def epochs_text(row: ComparisonRow) -> str:
    return f"{row.epochs:g}" if row.epochs == int(row.epochs) else f"{row.epochs:.1f}"


def markdown_table(rows: Sequence[ComparisonRow]) -> str:
    seeds = rows[0].seeds if rows else 1
    header = (
        f"Test accuracy: mean ± sample standard deviation over {seeds} seed(s). Train time: mean "
        "seconds of training epochs. Inference: fp32 torch, batches of 1000 test images, fastest "
        "of 3 passes.\n\n"
        "| model | parameters | epochs | train s | test accuracy | loss | macro F1 | images/s "
        "| seed claims |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    lines = [
        f"| `{r.model}` | {r.parameters:,} | {epochs_text(r)} | {r.train_seconds:.1f} | "
        f"{accuracy_text(r)} | {r.loss:.4f} | {r.macro_f1:.4f} | {r.images_per_s:,.0f} | "
        f"{r.claim_note or '—'} |"
        for r in rows
    ]
    return header + "\n".join(lines) + "\n"


def plot(rows: Sequence[ComparisonRow]) -> bytes:
    """comparison.png: the figure of `digits.report.comparison`."""
    from digits.report.comparison import comparison_figure
    from digits.report.figures import png_bytes

    return png_bytes(comparison_figure(rows))


def write_tables(rows: Sequence[ComparisonRow], out_dir: Path) -> None:
    """comparison.md, .csv, .json and .png in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "comparison.md", markdown_table(rows))
    buffer = io.StringIO()
    columns = [f.name for f in fields(ComparisonRow) if f.name != "runs"]
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    atomic_write_text(out_dir / "comparison.csv", buffer.getvalue())
    payload: list[dict[str, Any]] = [asdict(row) for row in rows]
    atomic_write_text(out_dir / "comparison.json", json.dumps(payload, indent=2))
    atomic_write_bytes(out_dir / "comparison.png", plot(rows))


__all__ = [
    "TABLE_FILES",
    "ComparisonRow",
    "RunStart",
    "compare",
    "default_items",
    "inference_speed",
    "markdown_table",
    "resolve_items",
]
