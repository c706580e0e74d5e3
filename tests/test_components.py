"""Pieces of an ink mask: OpenCV's connected components as the rest of the code expects them,
and the shapes that are ink-coloured but not writing (a band along the frame, printed lines)."""

from __future__ import annotations

import numpy as np
import pytest

from digits.components import (
    find_lines,
    is_backdrop,
    label_components,
    line_pixels,
    mend_crossings,
    reaches_past,
)


def test_components_match_a_flood_fill() -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((30, 40)) < 0.35
    labels, components = label_components(mask)
    assert sum(c.area for c in components) == mask.sum()
    seen = np.zeros_like(mask)
    for component in components:
        # Flood fill from one pixel of the component must reach exactly its pixels.
        start = tuple(np.argwhere(labels == component.label)[0])
        stack, region = [start], set()
        while stack:
            r, c = stack.pop()
            if (r, c) in region or not (0 <= r < 30 and 0 <= c < 40) or not mask[r, c]:
                continue
            region.add((r, c))
            stack += [(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
        assert region == {tuple(p) for p in np.argwhere(labels == component.label)}
        assert len(region) == component.area
        seen |= labels == component.label
    assert np.array_equal(seen, mask)


def test_components_come_largest_first_with_exclusive_boxes() -> None:
    mask = np.zeros((20, 30), dtype=bool)
    mask[2:4, 3:6] = True  # 6 pixels
    mask[10:18, 20:22] = True  # 16 pixels
    labels, components = label_components(mask)
    assert [c.area for c in components] == [16, 6]
    big = components[0]
    assert (big.top, big.left, big.bottom, big.right) == (10, 20, 18, 22)
    assert (labels[10:18, 20:22] == big.label).all()
    empty, none = label_components(np.zeros((5, 5), bool))
    assert not empty.any() and none == []
    with pytest.raises(ValueError, match="2-D"):
        label_components(np.zeros((2, 2, 2), bool))


def _one(mask: np.ndarray, beside_ink: bool = False) -> bool:
    labels, components = label_components(mask)
    largest = components[0]
    return is_backdrop(labels, largest, beside_ink)


def test_a_band_along_the_frame_is_backdrop_and_strokes_are_not() -> None:
    frame = np.zeros((120, 160), dtype=bool)
    table = frame.copy()
    table[:, :25] = True  # the table along the left side, the whole height
    assert _one(table)
    corner = frame.copy()
    corner[:, :20] = True
    corner[100:, :] = True  # an L along two sides
    assert _one(corner, beside_ink=True)
    seven = frame.copy()
    seven[:14, :] = True  # the bar of a 7 across a tight crop...
    for row in range(14, 120):  # ...and its stem down to the bottom
        column = 150 - row
        seven[row, column - 7 : column + 7] = True
    assert not _one(seven) and not _one(seven, beside_ink=True)
    one = frame.copy()
    one[:, 70:90] = True  # a 1 from top to bottom: touches two sides, reaches far inward
    assert not _one(one) and not _one(one, beside_ink=True)
    ring = frame.copy()
    ring[:, :] = True
    ring[6:-6, 6:-6] = False  # a dark border all round the picture
    assert _one(ring)


def test_a_short_band_alone_is_a_tight_stroke_beside_a_digit_it_is_backdrop() -> None:
    # Along part of one side only: alone it may be a digit's stroke in a tight crop (the base
    # of a 2); beside a digit clear of the frame it is the table's edge.
    mask = np.zeros((120, 160), dtype=bool)
    mask[100:, 20:140] = True
    assert not _one(mask)
    assert _one(mask, beside_ink=True)


def test_lines_across_the_image_are_found_and_strokes_are_not() -> None:
    mask = np.zeros((100, 200), dtype=bool)
    mask[40:42, :] = True  # a ruled line
    mask[70, :100] = mask[71, 100:] = True  # another, drifting a row halfway across
    mask[30:80, 95:100] = True  # a stroke through both, half the height
    mask[5:20, 10:60] = True  # a thick blob: not a line
    lines = find_lines(mask)
    assert sorted((line.horizontal, line.begin, line.end) for line in lines) == [
        (True, 0, 200),
        (True, 0, 200),
    ]
    assert all(line.stop - line.start <= 8 for line in lines)
    assert find_lines(np.zeros((50, 50), bool)) == []


def test_a_line_past_the_writing_is_printed_and_a_bar_ending_with_it_is_not() -> None:
    mask = np.zeros((100, 200), dtype=bool)
    mask[50:52, :] = True
    (line,) = find_lines(mask)
    writing = np.zeros_like(mask)
    writing[20:80, 80:120] = True
    assert reaches_past(line, writing)
    stem = np.zeros_like(mask)
    stem[52:100, 170:200] = True  # the rest of a 7 hangs from the bar's right end
    assert not reaches_past(line, stem)


def test_strokes_meeting_a_removed_line_are_mended() -> None:
    ink = np.zeros((60, 100), dtype=bool)
    ink[30:32, :] = True  # the line
    ink[10:50, 40:44] = True  # a stroke crossing it
    (line,) = find_lines(ink)
    removed = line_pixels(ink, line)
    rest = ink & ~removed
    assert not rest[30:32, 40:44].any()
    mend_crossings(rest, ink, line, reach=0)
    assert rest[30:32, 40:44].all()  # the stroke is whole again
    assert not rest[30:32, :30].any() and not rest[30:32, 60:].any()  # the line stays out
