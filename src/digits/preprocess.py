"""Real image → the 28×28 the model saw in training (the recipe in the design guide).

MNIST digits were size-normalised into a 20×20 box keeping their aspect ratio, anti-aliased, and
placed in 28×28 with their centre of mass at the centre. A photo or a canvas drawing has to go
through the same steps or the model guesses. `preprocess` does, for any image Pillow reads:

1. decode (first frame of animations, EXIF rotation applied), refuse decompression bombs,
   flatten transparency onto white, convert to grey at a bounded working size;
2. subtract a smooth background (a quadratic surface fitted robustly, which absorbs uneven
   lighting); decide the polarity from what departs from that background, so that the ink ends
   up bright on dark;
3. threshold half-way to the ink level to locate the ink, drop specks of noise and what lies
   along the frame's edge (the table or a shadow around the paper);
   no ink → a result with `pixels=None` and the reason, never a guessed digit;
4. crop to the ink, bring the stroke width to what MNIST strokes measure, resize the longer
   side to 20 px with anti-aliasing;
5. place in 28×28 with the centre of mass at MNIST's (14, 14).

Pillow and NumPy only: this runs in the torch-free prediction install.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from digits.components import Component, label_components

PREPROCESSING_VERSION = "1"
"""Bumped whenever the output for the same input changes; recorded in exported models."""

MAX_PIXELS = 64_000_000
"""Largest image accepted (width × height); bigger ones are refused as decompression bombs."""

WORK_SIDE = 320
"""Ink is located on the image shrunk by a whole factor to at most this many pixels on its longer
side (so between half this and this)."""

MIN_SIDE = 8
"""Images smaller than this on either side cannot hold a recognisable digit."""

FIELD = 28
BOX = 20
CENTRE = 14.0  # where MNIST's centre of mass sits (row, column), measured on the training set
NORM_SIDE = 80  # resolution at which the stroke width is measured and adjusted (4 × BOX)
STROKE_WIDTH = 10.0  # median MNIST stroke width at NORM_SIDE, measured with _stroke_width
MIN_CONTRAST = 24.0  # grey levels between ink and background below which nothing is written
SPECK_FRACTION = 0.08  # components smaller than this share of the largest are noise
SPECK_SIZE = 0.03  # ...and so are those whose longer side is under this share of the image's
MAX_INK_FRACTION = 0.6  # more "ink" than this is a photo or a fill, not a written digit
BACKDROP_CONTACT = 0.15  # ink along more than this share of the frame's edge is not a digit


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
    """float32 in [0, 1]: ink, relative to the ink level, with the background at 0."""
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
    return image, longer_side


def _grey(image: Image.Image) -> np.ndarray:
    """float32 grey 0..255 with transparency flattened onto white, shrunk to WORK_SIDE."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = float(values.max()) if values.size else 0.0
        if top > 255:  # 16-bit scans: rescale to 8-bit levels
            values = values * (255.0 / (65535.0 if top <= 65535 else top))
        image = Image.fromarray(values.astype(np.float32), mode="F")
    elif image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba).convert("L")
    else:
        image = image.convert("L")
    if max(image.size) > WORK_SIDE:
        # Whole-number box averaging: several times faster than a resize, and as anti-aliased.
        image = image.reduce(-(-max(image.size) // WORK_SIDE))
    return np.asarray(image, dtype=np.float32)


def _array_grey(array: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(array)
    if values.ndim == 3 and values.shape[2] in (3, 4):
        mode = "RGBA" if values.shape[2] == 4 else "RGB"
        scaled = values * 255.0 if values.dtype.kind == "f" and values.max() <= 1.0 else values
        return _grey(Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode=mode))
    if values.ndim != 2:
        raise ImageError(f"{name}: expected a grey H×W or colour H×W×3/4 array")
    if values.dtype == bool:
        values = values.astype(np.float32) * 255.0
    elif values.dtype.kind == "f" and values.size and values.max() <= 1.0:
        values = values.astype(np.float32) * 255.0  # float images in [0, 1]
    return _grey(Image.fromarray(np.clip(values, 0, 255).astype(np.float32), mode="F"))


def load_grey(source: Source, name: str | None = None) -> tuple[np.ndarray, float]:
    """Decode any supported input to float32 grey at working size, and the shrink factor."""
    name = name or describe_source(source)
    if isinstance(source, np.ndarray):
        _check_size(source.shape[1] if source.ndim > 1 else 1, source.shape[0], name)
        original = max(source.shape[:2]) if source.ndim >= 2 else 1
        grey = _array_grey(source, name)
    else:
        if isinstance(source, Image.Image):
            _check_size(source.width, source.height, name)
            image, original = source, max(source.size)
        elif isinstance(source, str | Path | bytes):
            image, original = _open(source, name)
        else:
            raise ImageError(f"{name}: unsupported input type {type(source).__name__}")
        # EXIF rotation swaps the sides, not the longer one, so the scale holds either way.
        grey = _grey(image)
    return grey, original / max(grey.shape)


def _sample(values: np.ndarray, limit: int = 8192) -> np.ndarray:
    """An even subsample of at most ~`limit` values: medians and percentiles of a whole image
    cost more than everything else here, and a few thousand pixels estimate them as well."""
    flat = values.ravel()
    return flat[:: max(1, len(flat) // limit)]


def _background(grey: np.ndarray) -> np.ndarray:
    """A smooth background surface: a quadratic fitted to a coarse copy, ink rejected as outliers.

    Uneven lighting (a lamp to one side, a vignette, a shadow gradient) is smooth across the
    frame, so a quadratic captures it while ink, thin and sharp, stays far from the fit. The fit
    starts from the grey levels near the median (the paper, which is most of the frame), leaving
    out ink of either polarity and a table at the edge, so that neither a digit in the middle nor
    a dark border bends the surface.
    """
    height, width = grey.shape
    coarse_side = 32
    if max(height, width) > coarse_side:
        ratio = coarse_side / max(height, width)
        size = (max(2, round(width * ratio)), max(2, round(height * ratio)))
        coarse = np.asarray(
            Image.fromarray(grey, mode="F").resize(size, Image.Resampling.BOX), dtype=np.float64
        )
    else:
        coarse = grey.astype(np.float64)
    rows, cols = coarse.shape
    y = np.repeat((np.arange(rows) + 0.5) / rows - 0.5, cols)
    x = np.tile((np.arange(cols) + 0.5) / cols - 0.5, rows)
    features = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    values = coarse.ravel()
    middle = float(np.median(values))
    deviation = np.abs(values - middle)
    keep = deviation < 2.5 * (1.4826 * float(np.median(deviation)) + 1.0)
    coefficients = np.array([middle, 0, 0, 0, 0, 0])
    for _ in range(2):
        if keep.sum() < 24:
            break
        chosen = features[keep]
        # Normal equations with a touch of ridge: 6×6, much cheaper than lstsq, and stable
        # when the kept pixels leave a term unconstrained.
        gram = chosen.T @ chosen + 1e-3 * np.eye(6)
        coefficients = np.linalg.solve(gram, chosen.T @ values[keep])
        residual = values - features @ coefficients
        spread = 1.4826 * float(np.median(np.abs(residual[keep]))) + 1.0
        keep = np.abs(residual) < 2.5 * spread
    c0, c1, c2, c3, c4, c5 = coefficients
    gy = ((np.arange(height, dtype=np.float32) + 0.5) / height - 0.5)[:, None]
    gx = ((np.arange(width, dtype=np.float32) + 0.5) / width - 0.5)[None, :]
    # Grouped by rows and columns so that only three operations touch the full image.
    along_x = (c0 + c1 * gx + c3 * gx * gx).astype(np.float32)
    slope_y = (c2 + c4 * gx).astype(np.float32)
    return along_x + gy * slope_y + np.float32(c5) * gy * gy


def _smooth(values: np.ndarray) -> np.ndarray:
    """A 3×3 binomial blur (edges kept): evens out sensor and JPEG noise before thresholding,
    while strokes at working size are several pixels wide and survive it."""
    rows = values.copy()
    rows[1:-1] = (values[:-2] + values[2:]) * 0.25 + values[1:-1] * 0.5
    out = rows.copy()
    out[:, 1:-1] = (rows[:, :-2] + rows[:, 2:]) * 0.25 + rows[:, 1:-1] * 0.5
    return out


def dilate(mask: np.ndarray) -> np.ndarray:
    """A mask grown by one pixel in all eight directions (a 3×3 maximum, separably)."""
    rows = mask.copy()
    rows[1:] |= mask[:-1]
    rows[:-1] |= mask[1:]
    out = rows.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def locate_ink(grey: np.ndarray, scale: float = 1.0) -> Ink | str:
    """Find the ink in a working-size grey image; a "no digit: ..." reason when there is none."""
    height, width = grey.shape
    if min(height, width) * scale < MIN_SIDE:
        return (
            f"no digit: the image is {round(width * scale)}×{round(height * scale)} pixels, "
            "too small to hold one"
        )
    smooth = _smooth(grey) if min(height, width) >= 64 else grey
    residual = smooth - _background(smooth)
    sample = _sample(residual)
    noise = 1.4826 * float(np.median(np.abs(sample - np.median(sample))))
    floor = max(4.0 * noise, MIN_CONTRAST / 2)
    # Polarity: ink is what stands out from the background, so whichever side holds more contrast
    # is ink: pixels at least MIN_CONTRAST away, weighted by the square of how far. The weighting
    # keeps a large but faint patch, such as white paper on a grey table, from outvoting the dark
    # strokes written on it; removing the background first keeps a lighting gradient from passing
    # for ink, and counting every pixel keeps hairlines from being missed.
    strong = max(floor, MIN_CONTRAST)
    darker = residual[residual < -strong]
    lighter = residual[residual > strong]
    if float(np.dot(darker, darker)) > float(np.dot(lighter, lighter)):
        residual = -residual  # dark ink on light paper: make the ink bright, as in MNIST
    candidates = residual[residual > floor]
    if candidates.size == 0:
        return "no digit: the image is blank (nothing stands out from the background)"
    level = float(np.percentile(_sample(candidates), 90))
    if level < MIN_CONTRAST:
        return f"no digit: the marks are too faint (contrast {level:.0f} of 255)"
    mask = residual > max(level / 2, floor)
    if mask.mean() > MAX_INK_FRACTION:
        return "no digit: ink would cover most of the image (a photo or a fill, not a digit)"
    labels, components = label_components(mask)
    # The table or a shadow around the paper in a photo: ink-coloured, but lying along a long
    # stretch of the frame's edge, which strokes of a digit never do (even touching it).
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    contact = np.bincount(edge, minlength=len(components) + 1)
    backdrop = contact >= BACKDROP_CONTACT * edge.size
    components = [c for c in components if not backdrop[c.label]]
    if not components:
        return "no digit: only the edge of the paper or a shadow along the border"
    # Specks: pieces too short to be a stroke at this image size, or tiny beside the largest.
    shortest = max(3.0, SPECK_SIZE * max(height, width))
    strokes = [c for c in components if max(c.height, c.width) >= shortest]
    if not strokes:
        return "no digit: only specks of noise, no stroke large enough to be a digit"
    kept = [c for c in strokes if c.area >= SPECK_FRACTION * strokes[0].area]
    strength = np.clip(residual / level, 0.0, 1.0).astype(np.float32)
    return Ink(strength=strength, labels=labels, components=kept, scale=scale)


def ink_crop(ink: Ink, components: list[Component]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The ink strength of some components alone, cropped to them; and the box (l, t, r, b)."""
    top = min(c.top for c in components)
    left = min(c.left for c in components)
    bottom = max(c.bottom for c in components)
    right = max(c.right for c in components)
    wanted = np.isin(ink.labels[top:bottom, left:right], [c.label for c in components])
    # The mask sits half-way up the stroke edges; a one-pixel dilation keeps their anti-aliasing.
    crop = ink.strength[top:bottom, left:right] * dilate(wanted)
    return crop.astype(np.float32), (left, top, right, bottom)


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary shape: twice its area over its boundary length."""
    padded = np.pad(mask, 1)
    interior = (
        padded[1:-1, 1:-1]
        & padded[:-2, 1:-1]
        & padded[2:, 1:-1]
        & padded[1:-1, :-2]
        & padded[1:-1, 2:]
    )
    boundary = int((mask & ~interior).sum())
    return 2.0 * float(mask.sum()) / max(boundary, 1)


def _resize_longest(values: np.ndarray, side: int, method: Image.Resampling) -> np.ndarray:
    height, width = values.shape
    ratio = side / max(height, width)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    resized = Image.fromarray(values.astype(np.float32), mode="F").resize(size, method)
    return np.asarray(resized, dtype=np.float32)


def _tight(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def normalise_digit(crop: np.ndarray) -> np.ndarray | None:
    """Cropped ink strength (float, ink bright) → uint8 28×28 as MNIST; None if nothing is left."""
    shape = _resize_longest(crop, NORM_SIDE, Image.Resampling.BILINEAR) >= 0.5
    if not shape.any():
        return None
    shape = _tight(shape)
    # Pens and markers make strokes from hairlines to blobs; MNIST's are ~2.5 px at 28×28.
    # Bring the width within a band around MNIST's by growing or shrinking the shape.
    width = _stroke_width(shape)
    image = Image.fromarray(np.pad(shape, 8).astype(np.uint8) * 255)
    if width < 0.6 * STROKE_WIDTH:
        grow = round(STROKE_WIDTH * 0.8 - width) | 1
        image = image.filter(ImageFilter.MaxFilter(min(grow, 15)))
    elif width > 1.7 * STROKE_WIDTH:
        shrink = round(width - STROKE_WIDTH * 1.3) | 1
        thinner = image.filter(ImageFilter.MinFilter(min(shrink, 15)))
        if np.asarray(thinner).any():
            image = thinner
    shape = _tight(np.asarray(image) > 0)
    small = np.clip(_resize_longest(shape.astype(np.float32), BOX, Image.Resampling.BOX), 0, 1)
    rows, cols = np.mgrid[0 : small.shape[0], 0 : small.shape[1]]
    mass = float(small.sum())
    centre_row = float((small * rows).sum()) / mass
    centre_col = float((small * cols).sum()) / mass
    top = int(np.clip(round(CENTRE - centre_row), 0, FIELD - small.shape[0]))
    left = int(np.clip(round(CENTRE - centre_col), 0, FIELD - small.shape[1]))
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
