"""Accuracy and time of the training recipes: the figures of docs/results.md and the "Recipes"
section of docs/benchmarks.md. Long (about an hour of CPU for everything); not part of the tests.

    .venv/bin/python benchmarks/recipes.py train --recipes speed,best --seeds 3 [--root DIR]
    .venv/bin/python benchmarks/recipes.py ensemble --recipes best,best-kaggle --seeds 3
    .venv/bin/python benchmarks/recipes.py ablation --seeds 3 [--root DIR]
    .venv/bin/python benchmarks/recipes.py tta --run DIR [--root DIR]
    .venv/bin/python benchmarks/recipes.py prediction-cost RUN [RUN ...] [--root DIR]
    .venv/bin/python benchmarks/recipes.py augment-cost
    .venv/bin/python benchmarks/recipes.py table [--root DIR]

`train` runs `digits train --recipe NAME --seed S --out ROOT/NAME-sS --quiet` as a separate process
per run and records its wall time (the whole process: start-up, data, training, test, export) and
CPU time; runs already finished under ROOT are reused, so the command can be stopped and rerun.
Results accumulate in ROOT/results.json; `table` prints them as Markdown. `ablation` writes
`best` with one piece taken out (and with all of them out) as recipe files under ROOT/ablation and
trains each the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_ROOT = Path("runs/bench-recipes")
SEED_RECIPES = ["ann", "fnn", "mlp", "cnn", "cnn-small", "cnn-dropout", "cnn-kaggle"]
DIGITS = str(Path(sys.executable).with_name("digits"))


def _results(root: Path) -> dict[str, Any]:
    path = root / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(root: Path, results: dict[str, Any]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.json").write_text(json.dumps(results, indent=2))


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def run_name(recipe: str) -> str:
    """A recipe file's runs are named after the file, as `digits train` names the recipe."""
    return Path(recipe).stem if recipe.endswith(".json") else recipe


def train_one(recipe: str, seed: int, root: Path, extra: list[str]) -> dict[str, Any]:
    """Train one recipe in its own process; wall and CPU seconds of that whole process."""
    name = run_name(recipe)
    out = root / f"{name}-s{seed}"
    metrics_path = out / "metrics.json"
    results = _results(root)
    key = out.name
    if metrics_path.exists() and key in results:
        return dict(results[key])
    load_before = _load()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = [DIGITS, "train", "--recipe", recipe, "--seed", str(seed), "--out", str(out)]
    subprocess.run([*command, "--quiet", *extra], check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    metrics = json.loads(metrics_path.read_text())
    row = {
        "recipe": name,
        "seed": seed,
        "run": str(out),
        "process_wall_s": wall,
        "process_cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "train_seconds": metrics["train_seconds"],
        "epochs_run": metrics["epochs_run"],
        "test_accuracy": metrics["test"]["accuracy"],
        "val_accuracy": metrics["val_accuracy"],
        "load_before": load_before,
        "load_after": _load(),
        "threads": os.environ.get("OMP_NUM_THREADS", "default"),
    }
    results = _results(root)
    results[key] = row
    _save(root, results)
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    accuracies = [row["test_accuracy"] for row in rows]
    return {
        "runs": len(rows),
        "mean": statistics.fmean(accuracies),
        "std": statistics.stdev(accuracies) if len(rows) > 1 else 0.0,  # sample std, as compare
        "min": min(accuracies),
        "max": max(accuracies),
        "train_seconds": statistics.fmean(row["train_seconds"] for row in rows),
        "process_wall_s": statistics.fmean(row["process_wall_s"] for row in rows),
        "process_cpu_s": statistics.fmean(row["process_cpu_s"] for row in rows),
    }


def table(root: Path) -> str:
    from digits.models import REGISTRY
    from digits.recipes import get_recipe

    results = _results(root)
    by_recipe: dict[str, list[dict[str, Any]]] = {}
    for row in results.values():
        if "recipe" in row and "seed" in row:
            by_recipe.setdefault(row["recipe"], []).append(row)
    lines = [
        "| recipe | runs | test accuracy (mean ± std) | min – max | train s | process wall s "
        "| process CPU s | seed claims |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for recipe, rows in by_recipe.items():
        s = summarise(rows)
        claim = (
            REGISTRY[get_recipe(recipe).model].claimed_accuracy if recipe in SEED_RECIPES else None
        )
        lines.append(
            f"| `{recipe}` | {s['runs']} | {100 * s['mean']:.2f} % ± {100 * s['std']:.2f} "
            f"| {100 * s['min']:.2f} – {100 * s['max']:.2f} | {s['train_seconds']:.0f} "
            f"| {s['process_wall_s']:.0f} | {s['process_cpu_s']:.0f} "
            f"| {'—' if claim is None else f'{100 * claim:.2f} %'} |"
        )
    for key, row in results.items():
        if key.startswith("ensemble:"):
            lines.append(
                f"| `{key}` | {row['members']} | {100 * row['test_accuracy']:.2f} % | — | — | — "
                f"| — | — |"
            )
    return "\n".join(lines)


def ensemble(recipes: list[str], seeds: int, root: Path) -> dict[str, Any]:
    """Average seeds 0..seeds-1 of each recipe (trained by `train` under root) into one ensemble."""
    from digits.ensemble import build_ensemble
    from digits.train import read_metrics

    runs = [root / f"{run_name(recipe)}-s{seed}" for recipe in recipes for seed in range(seeds)]
    name = "+".join(map(run_name, recipes))
    out = root / f"{name}-ensemble{len(runs)}"
    build_ensemble(runs, out, overwrite=True)
    row = {
        "members": len(runs),
        "runs": [str(run) for run in runs],
        "test_accuracy": read_metrics(out)["test"]["accuracy"],
        "member_accuracies": [read_metrics(run)["test"]["accuracy"] for run in runs],
    }
    results = _results(root)
    results[f"ensemble:{name}x{len(runs)}"] = row
    _save(root, results)
    return row


# What each piece of `best` gives: `best` with one piece taken out, and with all of them out.
ABLATIONS: dict[str, dict[str, Any]] = {
    "best-nobn": {"model_args": {"batchnorm": False}},
    "best-noema": {"ema_decay": None},
    "best-nols": {"label_smoothing": 0.0},
    "best-noaug": {"augment": None},
    # A constant rate at Adam's usual 1e-3: best's peak of 3e-3 held constant is a worse straw man.
    "best-constant": {"schedule": "constant", "lr": 1e-3},
    "best-none": {
        "model_args": {"batchnorm": False},
        "ema_decay": None,
        "label_smoothing": 0.0,
        "augment": None,
        "schedule": "constant",
        "lr": 1e-3,
    },
}


def ablation_files(root: Path) -> list[str]:
    """Write each ablation of `best` as a recipe file under root/ablation; return their paths."""
    from dataclasses import asdict

    from digits.recipes import get_recipe

    folder = root / "ablation"
    folder.mkdir(parents=True, exist_ok=True)
    best = asdict(get_recipe("best"))
    paths = []
    for name, change in ABLATIONS.items():
        values = {key: value for key, value in best.items() if key not in ("seed", "recipe")}
        values.update(change)
        path = folder / f"{name}.json"
        path.write_text(json.dumps(values, indent=1))
        paths.append(str(path))
    return paths


def tta(run: Path, root: Path) -> dict[str, Any]:
    """Test accuracy, loss and evaluation seconds of a run without and with --tta, kept in
    root/results.json under "tta:<run>" (an ensemble's evaluation takes minutes)."""
    import torch

    from digits.data import load_mnist
    from digits.evaluate import compute_metrics, model_probabilities
    from digits.train import load_model
    from digits.tta import VIEWS, tta_probabilities

    data = load_mnist()
    if data.x_test is None or data.y_test is None:
        raise SystemExit("MNIST without a test split")
    model = load_model(run)
    started = time.perf_counter()
    plain = compute_metrics(model_probabilities(model, data.x_test), data.y_test)
    plain_s = time.perf_counter() - started
    started = time.perf_counter()
    augmented = compute_metrics(tta_probabilities(model, data.x_test), data.y_test)
    tta_s = time.perf_counter() - started
    row = {
        "run": str(run),
        "views": len(VIEWS),
        "accuracy": plain.accuracy,
        "accuracy_tta": augmented.accuracy,
        "loss": plain.loss,
        "loss_tta": augmented.loss,
        "seconds": plain_s,
        "seconds_tta": tta_s,
        "threads": torch.get_num_threads(),
    }
    results = _results(root)
    results[f"tta:{run}"] = row
    _save(root, results)
    return row


def prediction_cost(runs: list[Path], root: Path) -> dict[str, Any]:
    """What a run costs to serve, in ONNX Runtime: images/s over the 10 000 test images (best of
    three passes) and the median time of one 28×28 image, with one and with two threads. For an
    ensemble against one of its members; kept in root/results.json under "prediction:<run>"."""
    from digits.data import load_mnist
    from digits.predictor import Predictor

    images = load_mnist().x_test
    assert images is not None  # MNIST always has its test split
    rows = {}
    for run in runs:
        row: dict[str, Any] = {"load_before": _load()}
        for threads in (1, 2):
            predictor = Predictor.from_path(run, threads=threads)
            predictor.predict_arrays(images[:1000])  # warm up
            passes = []
            for _ in range(3):
                started = time.perf_counter()
                predictor.predict_arrays(images)
                passes.append(time.perf_counter() - started)
            single = []
            for index in range(200):
                started = time.perf_counter()
                predictor.predict_arrays(images[index : index + 1])
                single.append(time.perf_counter() - started)
            row[f"threads{threads}"] = {
                "images_per_s": len(images) / min(passes),
                "single_median_ms": 1000 * statistics.median(single),
            }
        row["load_after"] = _load()
        rows[str(run)] = row
    results = _results(root)
    results.update({f"prediction:{run}": row for run, row in rows.items()})
    _save(root, results)
    return rows


def augment_cost(batches: int = 60) -> dict[str, Any]:
    """Seconds per epoch of augmentation next to a training epoch of the models that use it."""
    import torch
    from torch import nn

    from digits.augment import AugmentConfig, augment_batch
    from digits.models import create_model
    from digits.recipes import get_recipe

    rows: dict[str, Any] = {"threads": torch.get_num_threads(), "load_before": _load()}
    for name in ("best", "cnn-kaggle"):
        config = get_recipe(name)
        assert config.augment is not None
        strengths = AugmentConfig.from_dict(config.augment)
        model = create_model(config.model, **config.model_args).to(
            memory_format=torch.channels_last  # type: ignore[call-overload]
        )
        optimizer = torch.optim.Adam(model.parameters())
        images = torch.rand(config.batch_size, 1, 28, 28)
        labels = torch.randint(0, 10, (config.batch_size,))

        def step(
            batch: torch.Tensor,
            model: nn.Module = model,
            opt: Any = optimizer,
            labels: torch.Tensor = labels,
        ) -> None:
            opt.zero_grad()
            with torch.autocast("cpu", torch.bfloat16):
                loss = nn.functional.cross_entropy(model(batch).float(), labels)
            loss.backward()
            opt.step()

        for _ in range(5):
            step(images)
            augment_batch(images, strengths)
        started = time.perf_counter()
        for _ in range(batches):
            step(images)
        train_s = (time.perf_counter() - started) / batches
        started = time.perf_counter()
        for _ in range(batches):
            augment_batch(images, strengths)
        augment_s = (time.perf_counter() - started) / batches
        steps = 60_000 / config.batch_size
        rows[name] = {
            "augment": config.augment,
            "epoch_train_s": train_s * steps,
            "epoch_augment_s": augment_s * steps,
            "share_of_epoch": augment_s / (train_s + augment_s),
        }
    rows["load_after"] = _load()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train")
    train.add_argument("--recipes", default=",".join([*SEED_RECIPES, "speed", "best"]))
    train.add_argument("--seeds", type=int, default=1)
    train.add_argument("--first-seed", type=int, default=0, help="seeds run from this one on")
    train.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    train.add_argument("extra", nargs="*", help="more `digits train` options, after --")
    ens = commands.add_parser("ensemble")
    ens.add_argument("--recipes", default="best", help="comma-separated; seeds of each averaged")
    ens.add_argument("--seeds", type=int, default=3)
    ens.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ablate = commands.add_parser("ablation")
    ablate.add_argument("--seeds", type=int, default=3)
    ablate.add_argument("--first-seed", type=int, default=0)
    ablate.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    test_time = commands.add_parser("tta")
    test_time.add_argument("--run", type=Path, required=True)
    test_time.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    cost = commands.add_parser("prediction-cost")
    cost.add_argument("runs", type=Path, nargs="+", help="run or ensemble directories")
    cost.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    commands.add_parser("augment-cost")
    show = commands.add_parser("table")
    show.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args()

    if args.command == "train":
        for recipe in args.recipes.split(","):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                print(json.dumps(train_one(recipe, seed, args.root, args.extra)), flush=True)
        print(table(args.root))
    elif args.command == "ensemble":
        recipes = args.recipes.split(",")
        print(json.dumps(ensemble(recipes, args.seeds, args.root), indent=2))
    elif args.command == "ablation":
        for path in ablation_files(args.root):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                print(json.dumps(train_one(path, seed, args.root, [])), flush=True)
        print(table(args.root))
    elif args.command == "tta":
        print(json.dumps(tta(args.run, args.root), indent=2))
    elif args.command == "prediction-cost":
        print(json.dumps(prediction_cost(args.runs, args.root), indent=2))
    elif args.command == "augment-cost":
        print(json.dumps(augment_cost(), indent=2))
    else:
        print(table(args.root))


if __name__ == "__main__":
    main()
