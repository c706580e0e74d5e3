"""Which precision a CPU trains a model fastest in, measured once and remembered.

bfloat16 autocast is a CPU feature flag away on most current x86 chips, but whether it pays off
depends on the chip and on the network: on an AMD EPYC with native bfloat16 it made the seed
convolutions about twice as fast, while on an AVX-512 Xeon with the same flag a training step of
`sprint`'s and `best`'s networks took 1.2 times as long (docs/benchmarks.md, "Precision on the
CPU").

So for `precision="auto"` on a CPU with native bfloat16 a few training steps of the very model,
at the run's batch size, are timed in both precisions; the faster one is kept in
`precision.json` in the data directory, keyed by CPU, torch version, threads, model and batch
size, so that later runs on the machine take the same precision without measuring again.
"""

from __future__ import annotations

import copy
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn

from digits.atomic import atomic_write_text
from digits.data.sources import data_dir

CACHE_FILE = "precision.json"
WARMUP_STEPS = 1
TIMED_STEPS = 3
BF16_MARGIN = 0.95
"""bfloat16 is kept only when its step takes under 95 % of float32's: on a tie, the exact one."""


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), for the cache key."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_key(model_key: str, batch_size: int) -> str:
    return (
        f"{cpu_name()} | torch {torch.__version__} | {torch.get_num_threads()} threads | "
        f"{model_key} | batch {batch_size}"
    )


def _read_cache(path: Path) -> dict[str, str]:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or damaged: measured again and rewritten
    return values if isinstance(values, dict) else {}


def step_seconds(model: nn.Module, batch_size: int, bf16: bool) -> float:
    """The shortest of a few training steps (forward, backward, update) of a copy of `model`
    on a random CPU batch, under bfloat16 autocast or not. The model itself is untouched."""
    probe = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(probe.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)  # the global generator is left as it was
    images = torch.rand(batch_size, 1, 28, 28, generator=generator)
    images = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        classes = int(probe(images[:2]).shape[1])
    labels = torch.randint(classes, (batch_size,), generator=generator)
    best = float("inf")
    for step in range(WARMUP_STEPS + TIMED_STEPS):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            logits = probe(images).float()
        nn.functional.cross_entropy(logits, labels).backward()
        optimizer.step()
        if step >= WARMUP_STEPS:
            best = min(best, time.perf_counter() - started)
    return best


def both_step_seconds(model: nn.Module, batch_size: int, rounds: int = 2) -> tuple[float, float]:
    """The shortest float32 and bfloat16 steps over `rounds` rounds, the two taken in turn so
    that a burst of load elsewhere hits both."""
    fp32 = bf16 = float("inf")
    for _ in range(rounds):
        fp32 = min(fp32, step_seconds(model, batch_size, bf16=False))
        bf16 = min(bf16, step_seconds(model, batch_size, bf16=True))
    return fp32, bf16


def pick(fp32: float, bf16: float) -> str:
    """'bf16' when its step is clearly the shorter, else 'fp32'."""
    return "bf16" if bf16 < BF16_MARGIN * fp32 else "fp32"


def faster_on_cpu(model: nn.Module, model_key: str, batch_size: int) -> bool:
    """True when bfloat16 autocast trains `model` faster than float32 on this CPU: read from
    the cache, or measured (float32 and bfloat16 in turn, twice) and cached."""
    path = data_dir() / CACHE_FILE
    key = cache_key(model_key, batch_size)
    cached = _read_cache(path).get(key)
    if cached in ("bf16", "fp32"):
        return cached == "bf16"
    chosen = pick(*both_step_seconds(model, batch_size))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        values = _read_cache(path)  # re-read: another run may have added its own key
        values[key] = chosen
        atomic_write_text(path, json.dumps(values, indent=2, sort_keys=True) + "\n")
    except OSError:
        pass  # a read-only cache only means measuring again next time
    return chosen == "bf16"
