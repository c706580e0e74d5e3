"""Real image → the 28×28 the model saw in training (the recipe in the design guide).

MNIST digits were size-normalised into a 20×20 box keeping their aspect ratio, anti-aliased, and
placed in 28×28 with their centre of mass at the centre. A photo, a canvas drawing or a scan has
to go through the same steps or the model guesses. `preprocess` does, for any image Pillow reads:

1. decode (first frame of animations, EXIF rotation applied), refuse decompression bombs,
   flatten transparency onto white, convert to grey at a bounded working size: large images
   shrunk, small ones (8×8 and up) enlarged so that their strokes are several pixels wide;
2. tell paper from ink: split a coarse copy into two levels (after removing a lighting
   gradient); the paper is the level covering most of the frame, or, in a tight crop that a
   thick digit fills, the level its strokes cut into more pieces (or the one along the
   border); then subtract a background fitted to the paper alone (one level where the paper
   is even, else a quadratic, which absorbs uneven lighting) and turn the ink bright on dark;
3. threshold half-way to the ink level (a quarter for hairlines) to locate the ink; take out
   printed lines (a box, ruled or squared paper), what lies along the frame's edge as a band
   (the table or a shadow around the paper) and specks of noise; no ink → a result with
   `pixels=None` and the reason, never a guessed digit;
4. crop to the ink, bring the stroke width to what MNIST strokes measure, resize the longer
   side to 20 px with anti-aliasing;
5. place in 28×28 with the centre of mass at MNIST's (14, 14).

Pillow decodes; the pixel work is NumPy and OpenCV (resizing, blurs, morphology and components:
each one C call where NumPy needs several passes). No torch: this is the prediction path.
docs/design.md, "Preprocessing", says why each step is built as it is.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digits.components import (
    Component,
    Line,
    find_lines,
    is_backdrop,
    label_components,
    line_pixels,
    mend_crossings,
    reaches_past,
    touches_frame,
)

PREPROCESSING_VERSION = "2"
"""Bumped whenever the output for the same input changes; recorded in exported models."""

ORIENTATION = 0x0112  # the EXIF tag saying how a photo was held

MAX_PIXELS = 64_000_000
"""Largest image accepted (width × height); bigger ones are refused as decompression bombs."""

WORK_SIDE = 320
"""Ink is located on the image shrunk by a whole factor to at most this many pixels on its longer
side (so between half this and this)."""

SMALL_SIDE = 64
"""Images whose longer side is shorter are enlarged by a whole factor to at least this: a 16×16
scan's strokes are one or two pixels wide, too thin to threshold and measure."""

MIN_SIDE = 8
"""Images smaller than this on either side cannot hold a recognisable digit."""

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
"""File suffixes taken as images where folders are walked (predict, labelled image folders)."""

FIELD = 28
BOX = 20
CENTRE = 14.0  # where MNIST's centre of mass sits (row, column), measured on the training set
NORM_SIDE = 80  # resolution at which the stroke width is measured and adjusted (4 × BOX)
STROKE_WIDTH = 10.0  # median MNIST stroke width at NORM_SIDE, measured with _stroke_width
MIN_CONTRAST = 24.0  # grey levels between ink and background below which nothing is written
HAIRLINE = 3.0  # strokes thinner than this (working pixels, mean, blurred) are cut lower
NOISY = 3.0  # paper noise (grey levels, robust deviation) above which fine strokes are noise
SPECK_FRACTION = 0.08  # components smaller than this share of the largest are noise
SPECK_SIZE = 0.03  # ...and so are those whose longer side is under this share of the image's
MAX_INK_FRACTION = 0.75  # more "ink" than this is a photo or a fill, not a written digit
BESIDE_INK = 0.2  # a piece clear of the frame this share of the shorter side long is writing
COARSE_SIDE = 32  # the background is fitted on a copy this small: lighting is smooth
MAJORITY = 0.6  # the level covering more than this share of the frame is the paper...
BORDER_MAJORITY = 0.7  # ...else the one holding this share of the frame's border, if one does
FLAT_PAPER = 3.0  # paper varying less than this (robust deviation, grey levels) is one level
OVERWHELMING = 0.8  # a level covering this share of the frame is the paper, however cut up...
MANY_MORE_PIECES = 3  # ...below it, a level in this many more pieces than the other is


class ImageError(ValueError):
    """An input that is not a usable image (unreadable, truncated, too large); names the input."""


@dataclass(frozen=True)
class Preprocessed:
    """The outcome for one image: the 28×28 the model sees, or the reason there is no digit."""

    pixels: np.ndarray | None
    """uint8 28×28, ink bright on dark, MNIST scale; None when there is no digit."""
    reason: str | None
    """Why there is no digit ("no digit: ..."); None when `pixels` is set."""
    source: str
    """The input's name, for messages: a path, or a description of the object given."""
    box: tuple[int, int, int, int] | None = None
    """(left, top, right, bottom) of the ink in the original image's pixels."""

    @property
    def ok(self) -> bool:
        return self.pixels is not None

    def save(self, path: str | Path) -> None:
        """Write the 28×28 as a PNG (what the model sees); an error if there is no digit."""
        if self.pixels is None:
            raise ValueError(f"{self.source}: nothing to save ({self.reason})")
        Image.fromarray(self.pixels, mode="L").save(path)


@dataclass(frozen=True)
class Ink:
    """Where the ink is, at working resolution: what both single digits and `read` start from."""

    strength: np.ndarray
    """float32 in [0, 1]: ink relative to the ink level, the background at 0 and 0.5 where the
    mask's edge lies (half-way up the strokes; lower for hairlines)."""
    labels: np.ndarray
    """Connected-component labels of the located ink (0 = none)."""
    components: list[Component]
    """The components kept (specks of noise dropped), largest first."""
    scale: float
    """Original pixels per working pixel."""


Source = str | Path | bytes | Image.Image | np.ndarray


def describe_source(source: Source) -> str:
    if isinstance(source, str | Path):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {'×'.join(map(str, source.shape))}>"
    if isinstance(source, Image.Image):
        return f"<image {source.width}×{source.height}>"
    return f"<{type(source).__name__}>"


def _check_size(width: int, height: int, name: str) -> None:
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{name}: image is {width}×{height} = {width * height:,} pixels, over the limit of "
            f"{MAX_PIXELS:,} (refused as a possible decompression bomb)"
        )


def _open(source: str | Path | bytes, name: str) -> tuple[Image.Image, int]:
    """Decode the first frame; and the longer side as stored (JPEG drafts decode smaller)."""
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{name}: no such file")
        if path.is_dir():
            raise ImageError(f"{name}: is a directory, not an image")
        data = path.read_bytes()
    else:
        data = source
    if not data:
        raise ImageError(f"{name}: empty file, not an image")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{name}: not an image (not a format Pillow reads: PNG, JPEG, BMP, GIF, WebP, TIFF…)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: not a readable image ({exc})") from None
    _check_size(image.width, image.height, name)
    longer_side = max(image.size)
    try:
        if image.format == "JPEG":
            # Decode JPEGs straight at a reduced scale: much faster, and we shrink anyway.
            image.draft(image.mode, (WORK_SIDE, WORK_SIDE))
        image.seek(0)  # the first frame of an animation
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: truncated or corrupt image ({exc})") from None
    if image.format == "JPEG":
        short = jpeg_short_of_data(data)
        if short:
            raise ImageError(f"{name}: truncated or corrupt image ({short})")
    return image, longer_side


HUFFMAN_FRAMES = frozenset({0xC0, 0xC1, 0xC2})  # baseline, extended, progressive (not arithmetic)


def _ceil(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _jpeg_frame(data: bytes) -> tuple[int, int, int, int] | None:
    """(frame marker, width, height, 8×8 blocks over all components) from a JPEG's header;
    None where the header cannot be walked (Pillow has judged it already)."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            body = data[at + 4 : at + 2 + length]
            if len(body) < 6 or len(body) < 6 + 3 * body[5]:
                return None
            height, width = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
            sampling = [(body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15) for i in range(body[5])]
            across = max((h for h, _ in sampling), default=0)
            down = max((v for _, v in sampling), default=0)
            if not across or not down:
                return None
            # A component sampled h of `across` spans ceil(width · h / across) pixels.
            blocks = sum(
                _ceil(_ceil(width * h, across), 8) * _ceil(_ceil(height * v, down), 8)
                for h, v in sampling
            )
            return marker, width, height, blocks
        if marker == 0xDA:  # start of scan before any frame header
            return None
        at += 2 + length
    return None


def jpeg_short_of_data(data: bytes) -> str | None:
    """Why a JPEG holds too few bytes for the size its header declares, or None.

    libjpeg fills whatever the data does not reach with grey and only warns, so Pillow returns a
    complete-looking image for a file cut short or a header that lies about the size (a
    112×112 image claiming 6000×6000). Huffman coding spends at least one bit on every 8×8
    block of every component (its DC code), which bounds the file's size from below; real
    files hold several times that."""
    frame = _jpeg_frame(data)
    if frame is None:
        return None
    marker, width, height, blocks = frame
    if marker not in HUFFMAN_FRAMES or not width or not height or len(data) >= blocks // 8:
        return None
    return (
        f"{len(data):,} bytes cannot hold the {width}×{height} pixels its header declares "
        f"(at least {blocks // 8:,} needed)"
    )


def _flatten_alpha(rgba: np.ndarray) -> np.ndarray:
    """uint8 grey of an RGBA (or grey + alpha) array laid on white."""
    # Compositing onto white is linear in the grey level: 255 - (255 - grey) * alpha.
    if rgba.shape[2] == 2:
        grey, alpha = rgba[..., 0], rgba[..., 1]
    else:
        grey, alpha = cv2.cvtColor(rgba, cv2.COLOR_RGBA2GRAY), rgba[..., 3]
    return 255 - cv2.multiply(255 - grey, alpha, scale=1.0 / 255.0)


def _working(grey: np.ndarray) -> tuple[np.ndarray, float]:
    """Grey (uint8 or float32) → float32 at working size, shrunk by a whole factor to at most
    WORK_SIDE or enlarged by one to at least SMALL_SIDE; and the given pixels per working
    pixel."""
    height, width = grey.shape
    longer = max(height, width)
    if longer > WORK_SIDE:
        # Whole-number box averaging, of the image trimmed to a multiple of the factor (the
        # last few rows and columns): anti-aliased, and OpenCV's fastest resize by far.
        factor = min(-(-longer // WORK_SIDE), min(height, width))
        rows, cols = height // factor, width // factor
        trimmed = grey[: rows * factor, : cols * factor]
        return cv2.resize(trimmed, (cols, rows), interpolation=cv2.INTER_AREA).astype(
            np.float32, copy=False
        ), float(factor)
    if longer < SMALL_SIDE:
        # Bilinear: a tiny scan's levels become smooth strokes several pixels wide, which the
        # threshold follows; nearest-neighbour would keep the staircase of its pixels.
        factor = -(-SMALL_SIDE // longer)
        grey = cv2.resize(  # in floats: OpenCV rounds 8-bit interpolation, light and dark unevenly
            grey.astype(np.float32),
            (width * factor, height * factor),
            interpolation=cv2.INTER_LINEAR,
        )
        return grey, 1.0 / factor
    return grey.astype(np.float32, copy=False), 1.0


def _grey(image: Image.Image, name: str = "image") -> tuple[np.ndarray, float]:
    """float32 grey 0..255 at working size, transparency flattened onto white; and the
    image's pixels per working pixel. ImageError, naming `name`, for a mode it cannot read."""
    if image.getexif().get(ORIENTATION, 1) != 1:
        # Only then: without a rotation to apply, Pillow would still copy the whole image.
        image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # NaN and infinities (float TIFFs) carry no level: read as black, as the array path's
        # clip would leave them nowhere in particular.
        values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(values.max()) if values.size else 0.0
        if top > 255:  # 16-bit scans: rescale to 8-bit levels
            values = values * np.float32(255.0 / (65535.0 if top <= 65535 else top))
        elif image.mode == "F" and top <= 1.0:
            values = values * np.float32(255.0)  # float images in [0, 1], as for arrays
        return _working(np.clip(values, 0.0, 255.0))
    if image.mode in ("RGBA", "LA") and "transparency" not in image.info:
        return _working(_flatten_alpha(np.asarray(image)))
    if image.mode in ("PA", "RGBa", "La") or "transparency" in image.info:
        return _working(_flatten_alpha(np.asarray(image.convert("RGBA"))))
    if image.mode == "RGB":
        return _working(cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY))
    if image.mode == "LAB":
        # Pillow converts LAB to nothing; its first band is the lightness, a grey already.
        return _working(np.asarray(image.getchannel(0)))
    # "1" (1-bit), "P" (palettes), CMYK, YCbCr...: Pillow's conversion; "L" passes as it is.
    if image.mode == "L":
        return _working(np.asarray(image))
    try:
        grey = image.convert("L")
    except ValueError:  # a mode Pillow converts only to RGB (HSV) or not at all
        try:
            grey = image.convert("RGB").convert("L")
        except ValueError:
            raise ImageError(f"{name}: images in mode {image.mode} cannot be read") from None
    return _working(np.asarray(grey))


def _array_grey(array: np.ndarray, name: str) -> tuple[np.ndarray, float]:
    values = np.asarray(array)
    if values.ndim == 3 and values.shape[2] in (3, 4):
        scaled = values * 255.0 if values.dtype.kind == "f" and values.max() <= 1.0 else values
        colour = np.ascontiguousarray(np.clip(scaled, 0, 255).astype(np.uint8))
        if colour.shape[2] == 4:
            return _working(_flatten_alpha(colour))
        return _working(cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY))
    if values.ndim != 2:
        raise ImageError(f"{name}: expected a grey H×W or colour H×W×3/4 array")
    if values.dtype == bool:
        values = values.astype(np.float32) * 255.0
    elif values.dtype.kind == "f" and values.size and values.max() <= 1.0:
        values = values.astype(np.float32) * 255.0  # float images in [0, 1]
    return _working(np.clip(values, 0, 255).astype(np.float32))


def load_grey(source: Source, name: str | None = None) -> tuple[np.ndarray, float]:
    """Decode any supported input to float32 grey at working size, and the factor from working
    pixels to the original's (above 1 for shrunk images, below 1 for enlarged ones)."""
    name = name or describe_source(source)
    if isinstance(source, np.ndarray):
        _check_size(source.shape[1] if source.ndim > 1 else 1, source.shape[0], name)
        return _array_grey(source, name)
    if isinstance(source, Image.Image):
        _check_size(source.width, source.height, name)
        image, original = source, max(source.size)
    elif isinstance(source, str | Path | bytes):
        image, original = _open(source, name)
    else:
        raise ImageError(f"{name}: unsupported input type {type(source).__name__}")
    # EXIF rotation swaps the sides, not the longer one, so the scale holds either way; a JPEG
    # decoded at reduced scale (draft) has fewer pixels than the file says.
    grey, per = _grey(image, name)
    return grey, per * original / max(image.size)


def _sample(values: np.ndarray, limit: int = 2048) -> np.ndarray:
    """An even subsample of at most ~`limit` values: medians and percentiles of a whole image
    cost more than everything else here, and a few thousand pixels estimate them as well."""
    flat = values.ravel()
    return flat[:: max(1, len(flat) // limit)]


def _quantile(values: np.ndarray, q: float) -> float:
    """The q-quantile of a 1-D array of a few thousand values, interpolated between ranks as
    NumPy's is (so that the median of an image and of its negative mirror each other).
    Sorted outright: NumPy's partial sort slows tenfold on repeated values, which images are
    full of (flat paper), while sorting a few thousand values takes microseconds."""
    return _at(np.sort(values), q)


@functools.lru_cache(maxsize=64)
def _terms(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """The quadratic surface's terms (1, x, y, x², xy, y²) at each pixel of a rows×cols grid,
    pixels × terms and its transpose (both contiguous: the fit multiplies by each)."""
    y = np.repeat((np.arange(rows) + 0.5) / rows - 0.5, cols)
    x = np.tile((np.arange(cols) + 0.5) / cols - 0.5, rows)
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    across = np.ascontiguousarray(terms.T)
    terms.flags.writeable = across.flags.writeable = False  # shared between calls by the cache
    return terms, across


def _fit(
    values: np.ndarray, terms: tuple[np.ndarray, np.ndarray], keep: np.ndarray, rounds: int
) -> np.ndarray:
    """Robust least squares of `values` on `terms` (see `_terms`; the first k columns for a
    k-term surface), from the pixels `keep` (the paper): each round refits on those within 2.5
    robust deviations of the last fit, never outside `keep`."""
    along, across = terms
    allowed, count = keep, along.shape[1]
    coefficients = np.zeros(count)
    ridge = 1e-3 * np.eye(count)
    for round_ in range(rounds):
        if np.count_nonzero(keep) < 4 * count:
            if round_ == 0:  # too few pixels to fit a surface to: their level, flat
                coefficients[0] = _quantile(values[keep] if keep.any() else values, 0.5)
            break
        # Normal equations of the kept pixels (weights 0 or 1), with a touch of ridge: small,
        # much cheaper than lstsq, and stable when the kept pixels leave a term unconstrained.
        weighted = across * keep
        coefficients = np.linalg.solve(weighted @ along + ridge, weighted @ values)
        if round_ == rounds - 1:
            break  # the last fit: no next round to choose pixels for
        deviation = np.abs(values - along @ coefficients)
        spread = 1.4826 * _quantile(deviation[keep], 0.5) + 1.0
        keep = allowed & (deviation < 2.5 * spread)
    return coefficients


def _at(ordered: np.ndarray, q: float) -> float:
    """The q-quantile of sorted values, interpolated between ranks as NumPy's is."""
    rank = q * (len(ordered) - 1)
    below = int(rank)
    above = min(below + 1, len(ordered) - 1)
    return float(ordered[below] + (ordered[above] - ordered[below]) * (rank - below))


def _median_spread(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Sorted values, their median and their robust spread (1.4826 × the median absolute
    deviation: the standard deviation, were they normal)."""
    ordered = np.sort(values)
    middle = _at(ordered, 0.5)
    return ordered, middle, 1.4826 * _quantile(np.abs(values - middle), 0.5)


def _otsu(ordered: np.ndarray) -> tuple[float, float, float]:
    """Otsu's two-level split of a few hundred sorted values: (threshold, mean below, mean
    above); values up to the threshold are the lower level."""
    below = np.arange(1, len(ordered))
    total = np.cumsum(ordered)
    low = total[:-1] / below
    high = (total[-1] - total[:-1]) / (len(ordered) - below)
    between = below * (len(ordered) - below) * (high - low) ** 2
    between[ordered[1:] <= ordered[:-1]] = -1.0  # split only between distinct levels
    best = int(np.argmax(between))
    if between[best] < 0:
        return float(ordered[0]), float(ordered[0]), float(ordered[0])
    return float(ordered[best]), float(low[best]), float(high[best])


def _pieces(level: np.ndarray) -> int:
    """Sizeable pieces of one level of the coarse copy (1 % of it or more), 8-connected: a
    thin stroke stepping diagonally is one piece, not one per step."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(level.view(np.uint8), connectivity=8)
    return int(np.count_nonzero(stats[1:, cv2.CC_STAT_AREA] >= 0.01 * level.size))


def _paper(
    coarse: np.ndarray, terms: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, int | None]:
    """Which pixels of the coarse copy are paper, and the sign that turns the ink bright (+1:
    the ink is already lighter); None when the image has no two clear levels (blank, or ink
    too thin to show at this size), where the paper is what lies near the median.

    The two levels are Otsu's split of the copy with a lighting gradient taken out first (a
    plane fitted from the grey levels near the median), so that a lamp to one side does not
    split the paper in two. The level covering most of the frame is the paper, unless it is
    in one or two pieces and the other level in many more: a thick digit filling a tight crop,
    its strokes cutting the background into the bays and holes between them. When neither
    level covers most of the frame, the paper is the level in more pieces; if both are in as
    many, the level holding most of the frame's border.
    """
    values = coarse.ravel()
    ordered, middle, spread = _median_spread(values)
    near = np.abs(values - middle) < 2.5 * (spread + 1.0)
    flat = values
    if spread >= FLAT_PAPER:  # (an evenly lit majority, a canvas or a scan, has no gradient)
        plane = (terms[0][:, :3], terms[1][:3])
        flat = values - plane[0] @ _fit(values, plane, near, 1)
        ordered = np.sort(flat)
    threshold, low_mean, high_mean = _otsu(ordered)
    if high_mean - low_mean < MIN_CONTRAST:
        return near, None
    low = (flat <= threshold).reshape(coarse.shape)
    share = np.count_nonzero(low) / low.size
    paper_is_low = bool(share > 0.5)
    if max(share, 1 - share) < OVERWHELMING:
        pieces_low, pieces_high = _pieces(low), _pieces(~low)
        ring = np.concatenate([low[0], low[-1], low[1:-1, 0], low[1:-1, -1]])
        border = np.count_nonzero(ring) / ring.size
        if abs(pieces_low - pieces_high) >= MANY_MORE_PIECES:
            paper_is_low = pieces_low > pieces_high  # a thick digit filling a tight crop
        elif max(share, 1 - share) >= MAJORITY:
            pass
        elif pieces_low != pieces_high:
            paper_is_low = pieces_low > pieces_high
        elif max(border, 1 - border) >= BORDER_MAJORITY:
            paper_is_low = bool(border > 0.5)
    paper = low.ravel() if paper_is_low else ~low.ravel()
    return paper, 1 if paper_is_low else -1


def _one_level_paper(coarse: np.ndarray) -> tuple[float, int] | None:
    """The paper's level and the ink's sign for the commonest input, a canvas drawing or a clean
    scan: the whole border and most of the frame one exact grey level, every other pixel clearly
    to one side of it. `_paper` and the flat fit in `_background` come to the same level and
    sign for such an image (a level over OVERWHELMING of the frame is the paper; its median
    and spread are its own); this gets there in a few whole-array steps. None for any other
    image, which takes the general path."""
    level = coarse[0, 0]
    ring = np.concatenate([coarse[0], coarse[-1], coarse[1:-1, 0], coarse[1:-1, -1]])
    if not (ring == level).all():
        return None
    paper = coarse == level
    if np.count_nonzero(paper) < OVERWHELMING * paper.size:
        return None
    ink = coarse[~paper] - level
    if ink.size == 0:
        return None  # blank: the general path says so, and why
    lighter = ink > 0
    if lighter.any() and not lighter.all():
        return None  # ink on both sides of the paper
    # Clearly apart: Otsu's two levels then differ by more than MIN_CONTRAST whatever the split.
    if float(np.abs(ink).mean()) < 3 * MIN_CONTRAST:
        return None
    return float(level), 1 if lighter[0] else -1


def _background(grey: np.ndarray) -> tuple[np.ndarray, int | None]:
    """A smooth background surface at full size (1×1 where it is flat), and the ink's sign
    (see `_paper`).

    Uneven lighting (a lamp to one side, a vignette, a shadow gradient) is smooth across the
    frame, so a quadratic captures it while ink, thin and sharp, stays far from the fit. It is
    fitted to the paper alone: fitted to everything, it would bend to a digit filling a tight
    crop and take the digit for background.
    """
    height, width = grey.shape
    # Whole-number box averaging, on the image trimmed to a multiple of the factor (a few
    # pixels at the far edges): OpenCV's fast path, several times cheaper than any other size.
    factor = max(1, min(-(-max(height, width) // COARSE_SIDE), min(height, width) // 2))
    rows, cols = height // factor, width // factor
    coarse = grey[: rows * factor, : cols * factor]
    if factor > 1:
        coarse = cv2.resize(coarse, (cols, rows), interpolation=cv2.INTER_AREA)
    coarse = coarse.astype(np.float64)
    flat = _one_level_paper(coarse)
    if flat is not None:
        return np.full((1, 1), flat[0], dtype=np.float32), flat[1]
    terms = _terms(rows, cols)
    paper, sign = _paper(coarse, terms)
    if sign is not None:
        # The paper's core: its pixels next to ink are half ink (anti-aliasing, blur) and, in
        # a tight crop where paper is the bays and holes between strokes, most of it.
        core = cv2.erode(paper.reshape(rows, cols).view(np.uint8), np.ones((3, 3), np.uint8))
        if np.count_nonzero(core) >= max(24, 0.1 * np.count_nonzero(paper)):
            paper = core.view(bool).ravel()
    values = coarse.ravel()
    level = values[paper] if paper.any() else values
    _, middle, spread = _median_spread(level)
    if spread < FLAT_PAPER:
        # Evenly lit paper (scans, canvases): one level. A surface fitted to the paper of a
        # tight crop, in bits between the strokes, would bulge or tilt between them.
        return np.full((1, 1), middle, dtype=np.float32), sign
    c0, c1, c2, c3, c4, c5 = _fit(values, terms, paper, 2)
    if abs(c1) + abs(c2) + (abs(c3) + abs(c4) + abs(c5)) / 2 < 1.0:
        # Under a grey level from corner to corner (scans, canvases): a constant will do, one
        # operation on the image instead of three.
        return np.full((1, 1), c0, dtype=np.float32), sign
    # The surface at every pixel, in the coarse grid's coordinates (which end at the trim).
    gy = ((np.arange(height, dtype=np.float32) + 0.5) / (rows * factor) - 0.5)[:, None]
    gx = ((np.arange(width, dtype=np.float32) + 0.5) / (cols * factor) - 0.5)[None, :]
    # Grouped by rows and columns so that only three operations touch the full image.
    along_x = (c0 + c1 * gx + c3 * gx * gx).astype(np.float32)
    slope_y = (c2 + c4 * gx).astype(np.float32)
    return along_x + gy * slope_y + np.float32(c5) * gy * gy, sign


def dilate(mask: np.ndarray) -> np.ndarray:
    """A mask grown by one pixel in all eight directions (a 3×3 maximum)."""
    grown = cv2.dilate(np.asarray(mask, dtype=bool).view(np.uint8), np.ones((3, 3), np.uint8))
    return grown.view(bool)


def _darker_ink(residual: np.ndarray, floor: float) -> bool:
    """For images without two clear levels: whichever side of the background holds more
    contrast is ink, counting pixels at least MIN_CONTRAST away, weighted by the square of how
    far (a large faint patch does not outvote the strokes; hairlines still count)."""
    strong = max(floor, MIN_CONTRAST)
    sample = _sample(residual, 65536)
    darker = sample[sample < -strong]
    lighter = sample[sample > strong]
    return float(np.dot(darker, darker)) > float(np.dot(lighter, lighter))


def _significant(mask: np.ndarray) -> np.ndarray:
    """The mask without specks (pieces short beside the image or tiny beside the largest)."""
    labels, components = label_components(mask)
    shortest = max(3.0, SPECK_SIZE * max(mask.shape))
    strokes = [c for c in components if max(c.height, c.width) >= shortest]
    kept = [c.label for c in strokes if c.area >= SPECK_FRACTION * strokes[0].area]
    return np.isin(labels, kept) if kept else np.zeros(mask.shape, dtype=bool)


def _printed_lines(mask: np.ndarray) -> list[Line]:
    """Printed lines in the mask (a box around the digit, ruled or squared paper): straight
    thin lines across most of the image that run past the rest of the ink at both ends. A
    line alone, with no other ink, is left: one stroke across the image may be a 1, or a
    dash that is not a digit, but it is not paper; ruled paper has several."""
    lines = find_lines(mask)
    if not lines:
        return []
    pixels = [line_pixels(mask, line) for line in lines]
    rest = _significant(mask & ~np.logical_or.reduce(pixels))
    if not rest.any() and len(lines) == 1:
        return []
    return [line for line in lines if reaches_past(line, rest)]


def _noise(residual: np.ndarray) -> float:
    """The noise, from the paper's side of the background only: ink lies on the other side,
    and where it fills much of a tight crop it would inflate a two-sided estimate."""
    sample = _sample(residual)
    paper_side = -sample[sample < 0]
    return 1.4826 * _quantile(paper_side, 0.5) if paper_side.size else 0.0


def _threshold(residual: np.ndarray, floor: float) -> tuple[float, np.ndarray] | str:
    """The ink level (the 90th percentile of what stands out above `floor`) and the mask cut
    half-way up to it; or why there is no ink."""
    candidates = _sample(residual[residual > floor])
    if candidates.size == 0:
        return "no digit: the image is blank (nothing stands out from the background)"
    level = _quantile(candidates, 0.9)
    if level < MIN_CONTRAST:
        return f"no digit: the marks are too faint (contrast {level:.0f} of 255)"
    return level, residual > max(level / 2, floor)


def locate_ink(grey: np.ndarray, scale: float = 1.0) -> Ink | str:
    """Find the ink in a working-size grey image; a "no digit: ..." reason when there is none."""
    height, width = grey.shape
    if min(height, width) * scale < MIN_SIDE:
        return (
            f"no digit: the image is {round(width * scale)}×{round(height * scale)} pixels, "
            "too small to hold one"
        )
    background, sign = _background(grey)
    if sign is None:
        residual = grey - background
        sample = _sample(residual)
        spread = 1.4826 * _quantile(np.abs(sample - _quantile(sample, 0.5)), 0.5)
        sign = -1 if _darker_ink(residual, max(4.0 * spread, MIN_CONTRAST / 2)) else 1
        if sign < 0:
            residual = -residual
    else:
        # Dark ink on light paper is turned bright, as in MNIST.
        residual = grey - background if sign > 0 else background - grey
    # A 3×3 binomial blur evens out sensor and JPEG noise and the staircase of pixels enlarged
    # by nearest-neighbour before thresholding; strokes at working size are several pixels
    # wide and survive it. Images enlarged here are smooth already (bilinear).
    sharp = residual
    if min(height, width) >= 64 and scale >= 1:
        residual = cv2.GaussianBlur(residual, (3, 3), 0)
    noise = _noise(residual)
    floor = max(4.0 * noise, MIN_CONTRAST / 2)
    found = _threshold(residual, floor)
    if isinstance(found, str):
        return found
    level, mask = found
    cut = 0.5  # of the ink level: where the mask's edge lies, half-way up the strokes
    if _stroke_width(mask) < HAIRLINE and _noise(sharp) < NOISY:
        # A clean hairline: its contrast is spread over the two pixel rows it straddles,
        # each under half the level where it does, and the blur halves it again. Unblurred,
        # cut at a quarter of the level, or a 2 loses its base. (On a noisy image, noise
        # would pass for such fine strokes.)
        residual = sharp
        floor = max(4.0 * _noise(residual), MIN_CONTRAST / 2)
        found = _threshold(residual, floor)
        if isinstance(found, str):
            return found
        level, _ = found
        cut = 0.25
        mask = residual > max(cut * level, floor)
    if np.count_nonzero(mask) > MAX_INK_FRACTION * mask.size:
        return "no digit: ink would cover most of the image (a photo or a fill, not a digit)"
    printed = _printed_lines(mask)
    if printed:
        mask, level = _without_lines(residual, mask, printed, floor, level, cut)
        if not mask.any():
            return "no digit: only printed lines (a box, ruled or squared paper), no writing"
    labels, components = label_components(mask)
    # The table or a shadow around the paper in a photo: ink-coloured, but lying as a band
    # along a long stretch of the frame's edge, which strokes of a digit never do.
    clear = [c for c in components if not touches_frame(mask.shape, c)]
    beside_ink = any(max(c.height, c.width) >= BESIDE_INK * min(height, width) for c in clear)
    components = [c for c in components if not is_backdrop(labels, c, beside_ink)]
    if not components:
        return "no digit: only the edge of the paper or a shadow along the border"
    # Specks: pieces too short to be a stroke at this image size, or tiny beside the largest.
    shortest = max(3.0, SPECK_SIZE * max(height, width))
    strokes = [c for c in components if max(c.height, c.width) >= shortest]
    if not strokes:
        return "no digit: only specks of noise, no stroke large enough to be a digit"
    kept = [c for c in strokes if c.area >= SPECK_FRACTION * strokes[0].area]
    # Strength 0.5 where the mask's edge lies: `normalise_digit` outlines the digit there.
    strength = residual * np.float32(0.5 / (cut * level))
    # (Two ufuncs with `out`: np.clip's dispatch costs more than the clipping at these sizes.)
    np.minimum(strength, 1.0, out=strength)
    np.maximum(strength, 0.0, out=strength)
    return Ink(strength=strength, labels=labels, components=kept, scale=scale)


def _without_lines(
    residual: np.ndarray,
    mask: np.ndarray,
    printed: list[Line],
    floor: float,
    level: float,
    cut: float,
) -> tuple[np.ndarray, float]:
    """The mask with printed lines taken out, thresholded again without them (dark printed
    lines would otherwise set the ink level and lose a pencil digit), strokes that cross a
    line mended across it; and the ink level of what is left. The lines' own contrast is
    cleared from `residual`, so that no trace of them reaches the digit's crop."""
    zone = dilate(np.logical_or.reduce([line_pixels(mask, line) for line in printed]))
    candidates = _sample(residual[~zone & (residual > floor)])
    if candidates.size:
        level = max(MIN_CONTRAST, _quantile(candidates, 0.9))
    ink = residual > max(cut * level, floor)
    rest = ink & ~zone
    for line in printed:
        mend_crossings(rest, ink, line, reach=1)  # the zone reaches a pixel past the line
    residual[zone & ~rest] = 0.0
    return rest, level


def ink_crop(ink: Ink, components: list[Component]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The ink strength of some components alone, cropped to them; and the box (l, t, r, b)."""
    top = min(c.top for c in components)
    left = min(c.left for c in components)
    bottom = max(c.bottom for c in components)
    right = max(c.right for c in components)
    region = ink.labels[top:bottom, left:right]
    if len(components) == 1:
        wanted = region == components[0].label
    else:
        wanted = np.isin(region, [c.label for c in components])
    # The mask sits half-way up the stroke edges; a one-pixel dilation keeps their anti-aliasing.
    crop = ink.strength[top:bottom, left:right] * dilate(wanted)
    return crop.astype(np.float32, copy=False), (left, top, right, bottom)


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary shape: twice its area over its boundary length."""
    ink = mask.view(np.uint8) if mask.dtype == bool else mask
    interior = cv2.erode(ink, _CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    area = cv2.countNonZero(ink)
    return 2.0 * area / max(area - cv2.countNonZero(interior), 1)


def _resize_longest(values: np.ndarray, side: int) -> np.ndarray:
    """float32 resized so that its longer side is `side`: shrunk by box averaging (anti-aliased),
    a whole factor first (OpenCV's fast path) and bilinear for the rest; enlarged bilinearly."""
    values = values.astype(np.float32, copy=False)
    height, width = values.shape
    # Bounded by the shorter side too: a long thin crop (1000×20 shrunk to 80) trimmed to whole
    # factors would otherwise have no rows left.
    factor = min(max(height, width) // side, min(height, width))
    if factor > 1:
        values = values[: height - height % factor, : width - width % factor]
        height, width = height // factor, width // factor
        values = cv2.resize(values, (width, height), interpolation=cv2.INTER_AREA)
    ratio = side / max(height, width)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    if size == (width, height):
        return values
    method = cv2.INTER_AREA if ratio < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(values, size, interpolation=method)


def _tight(mask: np.ndarray) -> np.ndarray:
    left, top, width, height = cv2.boundingRect(mask.view(np.uint8))
    return mask[top : top + height, left : left + width]


@functools.lru_cache(maxsize=16)
def _pen(size: int) -> np.ndarray:
    """A round pen tip `size` pixels across (odd), for growing or thinning strokes."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _target_width(width: float) -> float:
    """The stroke width a shape is brought to (at NORM_SIDE): unchanged within MNIST's band
    (0.6 to 1.7 × its median), a hairline towards 0.8 ×, a blob towards 1.3 ×. Continuous at
    the band's edges, so that a width just outside it moves a pixel, not five, and two
    renderings of one digit on either side of an edge still come out alike."""
    low, high = 0.6 * STROKE_WIDTH, 1.7 * STROKE_WIDTH
    if width < low:
        return low + (low - width) / low * (0.8 * STROKE_WIDTH - low)
    if width > high:
        return max(1.3 * STROKE_WIDTH, high - (width - high))
    return width


def normalise_digit(crop: np.ndarray) -> np.ndarray | None:
    """Cropped ink strength (float, ink bright) → uint8 28×28 as MNIST; None if nothing is left."""
    if crop.size == 0:
        return None
    shrink = max(crop.shape) / NORM_SIDE
    if shrink >= 1.5:
        # A hairline a pixel wide would average away under the threshold when shrunk: widen
        # every stroke by the shrink factor first (a pixel at NORM_SIDE, next to nothing
        # beside MNIST's ten; the stroke width is set below anyway).
        reach = round(shrink)
        crop = cv2.dilate(crop, np.ones((reach, reach), np.uint8))
    shape = _resize_longest(crop, NORM_SIDE) >= 0.5
    if not shape.any():
        return None
    shape = _tight(shape)
    # Pens and markers make strokes from hairlines to blobs; MNIST's are ~2.5 px at 28×28.
    # Bring the width within a band around MNIST's by growing or shrinking the shape with a
    # round pen (2k pixels of width for a pen 2k + 1 across).
    width = _stroke_width(shape)
    image: np.ndarray = cv2.copyMakeBorder(
        shape.view(np.uint8), 8, 8, 8, 8, cv2.BORDER_CONSTANT, value=0
    )
    radius = round((_target_width(width) - width) / 2)
    if radius > 0:
        image = cv2.dilate(image, _pen(2 * min(radius, 7) + 1))
    elif radius < 0:
        thinner = cv2.erode(image, _pen(2 * min(-radius, 7) + 1))
        if cv2.countNonZero(thinner):
            image = thinner
    shape = _tight(image.view(bool))
    small = _resize_longest(shape.view(np.uint8).astype(np.float32), BOX)
    np.minimum(small, 1.0, out=small)
    np.maximum(small, 0.0, out=small)
    # The centre of mass from the row and column sums, pixel (r, c) counted at (r, c) as MNIST's
    # measurement did. Not cv2.moments: it takes an N×2 array for a list of N points, so a
    # digit two pixels wide at 20 px (a plain 1) had no mass at all.
    mass = float(small.sum())
    centre_row = float(small.sum(axis=1) @ np.arange(small.shape[0], dtype=np.float32)) / mass
    centre_col = float(small.sum(axis=0) @ np.arange(small.shape[1], dtype=np.float32)) / mass
    top = min(max(round(CENTRE - centre_row), 0), FIELD - small.shape[0])
    left = min(max(round(CENTRE - centre_col), 0), FIELD - small.shape[1])
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top : top + small.shape[0], left : left + small.shape[1]] = small
    return np.round(field * 255.0).astype(np.uint8)


def preprocess(
    source: Source, *, name: str | None = None, debug_path: str | Path | None = None
) -> Preprocessed:
    """One image (path, bytes, PIL image or array) → the 28×28 the model sees, or why not.

    Raises ImageError for inputs that are not usable images; returns `pixels=None` with a
    reason for images without a digit. `debug_path` saves the 28×28 produced as a PNG.
    """
    name = name or describe_source(source)
    grey, scale = load_grey(source, name)
    ink = locate_ink(grey, scale)
    if isinstance(ink, str):
        return Preprocessed(None, ink, name)
    crop, (left, top, right, bottom) = ink_crop(ink, ink.components)
    pixels = normalise_digit(crop)
    if pixels is None:
        return Preprocessed(None, "no digit: the ink vanished at MNIST scale", name)
    box = (
        int(left * scale),
        int(top * scale),
        int(np.ceil(right * scale)),
        int(np.ceil(bottom * scale)),
    )
    result = Preprocessed(pixels, None, name, box)
    if debug_path is not None:
        result.save(debug_path)
    return result
