"""`export_images(url, out)`: the corrections as an ImageFolder, `OUT/0/*.png … OUT/9/*.png`.

The files are the 28×28s the model saw (ink bright on dark, as MNIST), not the images people
sent: what training on them needs, and what `digits finetune --data OUT` reads back. Each name is
the row's id and a digest of its pixels, so exporting again writes only rows that are new, and two
stores exported into one folder do not overwrite each other.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from digits.atomic import atomic_write_bytes
from digits.feedback.store import open_store


@dataclass(frozen=True)
class Exported:
    folder: Path
    written: int
    """Files written this time."""
    kept: int
    """Files that were there already from an earlier export."""
    without_pixels: int
    """Corrections left out: no ink was found, so there is no 28×28."""
    per_digit: dict[str, int]
    """Files per digit folder after the export (this store's corrections only)."""


def file_name(row_id: int, pixels: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()).hexdigest()
    return f"{row_id:07d}-{digest[:10]}.png"


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, "PNG")
    return buffer.getvalue()


def export_images(url: str, out: str | Path) -> Exported:
    """Write every correction's 28×28 under `out/<label>/`; files already there are kept."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(20, "not a folder", str(folder))
    written = kept = 0
    per_digit = {str(digit): 0 for digit in range(10)}
    with open_store(url, create=False) as store:
        total = store.count()
        for row_id, pixels, label in store.labelled_pixels():
            path = folder / str(label) / file_name(row_id, pixels)
            per_digit[str(label)] += 1
            if path.is_file():
                kept += 1
                continue
            atomic_write_bytes(path, _png(pixels))
            written += 1
    exported = sum(per_digit.values())
    return Exported(folder, written, kept, total - exported, per_digit)
