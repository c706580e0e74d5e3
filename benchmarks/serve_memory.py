"""Memory of one service worker under the worst uploads, on loopback only.

    flock /tmp/cpu.lock .venv/bin/python benchmarks/serve_memory.py [MODEL] [--env KEY=VALUE ...]

Starts `digits serve MODEL` (one worker) on a free 127.0.0.1 port and sends, one case after the
other: a small PNG of huge dimensions (6 324 × 6 324 RGBA, 182 KB, the size the old 40-megapixel
limit let through), the largest PNG the current pixel limit accepts, a big JPEG (6 000 × 4 000),
six of each at once, and a burst of 200 ordinary drawings 8 at a time. After each case it
records the answers (status codes) and the worker's resident memory: now (VmRSS) and its peak
so far (VmHWM, read from /proc). Prints a table and writes benchmarks/results/serve_memory.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DIGITS = Path(sys.executable).with_name("digits")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def digit_on_paper(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A thick dark 7 across the middle of a white page."""
    image = Image.new(mode, (width, height), "white")
    draw = ImageDraw.Draw(image)
    stroke = max(4, min(width, height) // 25)
    left, right = width * 0.35, width * 0.65
    top, bottom = height * 0.3, height * 0.7
    draw.line([(left, top), (right, top), (width * 0.45, bottom)], fill="black", width=stroke)
    return image


def noisy_jpeg(width: int, height: int) -> bytes:
    """A photo-sized JPEG with paper texture, so it is megabytes, not kilobytes."""
    rng = np.random.default_rng(0)
    paper = np.asarray(digit_on_paper(width, height), dtype=np.int16)
    noise = rng.integers(-12, 12, size=(height, width, 1), dtype=np.int16)
    pixels = np.clip(paper + noise, 0, 255).astype(np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=90)


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": round(fields["VmRSS"], 1), "peak_mb": round(fields["VmHWM"], 1)}


def post(base: str, data: bytes, name: str) -> int:
    try:
        response = httpx2.post(
            f"{base}/api/predict",
            files={"file": (name, data, "application/octet-stream")},
            timeout=120,
        )
    except httpx2.TransportError as exc:
        print(f"  {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 0
    if response.status_code >= 500 or response.status_code == 503:
        print(f"  {name}: {response.status_code} {response.text[:200]}", file=sys.stderr)
    return response.status_code


def at_once(base: str, data: bytes, name: str, count: int, parallel: int) -> Counter[int]:
    with ThreadPoolExecutor(parallel) as pool:
        return Counter(pool.map(lambda _: post(base, data, name), range(count)))


def wait_for_health(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited with status {process.returncode}")
        try:
            if httpx2.get(f"{base}/api/health", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.3)
    sys.exit("the server did not answer within 90 s")


def max_pixels_now(extra_env: dict[str, str]) -> int:
    code = "from digits.serve.settings import Settings; print(Settings().max_pixels)"
    env = {**os.environ, **extra_env}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return int(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="runs/speed-base")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)
    limit = max_pixels_now(extra_env)
    side = int(limit**0.5)

    cases = {
        "huge 6324² RGBA PNG": encode(digit_on_paper(6324, 6324, "RGBA"), "PNG"),
        f"PNG at the limit ({side}²)": encode(digit_on_paper(side, side, "RGBA"), "PNG"),
        "big JPEG 6000×4000": noisy_jpeg(6000, 4000),
        "drawing 160² PNG": encode(digit_on_paper(160, 160, "L"), "PNG"),
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **extra_env, "OMP_NUM_THREADS": "1"}
    command = [str(DIGITS), "serve", args.model, "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    rows: list[dict[str, Any]] = []
    try:
        wait_for_health(base, process)
        rows.append({"case": "started", "answers": {}, **memory(process.pid)})
        plan = [
            ("huge 6324² RGBA PNG", 1, 1),
            (f"PNG at the limit ({side}²)", 1, 1),
            ("big JPEG 6000×4000", 1, 1),
            ("huge 6324² RGBA PNG", 6, 6),
            (f"PNG at the limit ({side}²)", 6, 6),
            ("big JPEG 6000×4000", 6, 6),
            ("drawing 160² PNG", 200, 8),
        ]
        for name, count, parallel in plan:
            data = cases[name]
            started = time.perf_counter()
            answers = at_once(base, data, name, count, parallel)
            seconds = time.perf_counter() - started
            label = f"{name} ×{count}" + (f", {parallel} at once" if parallel > 1 else "")
            row = {
                "case": label,
                "bytes": len(data),
                "answers": {str(k): v for k, v in sorted(answers.items())},
                "seconds": round(seconds, 2),
                **memory(process.pid),
            }
            rows.append(row)
            print(
                f"{label:48} {len(data):>10} B  {row['answers']}  "
                f"rss {row['rss_mb']} MB  peak {row['peak_mb']} MB  {seconds:.1f} s"
            )
    finally:
        process.terminate()
        process.wait(timeout=30)
    result = {
        "command": " ".join(["benchmarks/serve_memory.py", args.model, *sys.argv[2:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "max_pixels": limit,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve_memory.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
