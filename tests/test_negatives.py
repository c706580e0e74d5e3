"""Generated non-digits: what they are, that they are reproducible, and what they never are."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from digits.data import negatives
from digits.data.negatives import LETTERS, SHAPES, SYMBOLS, generate, load_negatives


def test_no_character_that_reads_as_a_digit_is_a_negative() -> None:
    # A negative that looks like a digit would teach the model to refuse real ones.
    confusable = set("0123456789OoQDIlij|!/\\()[]ZzSs$§BbGgqy?")
    assert not confusable & set(LETTERS + SYMBOLS)


def test_images_are_mnist_shaped_and_varied() -> None:
    drawn = generate("train", 300, seed=3)
    assert drawn.images.shape == (300, 28, 28) and drawn.images.dtype == np.uint8
    assert len(drawn.kinds) == 300
    kinds = Counter(drawn.kinds.tolist())
    assert kinds["glyph"] > 60 and kinds["letter"] > 40  # font glyphs and pen letters
    assert len(set(kinds) & set(SHAPES)) >= 12  # and most of the shapes
    # As preprocessing leaves a digit: ink bright on dark, inside the 20-pixel box, centred.
    assert (drawn.images.max(axis=(1, 2)) > 200).all()
    assert (drawn.images[:, :2].max(axis=(1, 2)) == 0).mean() > 0.95
    rows = np.arange(28)[None, :, None]
    mass = drawn.images.sum(axis=(1, 2))
    centre = (drawn.images * rows).sum(axis=(1, 2)) / mass
    assert np.abs(centre - 14).max() < 2.5


def test_generation_is_reproducible_and_the_splits_differ() -> None:
    first, again = generate("train", 50, seed=1), generate("train", 50, seed=1)
    assert np.array_equal(first.images, again.images)
    held_out = generate("heldout", 50)
    shared = {image.tobytes() for image in first.images} & {i.tobytes() for i in held_out.images}
    assert not shared
    with pytest.raises(ValueError, match="unknown negatives split 'test'"):
        generate("test", 1)


def test_splits_are_cached_and_a_damaged_cache_is_redrawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path))
    monkeypatch.setitem(negatives.SPLITS, "heldout", 40)
    drawn = load_negatives("heldout")
    path = negatives.cache_path("heldout")
    assert path.parent == tmp_path and path.exists()
    assert np.array_equal(load_negatives("heldout").images, drawn.images)
    path.write_bytes(b"not an npz")
    assert np.array_equal(load_negatives("heldout").images, drawn.images)
