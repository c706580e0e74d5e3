"""Pieces of an ink mask: connected components, and the shapes that are ink-coloured but not
writing: a band along the frame's edge (the table or a shadow around the paper) and long straight
thin lines (a printed box, ruled or squared paper).

Components come from OpenCV's `connectedComponentsWithStats` (8-connectivity): one pass in C that
also returns each piece's area and bounding box, several times faster than labelling in NumPy.
The shape tests are decided from a piece's extent and how it lies against the frame, never from
contact with the frame alone: strokes of a tightly cropped digit touch the frame too.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BACKDROP_CONTACT = 0.15  # a backdrop runs along at least this share of the frame's edge...
BACKDROP_ATTACHED = 0.8  # ...with this share of its pixels reached straight from the edge
BACKDROP_DEPTH = 0.3  # ...and reaches inward, on average, at most this share of the shorter side
BACKDROP_SIDE = 0.9  # alone, it must run along this share of a whole side (or of all four)...
BACKDROP_BAND = 0.4  # ...and, along one side, reach in no further than this share of the frame
LINE_SPAN = 0.75  # a printed line runs across at least this share of the image
LINE_THIN = 0.08  # ...and is at most this share of the image thick (at least 3 pixels allowed)
LINE_BEYOND = 0.04  # ...and reaches this share of the image past the other ink at both ends
FEW = 8  # up to this many pieces, boxes are measured one piece at a time (see label_components)
LINE_TILT = 2  # rows (or columns) a line may drift across the image and still count as one


@dataclass(frozen=True)
class Component:
    """One connected piece of the mask: its label in the label image, size and bounding box."""

    label: int
    area: int
    top: int
    left: int
    bottom: int  # exclusive
    right: int  # exclusive

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def label_components(mask: np.ndarray) -> tuple[np.ndarray, list[Component]]:
    """Label image (int32, 0 = background, 1..K) and the K components, largest first."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    labels = np.zeros(mask.shape, dtype=np.int32)
    ink = mask.astype(np.uint8, copy=False)
    # Label only the box around the ink: OpenCV's statistics cost a few nanoseconds for every
    # pixel, paper included, and the ink's box is often a fraction of the frame.
    left, top, width, height = cv2.boundingRect(ink)
    if width == 0:
        return labels, []
    box = ink[top : top + height, left : left + width]
    count, inside = cv2.connectedComponents(box, connectivity=8, ltype=cv2.CV_32S)
    labels[top : top + height, left : left + width] = inside
    if count - 1 > FEW:
        _, _, stats, _ = cv2.connectedComponentsWithStats(box, connectivity=8, ltype=cv2.CV_32S)
        boxes = [tuple(row) for row in stats[1:].tolist()]
    else:
        # A handful of pieces (most images): one mask and its bounding box each is cheaper
        # than OpenCV's statistics, which visit every pixel of the box once more per pixel.
        boxes = []
        for k in range(1, count):
            piece = (inside == k).view(np.uint8)
            x, y, w, h = cv2.boundingRect(piece)
            boxes.append((x, y, w, h, cv2.countNonZero(piece[y : y + h, x : x + w])))
    components = [
        Component(k, int(n), int(top + y), int(left + x), int(top + y + h), int(left + x + w))
        for k, (x, y, w, h, n) in enumerate(boxes, start=1)
    ]
    components.sort(key=lambda c: c.area, reverse=True)
    return labels, components


def _attached(piece: np.ndarray, sides: tuple[bool, bool, bool, bool]) -> int:
    """Pixels of `piece` reached by a straight run of ink from one of the given sides (top,
    bottom, left, right) of its box: all of a band lying along the edge, little of a stroke."""
    reached = np.zeros(piece.shape, dtype=bool)
    top, bottom, left, right = sides
    if top:
        reached |= np.logical_and.accumulate(piece, axis=0)
    if bottom:
        reached |= np.logical_and.accumulate(piece[::-1], axis=0)[::-1]
    if left:
        reached |= np.logical_and.accumulate(piece, axis=1)
    if right:
        reached |= np.logical_and.accumulate(piece[:, ::-1], axis=1)[:, ::-1]
    return int(reached.sum())


def touches_frame(shape: tuple[int, int], component: Component) -> bool:
    height, width = shape
    return (
        component.top == 0
        or component.left == 0
        or component.bottom == height
        or component.right == width
    )


def is_backdrop(labels: np.ndarray, component: Component, beside_ink: bool) -> bool:
    """Whether a piece is the table or a shadow along the frame, not a stroke: it lies along a
    long stretch of the frame's edge, thin inward, and nearly all of it is reached straight from
    the edge. `beside_ink` says whether the image holds a sizeable piece clear of the frame (a
    digit in a photo); without one, only a band along a whole side or a frame all round counts:
    a tightly cropped digit touches the frame too, even along most of a side (the bar of a 7,
    the base of a 2), but reaches far inward there (its other strokes) or away from the edge."""
    height, width = labels.shape
    sides = (
        component.top == 0,
        component.bottom == height,
        component.left == 0,
        component.right == width,
    )
    if not any(sides):
        return False
    piece = labels[component.top : component.bottom, component.left : component.right]
    piece = piece == component.label
    along = (
        int(piece[0].sum()) if sides[0] else 0,
        int(piece[-1].sum()) if sides[1] else 0,
        int(piece[:, 0].sum()) if sides[2] else 0,
        int(piece[:, -1].sum()) if sides[3] else 0,
    )
    contact = sum(along)
    if contact < BACKDROP_CONTACT * 2 * (height + width):
        return False
    if component.area > BACKDROP_DEPTH * min(height, width) * contact:
        return False  # reaches far inward on average: not a band along the edge
    if _attached(piece, sides) < BACKDROP_ATTACHED * component.area:
        return False
    if beside_ink:
        return True
    lengths = (width, width, height, height)
    full = [count >= BACKDROP_SIDE * length for count, length in zip(along, lengths, strict=True)]
    if all(full):
        return True  # a frame all round the picture
    thin = (
        component.height <= BACKDROP_BAND * height,
        component.height <= BACKDROP_BAND * height,
        component.width <= BACKDROP_BAND * width,
        component.width <= BACKDROP_BAND * width,
    )
    return any(f and t for f, t in zip(full, thin, strict=True))


@dataclass(frozen=True)
class Line:
    """A straight thin run of ink across most of the image, horizontal or vertical."""

    horizontal: bool
    start: int  # first row (horizontal) or column (vertical) of the band it lies in
    stop: int  # exclusive
    begin: int  # first column (horizontal) or row (vertical) it covers
    end: int  # exclusive


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1-D boolean array."""
    steps = np.diff(np.concatenate([[0], values.view(np.int8), [0]]))
    starts, stops = np.flatnonzero(steps == 1), np.flatnonzero(steps == -1)
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _counts(mask: np.ndarray, axis: int) -> np.ndarray:
    """Ink pixels in each row (axis 1) or column (axis 0) of a 0/1 uint8 mask."""
    return cv2.reduce(mask, axis, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()


def _may_hold_line(counts: np.ndarray, length: int) -> bool:
    """Whether some LINE_TILT-drifting band of rows holds ink enough for a line: a cheap test
    that most images fail, before the lines are traced."""
    band = np.convolve(counts, np.ones(2 * LINE_TILT + 1, dtype=np.int32), mode="same")
    return bool(band.max(initial=0) >= LINE_SPAN * length)


def _horizontal_lines(mask: np.ndarray) -> list[Line]:
    """Bands of rows holding one unbroken run of ink across LINE_SPAN of the width."""
    height, width = mask.shape
    # A line drifting by a row or two across the image still fills every column of a band a
    # few rows tall, so the ink counts of the grown mask's rows find it without tracing runs.
    grown = cv2.dilate(mask.view(np.uint8), np.ones((2 * LINE_TILT + 1, 1), np.uint8))
    rows = _counts(grown, 1) >= LINE_SPAN * width
    if not rows.any():
        return []
    tolerant = grown.view(bool)
    thick = max(3, round(LINE_THIN * height)) + 2 * LINE_TILT
    lines = []
    for start, stop in _runs(rows):
        if stop - start > thick:
            continue  # a wide band of ink (a thick stroke, a fill), not a printed line
        covered = np.asarray(tolerant[start:stop].any(axis=0))
        for begin, end in _runs(covered):
            if end - begin >= LINE_SPAN * width:
                lines.append(Line(True, start, stop, begin, end))
    return lines


def find_lines(mask: np.ndarray) -> list[Line]:
    """Straight thin lines running across most of the image, along rows or columns."""
    ink = mask.view(np.uint8)
    height, width = mask.shape
    _, _, extent_x, extent_y = cv2.boundingRect(ink)  # no line without ink across the image
    lines = []
    if extent_x >= LINE_SPAN * width and _may_hold_line(_counts(ink, 1), width):
        lines += _horizontal_lines(mask)
    if extent_y >= LINE_SPAN * height and _may_hold_line(_counts(ink, 0), height):
        down = _horizontal_lines(np.ascontiguousarray(mask.T))
        lines += [Line(False, d.start, d.stop, d.begin, d.end) for d in down]
    return lines


def line_pixels(mask: np.ndarray, line: Line) -> np.ndarray:
    """The mask's pixels that belong to a line (a boolean image the mask's size)."""
    out = np.zeros(mask.shape, dtype=bool)
    if line.horizontal:
        out[line.start : line.stop, line.begin : line.end] = True
    else:
        out[line.begin : line.end, line.start : line.stop] = True
    return out & mask


def reaches_past(line: Line, rest: np.ndarray) -> bool:
    """Whether a line runs past the rest of the ink at both ends, as a printed line past the
    digit written on or inside it does; the bar of a 7 or the base of a 2 in a tight crop ends
    where the rest of the digit does, at one end at least."""
    along = np.asarray(rest.any(axis=0 if line.horizontal else 1))
    ink = np.flatnonzero(along)
    if len(ink) == 0:
        return True  # nothing else: ruled paper alone
    margin = LINE_BEYOND * len(along)
    return line.begin <= ink[0] - margin and line.end >= ink[-1] + 1 + margin


def mend_crossings(rest: np.ndarray, ink: np.ndarray, line: Line, reach: int) -> None:
    """Give back, in place, the ink where a stroke of `rest` meets a removed line: columns
    (rows, for a vertical line) with ink just before or just after the line's band grown by
    `reach`. A stroke crossing the line is left whole, and one lying along it (the bar of a 7
    on a ruled line) keeps its width, taking the line's few pixels with it."""
    start = max(line.start - reach, 0)
    stop = min(line.stop + reach, rest.shape[0] if line.horizontal else rest.shape[1])
    view, source = (rest, ink) if line.horizontal else (rest.T, ink.T)
    before = view[start - 1] if start > 0 else np.zeros(view.shape[1], dtype=bool)
    after = view[stop] if stop < view.shape[0] else np.zeros(view.shape[1], dtype=bool)
    view[start:stop] |= source[start:stop] & (before | after)[None, :]
