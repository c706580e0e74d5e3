"""Pictures and tables of a model's predictions: confusion heatmap, mistakes, sample predictions.

Everything here starts from class probabilities and `digits.evaluate.Metrics`; no metric is
computed twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from digits.evaluate import Metrics
from digits.report.figures import RIGHT, WRONG, digit_gallery, new_figure


@dataclass(frozen=True)
class ClassRow:
    """One line of the classification report."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


def classification_rows(metrics: Metrics) -> list[ClassRow]:
    """Per-class rows, then the macro and support-weighted averages, as scikit-learn prints them."""
    rows = [
        ClassRow(str(d), metrics.precision[d], metrics.recall[d], metrics.f1[d], metrics.support[d])
        for d in range(10)
    ]
    support = np.array(metrics.support, dtype=float)
    total = int(support.sum())
    weights = support if total else None
    for name, average in (("macro avg", None), ("weighted avg", weights)):
        rows.append(
            ClassRow(
                name,
                float(np.average(metrics.precision, weights=average)),
                float(np.average(metrics.recall, weights=average)),
                metrics.macro_f1
                if average is None
                else float(np.average(metrics.f1, weights=average)),
                total,
            )
        )
    return rows


def confusion_heatmap(metrics: Metrics) -> Figure:
    """Counts in every cell; colour by the share of the true class, so rare errors still show."""
    matrix = np.array(metrics.confusion_matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    figure = new_figure(6.4, 5.6)
    axes = figure.subplots()
    # A square root stretches the small off-diagonal shares against the ~99 % diagonal.
    image = axes.imshow(np.sqrt(shares), cmap="Blues", vmin=0, vmax=1)
    for true in range(10):
        for predicted in range(10):
            count = matrix[true, predicted]
            if count:
                dark = shares[true, predicted] > 0.5
                axes.text(
                    predicted,
                    true,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
    axes.set_xticks(range(10))
    axes.set_yticks(range(10))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"confusion matrix ({metrics.count:,} images)")
    colorbar = figure.colorbar(image, ax=axes, shrink=0.8)
    colorbar.set_label("√(share of the true class)")
    return figure


def misclassified(probabilities: np.ndarray, labels: np.ndarray, limit: int) -> np.ndarray:
    """Indices of wrong predictions, most confident first: those say the most about the model."""
    predicted = probabilities.argmax(1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:limit]


def mistakes_gallery(
    images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, limit: int = 36
) -> Figure | None:
    """The most confident mistakes with true label, prediction and confidence; None if none."""
    chosen = misclassified(probabilities, labels, limit)
    if len(chosen) == 0:
        return None
    predicted = probabilities.argmax(1)
    titles = [
        f"true {labels[i]} → {predicted[i]}\n{100 * probabilities[i, predicted[i]]:.1f} %"
        for i in chosen
    ]
    wrong_total = int((predicted != labels).sum())
    return digit_gallery(
        images[chosen],
        titles,
        [WRONG] * len(chosen),
        columns=min(9, len(chosen)),
        title=f"misclassified: {len(chosen)} most confident of {wrong_total}",
    )


def sample_predictions(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    count: int = 27,
    seed: int = 0,
) -> Figure:
    """Random images with prediction and confidence, green when right and red when wrong."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(images), size=min(count, len(images)), replace=False))
    predicted = probabilities.argmax(1)
    titles = [f"{predicted[i]} ({100 * probabilities[i, predicted[i]]:.1f} %)" for i in chosen]
    colors = [RIGHT if predicted[i] == labels[i] else WRONG for i in chosen]
    return digit_gallery(
        images[chosen], titles, colors, columns=9, title="sample predictions (confidence)"
    )
