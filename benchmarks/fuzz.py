"""The fuzz suite's strategies (tests/test_fuzz.py) run for minutes instead of seconds.

    flock /tmp/cpu.lock .venv/bin/python benchmarks/fuzz.py [--seconds 120] [--large]

Round-robin over four targets, each in batches of random examples (no shrinking: every failure
is counted, not minimised): images of every format and mode, intact (as bytes and as decoded
images); the same damaged (cut short, bit-flipped, lying headers, spliced) or replaced by
garbage; damaged data files through the three readers, gzip'd IDX included; random requests
through the HTTP app (TestClient, a tiny ONNX model). `--large` lets images grow to 2 000 pixels
a side (the CI tests stop at 160). Records cases tried per target, failures (any exception other
than the documented one, grouped by type and message), HTTP answers by status, 5xx, requests the
client could not complete (drops), peak resident memory and cases per second; prints them and
writes benchmarks/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the strategies live in tests/

from fastapi.testclient import TestClient  # noqa: E402
from tests.test_fuzz import (  # noqa: E402
    READERS,
    _encode,
    check_answer,
    check_preprocessed,
    data_files,
    image_bytes,
    images,
    preprocess_or_refuse,
    requests,
    tiny_model,
)

from digits.serve import Settings, create_app  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGETS = ("images", "damaged images", "readers", "http")


class Tally:
    """What the run saw: cases per target, failures by kind, HTTP statuses."""

    def __init__(self) -> None:
        self.cases: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.statuses: Counter[int] = Counter()
        self.drops = 0
        self.seconds: dict[str, float] = dict.fromkeys(TARGETS, 0.0)

    def run(self, target: str, case: Callable[[], None], describe: str) -> None:
        self.cases[target] += 1
        try:
            case()
        except Exception as exc:  # anything but the documented error is a finding
            message = str(exc).splitlines()[0][:160] if str(exc) else ""
            kind = f"{target}: {type(exc).__name__}: {message}"
            self.failures[kind] += 1
            if kind not in self.examples:
                where = traceback.extract_tb(exc.__traceback__)[-1]
                self.examples[kind] = f"{describe}; raised at {where.filename}:{where.lineno}"


def _batch_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # every failure counted as it comes, none minimised
        suppress_health_check=list(HealthCheck),
    )


def image_cases(tally: Tally, examples: int, large: bool) -> Callable[[int], None]:
    def batch(number: int) -> None:
        @hypothesis_seed(number)
        @_batch_settings(examples)
        @given(images(large))
        def intact(sample: Any) -> None:
            fmt, mode, image = sample

            def case() -> None:
                for source in (_encode(fmt, image), image):
                    result = preprocess_or_refuse(source)
                    if result is not None:
                        check_preprocessed(result)

            tally.run("images", case, f"{fmt} {mode} {image.width}×{image.height}")

        intact()

    return batch


def damaged_cases(tally: Tally, examples: int, large: bool) -> Callable[[int], None]:
    def batch(number: int) -> None:
        @hypothesis_seed(number)
        @_batch_settings(examples)
        @given(image_bytes(large))
        def damaged(data: bytes) -> None:
            def case() -> None:
                result = preprocess_or_refuse(data)
                if result is not None:
                    check_preprocessed(result)

            tally.run("damaged images", case, f"{len(data)} bytes starting {data[:12]!r}")

        damaged()

    return batch


def reader_cases(tally: Tally, examples: int, folder: Path) -> Callable[[int], None]:
    from digits.data.readers import DataFormatError

    def batch(number: int) -> None:
        @hypothesis_seed(number)
        @_batch_settings(examples)
        @given(data_files(every_kind=True))
        def readers(sample: tuple[str, bytes]) -> None:
            kind, data = sample
            name, _, read = READERS[kind]
            path = folder / name

            def case() -> None:
                path.write_bytes(data)
                try:
                    read(path)
                except DataFormatError as exc:
                    if str(path) not in str(exc):
                        raise AssertionError(f"the message names no file: {exc}") from None

            tally.run("readers", case, f"{kind}, {len(data)} bytes")

        readers()

    return batch


def http_cases(
    tally: Tally, examples: int, client: TestClient, large: bool
) -> Callable[[int], None]:
    def batch(number: int) -> None:
        @hypothesis_seed(number)
        @_batch_settings(examples)
        @given(requests(large))
        def http(call: dict[str, Any]) -> None:
            def case() -> None:
                try:
                    response = client.request(**call)
                except Exception:
                    tally.drops += 1
                    raise
                tally.statuses[response.status_code] += 1
                check_answer(response, call["method"])

            shape = "multipart" if "files" in call else call.get("headers", {}).get("content-type")
            tally.run("http", case, f"{call['method']} {call['url']} ({shape})")

        http()

    return batch


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to run")
    parser.add_argument("--batch", type=int, default=100, help="examples per batch")
    parser.add_argument("--large", action="store_true", help="images up to 2000 px a side")
    parser.add_argument("--out", type=Path, default=RESULTS / "fuzz.json")
    args = parser.parse_args()
    # Pillow warns of every corrupt EXIF block it skips; here they are the point, not news.
    warnings.simplefilter("ignore", UserWarning)

    tally = Tally()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        app = create_app(Settings(model=tiny_model(folder / "tiny.onnx")))
        with TestClient(app, raise_server_exceptions=False) as client:
            targets = {
                "images": image_cases(tally, args.batch, args.large),
                "damaged images": damaged_cases(tally, args.batch, args.large),
                "readers": reader_cases(tally, args.batch, folder),
                "http": http_cases(tally, args.batch, client, args.large),
            }
            start = time.perf_counter()
            number = 0
            while time.perf_counter() - start < args.seconds:
                for name, batch in targets.items():
                    began = time.perf_counter()
                    batch(number)
                    tally.seconds[name] += time.perf_counter() - began
                number += 1
            elapsed = time.perf_counter() - start

    total = sum(tally.cases.values())
    fivexx = sum(count for status, count in tally.statuses.items() if status >= 500)
    result = {
        "command": "benchmarks/fuzz.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "threads": os.environ.get("OMP_NUM_THREADS", "(unset)"),
        "seconds": round(elapsed, 1),
        "batches per target": number,
        "cases": dict(tally.cases),
        "cases total": total,
        "cases per second": {
            name: round(tally.cases[name] / tally.seconds[name], 1) for name in tally.cases
        },
        "failures": dict(tally.failures.most_common()),
        "failure examples": tally.examples,
        "http statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "http 5xx": fivexx,
        "http drops": tally.drops,
        "peak rss MiB": round(peak_rss_mib(), 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
