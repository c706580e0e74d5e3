"""Augmentation: property tests (labels, range, shape, dtype, identity) and what each knob does."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from digits.augment import AugmentConfig, augment_batch, elastic_field, random_affine

strengths = st.builds(
    AugmentConfig,
    rotation=st.floats(0, 45),
    zoom=st.floats(0, 0.5),
    shift=st.floats(0, 0.3),
    shear=st.floats(0, 30),
    elastic=st.floats(0, 3),
    elastic_sigma=st.floats(1, 8),
)


def _images(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=generator)


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
