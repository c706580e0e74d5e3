"""Time to 99 %: the whole `digits train` process of `sprint` and `speed`, side by side.

    python benchmarks/time_to_99.py [--recipes sprint,speed] [--seeds 3] [--write-docs]

Each run is the command a user types, `digits train --recipe R --seed S --out DIR --quiet`, in
its own process: wall time from start to exit, so start-up (Python, torch), loading MNIST,
training, the test pass, calibration and the ONNX export are all in it. The recipes take turns
seed by seed, so both see the same load on a shared machine. Writes
benchmarks/results/time_to_99.json and, with --write-docs, the "Time to 99 %" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from docs_section import replace_section  # noqa: E402
from ood_digits import machine, wrap  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "time_to_99.json"
SECTION = "## Time to 99 %"
BEFORE = "## Prediction"
DIGITS = str(Path(sys.executable).with_name("digits"))


def one_run(recipe: str, seed: int, folder: Path) -> dict[str, Any]:
    out = folder / f"{recipe}-s{seed}"
    started = time.perf_counter()
    subprocess.run(
        [DIGITS, "train", "--recipe", recipe, "--seed", str(seed), "--out", str(out), "--quiet"],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "recipe": recipe,
        "seed": seed,
        "wall_seconds": wall,
        "train_seconds": metrics["train_seconds"],
        "test_accuracy": metrics["test"]["accuracy"],
        "precision": metrics["precision"],
    }


def warm_up(recipe: str, folder: Path) -> None:
    """One short untimed run of the recipe (1 024 images): the MNIST cache is in the page cache
    and the CPU's precision choice for the recipe's model is measured and remembered
    (digits.precision), as on any machine after its first run."""
    out = folder / f"{recipe}-warm-up"
    subprocess.run(
        [DIGITS, "train", "--recipe", recipe, "--limit", "1024", "--out", str(out), "--quiet"],
        check=True,
        capture_output=True,
    )


def markdown(result: dict[str, Any]) -> str:
    lines = [
        SECTION,
        "",
        "The whole `digits train --recipe R --seed S --quiet` process, start to exit: start-up, "
        "MNIST, training, the test pass, calibration and model.onnx. The recipes took turns "
        f"seed by seed on {result['machine']} (OMP_NUM_THREADS={result['threads']}), after one "
        "short untimed run of each (1 024 images), so that MNIST is in the page cache and the "
        "precision choice of `auto` is made (`digits.precision`: measured once per machine and "
        "model, 1–3 s of a first run).",
        "",
        "| recipe | seed | wall | of which training | test accuracy | precision |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in result["runs"]:
        lines.append(
            f"| `{row['recipe']}` | {row['seed']} | {row['wall_seconds']:.1f} s | "
            f"{row['train_seconds']:.1f} s | {100 * row['test_accuracy']:.2f} % | "
            f"{row['precision']} |"
        )
    lines += ["", f"`{result['command']}`", ""]
    return "\n".join(wrap(line) for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default="sprint,speed")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for recipe in args.recipes.split(","):
            warm_up(recipe, Path(folder))
        for seed in range(args.seeds):
            for recipe in args.recipes.split(","):
                runs.append(one_run(recipe, seed, Path(folder)))
                print(json.dumps(runs[-1]), flush=True)
    result = {
        "machine": machine(),
        "threads": os.environ.get("OMP_NUM_THREADS", "unset: one per core"),
        "command": "python " + " ".join(["benchmarks/time_to_99.py", *sys.argv[1:]]),
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    text = markdown(result)
    print(text)
    if args.write_docs:
        replace_section(text, SECTION, before=BEFORE)


if __name__ == "__main__":
    main()
