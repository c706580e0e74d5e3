"""Batched random affine and elastic distortion of digit images, on tensors, never flipped.

`augment_batch(images, config)` distorts a whole N×1×28×28 float batch with one `grid_sample`
call: every image gets its own random affine matrix (rotation, zoom, shift, shear) and, when asked,
a smooth random displacement field (after Simard et al., 2003) added to the same sampling grid.
There is no per-image Python, so the cost stays a small fraction of a training step.

Digits are not mirror-symmetric (a flipped 2 is no digit, a flipped 7 is nearly a 1), so there is
no flip. Randomness comes from torch's global generator unless one is passed; training reseeds it
every epoch, which keeps resumed runs exact.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch.nn import functional


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each distortion; 0 switches that one off. All draws are uniform in ±strength."""

    rotation: float = 0.0
    """Largest rotation, in degrees."""
    zoom: float = 0.0
    """Largest relative change of size: scale drawn from [1 - zoom, 1 + zoom]."""
    shift: float = 0.0
    """Largest translation, as a fraction of the image side (0.1 = 2.8 pixels)."""
    shear: float = 0.0
    """Largest horizontal shear angle, in degrees."""
    elastic: float = 0.0
    """Elastic distortion: typical displacement in pixels (after smoothing); 0 turns it off."""
    elastic_sigma: float = 4.0
    """Smoothness of the elastic field: the Gaussian's standard deviation, in pixels."""

    def __post_init__(self) -> None:
        problems = []
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                problems.append(f"{item.name} must be a number, got {value!r}")
            elif not math.isfinite(value) or value < 0:
                problems.append(f"{item.name} must be a finite number >= 0, got {value}")
        if not problems:
            if self.rotation > 180:
                problems.append(f"rotation must be <= 180 degrees, got {self.rotation}")
            if self.zoom >= 1:
                problems.append(
                    f"zoom must be < 1 (a scale of 1 - zoom must stay > 0), got {self.zoom}"
                )
            if self.shift > 1:
                problems.append(f"shift must be <= 1 (a fraction of the image), got {self.shift}")
            if self.shear >= 90:
                problems.append(f"shear must be < 90 degrees, got {self.shear}")
            if self.elastic_sigma <= 0:
                problems.append(f"elastic_sigma must be > 0, got {self.elastic_sigma}")
        if problems:
            raise ValueError("invalid augmentation: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AugmentConfig:
        if not isinstance(values, dict):
            raise ValueError(f"augmentation must be a JSON object of strengths, got {values!r}")
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown augmentation keys: {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def affine(self) -> bool:
        return any((self.rotation, self.zoom, self.shift, self.shear))

    @property
    def enabled(self) -> bool:
        return self.affine or self.elastic > 0


def _uniform(n: int, bound: float, generator: torch.Generator | None) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * 2 - 1) * bound


def random_affine(
    n: int, config: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """N×2×3 sampling matrices for `affine_grid` (output coordinates → input coordinates).

    The draws are symmetric, so sampling with a random matrix is as random as applying one; only
    zoom is inverted so that `zoom` reads as the change of the digit's size.
    """
    angle = torch.deg2rad(_uniform(n, config.rotation, generator))
    shear = torch.tan(torch.deg2rad(_uniform(n, config.shear, generator)))
    scale = 1.0 / (1.0 + _uniform(n, config.zoom, generator))
    # Normalised coordinates span 2 units across the image, so a fraction f is a shift of 2f.
    shift = _uniform(2 * n, 2 * config.shift, generator).view(n, 2)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.empty(n, 2, 3)
    # Rotation·scale times a horizontal shear [[1, s], [0, 1]].
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = cos * shear - sin
    theta[:, 1, 0] = sin
    theta[:, 1, 1] = sin * shear + cos
    theta[:, :, 2] = shift
    return theta


def elastic_field(
    n: int,
    size: int,
    strength: float,
    sigma: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """N×size×size×2 displacements in normalised coordinates: smooth random noise.

    Noise is drawn on a coarse grid with one point every `sigma` pixels and upsampled
    bicubically, which smooths it like a Gaussian of that width at a fraction of the cost of a
    full-resolution blur. The grid points have standard deviation `strength` pixels (uniform in
    ±√3·strength), so strength and smoothness are independent settings.
    """
    points = max(2, round(size / sigma) + 1)
    # Normalised coordinates span 2 units over `size` pixels.
    bound = math.sqrt(3.0) * 2.0 * strength / size
    noise = (torch.rand(n, 2, points, points, generator=generator) * 2 - 1) * bound
    field = functional.interpolate(noise, size=(size, size), mode="bicubic", align_corners=True)
    return field.permute(0, 2, 3, 1)


def augment_batch(
    images: torch.Tensor, config: AugmentConfig | None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Randomly distorted copies of a float N×1×H×W batch in [0, 1]; same shape and dtype.

    With no config, or every strength 0, the batch itself is returned untouched.
    """
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be N×1×H×W, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be a float tensor in [0, 1], got {images.dtype}")
    if config is None or not config.enabled or len(images) == 0:
        return images
    n, _, height, width = images.shape
    if config.affine:
        theta = random_affine(n, config, generator)
    else:
        theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(n, 2, 3)
    grid = functional.affine_grid(theta, [n, 1, height, width], align_corners=False)
    if config.elastic > 0:
        if height != width:
            raise ValueError(f"elastic distortion needs square images, got {height}×{width}")
        grid = grid + elastic_field(n, height, config.elastic, config.elastic_sigma, generator)
    source = images.float()
    # Zero padding is the background; bilinear weights are convex, so values stay in [0, 1].
    out = functional.grid_sample(
        source, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return out.clamp_(0.0, 1.0).to(images.dtype)
