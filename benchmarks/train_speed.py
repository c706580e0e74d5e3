"""One epoch of each seed model over all 60 000 MNIST training images: time, images/s, peak RSS.

Each model trains in its own process so that peak resident memory is that run's alone. Run:

    .venv/bin/python benchmarks/train_speed.py [--models cnn,ann] [--precision auto|fp32|bf16]

It prints a Markdown table and writes benchmarks/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ONE_RUN = """
import json, resource, sys, time
from digits.data import load_mnist
from digits.train import TrainConfig, read_metrics
from digits.finish import fit
data = load_mnist()
config = TrainConfig(model=sys.argv[1], epochs=1, lr=float(sys.argv[3]), schedule="onecycle",
                     val_split=0.0, precision=sys.argv[2])
started = time.perf_counter()
fit(config, sys.argv[4], data=data)
wall = time.perf_counter() - started
metrics = read_metrics(sys.argv[4])
print(json.dumps({"epoch_seconds": metrics["train_seconds"], "wall_seconds": wall,
                  "samples_per_s": metrics["samples_per_s"], "precision": metrics["precision"],
                  "test_accuracy": metrics["test"]["accuracy"],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""

# One-epoch learning rates: the seeds' Adam at 1e-3 under-trains in a single epoch.
LEARNING_RATES = {"ann": 0.003, "fnn": 0.003, "mlp": 0.003}
DEFAULT_LR = 0.004


def measure(model: str, precision: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        lr = LEARNING_RATES.get(model, DEFAULT_LR)
        done = subprocess.run(
            [sys.executable, "-c", ONE_RUN, model, precision, str(lr), f"{folder}/run"],
            capture_output=True,
            text=True,
            check=True,
        )
    row: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    row.update(model=model, lr=lr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="ann,fnn,mlp,cnn,cnn-small,cnn-dropout,cnn-kaggle")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    rows = [measure(name, args.precision) for name in args.models.split(",")]
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print("| model | precision | epoch s | images/s | test acc after 1 epoch | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| `{row['model']}` | {row['precision']} | {row['epoch_seconds']:.2f} | "
            f"{row['samples_per_s']:,.0f} | {100 * float(row['test_accuracy']):.2f} % | "  # type: ignore[arg-type]
            f"{row['peak_rss_mib']} |"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"train_speed_{args.precision}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
