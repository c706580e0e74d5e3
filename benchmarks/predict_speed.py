"""Prediction speed of the seed cnn: ONNX Runtime against torch eager, one image end to end, and
the cold start of `digits predict`. Run:

    .venv/bin/python benchmarks/predict_speed.py [--run RUN_DIR] [--no-write]

Without --run it trains the seed cnn for one epoch on all of MNIST (as the test fixture does)
into runs/bench-cnn, once. It writes benchmarks/results/predict_speed.json and the "## Prediction"
section of docs/benchmarks.md (only that section).

Targets: batch ≥ 20 000 images/s and ≥ 3× torch eager; one image (decode + preprocess + predict)
≤ 2 ms; cold start of `digits predict` on one file ≤ 1 s, without torch, sklearn or matplotlib.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test-data generators live in tests/

from tests.handwriting import LOOKS, Look, encode, pen_photo  # noqa: E402

from docs_section import replace_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "predict_speed.json"
SECTION = "## Prediction"
COMMAND = ".venv/bin/python benchmarks/predict_speed.py"
BATCHES = (1000, 4096)  # 4096 is what Predictor.predict_arrays uses by default
HEAVY = ("torch", "sklearn", "matplotlib", "captum", "scipy")

# `digits predict` exactly as a user runs it, reporting which heavy modules it loaded.
CLI_PROBE = f"""
import sys
sys.argv = ["digits", "predict", sys.argv[1], sys.argv[2], "--json"]
from digits.cli import main
try:
    main()
except SystemExit:
    pass
heavy = [name for name in {HEAVY!r} if name in sys.modules]
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


def ensure_run(run: Path | None) -> Path:
    if run is not None:
        return run
    run = ROOT / "runs" / "bench-cnn"
    if not (run / "model.onnx").exists():
        from digits.data import load_mnist
        from digits.finish import fit
        from digits.train import TrainConfig

        config = TrainConfig(model="cnn", epochs=1, lr=0.004, schedule="onecycle", val_split=0.0)
        fit(config, run, data=load_mnist())
    return run


def best_rate(function: Callable[[np.ndarray], object], images: np.ndarray, repeats: int) -> float:
    """Images per second over all of `images`, best of `repeats` passes (least disturbed)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(images)
        times.append(time.perf_counter() - started)
    return len(images) / min(times)


def batch_throughput(run: Path, images: np.ndarray) -> dict[str, dict[str, float]]:
    """Images/s of ONNX Runtime and torch eager, 2 threads each, at each batch size."""
    import torch

    from digits.predictor import Predictor
    from digits.train import load_model, to_tensor

    torch.set_num_threads(2)
    predictor = Predictor.from_path(run, threads=2)
    model = load_model(run)
    results = {}
    for batch in BATCHES:

        def onnx(data: np.ndarray, batch: int = batch) -> None:
            predictor.predict_arrays(data, batch_size=batch)

        def eager(data: np.ndarray, batch: int = batch) -> None:
            with torch.inference_mode():
                for start in range(0, len(data), batch):
                    torch.softmax(model(to_tensor(data[start : start + batch])), dim=1)

        onnx(images[:batch])  # warm up both
        eager(images[:batch])
        onnx_rate = best_rate(onnx, images, 5)
        eager_rate = best_rate(eager, images, 5)
        results[str(batch)] = {
            "onnx_images_per_s": onnx_rate,
            "torch_images_per_s": eager_rate,
            "speedup": onnx_rate / eager_rate,
        }
    return results


def sample_inputs(mnist_image: np.ndarray) -> dict[str, bytes]:
    from PIL import Image

    canvas = Look(size=(280, 280), paper=(255, 255, 255), ink=(0, 0, 0))
    photo = Look(size=(640, 480), digit_height=0.5, gradient=0.3, noise=5.0)
    phone = Look(size=(4000, 3000), digit_height=0.4, gradient=0.3, noise=5.0)
    return {
        "MNIST digit, 28×28 PNG": encode(Image.fromarray(mnist_image), "PNG"),
        "canvas drawing, 280×280 PNG": encode(pen_photo(3, canvas).convert("L"), "PNG"),
        "photo, 640×480 JPEG": encode(pen_photo(3, photo), "JPEG", quality=85),
        "uneven-light photo, 300×240 PNG": encode(pen_photo(5, LOOKS["uneven-light"]), "PNG"),
        "phone photo, 4000×3000 JPEG": encode(pen_photo(7, phone), "JPEG", quality=85),
    }


def single_image_latency(run: Path, inputs: dict[str, bytes]) -> dict[str, dict[str, float]]:
    """Wall time per image (the default two-thread session), and processor time per image with a
    one-thread session: what the image itself costs, however busy the machine is."""
    from digits.predictor import Predictor

    predictor = Predictor.from_path(run)
    single_thread = Predictor.from_path(run, threads=1)
    results = {}
    for name, data in inputs.items():
        predictor.predict_images([data])  # warm up
        single_thread.predict_images([data])
        repeats = 10 if len(data) > 500_000 else 100
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            predictor.predict_images([data])
            times.append(time.perf_counter() - started)
        cpu_started = time.process_time()
        for _ in range(repeats):
            single_thread.predict_images([data])
        results[name] = {
            "median_ms": 1000 * statistics.median(times),
            "best_ms": 1000 * min(times),
            "cpu_ms": 1000 * (time.process_time() - cpu_started) / repeats,
            "bytes": len(data),
        }
    return results


def cold_start(run: Path, image: bytes) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "digit.png"
        path.write_bytes(image)
        times, heavy = [], ""
        for _ in range(5):
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", CLI_PROBE, str(run), str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
            times.append(time.perf_counter() - started)
            heavy = done.stderr.strip().rsplit("HEAVY=", 1)[-1]
        answer = json.loads(done.stdout)[0]
    return {
        "median_s": statistics.median(times),
        "best_s": min(times),
        "heavy_modules": [m for m in heavy.split(",") if m],
        "digit": answer["digit"],
    }


def load_average() -> float:
    return os.getloadavg()[0]


def markdown(result: dict) -> str:
    busy = ""
    if max(result["load_before"], result["load_after"]) > 2.5:  # more runnable jobs than cores
        busy = ": other jobs shared the two cores, so every figure here is pessimistic"
    lines = [
        SECTION,
        "",
        f"Command: `{COMMAND}` (seed `cnn`, one epoch on all of MNIST; {result['machine']}; "
        f"load average {result['load_before']:.1f} before and {result['load_after']:.1f} after "
        f"the run{busy}).",
        "",
        "Batch prediction of the 10 000 MNIST test images, 2 threads, best of 5 passes:",
        "",
        "| batch | ONNX Runtime images/s | torch eager images/s | speed-up "
        "| targets (≥ 20 000/s, ≥ 3×) |",
        "|---:|---:|---:|---:|---|",
    ]
    for size, row in result["batch"].items():
        verdicts = (
            f"{'met' if row['onnx_images_per_s'] >= 20_000 else 'missed'}, "
            f"{'met' if row['speedup'] >= 3 else 'missed'}"
        )
        lines.append(
            f"| {size} | {row['onnx_images_per_s']:,.0f} | {row['torch_images_per_s']:,.0f} | "
            f"{row['speedup']:.1f}× | {verdicts} |"
        )
    lines += [
        "",
        "One image end to end (decode + preprocess + predict), `Predictor.predict_images`, "
        "target ≤ 2 ms:",
        "",
        "| input | median ms | best ms | CPU ms, one thread | target (on the median) |",
        "|---|---:|---:|---:|---|",
    ]
    for name, row in result["single"].items():
        verdict = "met" if row["median_ms"] <= 2 else "missed"
        lines.append(
            f"| {name} | {row['median_ms']:.2f} | {row['best_ms']:.2f} | {row['cpu_ms']:.2f} "
            f"| {verdict} |"
        )
    cold = result["cold_start"]
    heavy = ", ".join(cold["heavy_modules"]) or "none"
    lines += [
        "",
        f"Cold start of `digits predict RUN digit.png --json` in a new process: median "
        f"{cold['median_s']:.2f} s, best {cold['best_s']:.2f} s (target ≤ 1 s: "
        f"{'met' if cold['median_s'] <= 1 else 'missed'}); heavy modules loaded: {heavy}.",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    replace_section(text, SECTION)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, help="A seed cnn run directory with model.onnx.")
    parser.add_argument("--no-write", action="store_true", help="Print only; write no files.")
    args = parser.parse_args()

    from digits.data import load_mnist

    run = ensure_run(args.run)
    mnist = load_mnist()
    assert mnist.x_test is not None  # MNIST always has its test split
    inputs = sample_inputs(mnist.x_test[0])
    load_before = load_average()
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "load_before": load_before,
        "cold_start": cold_start(run, inputs["canvas drawing, 280×280 PNG"]),
        "single": single_image_latency(run, inputs),
        "batch": batch_throughput(run, mnist.x_test),
        "load_after": load_average(),
    }
    text = markdown(result)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        write_section(text)


if __name__ == "__main__":
    main()
