"""How long an explanation takes: each model-agnostic method alone, and `POST /api/explain` on
the real service, as the page asks it. Run:

    .venv/bin/python benchmarks/explain_speed.py [--run runs/speed-seed0] [--count 40] [--no-write]

The service is the app of `digits serve` on uvicorn, in a thread of this process, on loopback;
requests go one at a time (one explanation's own latency) with the page's input: a digit drawn
dark on white, sent as a 160×160 PNG (MNIST test digits, cycled). Each method's first request is
timed on its own, in a new service process: it imports the method's library, as in a new worker.
Processor time is that of the whole process (server and client) per request. It writes
benchmarks/results/explain_speed.json and the "## Explanations" section of docs/benchmarks.md
(only that section).

Target: the service's default method ≤ 150 ms per explanation (median, warm) on two cores.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from docs_section import replace_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "explain_speed.json"
SECTION = "## Explanations"
COMMAND = ".venv/bin/python benchmarks/explain_speed.py --run runs/speed-seed0"
BUDGET_MS = 150
SEND_SIDE = 160  # what the page sends (static/app.js, SEND_SIDE)


def drawings(images: np.ndarray) -> list[bytes]:
    """MNIST digits as the page sends a drawing: dark ink on white, 160×160 PNG."""
    files = []
    for pixels in images:
        canvas = Image.fromarray(255 - pixels).resize(
            (SEND_SIDE, SEND_SIDE), Image.Resampling.BILINEAR
        )
        buffer = io.BytesIO()
        canvas.save(buffer, "PNG")
        files.append(buffer.getvalue())
    return files


def alone(run: Path, images: np.ndarray, methods: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Milliseconds per explanation of each method on 28×28 inputs, no service around it, on a
    one-thread ONNX Runtime session (as the service's)."""
    from digits.explain_agnostic import agnostic_attributions
    from digits.predictor import Predictor

    predictor = Predictor.from_path(run, threads=1)
    results = {}
    for method in methods:
        targets = predictor.predict_arrays(images).argmax(axis=1)
        agnostic_attributions(predictor.predict_arrays, images[0], int(targets[0]), method)
        times = []
        for pixels, target in zip(images, targets, strict=True):
            started = time.perf_counter()
            agnostic_attributions(predictor.predict_arrays, pixels, int(target), method)
            times.append(1000 * (time.perf_counter() - started))
        results[method] = {"median_ms": statistics.median(times), "best_ms": min(times)}
    return results


class Service:
    """The app on uvicorn in a thread, on a free loopback port."""

    def __init__(self, run: Path) -> None:
        import uvicorn

        from digits.serve import Settings, create_app

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            create_app(Settings(model=run)), host="127.0.0.1", port=port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)

    def explain(self, data: bytes, method: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/api/explain?method={method}",
            data=data,
            headers={"Content-Type": "image/png"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def first_request(run: Path, data: bytes, method: str) -> float:
    """Milliseconds of a method's first request in a new service process: the import of its
    library and anything else done once, as a new worker meets it."""
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "digit.png"
        image.write_bytes(data)
        done = subprocess.run(
            [sys.executable, __file__, "--run", str(run), "--first", method, str(image)],
            capture_output=True,
            text=True,
            check=True,
        )
    return float(done.stdout.strip().splitlines()[-1])


def served(run: Path, files: list[bytes], methods: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    results = {method: {"first_ms": first_request(run, files[0], method)} for method in methods}
    service = Service(run)
    try:
        for method in methods:
            first = service.explain(files[0], method)  # warm: the library is imported
            assert first["method"] == method, first
            assert first["attributions"] is not None, first
            times = []
            cpu_started = time.process_time()
            for data in files:
                started = time.perf_counter()
                service.explain(data, method)
                times.append(1000 * (time.perf_counter() - started))
            cpu_ms = 1000 * (time.process_time() - cpu_started) / len(files)
            times.sort()
            results[method].update(
                median_ms=statistics.median(times),
                p95_ms=times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
                cpu_ms=cpu_ms,
                requests=len(files),
            )
    finally:
        service.stop()
    return results


def markdown(result: dict[str, Any]) -> str:
    from digits.serve.routes.explain import DEFAULT_METHOD

    busy = ""
    if max(result["load_before"], result["load_after"]) > 2.5:
        busy = ": other jobs shared the two cores, so the figures are pessimistic"
    lines = [
        SECTION,
        "",
        f"Command: `{COMMAND}` ({result['model']}; {result['machine']}; {result['date']}; load "
        f"average {result['load_before']:.1f} before and {result['load_after']:.1f} after{busy}).",
        "",
        f"`POST /api/explain` on the real service (uvicorn, loopback), one request at a time, "
        f"{result['count']} drawings as the page sends them (160×160 PNG), warm. *First request*: "
        "a method's first in a new service process, which imports its library (what a new "
        "worker pays once). CPU ms: the whole process (server and client) per request. *Alone*: "
        "the method by itself on the 28×28, one-thread ONNX Runtime.",
        "",
        "| method | first request ms | median ms | p95 ms | CPU ms | alone, median ms "
        f"| ≤ {BUDGET_MS} ms |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for method, row in result["served"].items():
        verdict = "yes" if row["median_ms"] <= BUDGET_MS else "no"
        name = f"`{method}`" + (" (default)" if method == DEFAULT_METHOD else "")
        lines.append(
            f"| {name} | {row['first_ms']:.0f} | {row['median_ms']:.1f} | {row['p95_ms']:.1f} "
            f"| {row['cpu_ms']:.1f} | {result['alone'][method]['median_ms']:.1f} | {verdict} |"
        )
    lines += [
        "",
        "Occlusion asks the model about 170 images in one batch; SHAP about 2 × 10 × (pieces + 1) "
        "in ten batches (a digit has 30–50 ink superpixels); LIME 1 000 in one, then fits its "
        "weighted linear model. All three fit the budget warm. The default is occlusion: several "
        "times faster than the other two, so two cores answer several times as many people; no "
        "library beyond the service's own, so it works on a `digits[serve]` install; and no "
        "first-request stall. LIME draws the more faithful map once more than 20 pixels are "
        'deleted (docs/results.md, "Explanations: how faithful"): ask for it with '
        "`?method=lime` where the `explain` extra is installed.",
        "",
    ]
    return "\n".join(lines)


def _shown(path: Path) -> str:
    """A path as a reader of the docs would type it: from the repository root when inside it."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def load_average() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "speed-seed0")
    parser.add_argument("--count", type=int, default=40, help="Requests per method.")
    parser.add_argument("--no-write", action="store_true", help="Print only; write no files.")
    parser.add_argument("--first", nargs=2, metavar=("METHOD", "IMAGE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first:  # one first request in this new process (see first_request)
        method, image = args.first
        service = Service(args.run)
        started = time.perf_counter()
        service.explain(Path(image).read_bytes(), method)
        print(1000 * (time.perf_counter() - started))
        service.stop()
        return

    from digits.data import load_mnist
    from digits.explain_agnostic import AGNOSTIC_METHODS
    from digits.predictor import Predictor

    mnist = load_mnist()
    assert mnist.x_test is not None
    images = mnist.x_test[: args.count]
    info = Predictor.from_path(args.run).info
    load_before = load_average()
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "model": f"model {_shown(args.run)} ({info.model}, ONNX Runtime)",
        "date": datetime.date.today().isoformat(),
        "count": args.count,
        "load_before": load_before,
        "served": served(args.run, drawings(images), AGNOSTIC_METHODS),
        "alone": alone(args.run, images, AGNOSTIC_METHODS),
        "load_after": load_average(),
    }
    text = markdown(result)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        replace_section(text, SECTION)


if __name__ == "__main__":
    main()
