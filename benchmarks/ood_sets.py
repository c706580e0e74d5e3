"""Digits from outside MNIST, rendered as the images people hand over: scikit-learn's
`load_digits` (1 797 real handwritten digits by 43 writers, 8×8, 17 grey levels, ink bright on
dark, strokes touching the frame) as shipped, enlarged, inverted, binarised and JPEG-compressed;
and the generated photos, pen drawings and typed digits of tests/handwriting.py.

Each condition renders to a list of (PIL image or encoded file bytes, label). Everything is
seeded: the same call gives the same images. Nothing here uses the project's preprocessing, so
the images are what a user would have, not what the recognizer expects.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the handwriting generators live in tests/

from tests.handwriting import (  # noqa: E402
    LOOKS,
    Look,
    encode,
    font_glyph,
    mnist_photo,
    number_photo,
    pen_photo,
)

Sample = tuple[Image.Image | bytes, int]
Kind = Literal["scan", "photo"]

GENERATED = 300  # images per generated condition: enough for ±1 pt, quick to make and score
MARGIN = 0.2  # of the side, on each side, where a condition puts paper around the digit
SHUFFLE_SEED = 0  # the fixed order load_digits is taken in, so a --limit keeps every writer mix
PEN_WIDTHS = (0.05, 0.09, 0.14)  # of the glyph height: hairline pencil, ballpoint, marker


def sklearn_digits(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """load_digits as uint8 N×8×8 on 0–255 (16 → 255), ink bright, in a fixed shuffled order
    (the file is grouped by writer, so the first N would be a few writers only)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(data.target))[:limit]
    images = np.rint(data.images[order] * (255 / 16)).astype(np.uint8)
    return images, data.target[order].astype(np.int64)


def _resize(image: np.ndarray, side: int, method: Image.Resampling) -> Image.Image:
    return Image.fromarray(image, mode="L").resize((side, side), method)


def grey(images: np.ndarray, side: int, method: Image.Resampling) -> list[Image.Image]:
    """Light on dark and tight, as data sets ship crops; enlarged to `side` if larger than 8."""
    if side == images.shape[1]:
        return [Image.fromarray(image, mode="L") for image in images]
    return [_resize(image, side, method) for image in images]


def on_paper(
    images: np.ndarray, side: int, margin: float, paper: int, ink: int
) -> list[Image.Image]:
    """Dark ink on light paper: the digit enlarged (bilinear) and set `margin` × side in from
    each edge; margin 0 fills the frame."""
    inset = round(margin * side)
    inner = side - 2 * inset
    rendered = []
    for image in images:
        strength = np.asarray(_resize(image, inner, Image.Resampling.BILINEAR), np.float32) / 255
        canvas = np.zeros((side, side), np.float32)
        canvas[inset : inset + inner, inset : inset + inner] = strength
        pixels = paper + (ink - paper) * canvas
        rendered.append(Image.fromarray(np.rint(pixels).astype(np.uint8), mode="L"))
    return rendered


def binarised(images: np.ndarray, side: int = 16, enlarge: int | None = None) -> list[Image.Image]:
    """1-bit scans: enlarged (bilinear) to `side`, ink where the level is at least half; then,
    if `enlarge`, scaled up blockily (nearest) as a 1-bit image still."""
    rendered = []
    for image in images:
        bits = np.asarray(_resize(image, side, Image.Resampling.BILINEAR)) >= 128
        scan = Image.fromarray(bits)  # a bool array becomes mode "1"
        if enlarge is not None:
            scan = scan.resize((enlarge, enlarge), Image.Resampling.NEAREST)
        rendered.append(scan)
    return rendered


def jpeg_scans(images: np.ndarray, side: int = 64, quality: int = 85) -> list[bytes]:
    """Dark ink on grey paper with a margin, saved as light JPEG (quality 85)."""
    pages = on_paper(images, side, MARGIN, paper=190, ink=40)
    return [encode(page, "JPEG", quality=quality) for page in pages]


def mnist_photos(
    images: np.ndarray, labels: np.ndarray, count: int = GENERATED, seed: int = 0
) -> list[Sample]:
    """MNIST digits (uint8 N×28×28) printed on paper and photographed, one seeded digit per
    image, taking each of tests/handwriting.py's looks in turn."""
    picks = np.random.default_rng(seed).choice(len(images), min(count, len(images)), replace=False)
    looks = list(LOOKS.values())
    return [
        (mnist_photo(images[i], looks[n % len(looks)], seed=seed + n), int(labels[i]))
        for n, i in enumerate(picks)
    ]


def pen_photos(count: int = GENERATED, seed: int = 0) -> list[Sample]:
    """Digits drawn with a pen (hairline to marker) and photographed under each look in turn."""
    looks = list(LOOKS.values())
    return [
        (
            pen_photo(
                n % 10,
                looks[(n // 10) % len(looks)],
                stroke=PEN_WIDTHS[n % len(PEN_WIDTHS)],
                seed=seed + n,
            ),
            n % 10,
        )
        for n in range(count)
    ]


def canvas_drawings(count: int = GENERATED, seed: int = 0) -> list[Sample]:
    """What the web page sends: a black pen drawing on a white 160×160 canvas, as PNG, drawn
    large or small and a little off centre."""
    rng = np.random.default_rng(seed)
    samples: list[Sample] = []
    for n in range(count):
        look = Look(
            size=(160, 160),
            digit_height=float(rng.uniform(0.45, 0.9)),
            centre=(float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.6))),
            paper=(255, 255, 255),
            ink=(0, 0, 0),
        )
        stroke = PEN_WIDTHS[n % len(PEN_WIDTHS)]
        drawing = pen_photo(n % 10, look, stroke=stroke, seed=seed + n).convert("L")
        samples.append((encode(drawing, "PNG"), n % 10))
    return samples


def typed_digits(count: int = GENERATED, seed: int = 0) -> list[Sample]:
    """Digits typed in Pillow's built-in font at a few sizes, photographed under each look."""
    looks = list(LOOKS.values())
    glyphs = {(d, size): font_glyph(str(d), size) for d in range(10) for size in (40, 80, 120)}
    return [
        (
            number_photo(
                [glyphs[n % 10, (40, 80, 120)[n % 3]]], looks[(n // 10) % len(looks)], seed=seed + n
            ),
            n % 10,
        )
        for n in range(count)
    ]


@dataclass(frozen=True)
class Condition:
    name: str
    kind: Kind
    about: str
    """One sentence for the docs: what the images are."""
    make: Callable[[int | None], list[Sample]]
    """Renders the condition, at most `limit` images (None: the full condition)."""


def _scans(
    render: Callable[[np.ndarray], list[Image.Image] | list[bytes]],
) -> Callable[[int | None], list[Sample]]:
    def make(limit: int | None) -> list[Sample]:
        images, labels = sklearn_digits(limit)
        return list(zip(render(images), (int(label) for label in labels), strict=True))

    return make


def _mnist_photos(limit: int | None) -> list[Sample]:
    from digits.data import load_mnist

    mnist = load_mnist()
    # MNIST always has its test split.
    assert mnist.x_test is not None
    assert mnist.y_test is not None
    return mnist_photos(mnist.x_test, mnist.y_test, GENERATED if limit is None else limit)


def _generated(render: Callable[[int], list[Sample]]) -> Callable[[int | None], list[Sample]]:
    return lambda limit: render(GENERATED if limit is None else min(limit, GENERATED))


BILINEAR, NEAREST = Image.Resampling.BILINEAR, Image.Resampling.NEAREST

CONDITIONS: list[Condition] = [
    Condition(
        "grey 8×8",
        "scan",
        "load_digits as shipped: 8×8, 17 grey levels scaled to 0–255, ink bright on dark, "
        "strokes touching the frame.",
        _scans(lambda x: grey(x, 8, BILINEAR)),
    ),
    Condition(
        "grey 16×16",
        "scan",
        "the same enlarged to 16×16 (bilinear), still tight and bright on dark.",
        _scans(lambda x: grey(x, 16, BILINEAR)),
    ),
    Condition(
        "grey 32×32",
        "scan",
        "enlarged to 32×32 (bilinear).",
        _scans(lambda x: grey(x, 32, BILINEAR)),
    ),
    Condition(
        "blocky 64×64",
        "scan",
        "enlarged to 64×64 by nearest neighbour: 8×8 blocks, bright on dark.",
        _scans(lambda x: grey(x, 64, NEAREST)),
    ),
    Condition(
        "dark on white, margin",
        "scan",
        f"dark ink on white, 64×64, the digit {round(100 * MARGIN)} % of the side in from "
        "each edge (bilinear).",
        _scans(lambda x: on_paper(x, 64, MARGIN, paper=255, ink=0)),
    ),
    Condition(
        "dark on white, tight",
        "scan",
        "dark ink on white, 64×64, filling the frame.",
        _scans(lambda x: on_paper(x, 64, 0.0, paper=255, ink=0)),
    ),
    Condition(
        "1-bit 16×16",
        "scan",
        "binarised: 16×16 (bilinear), ink where the level is at least half, a 1-bit image.",
        _scans(lambda x: binarised(x, 16)),
    ),
    Condition(
        "1-bit 16×16 → 64×64",
        "scan",
        "that 1-bit 16×16 enlarged to 64×64 by nearest neighbour, still 1-bit.",
        _scans(lambda x: binarised(x, 16, enlarge=64)),
    ),
    Condition(
        "JPEG on grey paper",
        "scan",
        f"dark ink on grey paper (190, ink 40), 64×64 with the {round(100 * MARGIN)} % margin, "
        "JPEG quality 85.",
        _scans(jpeg_scans),
    ),
    Condition(
        "MNIST photos",
        "photo",
        f"{GENERATED} MNIST test digits printed large and photographed under the nine looks of "
        "tests/handwriting.py (plain, off centre, coloured paper, inverted, uneven light, noisy, "
        "JPEG, 36×36, and a blurred JPEG photo of grey paper).",
        _mnist_photos,
    ),
    Condition(
        "pen photos",
        "photo",
        f"{GENERATED} pen-drawn digits (hairline, ballpoint and marker widths, seeded wobble "
        "and slant) photographed under the same looks.",
        _generated(pen_photos),
    ),
    Condition(
        "canvas drawings",
        "photo",
        f"{GENERATED} pen drawings in black on a white 160×160 canvas, PNG, as the page sends "
        "them, large or small and a little off centre.",
        _generated(canvas_drawings),
    ),
    Condition(
        "typed digits",
        "photo",
        f"{GENERATED} digits typed in Pillow's built-in font at three sizes, photographed "
        "under the same looks.",
        _generated(typed_digits),
    ),
]


def condition(name: str) -> Condition:
    for candidate in CONDITIONS:
        if candidate.name == name:
            return candidate
    known = ", ".join(c.name for c in CONDITIONS)
    raise KeyError(f"{name!r}: no such condition (known: {known})")
