"""`build_report(run_dir)`: evaluate a run and write its PNGs and one self-contained HTML page."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from digits.answers import split_not_digit
from digits.atomic import atomic_write_bytes, atomic_write_text
from digits.config import TrainConfig
from digits.data import DigitData
from digits.evaluate import (
    HeldOut,
    Metrics,
    compute_metrics,
    model_probabilities,
    run_data,
    scored_images,
)
from digits.report import curves, eda, results
from digits.report.augmented import augmented_samples
from digits.report.figures import png_bytes
from digits.report.html import Section, image, note, page, table
from digits.run import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    RunError,
    load_model,
    read_history,
    read_metrics,
    require_finished,
)

HTML_FILE = "report.html"


@dataclass(frozen=True)
class Report:
    """What `build_report` wrote and what it measured."""

    html: Path
    images: dict[str, Path]
    split: str
    metrics: Metrics


def _read_config(run_dir: Path) -> TrainConfig | None:
    path = run_dir / CONFIG_FILE
    if not path.exists():
        return None  # an ensemble or an imported model: no training config to show
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise RunError(f"{path}: not a valid training config ({exc})") from exc


def _training_images(config: TrainConfig | None, data: DigitData) -> tuple[np.ndarray, np.ndarray]:
    """The images the run drew its training and validation splits from."""
    limit = config.limit if config is not None else None
    return data.x_train[:limit], data.y_train[:limit]


def _summary_rows(
    run_dir: Path, config: TrainConfig | None, run_metrics: dict[str, Any] | None
) -> list[tuple[str, str]]:
    rows = [("run", str(run_dir))]
    if config is not None:
        rows += [
            ("model", config.model),
            ("recipe", config.recipe or "—"),
            ("epochs (max)", str(config.epochs)),
            ("batch size", str(config.batch_size)),
            ("optimizer, schedule", f"{config.optimizer}, {config.schedule}, lr {config.lr:g}"),
        ]
    # metrics.json of an ensemble or an older run may lack some of these; show what is there.
    known = run_metrics or {}
    if config is None and known.get("model"):
        rows.append(("model", str(known["model"])))
        rows.append(("recipe", str(known.get("recipe") or "—")))
    if known.get("parameters") is not None:
        rows.append(("parameters", f"{known['parameters']:,}"))
    if known.get("epochs_run") is not None:
        rows.append(("epochs run (best)", f"{known['epochs_run']} ({known.get('best_epoch')})"))
    if known.get("train_seconds") is not None:
        rows.append(("train time", f"{known['train_seconds']:.1f} s"))
    return rows


def _figures(
    config: TrainConfig | None,
    data: DigitData,
    history: list[dict[str, float | None]],
    evaluation: HeldOut,
    probabilities: np.ndarray,
    metrics: Metrics,
) -> dict[str, Figure | None]:
    """Every picture of the report by file stem; None where there is nothing to draw."""
    train_images, train_labels = _training_images(config, data)
    return {
        "samples": eda.sample_grid(train_images, train_labels),
        "class_balance": eda.class_balance(train_labels, data.y_test),
        "mean_images": eda.mean_images(train_images, train_labels),
        "augmented": augmented_samples(train_images, train_labels, config),
        "curves": curves.learning_curves(history) if history else None,
        "confusion_matrix": results.confusion_heatmap(metrics),
        "misclassified": results.mistakes_gallery(
            evaluation.images, evaluation.labels, probabilities
        ),
        "predictions": results.sample_predictions(
            evaluation.images, evaluation.labels, probabilities
        ),
    }


def _sections(
    pngs: dict[str, bytes],
    metrics: Metrics,
    split: str,
    summary: list[tuple[str, str]],
) -> list[Section]:
    def picture(stem: str, alt: str, missing: str) -> str:
        return image(pngs[stem], alt) if stem in pngs else note(missing)

    overview = Section("Run", [table(("", "value"), summary)])
    eda_section = Section(
        "Training data",
        [
            image(pngs["samples"], "10×10 grid of training samples, one row per class"),
            image(pngs["class_balance"], "images per class"),
            image(pngs["mean_images"], "mean image per class"),
            picture(
                "augmented",
                "training samples and augmented versions of them",
                "No augmentation picture: this installation has no augmentation module.",
            ),
        ],
    )
    training = Section(
        "Training",
        [picture("curves", "loss and accuracy per epoch", "No history.csv: no curves to draw.")],
    )
    pairs = metrics.most_confused(10)
    support = metrics.support
    pair_rows = [
        (f"{true} → {predicted}", count, f"{100 * count / support[true]:.2f} %")
        for true, predicted, count in pairs
    ]
    report_rows = [
        (r.name, f"{r.precision:.4f}", f"{r.recall:.4f}", f"{r.f1:.4f}", f"{r.support:,}")
        for r in results.classification_rows(metrics)
    ]
    outcome = Section(
        f"Results on the {split} set" if split != "all" else "Results on all the images",
        [
            table(
                ("images", "accuracy", "loss", "macro F1", "errors"),
                [
                    (
                        f"{metrics.count:,}",
                        f"{100 * metrics.accuracy:.2f} %",
                        f"{metrics.loss:.4f}",
                        f"{metrics.macro_f1:.4f}",
                        f"{metrics.count - round(metrics.accuracy * metrics.count):,}",
                    )
                ],
            ),
            image(pngs["confusion_matrix"], "confusion matrix heatmap"),
            table(
                ("class", "precision", "recall", "F1", "support"),
                report_rows,
                caption="classification report",
            ),
            table(
                ("true → predicted", "count", "share of the true class"),
                pair_rows,
                caption="most-confused pairs",
            )
            if pair_rows
            else note("No confusions: every image was classified correctly."),
            picture("misclassified", "misclassified digits", "No misclassified images."),
            image(pngs["predictions"], "sample predictions"),
        ],
    )
    return [overview, eda_section, training, outcome]


def build_report(
    run_dir: str | Path, out_dir: str | Path | None = None, *, data: DigitData | None = None
) -> Report:
    """Write RUN/report/ (or `out_dir`): one PNG per figure and report.html embedding them all.

    `data` replaces the run's own data set (by default the one it trained on, else MNIST).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    config = _read_config(run_dir)
    model = load_model(run_dir)  # damaged weights are named before "not finished"
    require_finished(run_dir)
    if data is None:
        data = run_data(run_dir)
    evaluation = scored_images(run_dir, data)
    probabilities = model_probabilities(model, evaluation.images)
    metrics = compute_metrics(probabilities, evaluation.labels)
    history = read_history(run_dir) if (run_dir / HISTORY_FILE).exists() else []
    run_metrics = read_metrics(run_dir) if (run_dir / METRICS_FILE).exists() else None

    # The figures show which digit the model took each image for; refusals are in the metrics.
    digit_probabilities, _ = split_not_digit(probabilities)
    figures = _figures(config, data, history, evaluation, digit_probabilities, metrics)
    pngs = {stem: png_bytes(figure) for stem, figure in figures.items() if figure is not None}
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for stem, png in pngs.items():
        paths[stem] = out / f"{stem}.png"
        atomic_write_bytes(paths[stem], png)

    if config is not None:
        name = config.recipe or config.model
    else:
        name = str((run_metrics or {}).get("recipe") or run_dir.name)
    title = f"digits report: {name}"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    scored = f"scored on {evaluation.describe()}: {evaluation.count:,} images"
    subtitle = f"{run_dir} · {scored} · written {stamp}"
    sections = _sections(
        pngs, metrics, evaluation.name, _summary_rows(run_dir, config, run_metrics)
    )
    html_path = out / HTML_FILE
    atomic_write_text(html_path, page(title, subtitle, sections))
    return Report(html_path, paths, evaluation.name, metrics)
