"""`digits read` on real handwriting that touches: pairs of MNIST digits set side by side, apart,
just touching and crossing, each as a dark-on-light image six times MNIST's size. Also how often
a single MNIST digit is not read as exactly one digit. Run:

    .venv/bin/python benchmarks/read_pairs.py RUN [--count 1000] [--split test]

It compares the cuts by geometry alone (`segment` without a model) with the model-verified cuts
`read_number` adds, on the same images, and prints a Markdown table (the "Reading numbers"
section of docs/benchmarks.md). `--split train` draws the digits from the training set, which
is what the segmentation constants were set on; the table in the docs uses the test set.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from digits.data import load_mnist
from digits.predictor import Predictor
from digits.segment import read_number, segment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test-data generators live in tests/

from tests.handwriting import dark_on_light, side_by_side  # noqa: E402

GAPS = {"apart (3 px)": 3, "touching (0 px)": 0, "crossing (-2 px)": -2}


def ink_columns(image: np.ndarray) -> np.ndarray:
    """A 28×28 MNIST image's ink strength, its empty side columns cut off."""
    strength = image.astype(np.float32) / 255
    columns = np.nonzero(strength.max(axis=0) > 0.1)[0]
    return strength[:, columns[0] : columns[-1] + 1]


def geometry_only(predictor: Predictor) -> Callable[[Image.Image], str]:
    def read(image: Image.Image) -> str:
        found = segment(image)
        if isinstance(found, str):
            return ""
        probabilities = predictor.predict_arrays(np.stack([s.pixels for s in found]))
        return "".join(str(int(row.argmax())) for row in probabilities)

    return read


def verified(predictor: Predictor) -> Callable[[Image.Image], str]:
    return lambda image: read_number(predictor, image).text


def measure(run: Path, count: int, split: str) -> dict[str, dict[str, float]]:
    mnist = load_mnist()
    images, labels = (
        (mnist.x_test, mnist.y_test) if split == "test" else (mnist.x_train, mnist.y_train)
    )
    # MNIST always has both splits.
    assert images is not None
    assert labels is not None
    predictor = Predictor.from_path(run, threads=1)
    rng = np.random.default_rng(0)
    singles = rng.choice(len(images), size=count, replace=False)
    pairs = rng.integers(len(images), size=(count, 2))
    cases: dict[str, list[tuple[Image.Image, str]]] = {
        "single digit": [
            (dark_on_light(images[i].astype(np.float32) / 255), str(labels[i])) for i in singles
        ]
    }
    for name, gap in GAPS.items():
        cases[f"pair, {name}"] = [
            (
                dark_on_light(side_by_side(ink_columns(images[i]), ink_columns(images[j]), gap)),
                f"{labels[i]}{labels[j]}",
            )
            for i, j in pairs
        ]
    results: dict[str, dict[str, float]] = {}
    for method, read in (("geometry", geometry_only(predictor)), ("verified", verified(predictor))):
        for case, items in cases.items():
            times, wrong = [], 0
            for image, truth in items:
                started = time.perf_counter()
                wrong += read(image) != truth
                times.append(time.perf_counter() - started)
            row = results.setdefault(case, {})
            row[f"{method}_wrong"] = wrong
            row[f"{method}_ms"] = 1000 * statistics.median(times)
            row["count"] = len(items)
    return results


def markdown(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| images | misread, geometry only | misread, with verified cuts | median ms "
        "(geometry, verified) |",
        "|---|---:|---:|---:|",
    ]
    for case, row in results.items():
        count = int(row["count"])
        lines.append(
            f"| {case} | {int(row['geometry_wrong'])} of {count} | "
            f"{int(row['verified_wrong'])} of {count} | "
            f"{row['geometry_ms']:.1f}, {row['verified_ms']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path, help="a run directory or .onnx file")
    parser.add_argument("--count", type=int, default=1000, help="images per row")
    parser.add_argument("--split", choices=["test", "train"], default="test")
    args = parser.parse_args()
    results = measure(args.run, args.count, args.split)
    print(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
