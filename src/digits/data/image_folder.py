"""Labelled digits as image files in one folder per digit, the layout torchvision's ImageFolder
reads: `DIR/0/*.png … DIR/9/*.png`, or `DIR/train/0/…` with `DIR/test/0/…` beside it.

Every image goes through `digits.preprocess`, the preparation predictions get, so a model
trained or scored on these files sees what it will see when it serves them. A file that is not
an image or holds no digit is an error naming it: a labelled set with a blank page in it is a
mistake to fix, not an image to guess at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digits.data.readers import DataFormatError, LabelledImages

DIGIT_FOLDERS = tuple(str(digit) for digit in range(10))
# Problems listed in full in one error; past this many, the rest are counted.
SHOWN_PROBLEMS = 5


def is_image_folder(folder: Path) -> bool:
    """Whether `folder` holds digit subfolders (0–9) directly, or train/ (and test/) that do."""
    if not folder.is_dir():
        return False
    return _has_digit_folders(folder) or _has_digit_folders(folder / "train")


def _has_digit_folders(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).is_dir() for name in DIGIT_FOLDERS)


def _labelled_files(folder: Path) -> list[tuple[Path, int]]:
    """(file, digit) for every image file under folder/0 … folder/9, in a stable order."""
    from digits.preprocess import IMAGE_SUFFIXES  # (and OpenCV with it: only when needed)

    files: list[tuple[Path, int]] = []
    for digit, name in enumerate(DIGIT_FOLDERS):
        sub = folder / name
        if sub.is_dir():
            files += [
                (path, digit)
                for path in sorted(sub.iterdir())
                if path.is_file()
                and not path.name.startswith(".")
                and path.suffix.lower() in IMAGE_SUFFIXES
            ]
    return files


def read_image_folder(folder: str | Path) -> LabelledImages:
    """The prepared 28×28 images (uint8) and digit labels of an ImageFolder-style folder."""
    from digits.preprocess import ImageError, preprocess

    folder = Path(folder)
    files = _labelled_files(folder)
    if not files:
        raise DataFormatError(
            f"{folder}: no images in digit subfolders "
            f"(expected {folder}/0/*.png … {folder}/9/*.png)"
        )
    images: list[np.ndarray] = []
    labels: list[int] = []
    problems: list[str] = []
    for path, digit in files:
        try:
            prepared = preprocess(path)
        except (ImageError, OSError) as exc:
            problems.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
            continue
        if prepared.pixels is None:
            problems.append(f"{path}: {prepared.reason}")
            continue
        images.append(prepared.pixels)
        labels.append(digit)
    if problems:
        shown = "; ".join(problems[:SHOWN_PROBLEMS])
        more = len(problems) - SHOWN_PROBLEMS
        tail = f"; and {more} more" if more > 0 else ""
        raise DataFormatError(
            f"{folder}: {len(problems)} of {len(files)} images cannot be used: {shown}{tail}"
        )
    return LabelledImages(np.stack(images), np.asarray(labels, dtype=np.int64))


def read_image_folders(folder: str | Path) -> tuple[LabelledImages, LabelledImages | None]:
    """The training images and, when there is a test/ folder beside train/, the test images."""
    folder = Path(folder)
    if _has_digit_folders(folder / "train"):
        test = folder / "test"
        return (
            read_image_folder(folder / "train"),
            read_image_folder(test) if _has_digit_folders(test) else None,
        )
    return read_image_folder(folder), None
