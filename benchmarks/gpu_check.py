"""One prepared run on a machine with a CUDA GPU: `speed` and `best` trained there, and the
batch predictor on its cores, in one command of under ten minutes.

    python benchmarks/gpu_check.py --out DIR [--device cuda] [--budget 540]

Run from the repository root with the package importable (`PYTHONPATH=src` where it is not
installed) and MNIST in the cache (`DIGITS_DATA_DIR` pointing at a folder holding mnist.npz and
source.json, see `prepare` below). Each step gets a share of `--budget` seconds and is stopped at
it, so a slow machine still returns what it measured: `DIR/gpu_check.json` and a Markdown table
on standard output, for docs/benchmarks.md ("Training on a GPU").

    python benchmarks/gpu_check.py prepare FOLDER

writes FOLDER/mnist.npz (compressed, 11 MB) and FOLDER/source.json from this machine's cache:
what a machine without internet access needs to travel with the working tree. `--device cpu`
runs the same steps here, as a check of the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# A share of the budget per step: `best` is the long one.
SHARES = {"speed": 0.25, "best": 0.55, "predict": 0.2}
PREDICT_IMAGES = 20_000


def _digits(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "digits", *arguments]


def machine_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "device": device,
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30)
        info["bf16"] = torch.cuda.is_bf16_supported()
    return info


def train_step(recipe: str, device: str, runs: Path, limit_s: float) -> dict[str, Any]:
    """`digits train --recipe R --device D`, stopped at limit_s; what its run directory says."""
    out = runs / recipe
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            _digits("train", "--recipe", recipe, "--device", device, "--out", str(out), "--quiet"),
            capture_output=True,
            text=True,
            timeout=limit_s,
        )
        status = "finished" if completed.returncode == 0 else f"failed: {completed.stderr[-500:]}"
    except subprocess.TimeoutExpired:
        status = f"stopped at {limit_s:.0f} s"
    row: dict[str, Any] = {
        "recipe": recipe,
        "status": status,
        "wall_seconds": time.perf_counter() - started,
    }
    metrics_path = out / "metrics.json"
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        row.update(
            train_seconds=metrics["train_seconds"],
            samples_per_s=metrics["samples_per_s"],
            test_accuracy=(metrics.get("test") or {}).get("accuracy"),
            device=metrics["device"],
            precision=metrics["precision"],
        )
    history = out / "history.csv"
    if history.exists():
        row["epochs"] = len(history.read_text().splitlines()) - 1
    return row


def predict_step(model: Path, work: Path, limit_s: float) -> dict[str, Any]:
    """The batch predictor on PREDICT_IMAGES MNIST test PNGs, one process and one per core."""
    from PIL import Image

    from digits.data import load_mnist

    test = load_mnist().x_test
    assert test is not None
    folder = work / "pngs"
    folder.mkdir()
    for index in range(PREDICT_IMAGES):
        Image.fromarray(test[index % len(test)]).save(folder / f"{index:05d}.png")
    row: dict[str, Any] = {"images": PREDICT_IMAGES}
    deadline = time.perf_counter() + limit_s
    for jobs in (1, os.cpu_count() or 1):
        out = work / f"results-{jobs}.jsonl"
        started = time.perf_counter()
        try:
            subprocess.run(
                _digits("predict", str(model), str(folder), "--out", str(out), "--jobs", str(jobs)),
                capture_output=True,
                timeout=max(1.0, deadline - time.perf_counter()),
            )
        except subprocess.TimeoutExpired:
            row[f"jobs_{jobs}"] = "stopped at the budget"
            break
        seconds = time.perf_counter() - started
        written = len(out.read_text().splitlines()) if out.exists() else 0
        row[f"jobs_{jobs}"] = {"seconds": seconds, "images_per_s": written / seconds}
    return row


def markdown(result: dict[str, Any]) -> str:
    info = result["machine"]
    lines = [
        f"Machine: {info.get('gpu', info['device'])}, {info['cpus']} CPUs, torch {info['torch']},"
        f" Python {info['python']}.",
        "",
        "| recipe | status | epochs | wall | training | images/s | test accuracy | precision |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["training"]:
        accuracy = row.get("test_accuracy")
        shown = "" if accuracy is None else f"{100 * accuracy:.2f} %"
        lines.append(
            f"| `{row['recipe']}` | {row['status'][:40]} | {row.get('epochs', 0)} | "
            f"{row['wall_seconds']:.1f} s | {row.get('train_seconds', 0):.1f} s | "
            f"{row.get('samples_per_s', 0):,.0f} | "
            f"{shown} | {row.get('precision', '')} |"
        )
    predict = result.get("predict") or {}
    for key, value in predict.items():
        if key.startswith("jobs_") and isinstance(value, dict):
            lines.append(
                f"\nBatch predictor, {predict['images']} PNGs, --jobs {key[5:]}: "
                f"{value['images_per_s']:,.0f} images/s ({value['seconds']:.1f} s)"
            )
    return "\n".join(lines)


def prepare(folder: Path) -> None:
    from digits.data.sources import CACHE_FILE, SOURCE_FILE, data_dir

    folder.mkdir(parents=True, exist_ok=True)
    with np.load(data_dir() / CACHE_FILE) as archive:
        arrays = {key: archive[key] for key in archive.files}
    np.savez_compressed(folder / CACHE_FILE, **arrays)
    shutil.copy(data_dir() / SOURCE_FILE, folder / SOURCE_FILE)
    print(f"{folder}: {sum(p.stat().st_size for p in folder.iterdir()) / 1e6:.1f} MB")


def main() -> None:
    if sys.argv[1:2] == ["prepare"]:
        prepare(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for all steps")
    parser.add_argument("--recipes", default="speed,best")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": machine_info(args.device), "training": []}
    print(json.dumps(result["machine"]), flush=True)
    with tempfile.TemporaryDirectory() as work:
        runs = Path(work) / "runs"
        for recipe in args.recipes.split(","):
            share = SHARES.get(recipe, 0.25) * args.budget
            result["training"].append(train_step(recipe, args.device, runs, share))
            print(json.dumps(result["training"][-1]), flush=True)
        model = runs / args.recipes.split(",")[0] / "model.onnx"
        if model.exists():
            result["predict"] = predict_step(model, Path(work), SHARES["predict"] * args.budget)
            print(json.dumps(result["predict"]), flush=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
