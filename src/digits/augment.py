"""Batched random distortions of digit images, on tensors, never flipped: geometry, pen and scan.

`augment_batch(images, config)` distorts a whole N×1×28×28 float batch without per-image Python:

- geometry, in one `grid_sample` call: every image gets its own random affine matrix (rotation,
  zoom, shift, shear, aspect stretch) and, when asked, a smooth random displacement field (after
  Simard et al., 2003) added to the same sampling grid;
- the pen and the scan, on a random subset of the batch each: strokes thickened or thinned,
  resolution lost (down to an 8–16 pixel digit and back up), Gaussian blur, JPEG's 8×8 block
  quantisation, and binarisation at a random level.

The pen and scan effects imitate what real inputs look like once `digits.preprocess` has made
them MNIST-like: that step binarises the digit at 4× the final size and box-averages it down to
20 pixels, and brings stroke widths only into a band around MNIST's. So a 16×16 scan reaches the
model as a smooth-edged, blobby shape with flat bright strokes; a marker as strokes up to ~1.7×
MNIST's width; a hairline as strokes down to ~0.6× of it.

Digits are not mirror-symmetric (a flipped 2 is no digit, a flipped 7 is nearly a 1), so there is
no flip. Randomness comes from torch's global generator unless one is passed; training reseeds it
every epoch, which keeps resumed runs exact. Effects that are off draw no random numbers, so a
config without the newer effects distorts exactly as before they existed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import cache
from typing import Any

import torch
from torch.nn import functional

# Ranges of the pen and scan effects that are chosen by probability alone (see AugmentConfig).
LOWRES_SIDES = (8.0, 16.0)
"""Side, in pixels, that the 20-pixel digit box is brought down to by `lowres`."""
BLUR_SIGMAS = (0.5, 1.5)
"""Standard deviation of the Gaussian of `blur`, in pixels at 28×28."""
JPEG_QUALITIES = (10.0, 70.0)
"""JPEG quality (the IJG scale of 1–100) of `jpeg`."""
BINARISE_LEVELS = (0.25, 0.75)
"""Threshold of `binarise`, as a fraction of the image's brightest ink."""
# The newer fields: left out of `to_dict` while 0, so that configs without them read as before.
_NEWER_FIELDS = ("stretch", "thicken", "thin", "lowres", "blur", "jpeg", "binarise")
_PROBABILITIES = ("lowres", "blur", "jpeg", "binarise")


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each distortion; 0 switches that one off.

    Geometric strengths and stroke width are drawn uniformly per image in ±strength; `lowres`,
    `blur`, `jpeg` and `binarise` are the probabilities that an image gets that effect, at a
    random strength from the ranges in this module's constants.
    """

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
    stretch: float = 0.0
    """Largest relative change of aspect: the width is scaled by 1 + s and the height kept,
    s drawn from [-stretch, stretch] (narrow and wide hands)."""
    thicken: float = 0.0
    """Largest gain of stroke width, in pixels at 28×28 (MNIST's strokes are ~2.5 px): markers."""
    thin: float = 0.0
    """Largest loss of stroke width, in pixels at 28×28, at most 1: fine pens. Each image's
    change of width is drawn from [-thin, thicken]."""
    lowres: float = 0.0
    """Probability of resolution loss: the digit brought down to 8–16 px (area averaging) and
    back up (bilinear or, for half of them, nearest), as small scans are enlarged."""
    blur: float = 0.0
    """Probability of a Gaussian blur, standard deviation 0.5–1.5 px (out-of-focus photos)."""
    jpeg: float = 0.0
    """Probability of JPEG artefacts: 8×8 DCT blocks quantised at quality 10–70."""
    binarise: float = 0.0
    """Probability of binarisation at a threshold of 0.25–0.75 of the image's brightest ink
    (1-bit scans); half of those images keep two levels, half are anti-aliased as
    preprocessing's resizing does."""

    def __post_init__(self) -> None:
        problems = []
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                problems.append(f"{item.name} must be a number, got {value!r}")
            elif not math.isfinite(value) or value < 0:
                problems.append(f"{item.name} must be a finite number >= 0, got {value}")
        if not problems:
            problems = self._range_problems()
        if problems:
            raise ValueError("invalid augmentation: " + "; ".join(problems))

    def _range_problems(self) -> list[str]:
        problems = []
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
        if self.stretch >= 1:
            problems.append(
                f"stretch must be < 1 (a width scale of 1 - stretch must stay > 0), "
                f"got {self.stretch}"
            )
        # Beyond these a digit's holes fill up, or its strokes vanish, at 28×28.
        if self.thicken > 4:
            problems.append(f"thicken must be <= 4 pixels, got {self.thicken}")
        if self.thin > 1:
            # Half an erosion step at most: a whole one wipes out MNIST's 1-2 px strokes.
            problems.append(f"thin must be <= 1 pixel (strokes are ~2.5 px), got {self.thin}")
        for name in _PROBABILITIES:
            if getattr(self, name) > 1:
                problems.append(
                    f"{name} is a probability and must be <= 1, got {getattr(self, name)}"
                )
        return problems

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
        """Every field, except the pen and scan effects while they are off: a config that does
        not use them writes the same dictionary as before they existed."""
        values = asdict(self)
        return {k: v for k, v in values.items() if k not in _NEWER_FIELDS or v}

    @property
    def affine(self) -> bool:
        return any((self.rotation, self.zoom, self.shift, self.shear, self.stretch))

    @property
    def geometric(self) -> bool:
        return self.affine or self.elastic > 0

    @property
    def enabled(self) -> bool:
        return self.geometric or any(
            getattr(self, name) for name in ("thicken", "thin", *_PROBABILITIES)
        )


def _uniform(n: int, bound: float, generator: torch.Generator | None) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * 2 - 1) * bound


def _between(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + torch.rand(n, generator=generator) * (high - low)


def random_affine(
    n: int, config: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """N×2×3 sampling matrices for `affine_grid` (output coordinates → input coordinates).

    The draws are symmetric, so sampling with a random matrix is as random as applying one; only
    zoom and stretch are inverted so that they read as changes of the digit's size and width.
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
    if config.stretch > 0:  # drawn last, so that configs without it keep their random stream
        # ... times [[1/(1 + s), 0], [0, 1]]: sampling x at 1/(1 + s) widens the digit 1 + s
        # times, along the output's x, after the rotation.
        width = 1.0 / (1.0 + _uniform(n, config.stretch, generator))
        theta[:, :, 0] *= width.view(n, 1)
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


def _grow(images: torch.Tensor, step: int) -> torch.Tensor:
    """One step of grey dilation: a 3×3 cross on even steps, a 3×3 square on odd ones, so that
    repeated steps grow an octagon, closer to a round pen than a square.

    Maxima of shifted slices: ~50× faster on CPU than `max_pool2d` with stride 1."""
    padded = functional.pad(images, (1, 1, 1, 1))  # background around the frame
    rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    if step % 2:  # the square: the row maxima, maximised down the columns
        return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])
    column = torch.maximum(padded[..., :-2, 1:-1], padded[..., 2:, 1:-1])
    return torch.maximum(rows[..., 1:-1, :], column)


def change_stroke_width(images: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """Strokes widened (change > 0) or narrowed (< 0) by `change` pixels, one value per image.

    Each dilation step moves every edge out by a pixel, so widens strokes by two; a fractional
    step blends in that much of the next one, which moves the anti-aliased edge part of the way.
    Erosion is the dilation of the negated image, so one pass serves both signs. A thinned image
    is brought back to its former brightest level: a stroke narrower than the erosion survives as
    a thin line instead of vanishing, as preprocessing grows hairlines back rather than lose them.
    """
    radius = change.abs() / 2
    steps = math.ceil(float(radius.max())) if len(radius) else 0
    if steps == 0:
        return images
    sign = torch.where(change < 0, -1.0, 1.0).view(-1, 1, 1, 1)
    level = images * sign
    out = level
    for step in range(steps):
        grown = _grow(level, step)
        # Telescoping blend: level r = level ⌊r⌋ + (r - ⌊r⌋)·(next - level ⌊r⌋).
        weight = (radius - step).clamp(0, 1).view(-1, 1, 1, 1)
        out = out + weight * (grown - level)
        level = grown
    out = out * sign
    thinned = (change < 0).view(-1, 1, 1, 1)
    before = images.amax(dim=(1, 2, 3), keepdim=True)
    after = out.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
    return torch.where(thinned, out * (before / after).clamp(max=1e6), out)


@cache
def _resampling_matrices(size: int) -> torch.Tensor:
    """(size + 1)×2×size×size: for each side and each way up (linear, nearest) the matrix M of
    down-to-side (area) and back up along one axis. Both steps are linear and separable, so
    M · image · Mᵀ resamples an image in 2D exactly as `interpolate` does."""
    basis = torch.eye(size).unsqueeze(1)  # `size` one-hot signals, N×C×L
    table = torch.zeros(size + 1, 2, size, size)
    for side in range(1, size + 1):
        small = functional.interpolate(basis, size=side, mode="area")
        smooth = functional.interpolate(small, size=size, mode="linear", align_corners=False)
        blocky = functional.interpolate(small, size=size, mode="nearest")
        table[side, 0] = smooth.squeeze(1).T
        table[side, 1] = blocky.squeeze(1).T
    return table


def lose_resolution(
    images: torch.Tensor, sides: torch.Tensor, nearest: torch.Tensor
) -> torch.Tensor:
    """Each image area-averaged down to `sides[i]` pixels square and enlarged back to its size,
    bilinearly or, where `nearest[i]`, by repeating pixels: as `interpolate` would, but as two
    batched matrix products with one resampling matrix per image."""
    n, _, height, width = images.shape
    if n == 0:
        return images
    if height != width:
        raise ValueError(f"resolution loss needs square images, got {height}×{width}")
    matrices = _resampling_matrices(height)[sides.clamp(1, height), nearest.long()]
    return (matrices @ images[:, 0] @ matrices.transpose(1, 2)).unsqueeze(1)


def gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Each image blurred by a Gaussian of its own standard deviation, in one grouped convolution
    (separable: a row pass and a column pass); the edges are padded with background."""
    n = len(images)
    if n == 0:
        return images
    radius = max(1, math.ceil(3 * float(sigmas.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernels = torch.exp(-0.5 * (offsets.view(1, -1) / sigmas.view(-1, 1)) ** 2)
    kernels = kernels / kernels.sum(dim=1, keepdim=True)  # N×K
    # The batch as channels of one image, each with its own kernel (groups = N).
    stacked = images.transpose(0, 1)  # 1×N×H×W
    rows = functional.conv2d(stacked, kernels.view(n, 1, 1, -1), padding=(0, radius), groups=n)
    both = functional.conv2d(rows, kernels.view(n, 1, -1, 1), padding=(radius, 0), groups=n)
    return both.transpose(0, 1)


# The JPEG standard's luminance quantisation table (ITU T.81, Annex K.1).
_JPEG_LUMINANCE = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float32,
)


def _dct_matrix(size: int = 8) -> torch.Tensor:
    """The orthonormal DCT-II matrix: coefficients = D · block · Dᵀ."""
    k = torch.arange(size, dtype=torch.float32).view(-1, 1)
    i = torch.arange(size, dtype=torch.float32).view(1, -1)
    matrix = torch.cos(math.pi * (2 * i + 1) * k / (2 * size)) * math.sqrt(2 / size)
    matrix[0] /= math.sqrt(2)
    return matrix


# The 2D DCT of a flattened 8×8 block, as one 64×64 matrix: all blocks of a batch in one product.
_DCT2 = torch.kron(_dct_matrix(), _dct_matrix())


def jpeg_tables(qualities: torch.Tensor) -> torch.Tensor:
    """N×8×8 quantisation tables for JPEG qualities 1–100, scaled as the IJG library does."""
    quality = qualities.clamp(1, 100).view(-1, 1, 1)
    scale = torch.where(quality < 50, 5000 / quality, 200 - 2 * quality)
    return ((_JPEG_LUMINANCE * scale + 50) / 100).floor().clamp(min=1)


def jpeg_compress(images: torch.Tensor, qualities: torch.Tensor) -> torch.Tensor:
    """A grey JPEG round trip of each image at its own quality: 8×8 blocks (on the image padded
    with background to a multiple of 8), DCT, quantisation, rounding and back to 8-bit levels;
    no chroma and no entropy coding, which lose nothing more.

    Each block's mean (the DC coefficient) is kept exact: preprocessing subtracts the background
    level anyway, and a coarsely quantised mean would put faint grey into blank background,
    which no preprocessed image has. The ringing and blocking around strokes stay."""
    n, _, height, width = images.shape
    if n == 0:
        return images
    rows, cols = -(-height // 8) * 8, -(-width // 8) * 8
    levels = functional.pad(images * 255 - 128, (0, cols - width, 0, rows - height), value=-128)
    # N×1×R×C → N×blocks×64, each block flattened row by row.
    blocks = levels.view(n, rows // 8, 8, cols // 8, 8).transpose(2, 3).reshape(n, -1, 64)
    tables = jpeg_tables(qualities).view(n, 1, 64)
    coefficients = blocks @ _DCT2.T
    quantised = torch.round(coefficients / tables) * tables
    quantised[..., 0] = coefficients[..., 0]
    restored = (quantised @ _DCT2).view(n, rows // 8, cols // 8, 8, 8)
    pixels = restored.transpose(2, 3).reshape(n, 1, rows, cols)[:, :, :height, :width]
    return (torch.round(pixels + 128) / 255).clamp(0, 1)


def binarise(images: torch.Tensor, levels: torch.Tensor, smooth: torch.Tensor) -> torch.Tensor:
    """Each image thresholded at its own level, a fraction of its brightest pixel (faint and
    blurred digits keep their strokes, as preprocessing thresholds relative to the ink): 0 or 1,
    or where `smooth`, anti-aliased.

    The anti-aliased shape is what thresholding at a finer resolution and averaging back down
    gives (preprocessing binarises at 4× the size and box-averages): each pixel's share above the
    threshold, where the grey level is taken as linear across the pixel, (value - level) / slope
    + 1/2, clipped to [0, 1]. Within 0.01 of an 8× supersampled threshold on average, at a
    twentieth of the cost of a 4× one.
    """
    brightest = images.amax(dim=(1, 2, 3), keepdim=True)
    # Never a threshold of 0, which would turn a blank image's background into ink.
    threshold = (levels.view(-1, 1, 1, 1) * brightest).clamp(min=1e-3)
    hard = (images >= threshold).to(images.dtype)
    chosen = smooth.nonzero().squeeze(1)
    if len(chosen) == 0:
        return hard
    grey = images[chosen]
    padded = functional.pad(grey, (1, 1, 1, 1), mode="replicate")
    across = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    down = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    slope = torch.sqrt(across * across + down * down).clamp(min=1e-3)
    hard[chosen] = ((grey - threshold[chosen]) / slope + 0.5).clamp(0, 1)
    return hard


def _on_some(
    images: torch.Tensor,
    probability: float,
    generator: torch.Generator | None,
    effect: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """`effect(images[chosen], chosen)` written back for a random subset chosen with
    `probability`. Callers draw each effect's parameters for every image, chosen or not, so that
    what happens to an image does not depend on the other images of its batch."""
    chosen = (torch.rand(len(images), generator=generator) < probability).nonzero().squeeze(1)
    return images.index_copy(0, chosen, effect(images[chosen], chosen))


def pen_and_scan(
    images: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The pen and scan effects of `config` on a float32 N×1×H×W batch, in the order a real
    image meets them: the pen's width, the scanner's resolution, blur and compression, then the
    binarisation (of a 1-bit scan, or of preprocessing itself)."""
    n, _, height, _ = images.shape
    out = images
    if config.thicken or config.thin:
        out = change_stroke_width(out, _between(n, -config.thin, config.thicken, generator))
    if config.lowres:
        digit = _between(n, *LOWRES_SIDES, generator)
        # The digit fills a 20-pixel box of the 28-pixel field: scale the field with it.
        sides = (digit * height / 20).round().long()
        nearest = torch.rand(n, generator=generator) < 0.5
        out = _on_some(
            out, config.lowres, generator, lambda x, i: lose_resolution(x, sides[i], nearest[i])
        )
    if config.blur:
        sigmas = _between(n, *BLUR_SIGMAS, generator)
        out = _on_some(out, config.blur, generator, lambda x, i: gaussian_blur(x, sigmas[i]))
    if config.jpeg:
        qualities = _between(n, *JPEG_QUALITIES, generator)
        out = _on_some(out, config.jpeg, generator, lambda x, i: jpeg_compress(x, qualities[i]))
    if config.binarise:
        levels = _between(n, *BINARISE_LEVELS, generator)
        smooth = torch.rand(n, generator=generator) < 0.5
        out = _on_some(
            out, config.binarise, generator, lambda x, i: binarise(x, levels[i], smooth[i])
        )
    return out


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
    out = images.float()
    if config.geometric:
        out = _geometry(out, config, generator)
    out = pen_and_scan(out, config, generator)
    return out.clamp(0.0, 1.0).to(images.dtype)


def _geometry(
    images: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """The affine and elastic distortions of `config`, as one sampling grid per image."""
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
    # Zero padding is the background; bilinear weights are convex, so values stay in [0, 1].
    return functional.grid_sample(
        images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
