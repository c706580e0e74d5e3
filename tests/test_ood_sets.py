"""The out-of-domain renderers of benchmarks/ood_sets.py: sizes, modes, polarity, labels and
determinism. No model and no MNIST needed."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from benchmarks.ood_sets import (
    CONDITIONS,
    GENERATED,
    MARGIN,
    Sample,
    canvas_drawings,
    condition,
    mnist_photos,
    pen_photos,
    sklearn_digits,
    typed_digits,
)
from PIL import Image

# name → (side, PIL mode, ink bright on dark, strokes reach the frame)
SCANS = {
    "grey 8×8": (8, "L", True, True),
    "grey 16×16": (16, "L", True, True),
    "grey 32×32": (32, "L", True, True),
    "blocky 64×64": (64, "L", True, True),
    "dark on white, margin": (64, "L", False, False),
    "dark on white, tight": (64, "L", False, True),
    "1-bit 16×16": (16, "1", True, True),
    "1-bit 16×16 → 64×64": (64, "1", True, True),
    "JPEG on grey paper": (64, "L", False, False),
}
COUNT = 40


def as_image(source: Image.Image | bytes) -> Image.Image:
    return Image.open(io.BytesIO(source)) if isinstance(source, bytes) else source


def pixels(source: Image.Image | bytes) -> np.ndarray:
    return np.asarray(as_image(source).convert("L"), dtype=np.int16)


def test_every_scan_condition_is_described() -> None:
    assert {c.name for c in CONDITIONS if c.kind == "scan"} == set(SCANS)
    assert all(c.about.endswith(".") for c in CONDITIONS)


def test_sklearn_digits_are_the_whole_set_in_a_fixed_order() -> None:
    from sklearn.datasets import load_digits

    images, labels = sklearn_digits()
    shipped = load_digits()
    assert images.shape == (len(shipped.target), 8, 8)
    assert images.dtype == np.uint8
    assert images.min() == 0
    assert images.max() == 255
    assert np.array_equal(np.bincount(labels), np.bincount(shipped.target))
    # Shuffled, so that a limit mixes writers, and the same each time.
    assert not np.array_equal(labels, shipped.target)
    first, first_labels = sklearn_digits(50)
    assert np.array_equal(first, images[:50])
    assert np.array_equal(first_labels, labels[:50])


@pytest.mark.parametrize("name", list(SCANS))
def test_scan_size_mode_and_polarity(name: str) -> None:
    side, mode, bright_ink, tight = SCANS[name]
    samples = condition(name).make(COUNT)
    assert len(samples) == COUNT
    for source, _ in samples:
        image = as_image(source)
        assert image.size == (side, side)
        assert image.mode == mode
    stack = np.stack([pixels(source) for source, _ in samples])
    background = float(np.median(stack))
    # Most of a digit image is background: dark when the ink is bright, light otherwise.
    assert (background < 64) if bright_ink else (background > 160)
    edges = np.concatenate([stack[:, 0], stack[:, -1], stack[:, :, 0], stack[:, :, -1]], axis=1)
    edge_ink = np.abs(edges - background).max(axis=1) > 64
    if tight:  # load_digits fills its frame: most digits reach an edge
        assert edge_ink.mean() > 0.5
    else:
        inset = round(MARGIN * side) - 1
        band = np.abs(stack[:, :inset] - background).max()
        assert not edge_ink.any()
        assert band < 16  # paper only (JPEG ringing stays faint)


def test_one_bit_scans_have_two_levels() -> None:
    for name in ("1-bit 16×16", "1-bit 16×16 → 64×64"):
        values = np.unique(np.stack([pixels(s) for s, _ in condition(name).make(COUNT)]))
        assert set(values.tolist()) == {0, 255}


def test_jpeg_scans_are_jpeg_files_on_grey_paper() -> None:
    samples = condition("JPEG on grey paper").make(COUNT)
    assert all(isinstance(source, bytes) for source, _ in samples)
    assert all(as_image(source).format == "JPEG" for source, _ in samples)
    corner = np.median([pixels(source)[:4, :4] for source, _ in samples])
    assert 170 < corner < 210


def test_scan_labels_follow_load_digits() -> None:
    _, labels = sklearn_digits()
    samples = condition("grey 16×16").make(None)
    assert [label for _, label in samples] == labels.tolist()


def fake_mnist(count: int) -> tuple[np.ndarray, np.ndarray]:
    """load_digits enlarged into 28×28 frames with a margin: digit-shaped, no download."""
    images, labels = sklearn_digits(count)
    frames = np.zeros((count, 28, 28), np.uint8)
    for frame, image in zip(frames, images, strict=True):
        frame[4:24, 4:24] = np.asarray(Image.fromarray(image).resize((20, 20)))
    return frames, labels


def mnist_photos_of_fakes(count: int) -> list[Sample]:
    return mnist_photos(*fake_mnist(60), count=count)


@pytest.mark.parametrize(
    ("render", "cycles_digits"),
    [
        (mnist_photos_of_fakes, False),  # seeded random digits
        (pen_photos, True),
        (canvas_drawings, True),
        (typed_digits, True),
    ],
    ids=["mnist photos", "pen photos", "canvas drawings", "typed digits"],
)
def test_generated_sets_are_seeded_and_labelled(
    render: Callable[[int], list[Sample]], cycles_digits: bool
) -> None:
    samples = render(20)
    again = render(20)
    assert len(samples) == 20
    for (source, label), (same, same_label) in zip(samples, again, strict=True):
        assert label == same_label
        grey = pixels(source)
        assert np.array_equal(grey, pixels(same))
        assert min(grey.shape) >= 28
        assert 0 <= label <= 9
    counts = np.bincount([label for _, label in samples], minlength=10)
    if cycles_digits:
        assert counts.tolist() == [2] * 10
    else:
        assert counts.sum() == 20


def test_mnist_photos_take_each_source_digit_at_most_once() -> None:
    images, labels = fake_mnist(18)
    samples = mnist_photos(images, labels, count=50)
    # Asked for more than there are: every source digit once, with its own label.
    assert sorted(label for _, label in samples) == sorted(labels.tolist())


def test_canvas_drawings_are_what_the_page_sends() -> None:
    for source, _ in canvas_drawings(10):
        assert isinstance(source, bytes)
        image = as_image(source)
        assert (image.format, image.size, image.mode) == ("PNG", (160, 160), "L")
        grey = pixels(source)
        assert grey[0, 0] == 255  # white canvas
        assert grey.min() < 64  # black ink


def test_generated_conditions_default_to_their_size_and_honour_a_limit() -> None:
    canvas = condition("canvas drawings")
    assert len(canvas.make(7)) == 7
    assert len(canvas.make(None)) == GENERATED


def test_an_unknown_condition_is_named() -> None:
    with pytest.raises(KeyError, match="'grey 9×9'"):
        condition("grey 9×9")
