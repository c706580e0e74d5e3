"""How faithful each explanation method is to the model: credit on the ink against off it, and
deletion curves. Run:

    .venv/bin/python benchmarks/explain_faithfulness.py --run runs/speed-seed0 [--count 200]

On the first COUNT MNIST test digits, for each method (shap, lime, occlusion on the ONNX model;
ig and saliency on the run's torch weights) it explains the predicted digit and measures
(`digits.explain_faithfulness`): the mean |attribution| on the ink and off it, and the deletion
curve, the mean probability of the predicted digit with the 0, 10, ..., 100 most credited pixels
blacked out, against the same for pixels taken at random from the whole image and from the ink
alone. Probabilities are the exported model's, calibrated, as the service gives them.

It writes benchmarks/results/explain_faithfulness.json, the plot docs/img/explain_faithfulness.png,
examples of every method's map docs/img/explain_examples.png and the section "## Explanations: how
faithful" of docs/results.md (only that section).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from docs_section import replace_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "explain_faithfulness.json"
DOCS = ROOT / "docs" / "results.md"
PLOT = ROOT / "docs" / "img" / "explain_faithfulness.png"
EXAMPLES = ROOT / "docs" / "img" / "explain_examples.png"
SECTION = "## Explanations: how faithful"
BEFORE = "## What we left out, and why"
METHODS = ("shap", "lime", "occlusion", "ig", "saliency")
BASELINES = {"random": "random pixels", "random-ink": "random ink pixels"}
SEED = 0


def explainers(run: Path) -> dict[str, Any]:
    """method → f(pixels, target) giving the signed 28×28 map."""
    from digits.explain import attributions
    from digits.explain_agnostic import agnostic_attributions
    from digits.predictor import Predictor
    from digits.run import load_model

    predictor = Predictor.from_path(run, threads=1)
    network = load_model(run)

    def agnostic(method: str) -> Any:
        return lambda pixels, target: agnostic_attributions(
            predictor.predict_arrays, pixels, target, method
        )

    def gradient(method: str) -> Any:
        return lambda pixels, target: attributions(network, pixels, target, method)

    return {m: (gradient(m) if m in ("ig", "saliency") else agnostic(m)) for m in METHODS}


def measure(run: Path, images: np.ndarray) -> dict[str, Any]:
    from digits.explain_faithfulness import (
        STEPS,
        at_random,
        by_attribution,
        deletion_curve,
        ink_means,
    )
    from digits.predictor import Predictor

    predictor = Predictor.from_path(run, threads=1)
    probabilities = predictor.predict_arrays
    targets = probabilities(images).argmax(axis=1)
    explain = explainers(run)
    rng = np.random.default_rng(SEED)
    found: dict[str, dict[str, list[Any]]] = {
        name: {"on": [], "off": [], "curves": [], "ms": []} for name in METHODS
    }
    baselines: dict[str, list[np.ndarray]] = {name: [] for name in BASELINES}
    examples: dict[str, list[np.ndarray]] = {name: [] for name in METHODS}
    for index, (pixels, target) in enumerate(zip(images, targets, strict=True)):
        digit = int(target)
        for name in METHODS:
            started = time.perf_counter()
            values = explain[name](pixels, digit)
            found[name]["ms"].append(1000 * (time.perf_counter() - started))
            on, off = ink_means(values, pixels)
            found[name]["on"].append(on)
            found[name]["off"].append(off)
            order = by_attribution(values, rng)
            found[name]["curves"].append(deletion_curve(probabilities, pixels, order, digit))
            if index < 3:
                examples[name].append(values)
        for name, ink_only in (("random", False), ("random-ink", True)):
            order = at_random(pixels, rng, ink_only=ink_only)
            baselines[name].append(deletion_curve(probabilities, pixels, order, digit))
    summary: dict[str, Any] = {"steps": list(STEPS), "methods": {}, "baselines": {}}
    for name, values in found.items():
        curve = np.mean(values["curves"], axis=0)
        summary["methods"][name] = {
            "ink": float(np.mean(values["on"])),
            "off_ink": float(np.mean(values["off"])),
            "ink_ratio": float(np.mean(values["on"]) / max(np.mean(values["off"]), 1e-12)),
            "curve": [float(v) for v in curve],
            "area": float(np.mean(curve)),
            "median_ms": float(np.median(values["ms"])),
        }
    for name, curves in baselines.items():
        curve = np.mean(curves, axis=0)
        summary["baselines"][name] = {
            "curve": [float(v) for v in curve],
            "area": float(curve.mean()),
        }
    summary["examples"] = {
        "pixels": images[:3].tolist(),
        "targets": [int(t) for t in targets[:3]],
        "maps": {name: [v.tolist() for v in maps] for name, maps in examples.items()},
    }
    return summary


def plot(summary: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = summary["steps"]
    figure, axis = plt.subplots(figsize=(7.5, 4.2))
    for name, row in summary["methods"].items():
        axis.plot(steps, row["curve"], marker="o", markersize=3, label=name)
    for name, row in summary["baselines"].items():
        axis.plot(steps, row["curve"], linestyle="--", color="grey" if name == "random" else "k",
                  label=BASELINES[name])  # fmt: skip
    axis.set_xlabel("pixels blacked out, most credited first")
    axis.set_ylabel("mean probability of the predicted digit")
    axis.set_ylim(0, 1.02)
    axis.set_title(f"Deletion curves, {summary['count']} MNIST test digits, {summary['model']}")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)


def plot_examples(summary: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    examples = summary["examples"]
    rows = len(examples["targets"])
    figure, axes = plt.subplots(
        rows, len(METHODS) + 1, figsize=(1.6 * (len(METHODS) + 1), 1.75 * rows)
    )
    for row, (pixels, target) in enumerate(
        zip(examples["pixels"], examples["targets"], strict=True)
    ):
        axes[row, 0].imshow(pixels, cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_title(f"input: {target}", fontsize=8)
        for column, name in enumerate(METHODS, start=1):
            values = np.array(examples["maps"][name][row])
            limit = float(np.abs(values).max()) or 1.0
            axes[row, column].imshow(pixels, cmap="gray", vmin=0, vmax=255)
            axes[row, column].imshow(values, cmap="bwr", vmin=-limit, vmax=limit, alpha=0.65)
            axes[row, column].set_title(name, fontsize=8)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle("red: pushed towards the predicted digit, blue: away", fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def _link(path: Path) -> str:
    return path.relative_to(DOCS.parent).as_posix()


def markdown(summary: dict[str, Any]) -> str:
    steps = summary["steps"]
    shown = [0, 10, 20, 40, 60, 100]
    columns = [steps.index(k) for k in shown]
    busy = ""
    if max(summary["load_before"], summary["load_after"]) > 2.5:
        busy = ", other jobs sharing the two cores (times are pessimistic)"
    lines = [
        SECTION,
        "",
        f"Command: `.venv/bin/python benchmarks/explain_faithfulness.py --run {summary['run']} "
        f"--count {summary['count']}` ({summary['model']}; {summary['machine']}; "
        f"{summary['date']}; load average {summary['load_before']:.1f} before, "
        f"{summary['load_after']:.1f} after{busy}).",
        "",
        f"For each of the first {summary['count']} MNIST test digits, each method explains the "
        "predicted digit; then the most credited pixels are blacked out first and the "
        "probability of that digit is read again (the exported model, calibrated). A faithful "
        "map makes it fall fast; the dashed curves black out as many pixels at random, from the "
        "whole image (mostly black already, so nearly nothing changes) and from the ink alone. "
        "Pixels credited alike (a superpixel, a flat occlusion region) go in random order. "
        "*Ink* and *off ink*: mean |attribution| on pixels with and without ink, each method in "
        "its own units (SHAP: log-odds; LIME, occlusion: probability; ig: logit; saliency: logit "
        "per unit of ink), so compare their ratio, not across rows. *Area*: the mean of the "
        "curve over 0–100 pixels (lower is better).",
        "",
        "| method | ink | off ink | ratio | "
        + " | ".join(f"p after {k}" for k in shown)
        + " | area | ms per map |",
        "|---|---:|---:|---:|" + "---:|" * len(shown) + "---:|---:|",
    ]
    for name, row in summary["methods"].items():
        cells = " | ".join(f"{row['curve'][c]:.3f}" for c in columns)
        # Integrated gradients give exactly 0 where the input equals the black baseline.
        ratio = f"{row['ink_ratio']:.0f}×" if row["off_ink"] > 1e-9 * row["ink"] else "∞"
        lines.append(
            f"| `{name}` | {row['ink']:.3g} | {row['off_ink']:.3g} | {ratio} | "
            f"{cells} | {row['area']:.3f} | {row['median_ms']:.0f} |"
        )
    for name, row in summary["baselines"].items():
        cells = " | ".join(f"{row['curve'][c]:.3f}" for c in columns)
        lines.append(f"| *{BASELINES[name]}* | | | | {cells} | {row['area']:.3f} | |")
    methods = summary["methods"]
    best = min(methods, key=lambda name: methods[name]["area"])
    at = steps.index(20)
    early = min(methods, key=lambda name: methods[name]["curve"][at])
    lines += [
        "",
        f"The steepest curve over 0–100 pixels is `{best}`'s (area {methods[best]['area']:.3f}); "
        f"after 20 pixels, `{early}`'s ({methods[early]['curve'][at]:.3f}). SHAP and LIME credit "
        "whole superpixels of the strokes, so their maps keep ranking the ink after the first "
        "pieces are gone; occlusion credits the 4×4 squares whose loss alone the model notices, "
        "and where hiding one square changes nothing its map is flat. Integrated gradients are "
        "exactly 0 off the ink (the input equals the black baseline there). Saliency, the "
        "gradient at the input alone, ranks pixels barely better than chance. "
        "tests/test_explain.py checks the model-agnostic three on the test model: credit on the "
        "ink over twice that off it, and the 40 most credited pixels costing over twice what 40 "
        "random ink pixels do.",
        "",
        f"![Deletion curves]({_link(PLOT)})",
        "",
        f"![Each method's map on three test digits]({_link(EXAMPLES)})",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, required=True, help="A finished run directory.")
    parser.add_argument("--count", type=int, default=200, help="MNIST test digits to explain.")
    parser.add_argument("--no-write", action="store_true", help="Print only; write no files.")
    args = parser.parse_args()

    from digits.data import load_mnist
    from digits.predictor import Predictor

    mnist = load_mnist()
    assert mnist.x_test is not None
    info = Predictor.from_path(args.run).info
    load_before = os.getloadavg()[0]
    summary = measure(args.run, mnist.x_test[: args.count])
    summary.update(
        run=str(args.run),
        count=args.count,
        model=f"{Path(args.run).name}, {info.model}",
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        date=datetime.date.today().isoformat(),
        load_before=load_before,
        load_after=os.getloadavg()[0],
    )
    text = markdown(summary)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(summary, indent=1) + "\n")
        plot(summary, PLOT)
        plot_examples(summary, EXAMPLES)
        replace_section(text, SECTION, before=BEFORE, docs=DOCS)


if __name__ == "__main__":
    main()
