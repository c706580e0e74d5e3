"""Real-looking digit images the tests make themselves: MNIST test digits printed large onto paper
(off centre, coloured, inverted, unevenly lit, noisy, JPEG-compressed) and digits drawn with pen
strokes or typed in a font onto larger canvases, the way people photograph or draw them.

Everything is seeded: the same call gives the same image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps


@dataclass(frozen=True)
class Look:
    """How a digit is put on paper."""

    size: tuple[int, int] = (200, 160)
    digit_height: float = 0.6  # of the canvas height
    centre: tuple[float, float] = (0.5, 0.5)  # of the canvas (x, y)
    paper: tuple[int, int, int] = (245, 245, 240)
    ink: tuple[int, int, int] = (20, 20, 30)
    gradient: float = 0.0  # lighting falls from 1 to 1 - gradient across the frame
    noise: float = 0.0  # Gaussian noise sigma in grey levels
    blur: float = 0.0
    jpeg_quality: int | None = None


LOOKS: dict[str, Look] = {
    "plain": Look(),
    "off-centre": Look(size=(320, 240), digit_height=0.35, centre=(0.25, 0.3)),
    "coloured-paper": Look(paper=(250, 225, 140), ink=(30, 40, 150)),
    "inverted": Look(paper=(15, 15, 20), ink=(240, 240, 235)),
    "uneven-light": Look(size=(300, 240), gradient=0.55, paper=(235, 230, 220)),
    "noisy": Look(noise=18.0),
    "jpeg": Look(size=(240, 200), jpeg_quality=35, blur=0.8),
    "small": Look(size=(36, 36), digit_height=0.8),
    "photo": Look(
        size=(480, 360),
        digit_height=0.4,
        centre=(0.6, 0.45),
        paper=(200, 195, 185),
        gradient=0.4,
        noise=8.0,
        blur=1.0,
        jpeg_quality=60,
    ),
}


def _compose(strength: np.ndarray, look: Look, seed: int) -> Image.Image:
    """Ink strength (H×W in [0, 1]) → an RGB photo of it under `look`."""
    rng = np.random.default_rng(seed)
    height, width = strength.shape
    paper = np.array(look.paper, dtype=np.float32)
    ink = np.array(look.ink, dtype=np.float32)
    pixels = paper * (1 - strength[..., None]) + ink * strength[..., None]
    if look.gradient:
        y, x = np.mgrid[0:height, 0:width]
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * x / width + np.sin(angle) * y / height + 1) / 2
        pixels *= (1 - look.gradient * ramp)[..., None]
    if look.noise:
        pixels += rng.normal(0, look.noise, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
    if look.blur:
        image = image.filter(ImageFilter.GaussianBlur(look.blur))
    if look.jpeg_quality is not None:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=look.jpeg_quality)
        image = Image.open(io.BytesIO(buffer.getvalue()))
        image.load()
    return image


def _place(glyph: np.ndarray, look: Look) -> np.ndarray:
    """Scale a glyph (ink strength, any size) to the look's digit height and position."""
    width, height = look.size
    scale = min(look.digit_height * height / glyph.shape[0], 0.9 * width / glyph.shape[1])
    size = (max(1, round(glyph.shape[1] * scale)), max(1, round(glyph.shape[0] * scale)))
    scaled = np.asarray(
        Image.fromarray(glyph.astype(np.float32), mode="F").resize(size, Image.Resampling.BICUBIC)
    )
    canvas = np.zeros((height, width), dtype=np.float32)
    top = int(np.clip(look.centre[1] * height - size[1] / 2, 0, height - size[1]))
    left = int(np.clip(look.centre[0] * width - size[0] / 2, 0, width - size[0]))
    canvas[top : top + size[1], left : left + size[0]] = scaled[: height - top, : width - left]
    return np.clip(canvas, 0, 1)


def mnist_photo(digit: np.ndarray, look: Look, seed: int = 0) -> Image.Image:
    """A 28×28 MNIST digit printed large on paper and photographed under `look`."""
    rows = np.nonzero(digit.any(1))[0]
    cols = np.nonzero(digit.any(0))[0]
    glyph = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32) / 255
    return _compose(_place(np.pad(glyph, 1), look), look, seed)


# Pen paths in a unit box (x right, y down), one list per stroke, shaped like handwriting.
def _ellipse(
    cx: float, cy: float, rx: float, ry: float, start: float = 0, turn: float = 1
) -> list[tuple[float, float]]:
    angles = np.linspace(start, start + turn * 2 * np.pi, 40)
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [_ellipse(0.5, 0.5, 0.28, 0.42)],
    1: [[(0.56, 0.08), (0.52, 0.5), (0.47, 0.92)]],
    2: [
        [(0.2, 0.3), (0.3, 0.12), (0.55, 0.07), (0.76, 0.2), (0.74, 0.42), (0.2, 0.9), (0.85, 0.9)]
    ],
    3: [
        [
            (0.2, 0.15),
            (0.5, 0.07),
            (0.75, 0.2),
            (0.7, 0.4),
            (0.45, 0.48),
            (0.75, 0.6),
            (0.78, 0.8),
            (0.5, 0.93),
            (0.2, 0.85),
        ]
    ],
    4: [[(0.55, 0.08), (0.15, 0.65), (0.85, 0.65)], [(0.66, 0.35), (0.66, 0.93)]],
    5: [
        [
            (0.8, 0.1),
            (0.32, 0.1),
            (0.27, 0.45),
            (0.55, 0.4),
            (0.78, 0.55),
            (0.76, 0.8),
            (0.5, 0.93),
            (0.2, 0.85),
        ]
    ],
    6: [
        [
            (0.7, 0.08),
            (0.42, 0.3),
            (0.26, 0.6),
            (0.3, 0.85),
            (0.55, 0.93),
            (0.75, 0.76),
            (0.66, 0.56),
            (0.42, 0.54),
            (0.27, 0.66),
        ]
    ],
    7: [[(0.18, 0.12), (0.82, 0.12), (0.45, 0.92)]],
    8: [_ellipse(0.5, 0.28, 0.2, 0.19, np.pi / 2), _ellipse(0.5, 0.7, 0.25, 0.22, -np.pi / 2)],
    9: [_ellipse(0.5, 0.3, 0.23, 0.21), [(0.73, 0.3), (0.68, 0.6), (0.62, 0.93)]],
}


def pen_glyph(digit: int, stroke: float = 0.09, seed: int = 0, side: int = 200) -> np.ndarray:
    """Ink strength of `digit` drawn with a pen `stroke` wide (fraction of the height), with a
    little seeded wobble and slant so that no two are the same."""
    rng = np.random.default_rng(seed)
    slant = rng.uniform(-0.12, 0.12)
    image = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(image)
    width = max(1, round(stroke * side))
    for path in STROKES[digit]:
        points = [
            (
                (x + slant * (0.5 - y) + rng.normal(0, 0.01)) * side * 0.8 + side * 0.1,
                (y + rng.normal(0, 0.01)) * side * 0.8 + side * 0.1,
            )
            for x, y in path
        ]
        draw.line(points, fill=255, width=width, joint="curve")
        for x, y in (points[0], points[-1]):  # round pen ends
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
    glyph = np.asarray(image, dtype=np.float32) / 255
    rows = np.nonzero(glyph.any(1))[0]
    cols = np.nonzero(glyph.any(0))[0]
    return glyph[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def pen_photo(digit: int, look: Look, stroke: float = 0.09, seed: int = 0) -> Image.Image:
    return _compose(_place(pen_glyph(digit, stroke, seed), look), look, seed)


def font_glyph(text: str, size: int = 120) -> np.ndarray:
    """Ink strength of `text` in Pillow's built-in scalable font (present in every install)."""
    font = ImageFont.load_default(size=size)
    # The built-in font's box is whole pixels; typed as float for other fonts.
    left, top, right, bottom = (int(edge) for edge in font.getbbox(text))
    image = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(image).text((2 - left, 2 - top), text, fill=255, font=font)
    return np.asarray(image, dtype=np.float32) / 255


def number_photo(
    glyphs: list[np.ndarray], look: Look, gap: float = 0.25, seed: int = 0
) -> Image.Image:
    """Several glyphs side by side (a written number), `gap` × glyph height apart."""
    height = max(g.shape[0] for g in glyphs)
    spacing = round(gap * height)
    width = sum(g.shape[1] for g in glyphs) + spacing * (len(glyphs) - 1)
    strip = np.zeros((height, width), dtype=np.float32)
    x = 0
    for glyph in glyphs:
        top = (height - glyph.shape[0]) // 2
        strip[top : top + glyph.shape[0], x : x + glyph.shape[1]] = glyph
        x += glyph.shape[1] + spacing
    return _compose(_place(strip, look), look, seed)


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int) -> np.ndarray:
    """Two glyphs' ink (top-aligned) `gap` pixels apart; a negative gap overlaps them, so their
    strokes cross and no column of paper separates them."""
    width = left.shape[1] + right.shape[1] + gap
    strip = np.zeros((max(left.shape[0], right.shape[0]), width), np.float32)
    strip[: left.shape[0], : left.shape[1]] = left
    overlap = strip[: right.shape[0], width - right.shape[1] :]
    strip[: right.shape[0], width - right.shape[1] :] = np.maximum(overlap, right)
    return strip


def dark_on_light(strength: np.ndarray, scale: int = 6, margin: int = 8) -> Image.Image:
    """Ink strength at MNIST scale → a dark-on-light grey image `scale` times larger."""
    canvas = np.pad(strength, margin)
    grey = Image.fromarray(np.clip(255 - canvas * 255, 0, 255).astype(np.uint8))
    size = (canvas.shape[1] * scale, canvas.shape[0] * scale)
    return grey.resize(size, Image.Resampling.BICUBIC)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# Scans as digit collections ship them, and paper that is not blank: appended generators.


def tight_scan(
    digit: int,
    side: int = 16,
    stroke: float = 0.12,
    seed: int = 0,
    light_on_dark: bool = True,
    blur: float = 0.5,
    stretch: bool = False,
) -> Image.Image:
    """A digit cropped tight and scaled into a `side`×`side` grey scan, as digit collections
    ship them: its longer side fills the frame (centred along the other), or with `stretch`
    the digit is stretched to the whole square; strokes touch the frame. Ink bright on dark
    unless `light_on_dark` is False."""
    glyph = pen_glyph(digit, stroke, seed)
    big_side = side * 8
    if stretch:
        size = (big_side, big_side)
    else:
        ratio = big_side / max(glyph.shape)
        size = (max(8, round(glyph.shape[1] * ratio)), max(8, round(glyph.shape[0] * ratio)))
    placed = Image.fromarray((glyph * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    big = Image.new("L", (big_side, big_side), 0)
    big.paste(placed, ((big_side - size[0]) // 2, (big_side - size[1]) // 2))
    if blur:
        big = big.filter(ImageFilter.GaussianBlur(blur * 8))
    scan = np.asarray(big.resize((side, side), Image.Resampling.BOX), dtype=np.float32)
    scan = scan * (255.0 / max(float(scan.max()), 1.0))
    if not light_on_dark:
        scan = 255.0 - scan
    return Image.fromarray(np.clip(scan, 0, 255).astype(np.uint8), mode="L")


def two_level(image: Image.Image, mode: str = "1") -> Image.Image:
    """A grey image binarised at mid-grey: 1-bit ("1"), a two-colour palette ("P") or grey
    with only the levels 0 and 255 ("L")."""
    binary = image.convert("L").point(lambda v: 255 if v >= 128 else 0)
    if mode == "1":
        return binary.convert("1", dither=Image.Dither.NONE)
    if mode == "P":
        palette = binary.convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
        return palette
    return binary


def lined_paper(
    digit: int | None,
    kind: str,
    look: Look = Look(size=(240, 240), digit_height=0.55),
    seed: int = 0,
    line_ink: tuple[int, int, int] = (90, 110, 160),
    spacing: float = 0.22,
    stroke: float = 0.09,
) -> Image.Image:
    """A pen digit on paper with printed lines: "box" (a rectangle around it, with a margin
    outside), "cell" (the box cropped at its lines), "ruled" (horizontal lines across the
    whole width, `spacing` × the height apart, one through the digit) or "squared" (a grid).
    With `digit` None, the paper alone."""
    height, width = look.size[1], look.size[0]
    if digit is None:
        strength = np.zeros((height, width), dtype=np.float32)
    else:
        strength = _place(pen_glyph(digit, stroke, seed), look)
    lines = np.zeros((height, width), dtype=np.float32)
    thick = max(1, round(0.008 * height))
    if kind in ("box", "cell"):
        inset = 0 if kind == "cell" else round(0.08 * min(height, width))
        top, left, bottom, right = inset, inset, height - inset, width - inset
        lines[top : top + thick, left:right] = lines[bottom - thick : bottom, left:right] = 1
        lines[top:bottom, left : left + thick] = lines[top:bottom, right - thick : right] = 1
    elif kind in ("ruled", "squared"):
        step = round(spacing * height)
        offset = round(height / 2) % step  # one line through the middle of the digit
        for row in range(offset, height, step):
            lines[row : row + thick] = 1
        if kind == "squared":
            for col in range(round(width / 2) % step, width, step):
                lines[:, col : col + thick] = 1
    else:
        raise ValueError(f"unknown kind of paper: {kind}")
    rng = np.random.default_rng(seed)
    paper = np.array(look.paper, dtype=np.float32)
    pixels = paper * (1 - lines[..., None]) + np.array(line_ink, np.float32) * lines[..., None]
    ink = np.array(look.ink, dtype=np.float32)
    pixels = pixels * (1 - strength[..., None]) + ink * strength[..., None]
    if look.noise:
        pixels += rng.normal(0, look.noise, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def stroke_photo(
    points: list[tuple[float, float]],
    look: Look = Look(size=(480, 200)),
    stroke: float = 0.04,
    seed: int = 0,
) -> Image.Image:
    """A pen path (points in a unit box, x right, y down) drawn across the canvas, `stroke`
    × the canvas height wide: a bar, a long line, a scribble."""
    width, height = look.size
    image = Image.new("L", look.size, 0)
    pen = max(1, round(stroke * height))
    scaled = [(x * width, y * height) for x, y in points]
    ImageDraw.Draw(image).line(scaled, fill=255, width=pen, joint="curve")
    return _compose(np.asarray(image, dtype=np.float32) / 255, look, seed)


def scribble_points(seed: int = 0, turns: int = 12) -> list[tuple[float, float]]:
    """A seeded scribble: a zigzag wandering left to right with random heights."""
    rng = np.random.default_rng(seed)
    xs = np.linspace(0.05, 0.95, turns)
    ys = 0.5 + rng.uniform(-0.25, 0.25, turns) * np.where(np.arange(turns) % 2, 1, -1)
    return [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]


def border_shadow(image: Image.Image, side: str = "left", depth: float = 0.18) -> Image.Image:
    """The image with a soft dark shadow lying along one side (a hand or the phone over it)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width = pixels.shape[:2]
    across = np.arange(width if side in ("left", "right") else height, dtype=np.float32)
    if side in ("right", "bottom"):
        across = across[::-1]
    reach = depth * len(across)
    shade = np.clip(1.5 - across / reach, 0, 1) * 0.75  # solid near the edge, fading inward
    shade = shade[None, :] if side in ("left", "right") else shade[:, None]
    return Image.fromarray((pixels * (1 - shade[..., None])).astype(np.uint8), mode="RGB")


def non_digit_photo(pixels: np.ndarray, scale: int = 4) -> Image.Image:
    """A 28×28 (ink bright on dark, such as a generated non-digit) as dark ink on white paper,
    enlarged with a margin: what a person would upload."""
    ink = Image.fromarray(255 - pixels).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    return ImageOps.expand(ink, border=8 * scale, fill=255)
