"""Load on the web service: single-image predict at concurrency 8 for 60 s, on loopback only.

    .venv/bin/python benchmarks/load_predict.py [MODEL] [--duration 60] [--connections 8]
                                                [--workers 1] [--payload drawing|upload|pixels]

Starts `digits serve MODEL` on a free 127.0.0.1 port, checks one answer, warms up, then runs wrk
(Debian package `wrk`) with benchmarks/load_predict.lua. The payload is what the drawing page
sends after a stroke, a 160×160 PNG of a handwritten digit as the body itself (`drawing`:
Content-Type image/png; decoded and prepared like any photo), the same PNG as a multipart upload
(`upload`: what `curl -F file=@x.png` sends), or the same digit as 784 MNIST pixels in JSON
(`pixels`: straight to the model). The server's resident memory (its whole process tree) is
sampled every second. Everything stops by itself: wrk ends after --duration, and every wait has
a timeout. Prints a summary and writes benchmarks/results/load_predict-PAYLOAD-wWORKERS.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
LUA = HERE / "load_predict.lua"
RESULTS = HERE / "results"
DIGITS = Path(sys.executable).with_name("digits")
TARGETS = {"p50_ms": 5.0, "p99_ms": 25.0, "requests_per_s": 400.0, "rss_mb": 250.0}


def mnist_seven() -> np.ndarray:
    from digits.data import load_mnist

    images = load_mnist().x_test
    assert images is not None  # MNIST always has its test split
    return images[0]  # a 7


def drawing_png() -> bytes:
    """MNIST test digit 0 (a 7) as the page sends a drawing: dark on white, 160×160 PNG."""
    pixels = mnist_seven()
    ink = Image.fromarray(255 - pixels).resize((112, 112), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (160, 160), 255)
    canvas.paste(ink, (24, 24))
    buffer = io.BytesIO()
    canvas.save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
        pending += [int(child) for child in children]
    return total / 1024


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and all its descendants.

    On a machine shared with other work, CPU time per request is the figure that does not depend
    on how much of the cores the server happened to get."""
    total, pending = 0.0, [pid]
    ticks = os.sysconf("SC_CLK_TCK")
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        pending += [int(child) for child in children]
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set():
            self.samples.append((time.monotonic() - started, tree_rss_mb(self.pid)))
            self.stop.wait(self.every)


def wait_ready(base: str, server: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            if httpx2.get(f"{base}/api/health", timeout=2).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"the server did not answer within {seconds} s")


def best_model() -> Path:
    from digits.serve.discovery import find_best_run

    return find_best_run(Path("runs"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", type=Path, help="run directory or .onnx file")
    parser.add_argument("--duration", type=int, default=60, help="seconds of load")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (client)")
    parser.add_argument("--payload", choices=("drawing", "upload", "pixels"), default="drawing")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    model = args.model or best_model()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(DIGITS), "serve", str(model), "--port", str(port)]
    command += ["--workers", str(args.workers)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(base, server)
        if args.payload == "pixels":
            body = json.dumps({"pixels": mnist_seven().ravel().tolist()}).encode()
            request: dict[str, Any] = {
                "content": body,
                "headers": {"content-type": "application/json"},
            }
        else:
            body = drawing_png()
            request = (
                {"files": {"file": ("drawing.png", body, "image/png")}}
                if args.payload == "upload"
                else {"content": body, "headers": {"content-type": "image/png"}}
            )
        check = httpx2.post(f"{base}/api/predict", timeout=10, **request).json()
        if check.get("digit") != 7:
            raise SystemExit(f"unexpected answer before the run: {check}")
        with httpx2.Client(base_url=base, timeout=10) as client:  # warm-up: caches, allocator
            for _ in range(300):
                client.post("/api/predict", **request).raise_for_status()

        sampler = RssSampler(server.pid)
        sampler.start()
        cpu_before = tree_cpu_s(server.pid)
        load = [f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{args.duration}s"]
        with tempfile.NamedTemporaryFile(suffix=".body") as payload:
            payload.write(body)
            payload.flush()
            wrk = subprocess.run(
                ["wrk", *load, "--timeout", "5s", "-s", str(LUA), f"{base}/api/predict"],
                capture_output=True,
                text=True,
                timeout=args.duration + 60,
                env={
                    **os.environ,
                    "DIGITS_LOAD_BODY": payload.name,
                    "DIGITS_LOAD_KIND": args.payload,
                },
            )
        cpu_used = tree_cpu_s(server.pid) - cpu_before
        sampler.stop.set()
        sampler.join()
        after = httpx2.get(f"{base}/api/health", timeout=10).json()["status"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()

    line = next((x for x in wrk.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no summary:\n{wrk.stdout}\n{wrk.stderr}")
    stats = json.loads(line.removeprefix("WRK_JSON "))
    rss = [mb for _, mb in sampler.samples]
    errors = sum(value for key, value in stats.items() if key.startswith("errors_"))
    result = {
        "command": " ".join(["wrk", *load, "-s benchmarks/load_predict.lua", "URL/api/predict"]),
        "model": str(model),
        "workers": args.workers,
        "connections": args.connections,
        "duration_s": stats["duration_us"] / 1e6,
        "payload": args.payload,
        "payload_bytes": len(body),
        "requests": stats["requests"],
        "requests_per_s": stats["requests"] / (stats["duration_us"] / 1e6),
        "p50_ms": stats["latency_p50_us"] / 1000,
        "p90_ms": stats["latency_p90_us"] / 1000,
        "p99_ms": stats["latency_p99_us"] / 1000,
        "max_ms": stats["latency_max_us"] / 1000,
        "server_cpu_ms_per_request": 1000 * cpu_used / max(1, stats["requests"]),
        "errors": errors,
        "error_detail": {k: v for k, v in stats.items() if k.startswith("errors_")},
        "rss_mb_first": rss[0] if rss else None,
        "rss_mb_last": rss[-1] if rss else None,
        "rss_mb_max": max(rss) if rss else None,
        "rss_samples": len(rss),
        "healthy_after": after == "ok",
        "cpus": os.cpu_count(),
        "load_average_before_after": list(os.getloadavg()),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    result["targets_met"] = {
        "p50": result["p50_ms"] <= TARGETS["p50_ms"],
        "p99": result["p99_ms"] <= TARGETS["p99_ms"],
        "throughput": result["requests_per_s"] >= TARGETS["requests_per_s"],
        "errors": errors == 0,
        "rss": (result["rss_mb_max"] or 0) <= TARGETS["rss_mb"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"load_predict-{args.payload}-w{args.workers}.json").write_text(
        json.dumps({**result, "rss_series": sampler.samples}, indent=2) + "\n"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
