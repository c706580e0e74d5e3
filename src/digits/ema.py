"""Exponential moving average of a model's weights, updated after every optimizer step.

The average of the last few hundred steps' weights generalises better than the last step's
weights (it smooths the noise of small-batch SGD), at the cost of one extra copy of the model.
BatchNorm running statistics are averaged the same way, so the averaged model is self-consistent.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """Holds `module`, an averaged copy of a model; call `update(model)` after each step.

    The decay warms up as min(decay, (1 + steps) / (10 + steps)) so that early, still-random
    weights do not dominate the average of a short run.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self._averaged, self._copied = self._split(self.module)

    @staticmethod
    def _split(model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Floating-point tensors (averaged) and the rest, e.g. BatchNorm's counter (copied)."""
        state = model.state_dict(keep_vars=True)
        averaged = [t.data for t in state.values() if t.is_floating_point()]
        copied = [t.data for t in state.values() if not t.is_floating_point()]
        return averaged, copied

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        current, counters = self._split(model)
        torch._foreach_lerp_(self._averaged, current, 1.0 - decay)
        for mine, theirs in zip(self._copied, counters, strict=True):
            mine.copy_(theirs)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "steps": self.steps, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.steps = int(state["steps"])
