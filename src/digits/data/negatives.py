"""Generated non-digits: letters, symbols, shapes and scribbles, as the model sees them.

A classifier trained on digits alone gives every input a digit: an "A" comes back as a 4, a star
as an 8. Recipes with `negatives` > 0 add an eleventh class, "not a digit", trained on these
images. Each is drawn large (a glyph of a font, with a random stroke weight, or a shape drawn
with a pen), distorted, and then put through `digits.preprocess.normalise_digit`, the very step
that turns a real image's ink into the 28×28 at prediction time, so training sees what serving
will.

What is left out matters as much as what is in: anything a person could mean as a digit (O, o,
Q, I, l, i, |, /, (, ), S, s, Z, z, B, b, G, g, q, ?, a plain vertical stroke, a circle, an
ellipse) is never a negative, or the model would learn to refuse real 0s, 1s, 2s, 5s, 6s, 8s
and 9s.

Two splits with nothing in common but the generator: "train" draws glyphs from one set of fonts
and "heldout" from another (plus Pillow's own font), with other random seeds, so that the
refusal rate measured on "heldout" is not a rate on shapes the model has seen. The arrays are
cached in the data directory (keyed by the generator's and the preprocessing's versions), so
they are drawn once per machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digits.atomic import atomic_write_bytes
from digits.data.sources import data_dir

GENERATOR_VERSION = "2"
"""Bumped whenever the images drawn for a split change."""

SPLITS = {"train": 20_000, "heldout": 3_000}
"""How many images each split holds."""

CANVAS = 128
"""Side of the canvas glyphs and shapes are drawn on, before preprocessing shrinks them."""

# Letters and symbols that cannot be read as a digit. Left out on purpose: O o Q D C c Φ (0),
# I l i j J | ! / \ ( ) [ ] ↑ ↓ ♪ (1), Z z ? £ (2), S s $ § (5), b G (6), B & (8), a g q y (9, 4),
# h (an open 4), T Y (7), and small marks (. , ' `) that preprocessing would blow up into a blob.
LETTERS = "AEeFfHKkLMmNnPpRrtUuVvWwXxd"
SYMBOLS = "#@%*+=~<>^÷±×€¥¶πλΣΩΨ✓✗★☆♥♦♣♠→←↔⇒∞≈≠≤≥∏√☺"

# Matplotlib ships these fonts (the train extra), so every machine draws the same glyphs.
TRAIN_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono.ttf",
    "cmr10.ttf",
    "cmmi10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmb10.ttf",
    "cmti10.ttf",
)
HELDOUT_FONTS = (
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
)
# The Computer Modern fonts map some ASCII symbols to other glyphs: only their letters are used.
LETTERS_ONLY = ("cm",)


@dataclass(frozen=True)
class Negatives:
    """uint8 N×28×28 images in MNIST form (ink bright on dark) and what each one shows."""

    images: np.ndarray
    kinds: np.ndarray
    """Per image: "glyph", "letter" (drawn with a pen), or the shape's name ("star", "tick"...)."""


# --- pen strokes --------------------------------------------------------------------------------

Stroke = list[tuple[float, float]]
"""A polyline in unit coordinates (0..1 across the canvas, y down)."""


def _circle_points(
    cx: float, cy: float, rx: float, ry: float, start: float, end: float, count: int = 24
) -> Stroke:
    angles = np.linspace(start, end, count)
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


def _polygon(rng: np.random.Generator, sides: int) -> list[Stroke]:
    turn = rng.uniform(0, 2 * math.pi)
    points = [
        (
            0.5 + 0.4 * math.cos(turn + 2 * math.pi * k / sides),
            0.5 + 0.4 * math.sin(turn + 2 * math.pi * k / sides),
        )
        for k in range(sides + 1)
    ]
    return [points]


def _star(rng: np.random.Generator) -> list[Stroke]:
    points = int(rng.choice([5, 6, 7]))
    turn = rng.uniform(0, 2 * math.pi)
    inner = rng.uniform(0.15, 0.25)
    corners = []
    for k in range(2 * points + 1):
        radius = 0.42 if k % 2 == 0 else inner
        angle = turn + math.pi * k / points
        corners.append((0.5 + radius * math.cos(angle), 0.5 + radius * math.sin(angle)))
    if rng.random() < 0.3:  # the pentagram drawn in one stroke
        corners = [
            (
                0.5 + 0.42 * math.cos(turn + 4 * math.pi * k / 5),
                0.5 + 0.42 * math.sin(turn + 4 * math.pi * k / 5),
            )
            for k in range(6)
        ]
    return [corners]


def _tick(rng: np.random.Generator) -> list[Stroke]:
    low = (rng.uniform(0.35, 0.5), rng.uniform(0.7, 0.85))
    return [[(0.15, rng.uniform(0.4, 0.6)), low, (rng.uniform(0.8, 0.95), rng.uniform(0.1, 0.25))]]


def _cross(rng: np.random.Generator) -> list[Stroke]:
    if rng.random() < 0.5:  # ×
        return [[(0.15, 0.15), (0.85, 0.85)], [(0.85, 0.15), (0.15, 0.85)]]
    return [[(0.1, 0.5), (0.9, 0.5)], [(0.5, 0.1), (0.5, 0.9)]]  # +


def _arrow(rng: np.random.Generator) -> list[Stroke]:
    # Any direction but straight up or down, which would read as a 1 with a flag.
    angle = rng.uniform(-0.35 * math.pi, 0.35 * math.pi) + (math.pi if rng.random() < 0.5 else 0)
    dx, dy = math.cos(angle), math.sin(angle)
    tail, head = (0.5 - 0.4 * dx, 0.5 - 0.4 * dy), (0.5 + 0.4 * dx, 0.5 + 0.4 * dy)
    barbs = []
    for side in (-1, 1):
        back = angle + math.pi + side * 0.5
        barbs.append([head, (head[0] + 0.25 * math.cos(back), head[1] + 0.25 * math.sin(back))])
    return [[tail, head], *barbs]


def _heart(rng: np.random.Generator) -> list[Stroke]:
    t = np.linspace(0, 2 * math.pi, 48)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return [[(0.5 + 0.025 * a, 0.48 + 0.025 * b) for a, b in zip(x, y, strict=True)]]


def _spiral(rng: np.random.Generator) -> list[Stroke]:
    turns = rng.uniform(2.0, 3.5)
    t = np.linspace(0, turns * 2 * math.pi, 120)
    radius = 0.42 * t / t[-1]
    turn = rng.uniform(0, 2 * math.pi)
    return [
        [
            (0.5 + r * math.cos(a + turn), 0.5 + r * math.sin(a + turn))
            for r, a in zip(radius, t, strict=True)
        ]
    ]


def _wave(rng: np.random.Generator) -> list[Stroke]:
    periods = rng.uniform(2.0, 4.0)
    height = rng.uniform(0.08, 0.2)
    x = np.linspace(0.05, 0.95, 80)
    if rng.random() < 0.5:  # a zigzag
        y = 0.5 + height * (2 * np.abs((x * periods) % 1 - 0.5) * 2 - 1)
    else:
        y = 0.5 + height * np.sin(x * periods * 2 * math.pi)
    return [list(zip(x, y, strict=True))]


def _loops(rng: np.random.Generator) -> list[Stroke]:
    """A row of cursive loops, "eeee" or "llll" written without lifting the pen."""
    loops = int(rng.integers(3, 6))
    t = np.linspace(0, loops * 2 * math.pi, 60 * loops)
    x = 0.1 + 0.8 * t / t[-1] + 0.06 * np.cos(t + math.pi / 2)
    y = 0.55 - 0.12 * np.sin(t + math.pi / 2)
    return [list(zip(x, y, strict=True))]


def _scribble(rng: np.random.Generator) -> list[Stroke]:
    """A tangle: many random points joined by a smooth curve, crossing itself several times."""
    count = int(rng.integers(8, 14))
    control = rng.uniform(0.1, 0.9, (count, 2))
    t = np.linspace(0, count - 1, 30 * count)
    x = np.interp(t, np.arange(count), control[:, 0])
    y = np.interp(t, np.arange(count), control[:, 1])
    kernel = np.ones(15) / 15  # a moving average rounds the corners into a pen's curve
    x = np.convolve(np.pad(x, 7, mode="edge"), kernel, mode="valid")
    y = np.convolve(np.pad(y, 7, mode="edge"), kernel, mode="valid")
    return [list(zip(x, y, strict=True))]


def _dash(rng: np.random.Generator) -> list[Stroke]:
    """A horizontal-ish bar or underline: never near vertical, which would be a 1."""
    angle = rng.uniform(-0.15 * math.pi, 0.15 * math.pi)
    half = rng.uniform(0.2, 0.45)
    dx, dy = half * math.cos(angle), half * math.sin(angle)
    strokes = [[(0.5 - dx, 0.5 - dy), (0.5 + dx, 0.5 + dy)]]
    if rng.random() < 0.3:  # "=" or a double underline
        strokes.append([(0.5 - dx, 0.65 - dy), (0.5 + dx, 0.65 + dy)])
    return strokes


def _hash(rng: np.random.Generator) -> list[Stroke]:
    lean = rng.uniform(-0.1, 0.1)
    return [
        [(0.35 + lean, 0.1), (0.3 - lean, 0.9)],
        [(0.7 + lean, 0.1), (0.65 - lean, 0.9)],
        [(0.1, 0.35), (0.9, 0.33)],
        [(0.1, 0.65), (0.9, 0.63)],
    ]


def _asterisk(rng: np.random.Generator) -> list[Stroke]:
    arms = int(rng.choice([3, 4]))
    turn = rng.uniform(0, math.pi)
    return [
        [
            (
                0.5 + 0.4 * math.cos(turn + math.pi * k / arms),
                0.5 + 0.4 * math.sin(turn + math.pi * k / arms),
            ),
            (
                0.5 - 0.4 * math.cos(turn + math.pi * k / arms),
                0.5 - 0.4 * math.sin(turn + math.pi * k / arms),
            ),
        ]
        for k in range(arms)
    ]


def _smiley(rng: np.random.Generator) -> list[Stroke]:
    face = _circle_points(0.5, 0.5, 0.42, 0.42, 0, 2 * math.pi, 40)
    eyes = [[(0.36, 0.38), (0.37, 0.41)], [(0.63, 0.38), (0.64, 0.41)]]
    mouth = _circle_points(0.5, 0.52, 0.22, 0.16, 0.15 * math.pi, 0.85 * math.pi)
    return [face, *eyes, mouth]


def _box_tick(rng: np.random.Generator) -> list[Stroke]:
    box = [(0.12, 0.12), (0.88, 0.12), (0.88, 0.88), (0.12, 0.88), (0.12, 0.12)]
    return [box, [(0.25, 0.5), (0.45, 0.72), (0.8, 0.25)]]


# Letters as a person draws them with a pen: the ones no digit resembles. Squares and pentagons
# are left out of the shapes below: an angular 0 is drawn just so.
_PEN_LETTERS: dict[str, list[Stroke]] = {
    "A": [[(0.1, 0.95), (0.5, 0.05), (0.9, 0.95)], [(0.28, 0.6), (0.72, 0.6)]],
    "E": [[(0.85, 0.05), (0.2, 0.05), (0.2, 0.95), (0.85, 0.95)], [(0.2, 0.5), (0.7, 0.5)]],
    "F": [[(0.85, 0.05), (0.2, 0.05), (0.2, 0.95)], [(0.2, 0.5), (0.7, 0.5)]],
    "H": [[(0.15, 0.05), (0.15, 0.95)], [(0.85, 0.05), (0.85, 0.95)], [(0.15, 0.5), (0.85, 0.5)]],
    "K": [[(0.2, 0.05), (0.2, 0.95)], [(0.85, 0.05), (0.2, 0.55)], [(0.38, 0.42), (0.85, 0.95)]],
    "M": [[(0.1, 0.95), (0.15, 0.05), (0.5, 0.6), (0.85, 0.05), (0.9, 0.95)]],
    "N": [[(0.15, 0.95), (0.15, 0.05), (0.85, 0.95), (0.85, 0.05)]],
    "W": [[(0.05, 0.05), (0.28, 0.95), (0.5, 0.35), (0.72, 0.95), (0.95, 0.05)]],
    "X": [[(0.15, 0.05), (0.85, 0.95)], [(0.85, 0.05), (0.15, 0.95)]],
    "V": [[(0.1, 0.05), (0.5, 0.95), (0.9, 0.05)]],
    "R": [
        [(0.2, 0.95), (0.2, 0.05), (0.6, 0.05), (0.8, 0.18), (0.8, 0.35), (0.6, 0.5), (0.2, 0.5)],
        [(0.45, 0.5), (0.85, 0.95)],
    ],
    "P": [
        [(0.2, 0.95), (0.2, 0.05), (0.65, 0.05), (0.85, 0.2), (0.85, 0.35), (0.65, 0.5), (0.2, 0.5)]
    ],
    "U": [[(0.15, 0.05), *_circle_points(0.5, 0.6, 0.35, 0.35, math.pi, 0, 16), (0.85, 0.05)]],
    "k": [[(0.25, 0.05), (0.25, 0.95)], [(0.75, 0.4), (0.25, 0.72)], [(0.4, 0.62), (0.8, 0.95)]],
    "m": [
        [(0.1, 0.95), (0.1, 0.4), (0.3, 0.35), (0.5, 0.45), (0.5, 0.95)],
        [(0.5, 0.45), (0.7, 0.35), (0.9, 0.45), (0.9, 0.95)],
    ],
    "w": [[(0.05, 0.35), (0.27, 0.95), (0.5, 0.5), (0.73, 0.95), (0.95, 0.35)]],
}

SHAPES: dict[str, Callable[[np.random.Generator], list[Stroke]]] = {
    "triangle": lambda rng: _polygon(rng, 3),
    "star": _star,
    "tick": _tick,
    "cross": _cross,
    "arrow": _arrow,
    "heart": _heart,
    "spiral": _spiral,
    "wave": _wave,
    "loops": _loops,
    "scribble": _scribble,
    "dash": _dash,
    "hash": _hash,
    "asterisk": _asterisk,
    "smiley": _smiley,
    "box-tick": _box_tick,
}


def _jitter(strokes: list[Stroke], rng: np.random.Generator, amount: float) -> list[Stroke]:
    """Each point moved a little, as a hand never draws the same shape twice."""
    return [[(x + rng.normal(0, amount), y + rng.normal(0, amount)) for x, y in s] for s in strokes]


def _draw_strokes(strokes: list[Stroke], rng: np.random.Generator) -> Image.Image:
    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    width = int(rng.integers(3, 15))  # hairline pencil to marker, at 128 px
    margin, span = 0.12 * CANVAS, 0.76 * CANVAS
    for stroke in strokes:
        points = [(margin + x * span, margin + y * span) for x, y in stroke]
        draw.line(points, fill=255, width=width, joint="curve")
        for x, y in (points[0], points[-1]):  # round pen ends
            r = width / 2
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return image


# --- font glyphs --------------------------------------------------------------------------------


@cache
def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    if name == "pillow":
        font = ImageFont.load_default(size)
        assert isinstance(font, ImageFont.FreeTypeFont)
        return font
    return ImageFont.truetype(str(_font_dir() / name), size)


@cache
def _characters(name: str) -> frozenset[str]:
    """The characters a font really has a glyph for (not its "missing" box), from its cmap."""
    if name == "pillow":  # Pillow's own font covers ASCII only
        return frozenset(chr(code) for code in range(33, 127))
    from fontTools.ttLib import TTFont

    with TTFont(str(_font_dir() / name), lazy=True) as font:
        return frozenset(chr(code) for code in font.getBestCmap())


def _glyph_chars(name: str) -> str:
    wanted = LETTERS if name.startswith(LETTERS_ONLY) else LETTERS + SYMBOLS
    return "".join(char for char in wanted if char in _characters(name))


def _draw_glyph(char: str, name: str, rng: np.random.Generator) -> Image.Image | None:
    font = _font(name, 72)
    if font.getmask(char).getbbox() is None:
        return None
    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    stroke = int(rng.integers(0, 5))  # light to heavy, like pens of different widths
    draw.text(
        (CANVAS / 2, CANVAS / 2),
        char,
        fill=255,
        font=font,
        anchor="mm",
        stroke_width=stroke,
        stroke_fill=255,
    )
    return image


# --- the splits ---------------------------------------------------------------------------------


def _distort(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random rotation and shear: letters and shapes are written at any slant."""
    angle = float(rng.uniform(-20, 20))
    shear = float(rng.uniform(-0.3, 0.3))
    sheared = image.transform(
        image.size,
        Image.Transform.AFFINE,
        (1, shear, -shear * CANVAS / 2, 0, 1, 0),
        resample=Image.Resampling.BILINEAR,
    )
    return sheared.rotate(angle, resample=Image.Resampling.BILINEAR)


def _to_model_input(image: Image.Image) -> np.ndarray | None:
    """A drawing (ink bright on dark) → the 28×28 that preprocessing makes of such ink."""
    from digits.preprocess import normalise_digit

    strength = np.asarray(image, dtype=np.float32) / 255.0
    rows, cols = np.nonzero(strength > 0.1)
    if len(rows) == 0:
        return None
    crop = strength[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return normalise_digit(crop)


def _drawings(split: str, rng: np.random.Generator) -> Iterator[tuple[Image.Image, str]]:
    """An endless stream of (drawing, kind): a third glyphs, a third pen letters, a third shapes."""
    fonts = TRAIN_FONTS if split == "train" else (*HELDOUT_FONTS, "pillow")
    shapes = list(SHAPES)
    letters = list(_PEN_LETTERS)
    while True:
        pick = rng.random()
        if pick < 0.4:
            name = fonts[int(rng.integers(len(fonts)))]
            chars = _glyph_chars(name)
            glyph = _draw_glyph(chars[int(rng.integers(len(chars)))], name, rng)
            if glyph is not None:
                yield glyph, "glyph"
        elif pick < 0.65:
            letter = letters[int(rng.integers(len(letters)))]
            yield _draw_strokes(_jitter(_PEN_LETTERS[letter], rng, 0.03), rng), "letter"
        else:
            shape = shapes[int(rng.integers(len(shapes)))]
            yield _draw_strokes(_jitter(SHAPES[shape](rng), rng, 0.02), rng), shape


def draw(split: str, count: int, seed: int | None = None) -> list[tuple[Image.Image, str]]:
    """`count` drawings of a split as images (ink bright on black, CANVAS pixels square, before
    any preprocessing) and their kinds: to make test photos of, or to look at."""
    if split not in SPLITS:
        raise ValueError(f"unknown negatives split {split!r} (choose from {', '.join(SPLITS)})")
    seed = (0 if split == "train" else 1_000_003) if seed is None else seed
    rng = np.random.default_rng(seed)
    drawn: list[tuple[Image.Image, str]] = []
    for drawing, kind in _drawings(split, rng):
        if len(drawn) == count:
            break
        drawn.append((_distort(drawing, rng), kind))
    return drawn


def generate(split: str, count: int | None = None, seed: int | None = None) -> Negatives:
    """`count` images of a split (default: the split's size) as the model sees them."""
    count = SPLITS.get(split, 0) if count is None else count
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    kinds: list[str] = []
    # A drawing that vanishes at MNIST scale is skipped, so draw a few more than needed.
    for drawing, kind in draw(split, count + count // 20 + 10, seed):
        if len(kinds) == count:
            break
        pixels = _to_model_input(drawing)
        if pixels is not None:
            images[len(kinds)] = pixels
            kinds.append(kind)
    if len(kinds) < count:
        raise RuntimeError(f"only {len(kinds)} of {count} negatives survived preprocessing")
    return Negatives(images, np.array(kinds))


def cache_path(split: str) -> Path:
    from digits.preprocess import PREPROCESSING_VERSION

    name = f"negatives-{split}-g{GENERATOR_VERSION}-p{PREPROCESSING_VERSION}.npz"
    return data_dir() / name


def load_negatives(split: str = "train") -> Negatives:
    """A split's images, from the cache or drawn (about a millisecond each) and cached."""
    path = cache_path(split)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as archive:
                negatives = Negatives(archive["images"], archive["kinds"])
            if negatives.images.shape == (SPLITS[split], 28, 28):
                return negatives
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is drawn again
    negatives = generate(split)
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=negatives.images, kinds=negatives.kinds)
    atomic_write_bytes(path, buffer.getvalue())
    return negatives
