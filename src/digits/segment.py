"""Several digits in one image (a written number, a postcode), read left to right.

The ink is located exactly as for a single digit (`digits.preprocess.locate_ink`); its connected
components are grouped into digits: pieces that overlap horizontally belong together (the bar of
a 5, a broken 4), and a group much wider than tall is taken for touching digits and cut at the
faintest columns. Touching digits that are not that wide (a 1 against its neighbour, digits
whose strokes cross) have no such valley; when a model is at hand (`digits read`), each piece is
also tried cut in two, and the cut is kept where the model is clearly surer of both halves than
of the whole. Each digit then goes through the same normalisation as a single image.

A group that cannot be touching digits is never cut: one straight stroke (a bar, a dash, a long
line: its stroke is as wide as the group is across), or a group wider than more than
MAX_TOUCHING digits side by side (a scribble, a wavy line). It stays one piece, for the model
to take or refuse as a whole: cut at its faintest columns, a bar became two dozen "digits".
NumPy, Pillow and OpenCV only, like the rest of the prediction path.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from digits.answers import NOT_A_DIGIT, NOT_SURE_THRESHOLD, answer_kind, judge
from digits.components import Component
from digits.preprocess import (
    Ink,
    Source,
    describe_source,
    dilate,
    load_grey,
    locate_ink,
    normalise_digit,
)

if TYPE_CHECKING:
    from digits.predictor import Predictor

OVERLAP = 0.5  # pieces overlapping by this share of the narrower one's width are one digit
WIDE = 1.2  # a group wider than this × the line's height may be touching digits
VALLEY = 0.7  # ...cut where the column ink falls below this share of the typical column
SURE_WIDE = 1.6  # a group wider than this × the line's height is cut even without a valley
FRAGMENT = 0.45  # groups shorter than this × the line's height are pieces of a digit
REACH = 0.5  # ...and join a digit closer than this × the line's height
DIGIT_ASPECT = 0.8  # typical width / height of one handwritten digit, to count touching ones
MAX_TOUCHING = 4  # a group wider than this many digits side by side is not touching digits
ONE_STROKE = 0.45  # a group whose stroke is this share of its rotated narrow side is one stroke
# Model-verified cuts: a piece at least TRY_SPLIT × the line's height wide is tried cut in two at
# each of the CANDIDATES faintest local minima of its ink profile; a cut is kept when both halves
# span PART_HEIGHT of the line's height and the model's confidence in the less sure half beats
# its confidence in the whole by MARGIN. Set on pairs of MNIST training digits
# (benchmarks/read_pairs.py): narrower pieces are mostly single digits (a typed 6 read as "83"
# by an over-confident model), and a smaller margin cuts more single digits in two.
TRY_SPLIT = 0.75
CANDIDATES = 6
PART_HEIGHT = 0.6
MARGIN = 0.15

Box = tuple[int, int, int, int]  # left, top, right, bottom

# N×28×28 uint8 digits → N×10 probabilities: what the verified cuts ask of a model.
Classify = Callable[[np.ndarray], np.ndarray]


@dataclass
class Segment:
    """One digit found in the image: where it is and the 28×28 the model will see."""

    box: Box  # in the original image
    pixels: np.ndarray = field(repr=False)


@dataclass
class ReadDigit:
    digit: int | None
    confidence: float
    box: tuple[int, int, int, int]
    probabilities: list[float] = field(repr=False)
    pixels: np.ndarray = field(repr=False)
    not_digit: float | None = None
    """Probability that this piece is no digit (models with that class; else None)."""


@dataclass
class Reading:
    """What `digits read` answers: the number as text ('?' for unsure digits) and each digit."""

    source: str
    text: str
    digits: list[ReadDigit]
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The `digits read --json` document; boxes as the API gives them, {x, y, width,
        height} in pixels of the image as read."""
        from digits.predictor import box_to_dict

        return {
            "file": self.source,
            "text": self.text,
            "digits": [
                {"digit": d.digit, "confidence": d.confidence, "box": box_to_dict(d.box)}
                for d in self.digits
            ],
            "reason": self.reason,
        }


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> float:
    shared = min(a[1], b[1]) - max(a[0], b[0])
    return shared / max(1, min(a[1] - a[0], b[1] - b[0]))


def _span(group: list[Component]) -> tuple[int, int]:
    return min(c.left for c in group), max(c.right for c in group)


def _height(group: list[Component]) -> int:
    return max(c.bottom for c in group) - min(c.top for c in group)


def group_components(components: list[Component]) -> list[list[Component]]:
    """Components → digits, left to right: pieces whose column spans overlap are merged, and
    fragments much shorter than the line's digits (the bar of a 5) join their nearest digit."""
    groups = [[c] for c in sorted(components, key=lambda c: c.left)]
    merged = True
    while merged:
        merged = False
        for i, j in itertools.combinations(range(len(groups)), 2):
            if _overlap(_span(groups[i]), _span(groups[j])) >= OVERLAP:
                groups[i] += groups.pop(j)
                merged = True
                break
    if len(groups) > 1:
        line_height = max(_height(g) for g in groups)
        for fragment in [g for g in groups if _height(g) < FRAGMENT * line_height]:
            centre = sum(_span(fragment)) / 2
            others = [
                g for g in groups if g is not fragment and _height(g) >= FRAGMENT * line_height
            ]
            if not others:
                break
            nearest = min(others, key=lambda g: min(abs(centre - edge) for edge in _span(g)))
            distance = min(abs(centre - edge) for edge in _span(nearest))
            if _overlap(_span(fragment), _span(nearest)) > 0 or distance < REACH * line_height:
                nearest += fragment
                groups.remove(fragment)
    return sorted(groups, key=lambda g: _span(g)[0])


def _group_strength(ink: Ink, group: list[Component]) -> tuple[np.ndarray, int, int]:
    """Ink strength of the group's pixels alone, cropped to its box; and the box's top-left."""
    top, left = min(c.top for c in group), min(c.left for c in group)
    bottom, right = max(c.bottom for c in group), max(c.right for c in group)
    wanted = np.isin(ink.labels[top:bottom, left:right], [c.label for c in group])
    return ink.strength[top:bottom, left:right] * dilate(wanted), top, left


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary shape: twice its area over its boundary length."""
    area = cv2.countNonZero(mask)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    interior = cv2.erode(mask, cross, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return 2.0 * area / max(area - cv2.countNonZero(interior), 1)


def is_one_stroke(strength: np.ndarray) -> bool:
    """Whether a group's ink is a single straight stroke (a bar, a dash, a long line, at any
    slant): its stroke is about as wide as the group's narrow side, measured across the
    smallest rotated rectangle around it. Digits side by side stand several strokes tall."""
    mask = (strength >= 0.5).astype(np.uint8)
    points = cv2.findNonZero(mask)
    if points is None:
        return False
    _, sides, _ = cv2.minAreaRect(points)
    return _stroke_width(mask) >= ONE_STROKE * (min(sides) + 1.0)


def can_be_touching_digits(strength: np.ndarray, line_height: int) -> bool:
    """Whether a group may be several digits to cut apart: not one straight stroke, and no
    wider than MAX_TOUCHING digits of the line's height side by side."""
    if strength.shape[1] > MAX_TOUCHING * DIGIT_ASPECT * line_height:
        return False  # a scribble or a wavy line: touching digits do not run that long
    return strength.shape[1] <= WIDE * line_height or not is_one_stroke(strength)


def _cuts(strength: np.ndarray, line_height: int) -> list[int]:
    """Columns splitting a too-wide group into touching digits, near where equal-width digits
    would meet: at a clear valley of the ink profile (a join), or at the weakest column when
    the group is too wide to be one digit at all."""
    width = strength.shape[1]
    if width <= WIDE * line_height:
        return []
    count = max(2, round(width / (DIGIT_ASPECT * line_height)))
    profile = strength.sum(axis=0)
    typical = float(np.median(profile[profile > 0]))
    cuts = []
    for k in range(1, count):
        centre = k * width / count
        reach = width / (4 * count)
        low, high = int(centre - reach), int(np.ceil(centre + reach))
        column = low + int(np.argmin(profile[low:high]))
        # Beyond SURE_WIDE no single digit is that wide: cut at the weakest column regardless.
        if width > SURE_WIDE * line_height or profile[column] < VALLEY * typical:
            cuts.append(column)
    return cuts


def _piece(strength: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, Box] | None:
    """The ink of columns start:stop cropped tight, and its (left, top, right, bottom) within
    `strength`; None when those columns hold no ink."""
    part = strength[:, start:stop]
    rows = np.nonzero(part.max(axis=1) > 0)[0]
    cols = np.nonzero(part.max(axis=0) > 0)[0]
    if len(rows) == 0:
        return None
    crop = part[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return crop, (int(start + cols[0]), int(rows[0]), int(start + cols[-1] + 1), int(rows[-1] + 1))


def _split_candidates(strength: np.ndarray, line_height: int) -> list[int]:
    """Columns where a piece might be two touching digits: the faintest local minima of its ink
    profile, a few columns apart, away from its very edges."""
    width = strength.shape[1]
    if width < TRY_SPLIT * line_height:
        return []
    profile = np.convolve(strength.sum(axis=0), [1, 2, 1], mode="same")
    edge = max(2, width // 10)
    minima = [
        c
        for c in range(edge, width - edge)
        if profile[c] <= profile[c - 1] and profile[c] <= profile[c + 1]
    ]
    spacing = max(2, width // 20)
    chosen: list[int] = []
    for column in sorted(minima, key=lambda c: profile[c]):
        if all(abs(column - kept) >= spacing for kept in chosen):
            chosen.append(column)
        if len(chosen) == CANDIDATES:
            break
    return chosen


def _verified_cut(strength: np.ndarray, line_height: int, classify: Classify) -> int | None:
    """The column cutting a piece into two digits the model is clearly surer of than of the
    whole piece; None when no cut is."""
    candidates = _split_candidates(strength, line_height)
    if not candidates:  # most pieces: one digit's width, nothing to try or normalise
        return None
    whole = _piece(strength, 0, strength.shape[1])
    whole_pixels = None if whole is None else normalise_digit(whole[0])
    if whole_pixels is None:
        return None
    images, options = [whole_pixels], []
    for column in candidates:
        halves = [_piece(strength, 0, column), _piece(strength, column, strength.shape[1])]
        if any(h is None or h[1][3] - h[1][1] < PART_HEIGHT * line_height for h in halves):
            continue  # a half that is not a full-height digit (a tail, a bar) is no digit
        pixels = [normalise_digit(h[0]) for h in halves if h is not None]
        if len(pixels) == 2 and pixels[0] is not None and pixels[1] is not None:
            images += [pixels[0], pixels[1]]
            options.append(column)
    if not options:
        return None
    confidence = classify(np.stack(images)).max(axis=1)
    less_sure_half = np.minimum(confidence[1::2], confidence[2::2])
    best = int(np.argmax(less_sure_half))
    return options[best] if less_sure_half[best] >= confidence[0] + MARGIN else None


def _verified_edges(
    strength: np.ndarray, start: int, stop: int, line_height: int, classify: Classify
) -> list[int]:
    """start, the verified cuts between start and stop (each half tried again), stop."""
    cut = _verified_cut(strength[:, start:stop], line_height, classify)
    if cut is None:
        return [start, stop]
    left = _verified_edges(strength, start, start + cut, line_height, classify)
    return left[:-1] + _verified_edges(strength, start + cut, stop, line_height, classify)


def segment(
    source: Source, *, name: str | None = None, classify: Classify | None = None
) -> list[Segment] | str:
    """The digits of an image, left to right; or the reason there are none ("no digit: ...").
    With `classify`, pieces are also tried cut in two, as the module says."""
    name = name or describe_source(source)
    grey, scale = load_grey(source, name)
    ink = locate_ink(grey, scale)
    if isinstance(ink, str):
        return ink
    segments = []
    groups = group_components(ink.components)
    line_height = max(_height(g) for g in groups)
    for group in groups:
        strength, top, left = _group_strength(ink, group)
        # A bar or a scribble stays one piece: cut neither at its faintest columns nor where
        # a model is surer of its parts (it is surer of anything than of a scribble).
        edges = [0, strength.shape[1]]
        if can_be_touching_digits(strength, line_height):
            edges = [0, *_cuts(strength, line_height), strength.shape[1]]
            if classify is not None:
                edges = [
                    edge
                    for start, stop in itertools.pairwise(edges)
                    for edge in _verified_edges(strength, start, stop, line_height, classify)[:-1]
                ] + [edges[-1]]
        for start, stop in itertools.pairwise(edges):
            found = _piece(strength, start, stop)
            if found is None:
                continue
            part, (x0, y0, x1, y1) = found
            pixels = normalise_digit(part)
            if pixels is None:
                continue
            box = (
                int((left + x0) * scale),
                int((top + y0) * scale),
                int(np.ceil((left + x1) * scale)),
                int(np.ceil((top + y1) * scale)),
            )
            segments.append(Segment(box, pixels))
    return segments or "no digit: the ink found is too faint at MNIST scale"


def read_number(
    predictor: Predictor,
    source: Source,
    *,
    name: str | None = None,
    min_confidence: float = NOT_SURE_THRESHOLD,
) -> Reading:
    """Segment an image into digits and classify each; unsure digits read as '?'. Pieces the
    model takes for no digit at all (a dash, a letter, a scribble) are left out of the number."""
    name = name or describe_source(source)
    found = segment(source, name=name, classify=predictor.predict_arrays)
    if isinstance(found, str):
        return Reading(name, "", [], found)
    probabilities, refusals = predictor.score_arrays(np.stack([s.pixels for s in found]))
    digits = []
    for index, (piece, row) in enumerate(zip(found, probabilities, strict=True)):
        not_digit = None if refusals is None else float(refusals[index])
        verdict = judge(row, min_confidence, not_digit)
        if answer_kind(verdict.digit, verdict.reason) == "not_digit":
            continue
        digits.append(
            ReadDigit(
                verdict.digit,
                verdict.confidence,
                piece.box,
                [float(p) for p in row],
                piece.pixels,
                not_digit,
            )
        )
    text = "".join("?" if d.digit is None else str(d.digit) for d in digits)
    left_out = len(found) - len(digits)
    if not digits:
        return Reading(name, "", [], f"{NOT_A_DIGIT}: nothing in the image looks like a digit")
    reason = None
    if left_out:
        marks = "mark that is" if left_out == 1 else "marks that are"
        reason = f"left out {left_out} {marks} not a digit"
    return Reading(name, text, digits, reason)
