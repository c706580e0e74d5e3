"""`digits predict` on digits from outside MNIST: scikit-learn's load_digits rendered as scans in
several ways (grey, enlarged, inverted, binarised, JPEG; benchmarks/ood_sets.py) and the generated
photos, pen drawings and typed digits of tests/handwriting.py. Run:

    .venv/bin/python benchmarks/ood_digits.py [--run RUN ...] [--limit N]
        [--min-confidence P] [--no-write]

Each image goes through `Predictor.predict_images` with the minimum confidence `digits predict`
uses by default, so an answer is what a user would get. A null answer counts as wrong; the table
says why it was null: "no digit" (the preprocessing found none), "not sure" (below the minimum
confidence) or "not a digit". It writes benchmarks/results/ood_digits.json and the
"## Out-of-domain digits" section of docs/benchmarks.md (only that section).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import shlex
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

from docs_section import replace_section

# The renderers sit beside this script, on the path when it runs.
from ood_sets import CONDITIONS, Condition, Sample

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "benchmarks" / "results" / "ood_digits.json"
SECTION = "## Out-of-domain digits"
DEFAULT_RUN = ROOT / "runs" / "speed-base"
OUTCOMES = ("right", "wrong", "no digit", "not sure", "not a digit", "error")
LINE = 100  # the docs' line length
KIND_NAMES = {"scan": "scans", "photo": "photos and drawings"}


def default_min_confidence() -> float:
    """The minimum confidence `digits predict` applies when given none, read from the command
    itself (or, where it leaves it open, from `predict_images`) so that this benchmark follows
    it wherever it is set."""
    from digits.cli.predict import predict_command
    from digits.predictor import Predictor

    for function in (predict_command, Predictor.predict_images):
        default = inspect.signature(function).parameters["min_confidence"].default
        default = getattr(default, "default", default)  # a bare typer.Option holds it inside
        if isinstance(default, int | float):
            return float(default)
    raise RuntimeError("digits predict has no default minimum confidence to follow")


def outcome(digit: int | None, reason: str | None, error: str | None, label: int) -> str:
    if digit is not None:
        return "right" if digit == label else "wrong"
    if error is not None:
        return "error"
    text = (reason or "").lower()
    if text.startswith("not a digit"):
        return "not a digit"
    if text.startswith(("not sure", "unsure")):
        return "not sure"
    return "no digit"


def reason_key(reason: str) -> str:
    """A null answer's reason without its measured details, so that alike ones count together."""
    return reason.split(" (")[0].removeprefix("no digit: ")


def score(predictor: Any, samples: list[Sample], min_confidence: float) -> dict[str, Any]:
    """Outcome counts, accuracies and the commonest failures of one condition."""
    started = time.perf_counter()
    predictions = predictor.predict_images(
        [image for image, _ in samples], min_confidence=min_confidence
    )
    seconds = time.perf_counter() - started
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    confusions: Counter[str] = Counter()
    for prediction, (_, label) in zip(predictions, samples, strict=True):
        result = outcome(prediction.digit, prediction.reason, prediction.error, label)
        counts[result] += 1
        if result == "wrong":
            confusions[f"{label}→{prediction.digit}"] += 1
        elif result != "right":
            reasons[reason_key(prediction.reason or prediction.error or "")] += 1
    total = len(samples)
    answered = counts["right"] + counts["wrong"]
    return {
        "images": total,
        **{name: counts[name] for name in OUTCOMES},
        "accuracy": counts["right"] / total if total else None,
        "accuracy_answered": counts["right"] / answered if answered else None,
        "ms_per_image": 1000 * seconds / total if total else None,
        "null_reasons": dict(reasons.most_common(5)),
        "confusions": dict(confusions.most_common(5)),
    }


def run_info(run: Path) -> dict[str, Any]:
    """What the docs say about a run: its recipe, model and MNIST test accuracy."""
    folder = run if run.is_dir() else run.parent
    metrics_path = folder / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    test = metrics.get("test") or {}
    return {
        "path": str(run),
        "recipe": metrics.get("recipe"),
        "model": metrics.get("model"),
        "mnist_test_accuracy": test.get("accuracy"),
    }


def measure(
    runs: list[Path], conditions: list[Condition], limit: int | None, min_confidence: float
) -> dict[str, dict[str, Any]]:
    from digits.predictor import Predictor

    predictors = {str(run): Predictor.from_path(run) for run in runs}
    results: dict[str, dict[str, Any]] = {
        str(run): {**run_info(run), "conditions": {}} for run in runs
    }
    for condition in conditions:
        samples = condition.make(limit)  # rendered once, scored by every run
        for name, predictor in predictors.items():
            row = score(predictor, samples, min_confidence)
            results[name]["conditions"][condition.name] = {"kind": condition.kind, **row}
    return results


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def table(result: dict[str, Any]) -> str:
    """A plain-text table that fits 80 columns."""
    lines = [
        f"{'condition':<22} {'images':>6} {'right':>7} {'no digit':>8} {'not sure':>8} "
        f"{'not digit':>9} {'of answered':>11}"
    ]
    for name, row in result["conditions"].items():
        lines.append(
            f"{name:<22} {row['images']:>6} {percent(row['accuracy']):>7} "
            f"{row['no digit']:>8} {row['not sure']:>8} {row['not a digit']:>9} "
            f"{percent(row['accuracy_answered']):>11}"
        )
    return "\n".join(lines)


def machine() -> str:
    try:
        described = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        described = ""
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in described.splitlines())
    )
    model = fields.get("Model name") or platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def title(result: dict[str, Any]) -> str:
    name = Path(result["path"]).name
    recipe = f"recipe `{result['recipe']}`, " if result["recipe"] else ""
    model = f"`{result['model']}`, " if result["model"] else ""
    accuracy = result["mnist_test_accuracy"]
    mnist = (
        "MNIST test accuracy unknown"
        if accuracy is None
        else f"{100 * accuracy:.2f} % on MNIST test"
    )
    return f"`{name}` ({recipe}{model}{mnist})"


def lowest(result: dict[str, Any]) -> str:
    """The weakest condition of each kind, the figure the targets speak of."""
    parts = []
    for kind, label in KIND_NAMES.items():
        rows = [
            (row["accuracy"], name)
            for name, row in result["conditions"].items()
            if row["kind"] == kind and row["accuracy"] is not None
        ]
        if rows:
            accuracy, name = min(rows)
            parts.append(f"{label} {percent(accuracy)} ({name})")
    return "Lowest of each kind: " + "; ".join(parts) + "."


def failures(result: dict[str, Any]) -> list[str]:
    """One line per condition that lost images: why they were null, or what was misread."""
    lines = []
    for name, row in result["conditions"].items():
        parts = []
        if row["null_reasons"]:
            parts.append("null: " + "; ".join(f"{r} ({n})" for r, n in row["null_reasons"].items()))
        if row["confusions"]:
            parts.append(
                "misread: " + ", ".join(f"{c} ({n})" for c, n in row["confusions"].items())
            )
        if parts:
            lines.append(f"- {name}: " + ". ".join(parts) + ".")
    return lines


def markdown(document: dict[str, Any], conditions: list[Condition]) -> str:
    lines = [
        SECTION,
        "",
        "`digits predict` on digits the model never trained on, rendered as the images people "
        "hand over (`benchmarks/ood_sets.py`). Each image goes through "
        "`Predictor.predict_images`, as `digits predict` does, with its default minimum "
        f"confidence ({document['min_confidence']:g}). A null answer counts as wrong; the "
        "table says why it was null: *no digit* (the preprocessing found none), *not sure* "
        "(below the minimum confidence) or *not a digit*. *Of answered* is the accuracy among "
        "the images that got a digit; *ms per image* is `predict_images` on the whole condition "
        "(decoding, preprocessing, one batched model call) over its number of images.",
        "",
        "The scans are scikit-learn's `load_digits`: 1 797 real handwritten digits by 43 "
        "writers, 8×8 with 17 grey levels, ink bright on dark and strokes touching the frame, "
        "all of them in each condition:",
        "",
    ]
    lines += [f"- **{c.name}**: {c.about}" for c in conditions if c.kind == "scan"]
    lines += ["", "The photos and drawings are generated by `tests/handwriting.py`, seeded:", ""]
    lines += [f"- **{c.name}**: {c.about}" for c in conditions if c.kind == "photo"]
    lines += [
        "",
        f"Command: `{document['command']}` ({document['machine']}; commit {document['commit']}, "
        f"preprocessing version {document['preprocessing_version']}; "
        f"{document['seconds']:.0f} s in all).",
        "",
        "These sets are a check anyone can rerun, not the targets: the targets are set on "
        "held-out scans of other collections, with the per-commit `speed` run, at ≥ 97 % on "
        "each kind of scan and ≥ 98 % on photos and drawings. Nothing is tuned on these sets.",
    ]
    for result in document["runs"].values():
        lines += [
            "",
            f"{title(result)}:",
            "",
            "| condition | images | right | no digit | not sure | not a digit | of answered "
            "| ms per image |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in result["conditions"].items():
            lines.append(
                f"| {name} | {row['images']} | {percent(row['accuracy'])} | {row['no digit']} "
                f"| {row['not sure']} | {row['not a digit']} "
                f"| {percent(row['accuracy_answered'])} | {row['ms_per_image']:.2f} |"
            )
        lines += ["", lowest(result)]
        lost = failures(result)
        if lost:
            lines += ["", "Where the images were lost (commonest first, up to five each):", ""]
            lines += lost
    return "\n".join(wrap(line) for line in lines) + "\n"


def wrap(line: str) -> str:
    """Prose and list items at the docs' line length; table rows and headings as they are."""
    if line.startswith(("|", "#")) or len(line) <= LINE:
        return line
    indent = "  " if line.startswith("- ") else ""
    return textwrap.fill(
        line, LINE, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


def write_section(text: str) -> None:
    replace_section(text, SECTION)


def commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run",
        type=Path,
        action="append",
        help=f"A run directory or .onnx file; repeat for several (default {DEFAULT_RUN}).",
    )
    parser.add_argument("--limit", type=int, help="At most N images per condition.")
    parser.add_argument(
        "--min-confidence",
        type=float,
        help="Answers less sure than this become null (default: what `digits predict` uses).",
    )
    parser.add_argument("--no-write", action="store_true", help="Print only; write no files.")
    args = parser.parse_args()
    runs: list[Path] = args.run or [DEFAULT_RUN]
    for run in runs:
        if not run.exists():
            parser.error(f"{run}: no such run (train one with `digits train --recipe speed`)")
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        parser.error(f"--min-confidence {args.min_confidence}: give a probability, 0 to 1")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit {args.limit}: give at least 1 image per condition")

    from digits.preprocess import PREPROCESSING_VERSION

    min_confidence = (
        default_min_confidence() if args.min_confidence is None else args.min_confidence
    )
    started = time.perf_counter()
    results = measure(runs, CONDITIONS, args.limit, min_confidence)
    document = {
        "command": shlex.join([".venv/bin/python", "benchmarks/ood_digits.py", *sys.argv[1:]]),
        "machine": machine(),
        "commit": commit(),
        "preprocessing_version": PREPROCESSING_VERSION,
        "min_confidence": min_confidence,
        "limit": args.limit,
        "seconds": time.perf_counter() - started,
        "runs": results,
    }
    for result in results.values():
        print(title(result).replace("`", ""))
        print(table(result))
        print()
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        write_section(markdown(document, CONDITIONS))


if __name__ == "__main__":
    main()
