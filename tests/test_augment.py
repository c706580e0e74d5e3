"""Augmentation: property tests (labels, range, shape, dtype, identity) and what each knob does."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional

from digits.augment import (
    AugmentConfig,
    augment_batch,
    binarise,
    change_stroke_width,
    elastic_field,
    gaussian_blur,
    jpeg_compress,
    lose_resolution,
    random_affine,
)

probabilities = st.floats(0, 1)
strengths = st.builds(
    AugmentConfig,
    rotation=st.floats(0, 45),
    zoom=st.floats(0, 0.5),
    shift=st.floats(0, 0.3),
    shear=st.floats(0, 30),
    elastic=st.floats(0, 3),
    elastic_sigma=st.floats(1, 8),
    stretch=st.floats(0, 0.5),
    thicken=st.floats(0, 4),
    thin=st.floats(0, 1),
    lowres=probabilities,
    blur=probabilities,
    jpeg=probabilities,
    binarise=probabilities,
)
PEN_AND_SCAN = {
    "stretch": 0.2,
    "thicken": 2.0,
    "thin": 1.0,
    "lowres": 0.5,
    "blur": 0.5,
    "jpeg": 0.5,
    "binarise": 0.5,
}


def _images(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=generator)


def _rings(n: int, width: float = 2.5) -> torch.Tensor:
    """Anti-aliased rings (a pen's "0") of radii 4-8 px, strokes `width` px wide, bright on dark."""
    rows = torch.arange(28.0).view(1, 28, 1) - 13.5
    cols = torch.arange(28.0).view(1, 1, 28) - 13.5
    radii = torch.linspace(4, 8, n).view(n, 1, 1)
    distance = (rows**2 + cols**2).sqrt()
    return (width / 2 - (distance - radii).abs() + 0.5).clamp(0, 1).unsqueeze(1)


def _high_frequency_energy(images: torch.Tensor) -> torch.Tensor:
    """Per image, the spectral energy above a quarter of the sampling rate (periods < 4 px)."""
    spectrum = torch.fft.fft2(images[:, 0]).abs() ** 2
    frequencies = torch.fft.fftfreq(images.shape[-1]).abs()
    high = (frequencies.view(-1, 1) > 0.25) | (frequencies.view(1, -1) > 0.25)
    return (spectrum * high).sum(dim=(1, 2))


@settings(max_examples=40, deadline=None)
@given(config=strengths, n=st.integers(1, 16), seed=st.integers(0, 2**31))
def test_values_stay_in_range_and_shape_and_dtype_are_kept(
    config: AugmentConfig, n: int, seed: int
) -> None:
    images = _images(n, seed)
    torch.manual_seed(seed)
    out = augment_batch(images, config)
    assert out.shape == images.shape
    assert out.dtype == images.dtype
    assert torch.isfinite(out).all()
    assert out.min() >= 0.0
    assert out.max() <= 1.0


@settings(max_examples=20, deadline=None)
@given(config=strengths, n=st.integers(1, 16), seed=st.integers(0, 2**31))
def test_labels_are_untouched_and_images_stay_in_their_slot(
    config: AugmentConfig, n: int, seed: int
) -> None:
    # Augmentation sees only images; the batch order (and so the label of each slot) is kept:
    # distorting one image alone gives the same result as distorting it inside the batch.
    images = _images(n, seed)
    labels = torch.arange(n) % 10
    labels_before = labels.clone()
    together = augment_batch(images, config, torch.Generator().manual_seed(seed))
    assert torch.equal(labels, labels_before)
    # Each image is distorted by a random transform, but a blank image must stay blank and an
    # image's ink must not land in another slot: blank out all but one image and compare.
    keep = seed % n
    lonely = torch.zeros_like(images)
    lonely[keep] = images[keep]
    alone = augment_batch(lonely, config, torch.Generator().manual_seed(seed))
    assert torch.allclose(alone[keep], together[keep], atol=1e-6)
    others = torch.arange(n) != keep
    assert torch.count_nonzero(alone[others]) == 0


@settings(max_examples=20, deadline=None)
@given(n=st.integers(0, 8), seed=st.integers(0, 2**31), sigma=st.floats(1, 8))
def test_zero_strength_is_the_identity(n: int, seed: int, sigma: float) -> None:
    images = _images(n, seed)
    assert torch.equal(augment_batch(images, AugmentConfig(elastic_sigma=sigma)), images)
    assert torch.equal(augment_batch(images, None), images)


def test_strength_changes_images_and_same_seed_same_result() -> None:
    images = _images(8, 0)
    config = AugmentConfig(rotation=10, zoom=0.1, shift=0.1, shear=5, elastic=1.0)
    first = augment_batch(images, config, torch.Generator().manual_seed(1))
    again = augment_batch(images, config, torch.Generator().manual_seed(1))
    other = augment_batch(images, config, torch.Generator().manual_seed(2))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert (first - images).abs().mean() > 0.01


def test_shift_moves_the_ink_by_the_asked_amount() -> None:
    # One bright pixel; a pure shift of at most 10 % moves its centre of mass by <= 2.8 pixels.
    image = torch.zeros(64, 1, 28, 28)
    image[:, 0, 14, 14] = 1.0
    out = augment_batch(image, AugmentConfig(shift=0.1), torch.Generator().manual_seed(0))
    rows = torch.arange(28.0).view(1, 28, 1)
    cols = torch.arange(28.0).view(1, 1, 28)
    mass = out[:, 0].sum(dim=(1, 2))
    row = (out[:, 0] * rows).sum(dim=(1, 2)) / mass
    col = (out[:, 0] * cols).sum(dim=(1, 2)) / mass
    moved = torch.maximum((row - 14).abs(), (col - 14).abs())
    assert moved.max() <= 2.8 + 1e-4
    assert moved.max() > 1.0  # it does move


def test_never_flips_horizontally() -> None:
    # Rotation ±10°, zoom, shift and shear keep the matrix close to the identity: its x-scale
    # never turns negative, which a mirror image would need.
    config = AugmentConfig(rotation=10, zoom=0.1, shift=0.1, shear=10)
    theta = random_affine(10_000, config, torch.Generator().manual_seed(0))
    determinant = theta[:, 0, 0] * theta[:, 1, 1] - theta[:, 0, 1] * theta[:, 1, 0]
    assert (theta[:, 0, 0] > 0).all()
    assert (determinant > 0).all()


def test_elastic_field_has_the_asked_typical_displacement() -> None:
    field = elastic_field(
        2000, 28, strength=1.5, sigma=4.0, generator=torch.Generator().manual_seed(0)
    )
    assert field.shape == (2000, 28, 28, 2)
    pixels = field * 28 / 2  # back from normalised coordinates to pixels
    assert 0.8 < pixels.std().item() < 1.6


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rotation": -1}, "rotation must be a finite number >= 0"),
        ({"zoom": 1.0}, "zoom must be < 1"),
        ({"shift": 2}, "shift must be <= 1"),
        ({"shear": 90}, "shear must be < 90"),
        ({"elastic_sigma": 0}, "elastic_sigma must be > 0"),
        ({"rotation": "ten"}, "rotation must be a number"),
        ({"flip": 1}, "unknown augmentation keys: flip"),
        ({"stretch": 1}, "stretch must be < 1"),
        ({"thicken": 5}, "thicken must be <= 4 pixels"),
        ({"thin": 1.5}, "thin must be <= 1 pixel"),
        ({"thin": -1}, "thin must be a finite number >= 0"),
        ({"lowres": 1.5}, "lowres is a probability and must be <= 1"),
        ({"blur": 2}, "blur is a probability and must be <= 1"),
        ({"jpeg": float("nan")}, "jpeg must be a finite number >= 0"),
        ({"binarise": True}, "binarise must be a number"),
    ],
)
def test_bad_strengths_are_clear_errors(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AugmentConfig.from_dict(values)


def test_bad_batches_are_clear_errors() -> None:
    config = AugmentConfig(rotation=5)
    with pytest.raises(ValueError, match="N×1×H×W"):
        augment_batch(torch.zeros(2, 28, 28), config)
    with pytest.raises(ValueError, match="float"):
        augment_batch(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), config)


def test_pen_and_scan_effects_are_off_by_default_and_leave_old_configs_as_they_were() -> None:
    plain = AugmentConfig()
    assert not plain.enabled
    assert all(getattr(plain, name) == 0 for name in PEN_AND_SCAN)
    # A config without the newer effects writes the dictionary it always wrote...
    old = AugmentConfig(rotation=10, zoom=0.1, shift=0.1)
    assert old.to_dict() == {
        "rotation": 10,
        "zoom": 0.1,
        "shift": 0.1,
        "shear": 0.0,
        "elastic": 0.0,
        "elastic_sigma": 4.0,
    }
    assert AugmentConfig.from_dict(old.to_dict()) == old
    assert AugmentConfig(**PEN_AND_SCAN).to_dict()["binarise"] == 0.5
    # ...and draws exactly the random numbers it always drew: only the affine matrices.
    images = _rings(16)
    seen = torch.Generator().manual_seed(5)
    out = augment_batch(images, old, seen)
    expected = torch.Generator().manual_seed(5)
    theta = random_affine(16, old, expected)
    grid = functional.affine_grid(theta, [16, 1, 28, 28], align_corners=False)
    assert torch.equal(out, functional.grid_sample(images, grid, align_corners=False).clamp(0, 1))
    assert torch.equal(seen.get_state(), expected.get_state())


def test_pen_and_scan_effects_are_seeded() -> None:
    images = _rings(32)
    config = AugmentConfig(**PEN_AND_SCAN)
    first = augment_batch(images, config, torch.Generator().manual_seed(1))
    again = augment_batch(images, config, torch.Generator().manual_seed(1))
    other = augment_batch(images, config, torch.Generator().manual_seed(2))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    torch.manual_seed(3)
    global_first = augment_batch(images, config)
    torch.manual_seed(3)
    assert torch.equal(augment_batch(images, config), global_first)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_pen_and_scan_effects_keep_the_dtype(dtype: torch.dtype) -> None:
    images = _rings(8).to(dtype)
    out = augment_batch(images, AugmentConfig(**PEN_AND_SCAN), torch.Generator().manual_seed(0))
    assert out.dtype == dtype
    assert out.shape == images.shape


def test_thickening_adds_ink_and_thinning_removes_it_by_the_asked_width() -> None:
    rings = _rings(8, width=2.5)
    mass = rings.sum(dim=(1, 2, 3))
    length = 2 * torch.pi * torch.linspace(4, 8, 8)
    for change in (-1.0, -0.6, -0.3, 0.5, 1.0, 2.0, 3.0, 4.0):
        out = change_stroke_width(rings, torch.full((8,), change))
        # Ink over the ring's length is the stroke width; the octagonal pen moves curved edges
        # a little less than straight ones. Thinned strokes are brought back to full brightness
        # where their middle dimmed, which gives back part of the width.
        gained = (out.sum(dim=(1, 2, 3)) - mass) / length
        if change > 0:
            assert ((gained - change).abs() < 0.15 * change + 0.1).all(), change
        else:
            assert ((gained < 0.5 * change) & (gained > 1.15 * change - 0.1)).all(), change
        assert out.min() >= 0 and out.max() <= 1
    # A hairline thinner than the erosion survives, at full brightness.
    hairline = torch.zeros(1, 1, 28, 28)
    hairline[0, 0, 4:24, 14] = 1.0
    kept = change_stroke_width(hairline, torch.tensor([-1.0]))
    assert kept.max() == 1.0
    assert (kept[0, 0, 5:23, 14] == 1.0).all()
    thicker = augment_batch(rings, AugmentConfig(thicken=3), torch.Generator().manual_seed(0))
    thinner = augment_batch(rings, AugmentConfig(thin=1), torch.Generator().manual_seed(0))
    assert (thicker.sum(dim=(1, 2, 3)) >= rings.sum(dim=(1, 2, 3)) - 1e-4).all()
    assert (thinner.sum(dim=(1, 2, 3)) <= rings.sum(dim=(1, 2, 3)) + 1e-4).all()
    assert thicker.sum() > 1.3 * rings.sum() and thinner.sum() < 0.9 * rings.sum()


def test_binarisation_gives_two_levels_or_anti_aliased_edges_at_the_drawn_threshold() -> None:
    images = _rings(16) * 0.9 + _images(16, 0) * 0.1
    levels = torch.linspace(0.25, 0.75, 16)
    hard = binarise(images, levels, torch.zeros(16, dtype=torch.bool))
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    brightest = images.amax(dim=(1, 2, 3), keepdim=True)
    assert torch.equal(hard, (images >= levels.view(-1, 1, 1, 1) * brightest).float())
    # Anti-aliased: close to thresholding at 8× the size and averaging back down.
    smooth = binarise(images, levels, torch.ones(16, dtype=torch.bool))
    big = functional.interpolate(images, scale_factor=8, mode="bilinear", align_corners=False)
    reference = functional.avg_pool2d((big >= levels.view(-1, 1, 1, 1) * brightest).float(), 8)
    assert (smooth - reference).abs().mean() < 0.02
    assert (hard - reference).abs().mean() > 1.5 * (smooth - reference).abs().mean()
    # In a batch, about half of the binarised images keep exactly two levels.
    out = augment_batch(_rings(200), AugmentConfig(binarise=1), torch.Generator().manual_seed(0))
    two_levels = sum(set(image.unique().tolist()) <= {0.0, 1.0} for image in out)
    assert 60 < two_levels < 140


def test_resolution_loss_removes_high_frequencies_as_interpolate_would() -> None:
    images = _rings(12) * 0.7 + _images(12, 1) * 0.3
    sides = torch.tensor([11, 12, 14, 16, 18, 20, 22, 11, 13, 15, 17, 19])
    nearest = torch.arange(12) % 2 == 1
    out = lose_resolution(images, sides, nearest)
    for index in range(12):
        side = int(sides[index])
        small = functional.interpolate(images[index : index + 1], size=(side, side), mode="area")
        mode = "nearest" if nearest[index] else "bilinear"
        corners = None if nearest[index] else False
        back = functional.interpolate(small, size=(28, 28), mode=mode, align_corners=corners)
        assert torch.allclose(out[index : index + 1], back, atol=1e-5)
    smooth = ~nearest
    ratio = _high_frequency_energy(out) / _high_frequency_energy(images)
    assert (ratio[smooth] < 0.35).all()
    assert (ratio < 0.9).all()  # enlarging by repetition adds its own edges, but fewer
    blurred = augment_batch(images, AugmentConfig(lowres=1), torch.Generator().manual_seed(0))
    assert (_high_frequency_energy(blurred) < _high_frequency_energy(images)).all()


def test_blur_spreads_a_point_by_the_drawn_sigma_and_keeps_the_ink() -> None:
    point = torch.zeros(3, 1, 28, 28)
    point[:, 0, 14, 14] = 1.0
    sigmas = torch.tensor([0.5, 1.0, 1.5])
    out = gaussian_blur(point, sigmas)
    assert torch.allclose(out.sum(dim=(1, 2, 3)), torch.ones(3), atol=1e-5)
    offsets = torch.arange(28.0) - 14
    spread = (out[:, 0].sum(dim=1) * offsets**2).sum(dim=1).sqrt()
    assert torch.allclose(spread, sigmas, atol=0.05)
    images = _rings(8)
    blurred = augment_batch(images, AugmentConfig(blur=1), torch.Generator().manual_seed(0))
    assert (_high_frequency_energy(blurred) < 0.5 * _high_frequency_energy(images)).all()


def test_jpeg_quantises_blocks_more_at_lower_quality_and_keeps_blank_blank() -> None:
    images = _rings(16)
    errors = [
        (jpeg_compress(images, torch.full((16,), quality)) - images).abs().mean()
        for quality in (10.0, 30.0, 70.0, 95.0)
    ]
    assert errors[0] > errors[1] > errors[2] > errors[3] > 0
    assert errors[0] > 0.02 and errors[3] < 0.01
    out = jpeg_compress(images, torch.full((16,), 10.0))
    assert torch.equal(out * 255, (out * 255).round())  # decoded to 8-bit levels
    blank = jpeg_compress(torch.zeros(4, 1, 28, 28), torch.full((4,), 10.0))
    assert torch.count_nonzero(blank) == 0
    # Blocks of one grey level hold only their mean, which JPEG keeps here: they pass unchanged.
    flat = torch.zeros(1, 1, 28, 28)
    flat[..., :8, :8], flat[..., 8:16, 16:24] = 100 / 255, 1.0
    assert torch.allclose(jpeg_compress(flat, torch.tensor([10.0])), flat, atol=1e-6)


def test_stretch_changes_the_width_and_not_the_height() -> None:
    rows = torch.arange(28.0).view(1, 28, 1) - 13.5
    cols = torch.arange(28.0).view(1, 1, 28) - 13.5
    blob = torch.exp(-(rows**2 + cols**2) / (2 * 3.0**2)).expand(500, 28, 28).unsqueeze(1)
    out = augment_batch(blob, AugmentConfig(stretch=0.3), torch.Generator().manual_seed(0))

    def spread(images: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
        return ((images[:, 0] * axis**2).sum(dim=(1, 2)) / images[:, 0].sum(dim=(1, 2))).sqrt()

    width = spread(out, cols) / spread(blob, cols)
    height = spread(out, rows) / spread(blob, rows)
    assert (height - 1).abs().max() < 0.02
    assert width.min() > 0.7 - 0.02 and width.max() < 1.3 + 0.02
    assert width.min() < 0.75 and width.max() > 1.25  # the whole range is drawn
