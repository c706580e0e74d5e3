"""Training in several processes with PyTorch's DistributedDataParallel, launched by torchrun.

`torchrun --nproc-per-node N -m digits train ...` (or `digits train --nproc N`, which starts
exactly that) runs N copies of the command; torchrun gives each its RANK, WORLD_SIZE and the
rendezvous address in the environment. Each process joins the group (gloo on the CPU, NCCL on
CUDA), trains on its own shard of every batch, and gradients are averaged across processes at
each step, so together they take the same steps as one process would. Only rank 0 writes the run
directory. Across machines, torchrun's `--nnodes` and `--rdzv-endpoint` do the same (README).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes (rank 0 of 1 when alone)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """The process that writes the run directory and reports progress."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """`value` summed over every process (itself when alone), on the device it came from.
        (NCCL reduces only CUDA tensors: a CPU one goes over to the GPU and back.)"""
        if self.world == 1:
            return value
        on_gpu = dist.get_backend() == "nccl" and value.device.type != "cuda"
        reduced = value.to("cuda") if on_gpu else value.clone()
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
        return reduced.to(value.device)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: torch.device) -> Group:
    """Join the process group torchrun set up (once per process); alone, rank 0 of 1."""
    if not launched_by_torchrun():
        return Group()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return Group(dist.get_rank(), dist.get_world_size())


def current() -> Group:
    """The group this process has joined, or rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        return Group(dist.get_rank(), dist.get_world_size())
    return Group()


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
