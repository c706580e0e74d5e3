"""Streamed batch prediction (`digits predict MODEL DIR --out results.jsonl`): images/s and peak
memory of the whole process tree, in one process, two worker processes and on a Dask LocalCluster
of two workers. Run:

    .venv/bin/python benchmarks/batch_predict.py [--model runs/speed-seed0] [--count 100000 ...]

For each COUNT (smallest first) it writes that many small PNGs of the MNIST test digits (28×28,
cycled, 1 000 a folder) into a temporary folder, runs the command as a user does, once per
set-up, while sampling the memory of the command and all its children every 0.1 s, checks that
every set-up wrote the same answers in the same order, and times a second run of the finished
command (the resume check: it reads the output back against the listing and predicts nothing).
It writes benchmarks/results/batch_predict.json and the "## Batch prediction" section of
docs/benchmarks.md (only that section).

Targets: memory flat in COUNT (the command's own process ≤ 500 MB whatever the count) and more
images/s with more worker processes.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from PIL import Image

from docs_section import replace_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "batch_predict.json"
SECTION = "## Batch prediction"
DIGITS = str(Path(sys.executable).with_name("digits"))
PER_FOLDER = 1000
SETUPS = {
    "one process (`--jobs 1`)": ["--jobs", "1"],
    "two worker processes (`--jobs 2`)": ["--jobs", "2"],
    "Dask LocalCluster, two workers (`--scheduler local --jobs 2`)": [
        *("--scheduler", "local", "--jobs", "2"),
    ],
}


def write_images(folder: Path, start: int, count: int) -> list[int]:
    """PNGs number START to COUNT of the MNIST test digits (cycled), 1 000 a folder; the labels
    of all COUNT in listing order."""
    from digits.data import load_mnist

    mnist = load_mnist()
    # MNIST always has its test split.
    assert mnist.x_test is not None
    assert mnist.y_test is not None
    encoded = []
    for image in mnist.x_test:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        encoded.append(buffer.getvalue())
    for index in range(start, count):
        sub = folder / f"{index // PER_FOLDER:04d}"
        sub.mkdir(exist_ok=True)
        (sub / f"{index:06d}.png").write_bytes(encoded[index % len(encoded)])
    return [int(mnist.y_test[index % len(encoded)]) for index in range(count)]


class TreeMemory:
    """Peak memory of a process and its descendants, sampled every 0.1 s: the largest sum of
    resident set sizes (RSS: pages shared between processes count in each) and of proportional
    set sizes (PSS: each shared page split between its sharers, what the tree really costs),
    and the largest RSS of the command's own process."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.rss = self.pss = self.own_rss = 0
        self.most_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                tree = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            rss = pss = 0
            for process in tree:
                try:
                    info = process.memory_full_info()
                except psutil.Error:
                    continue  # ended between the listing and the reading
                rss, pss = rss + info.rss, pss + info.pss
                if process.pid == self.root.pid:
                    self.own_rss = max(self.own_rss, info.rss)
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)
            self.most_processes = max(self.most_processes, len(tree))
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_command(args: list[str]) -> dict[str, Any]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
    )
    memory = TreeMemory(process.pid)
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    memory.stop()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({process.returncode}): {stderr.strip()}")
    return {
        "seconds": seconds,
        "peak_tree_rss_mb": memory.rss / 2**20,
        "peak_tree_pss_mb": memory.pss / 2**20,
        "peak_command_rss_mb": memory.own_rss / 2**20,
        "processes": memory.most_processes,
        "summary": stdout.strip(),
    }


def answers(out: Path) -> list[tuple[str, int | None, float | None]]:
    with out.open() as handle:
        return [
            (entry["file"], entry["digit"], entry["confidence"])
            for entry in map(json.loads, handle)
        ]


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{platform.machine()} {cpu}, {os.cpu_count()} CPUs, {memory:.0f} GiB, "
        f"Python {platform.python_version()}"
    )


def markdown(result: dict[str, Any]) -> str:
    lines = [
        SECTION,
        "",
        "`digits predict MODEL DIR --out results.jsonl` on small PNGs of the MNIST test digits "
        f"(28×28, {PER_FOLDER:,} a folder), measured by `benchmarks/batch_predict.py`: wall "
        "time of the whole command (start-up, listing, decoding, preprocessing, ONNX Runtime, "
        "writing), and the peak memory of the command with all its child processes, sampled "
        "every 0.1 s.",
        "",
        "```bash",
        result["command"],
        f"# {result['machine']}; {result['date']}; model {result['model']}; load average "
        f"{result['load_before']:.1f} before, {result['load_after']:.1f} after",
        "```",
        "",
        "| images | set-up | seconds | images/s | peak RSS, tree | peak PSS, tree "
        "| peak RSS, command | processes |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for count, runs in result["runs"].items():
        for name, row in runs["setups"].items():
            lines.append(
                f"| {int(count):,} | {name} | {row['seconds']:.1f} "
                f"| {int(count) / row['seconds']:,.0f} | {row['peak_tree_rss_mb']:,.0f} MB "
                f"| {row['peak_tree_pss_mb']:,.0f} MB | {row['peak_command_rss_mb']:,.0f} MB "
                f"| {row['processes']} |"
            )
    checks = "; ".join(
        f"{int(count):,} images: {'the same' if runs['same_answers'] else 'NOT the same'}, "
        f"{100 * runs['right']:.2f} % right"
        for count, runs in result["runs"].items()
    )
    largest = max(result["runs"], key=int)
    resume = result["runs"][largest]["resume"]
    lines += [
        "",
        f"Answers of the three set-ups compared in order, and against the MNIST labels (a digit "
        f"answer that is right; not sure and not a digit count as wrong): {checks}. The same "
        f"command again on the finished output of {int(largest):,} images reads it back, checks "
        f"every entry against the listing and predicts nothing: {resume['seconds']:.1f} s, peak "
        f"RSS {resume['peak_tree_rss_mb']:,.0f} MB.",
        "",
        "RSS counts the pages that processes share (the libraries of the forked workers) once in "
        "each, PSS splits them between their sharers. Only a few chunks of 64 images are in "
        "flight (two a worker) and answers go to the file as they come, so the tree grows with "
        "`--jobs`, each worker process costing about what one process alone does (ONNX Runtime, "
        "OpenCV, NumPy and the model), not with the count. Under Dask the command's process also "
        "runs the scheduler and the nannies of the workers, and imports Dask.",
        "",
    ]
    smallest = min(result["runs"], key=int)
    if smallest != largest:
        before = result["runs"][smallest]["setups"]
        growth = "; ".join(
            f"{name.split(' (')[0]}: {before[name]['peak_command_rss_mb']:,.0f} → "
            f"{row['peak_command_rss_mb']:,.0f} MB"
            for name, row in result["runs"][largest]["setups"].items()
        )
        lines += [
            f"Peak RSS of the command's own process from {int(smallest):,} to {int(largest):,} "
            f"images: {growth}.",
            "",
        ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    replace_section(text, SECTION)


def measure(model: Path, images: Path, work: Path, labels: list[int]) -> dict[str, Any]:
    setups: dict[str, dict[str, Any]] = {}
    outputs = []
    command: list[str] = []
    for number, (name, options) in enumerate(SETUPS.items()):
        out = work / f"results-{len(labels)}-{number}.jsonl"
        command = [DIGITS, "predict", str(model), str(images), "--out", str(out)]
        setups[name] = run_command([*command, *options])
        outputs.append(out)
        print(len(labels), name, json.dumps(setups[name]), flush=True)
    resume = run_command([*command[:-1], str(outputs[1]), "--jobs", "2"])
    reference = answers(outputs[0])
    right = sum(
        digit == label for (_, digit, _), label in zip(reference, labels, strict=True)
    ) / len(labels)
    return {
        "setups": setups,
        "resume": resume,
        "same_answers": all(answers(out) == reference for out in outputs[1:]),
        "right": right,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=ROOT / "runs" / "speed-seed0")
    parser.add_argument(
        "--count",
        type=int,
        action="append",
        help="Images to write and predict (default 100000); give it again for more sizes.",
    )
    parser.add_argument("--no-write", action="store_true", help="Print only; write no files.")
    args = parser.parse_args()
    if not (args.model / "model.onnx").exists() and args.model.suffix != ".onnx":
        raise SystemExit(f"{args.model}: give a finished run (with model.onnx) as --model")
    counts = sorted(set(args.count or [100_000]))

    work = Path(tempfile.mkdtemp(prefix="batch-predict-"))
    runs: dict[str, dict[str, Any]] = {}
    try:
        images = work / "images"
        images.mkdir()
        load_before = os.getloadavg()[0]
        written = 0
        for count in counts:
            # The same folder, topped up: each size lists the images of the smaller ones too.
            started = time.perf_counter()
            labels = write_images(images, written, count)
            written = count
            print(f"{count:,} PNGs there, in {time.perf_counter() - started:.1f} s", flush=True)
            runs[str(count)] = measure(args.model, images, work, labels)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    options = " ".join(f"--count {count}" for count in counts)
    result = {
        "command": f".venv/bin/python benchmarks/batch_predict.py {options}",
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "model": os.path.relpath(args.model, ROOT),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "runs": runs,
    }
    text = markdown(result)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        write_section(text)


if __name__ == "__main__":
    main()
