"""Where training runs: `--device auto|cpu|cuda|mps`, and the precision that goes with it.

The run directory is the same whatever the device: weights are saved from the CPU, checkpoints
load onto the CPU first, and batches are drawn in the same order from the CPU's generator, so a
run started on a GPU resumes on a laptop and the other way round.
"""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """The device `name` stands for: `auto` is CUDA when present, else Apple's MPS, else the
    CPU; asking for one that is not here is a ValueError saying so (in the option's words)."""
    if name not in DEVICES:
        raise ValueError(f"--device {name!r} is not one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "--device cuda: no CUDA device is available here (this PyTorch build "
            f"{'has no CUDA support' if torch.version.cuda is None else 'finds no GPU'}); "
            "use --device cpu or auto"
        )
    if name == "mps" and not _mps_available():
        raise ValueError("--device mps: Apple's Metal backend is not available here")
    return torch.device(name)


def use_bf16(precision: str, device: torch.device | None = None) -> bool:
    """bfloat16 autocast for 'bf16', or for 'auto' where the device computes it natively: CUDA
    GPUs that support it, CPUs with bf16 instructions (oneDNN); never on MPS, whose autocast
    covers too few operations to be worth it."""
    kind = "cpu" if device is None else device.type
    if precision == "bf16":
        return True
    if precision != "auto" or kind == "mps":
        return False
    if kind == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
