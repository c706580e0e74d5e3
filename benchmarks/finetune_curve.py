"""Fine-tuning measured: learning curves on digits the base model reads worst, and transfer to
Fashion-MNIST against training from scratch.

    python benchmarks/finetune_curve.py --run runs/speed-seed0 [--counts 10,30,100,300]
        [--condition "grey 8×8"] [--fashion /usr/share/datasets/fashion-mnist] [--write-docs]

Digits: scikit-learn's load_digits (1 797 digits by 43 writers) rendered as one of the scan
conditions of benchmarks/ood_sets.py, split in a fixed order into a pool of 1 000 and a test set
of the other 797; each count takes that many from the pool, balanced over the digits, as image
files in digit subfolders (what `digits finetune --data DIR` reads), and fine-tunes the run on
them (defaults of `digits finetune`); the test set is scored before and after, and MNIST's test
set after. The pool and test set share writers: the curve says how fast the model learns this
way of scanning digits, not how it meets new writers.

Fashion-MNIST (Debian's `dataset-fashion-mnist`): at each count (per class), the MNIST run
fine-tuned without MNIST replay against the same network trained from scratch for as many
steps, both scored on Fashion-MNIST's 10 000 test images.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from docs_section import replace_section  # noqa: E402
from ood_digits import machine, wrap  # noqa: E402
from ood_sets import condition  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "finetune_curve.json"
DOCS = ROOT / "docs" / "results.md"
SECTION = "## Fine-tuning"
BEFORE = "## What we left out, and why"
POOL = 1000
FASHION = Path("/usr/share/datasets/fashion-mnist")


def balanced(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Indices of `count` items, as even over the ten labels as they go, in a seeded order."""
    generator = np.random.default_rng(seed)
    per_label = [generator.permutation(np.flatnonzero(labels == digit)) for digit in range(10)]
    chosen = [idx[: count // 10 + (digit < count % 10)] for digit, idx in enumerate(per_label)]
    return np.sort(np.concatenate(chosen))


def write_folder(folder: Path, samples: list[Any], labels: np.ndarray) -> None:
    for index, (sample, label) in enumerate(zip(samples, labels, strict=True)):
        target = folder / str(int(label)) / f"{index:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(sample, bytes):
            target.with_suffix(".jpg").write_bytes(sample)  # the JPEG file as it was made
        else:
            sample.save(target)


def accuracy(run_or_model: Any, images: np.ndarray, labels: np.ndarray) -> float:
    from digits.evaluate import evaluate_model
    from digits.run import load_model

    model = load_model(run_or_model) if isinstance(run_or_model, Path) else run_or_model
    return float(evaluate_model(model, images, labels).accuracy)


def digits_curve(run: Path, name: str, counts: list[int], work: Path) -> dict[str, Any]:
    from digits.data import load_dataset
    from digits.finetune import finetune
    from digits.run import read_metrics

    samples = condition(name).make(None)
    images = [image for image, _ in samples]
    labels = np.array([label for _, label in samples])
    test_folder = work / "digits-test"
    write_folder(test_folder, images[POOL:], labels[POOL:])
    test = load_dataset(test_folder)
    base = accuracy(run, test.x_train, test.y_train)
    rows = []
    for count in counts:
        chosen = balanced(labels[:POOL], count)
        data = work / f"digits-{count}"
        write_folder(data / "train", [images[i] for i in chosen], labels[chosen])
        write_folder(data / "test", images[POOL:], labels[POOL:])
        started = time.perf_counter()
        out = finetune(run, str(data), work / f"run-digits-{count}", device="cpu")
        seconds = time.perf_counter() - started
        metrics = read_metrics(out)
        rows.append(
            {
                "count": count,
                "test": metrics["test"]["accuracy"],
                "mnist_test": metrics["mnist_test"]["accuracy"],
                "epochs": metrics["epochs_run"],
                "seconds": seconds,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return {"condition": name, "test_count": len(labels) - POOL, "base": base, "rows": rows}


def fashion_curve(run: Path, folder: Path, counts: list[int], work: Path) -> dict[str, Any]:
    from digits.data import load_dataset
    from digits.data.readers import write_npz_atomic
    from digits.finetune import finetune
    from digits.finish import fit
    from digits.run import read_config, read_metrics

    fashion = load_dataset(folder)
    assert fashion.x_test is not None
    assert fashion.y_test is not None
    rows = []
    for per_class in counts:
        chosen = balanced(fashion.y_train, 10 * per_class)
        data = work / f"fashion-{per_class}.npz"
        write_npz_atomic(
            data,
            {
                "x_train": fashion.x_train[chosen],
                "y_train": fashion.y_train[chosen],
                "x_test": fashion.x_test,
                "y_test": fashion.y_test,
            },
        )
        tuned = finetune(run, str(data), work / f"run-fashion-{per_class}", replay=0, device="cpu")
        tuned_config = read_config(tuned)
        # From scratch: the same network, data, steps, augmentation and schedule, random start.
        scratch_config = replace(tuned_config, parent=None, source=None, freeze="none")
        scratch = fit(scratch_config, work / f"run-fashion-scratch-{per_class}", device="cpu")
        rows.append(
            {
                "per_class": per_class,
                "finetuned": read_metrics(tuned)["test"]["accuracy"],
                "scratch": read_metrics(scratch)["test"]["accuracy"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows}


def markdown(result: dict[str, Any]) -> str:
    digits = result["digits"]
    lines = [
        SECTION,
        "",
        f"`digits finetune {result['run']} --data DIR` (its defaults: about 400 steps, every "
        "batch topped up with as many MNIST training images, the parent's augmentation) on "
        f'scikit-learn\'s load_digits rendered as "{digits["condition"]}" (benchmarks/ood_sets.py).'
        f" Scored on {digits['test_count']} other load_digits images in the same rendering "
        "(the same 43 writers: this measures learning a way of scanning, not new writers) and on "
        "MNIST's test set.",
        "",
        "| labelled images | load_digits test | MNIST test | epochs | seconds |",
        "|---:|---:|---:|---:|---:|",
        f"| 0 (the run as it is) | {100 * digits['base']:.2f} % | "
        f"{100 * result['mnist_base']:.2f} % | | |",
    ]
    for row in digits["rows"]:
        lines.append(
            f"| {row['count']} | {100 * row['test']:.2f} % | {100 * row['mnist_test']:.2f} % | "
            f"{row['epochs']} | {row['seconds']:.0f} |"
        )
    if result.get("fashion"):
        lines += [
            "",
            "Transfer to Fashion-MNIST (the seeds' \"similar image tasks\"; Debian's "
            "`dataset-fashion-mnist`): the MNIST run fine-tuned with `--replay 0` against the "
            "same network trained from scratch with the same data, steps and augmentation; "
            "Fashion-MNIST's 10 000 test images. Both keep the digit recipe's pen and scan "
            "distortions and its generated non-digits, made for digits rather than clothes: "
            "the table compares the two starting points, not the best that can be done on "
            "Fashion-MNIST.",
            "",
            "| images per class | fine-tuned from MNIST | from scratch |",
            "|---:|---:|---:|",
        ]
        for row in result["fashion"]["rows"]:
            lines.append(
                f"| {row['per_class']} | {100 * row['finetuned']:.2f} % | "
                f"{100 * row['scratch']:.2f} % |"
            )
    lines += ["", f"Measured on {result['machine']}; `{result['command']}`.", ""]
    return "\n".join(wrap(line) for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "speed-seed0")
    parser.add_argument("--counts", default="10,30,100,300")
    parser.add_argument("--condition", default="grey 8×8")
    parser.add_argument("--fashion", type=Path, default=None)
    parser.add_argument("--fashion-counts", default="10,30,100")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    from digits.data import load_mnist

    counts = [int(c) for c in args.counts.split(",")]
    mnist = load_mnist()
    assert mnist.x_test is not None
    assert mnist.y_test is not None
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        result: dict[str, Any] = {
            "run": str(args.run.relative_to(ROOT) if args.run.is_relative_to(ROOT) else args.run),
            "mnist_base": accuracy(args.run, mnist.x_test, mnist.y_test),
            "digits": digits_curve(args.run, args.condition, counts, work),
            "machine": machine(),
            "command": "python " + " ".join(["benchmarks/finetune_curve.py", *sys.argv[1:]]),
        }
        if args.fashion is not None:
            fashion_counts = [int(c) for c in args.fashion_counts.split(",")]
            result["fashion"] = fashion_curve(args.run, args.fashion, fashion_counts, work)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    text = markdown(result)
    print(text)
    if args.write_docs:
        replace_section(text, SECTION, before=BEFORE, docs=DOCS)


if __name__ == "__main__":
    main()
