"""Readers for the three on-disk digit formats: IDX (gz or plain), Kaggle CSV and Keras NPZ.

Every reader returns uint8 arrays (images N×28×28, labels N) and raises `DataFormatError` naming the
file and the offset or row when the content is wrong, so a user can find the problem at once.
"""

from __future__ import annotations

import csv
import gzip
import io
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SIDE = 28
PIXELS = IMAGE_SIDE * IMAGE_SIDE
_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UBYTE = 0x08


class DataFormatError(ValueError):
    """A data file whose content is not what its format promises."""


@dataclass(frozen=True)
class LabelledImages:
    """Images (uint8, N×28×28) and their labels (uint8, N), or labels None for an unlabelled set."""

    images: np.ndarray
    labels: np.ndarray | None


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
            raise DataFormatError(f"{path}: corrupt gzip stream ({exc})") from exc
    return raw


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """Parse an IDX byte string (already decompressed); `name` is used in error messages."""
    if len(data) < 4:
        raise DataFormatError(f"{name}: truncated at offset {len(data)}: no IDX header")
    if data[0] != 0 or data[1] != 0 or data[2] != _IDX_UBYTE:
        raise DataFormatError(
            f"{name}: wrong magic number {data[:4].hex()} at offset 0 "
            "(expected 0000 08 NN: unsigned-byte IDX)"
        )
    ndim = data[3]
    if ndim not in (1, 3):
        raise DataFormatError(f"{name}: IDX with {ndim} dimensions at offset 3 (expected 1 or 3)")
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise DataFormatError(f"{name}: truncated at offset {len(data)}: header needs {header_end}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header_end + int(np.prod(shape))
    if len(data) < expected:
        raise DataFormatError(
            f"{name}: truncated at offset {len(data)}: shape {shape} needs {expected} bytes"
        )
    if len(data) > expected:
        raise DataFormatError(
            f"{name}: {len(data) - expected} unexpected trailing bytes at offset {expected}"
        )
    if ndim == 3 and shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataFormatError(f"{name}: images of {shape[1]}×{shape[2]} (expected 28×28)")
    array = np.frombuffer(data, dtype=np.uint8, offset=header_end).reshape(shape)
    if ndim == 1:
        _check_labels(array, name)
    return array.copy()


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (images N×28×28 or labels N), gzip-compressed or plain."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def _check_labels(labels: np.ndarray, name: str) -> None:
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataFormatError(f"{name}: label {labels[bad[0]]} at index {bad[0]} is outside 0–9")


def _looks_utf16(head: bytes) -> bool:
    """A UTF-16 byte-order mark, or ASCII text with a NUL byte beside every character."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    even, odd = head[0::2], head[1::2]
    return len(head) >= 8 and (odd.count(0) == len(odd) or even.count(0) == len(even))


def _csv_text(path: Path) -> str:
    """The CSV as text: UTF-8, with or without a byte-order mark (Excel writes one); anything
    else (UTF-16, binary data) is refused with the file named instead of a bare codec error."""
    try:
        kind = path.stat().st_mode
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such file") from None
    if stat.S_ISDIR(kind):
        raise DataFormatError(f"{path}: is a folder, not a CSV file")
    if not stat.S_ISREG(kind):  # reading a FIFO or a device would block or never end
        what = "a FIFO" if stat.S_ISFIFO(kind) else "a special file"
        raise DataFormatError(f"{path}: is {what}, not a file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if _looks_utf16(raw[:512]):
        raise DataFormatError(f"{path}: UTF-16 text, not a UTF-8 CSV (save it as UTF-8)")
    if b"\x00" in raw:
        raise DataFormatError(f"{path}: binary data, not a UTF-8 CSV")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{path}: not a UTF-8 CSV (byte {raw[exc.start]:#04x} at offset {exc.start})"
        ) from None


def _cells(line: str) -> list[str]:
    return [cell.strip().strip('"') for cell in line.split(",")]


def _is_int(cell: str) -> bool:
    try:
        int(cell)
    except ValueError:
        return False
    return True


def _csv_layout(path: Path, first_line: str) -> tuple[bool, bool]:
    """(has a header row, has a label column), from the first line.

    Kaggle's files start with a header (label,pixel0..pixel783 or pixel0..pixel783), but a CSV
    saved without one (`to_csv(header=False)`, `np.savetxt`) is just as clear: its first row is
    numbers, 784 of them (pixels) or 785 (a label, then pixels). Reading it as a header would
    drop an image and shift every ImageId after it, so it is read as data.
    """
    cells = _cells(first_line)
    if cells == [""]:
        raise DataFormatError(f"{path}: empty file (expected a CSV header)")
    numbers = sum(_is_int(cell) for cell in cells)
    if 0 < numbers < len(cells):  # neither names nor data: guessing could lose a row
        raise DataFormatError(
            f"{path}: row 1: {numbers} of {len(cells)} cells are numbers; expected a header "
            f"(pixel0..pixel{PIXELS - 1}) or a row of numbers"
        )
    if numbers:
        if len(cells) not in (PIXELS, PIXELS + 1):
            raise DataFormatError(
                f"{path}: row 1: {len(cells)} columns (expected {PIXELS} pixels, or a label "
                f"and {PIXELS} pixels)"
            )
        return False, len(cells) == PIXELS + 1
    has_label = cells[0] == "label"
    width = PIXELS + (1 if has_label else 0)
    if len(cells) != width:
        raise DataFormatError(f"{path}: row 1 (header): {len(cells)} columns (expected {width})")
    return True, has_label


def _locate_csv_problem(path: Path, lines: list[str], header: bool, has_label: bool) -> Exception:
    """Re-read a CSV row by row to name the first bad row; only runs after the fast path failed.
    Rows are numbered as lines of the file, so that an editor finds them."""
    width = PIXELS + (1 if has_label else 0)
    for row_number, line in enumerate(lines, start=1):
        if (header and row_number == 1) or not line.strip():
            continue
        row = next(csv.reader([line]))
        where = f"{path}: row {row_number}"
        if len(row) != width:
            return DataFormatError(f"{where}: {len(row)} columns (expected {width})")
        for column, cell in enumerate(row):
            try:
                value = int(cell)
            except ValueError:
                return DataFormatError(f"{where}, column {column + 1}: not a number: {cell!r}")
            if has_label and column == 0 and not 0 <= value <= 9:
                return DataFormatError(f"{where}: label {value} is outside 0–9")
            if not 0 <= value <= 255:
                return DataFormatError(
                    f"{where}, column {column + 1}: pixel {value} is outside 0–255"
                )
    return DataFormatError(f"{path}: unreadable CSV")


def read_kaggle_csv(path: str | Path) -> LabelledImages:
    """Read Kaggle's `train.csv` (label,pixel0..pixel783) or `test.csv` (pixel0..pixel783).

    UTF-8 with or without a byte-order mark; a file without the header row is read too (its first
    row is data). Every line that is not blank is one image: none is skipped or merged.
    """
    path = Path(path)
    lines = _csv_text(path).splitlines()
    header, has_label = _csv_layout(path, lines[0] if lines else "")
    rows = [line for line in lines[1 if header else 0 :] if line.strip()]
    width = PIXELS + (1 if has_label else 0)
    if not rows:
        raise DataFormatError(f"{path}: no data rows")
    try:
        # comments=None: a row starting with "#" is an error, never a comment silently skipped.
        table = np.loadtxt(
            rows, delimiter=",", quotechar='"', comments=None, dtype=np.int64, ndmin=2
        )
    except ValueError:
        raise _locate_csv_problem(path, lines, header, has_label) from None
    if table.shape != (len(rows), width):
        raise _locate_csv_problem(path, lines, header, has_label)
    pixels = table[:, 1:] if has_label else table
    labels = table[:, 0] if has_label else None
    if pixels.min() < 0 or pixels.max() > 255 or (labels is not None and labels.max() > 9):
        raise _locate_csv_problem(path, lines, header, has_label)
    if labels is not None and labels.min() < 0:
        raise _locate_csv_problem(path, lines, header, has_label)
    images = pixels.astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    return LabelledImages(images, None if labels is None else labels.astype(np.uint8))


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read a Keras-style `mnist.npz` (x_train, y_train, x_test, y_test) without pickle."""
    path = Path(path)
    if not zipfile.is_zipfile(path):  # np.load would otherwise try (and refuse) a pickle
        raise DataFormatError(f"{path}: not a readable NPZ archive (not a zip file)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            present = list(archive.files)
            # Members decompress here: damage inside the archive surfaces at this point.
            arrays = {key: np.asarray(archive[key]) for key in NPZ_KEYS if key in present}
    except Exception as exc:
        if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
            raise DataFormatError(f"{path}: {exc} (object arrays need pickle: refused)") from exc
        # A damaged archive fails in many ways: zlib.error, BadZipFile (CRC), EOFError, or a
        # garbled array header (ValueError, SyntaxError, MemoryError for an absurd shape).
        kind = type(exc)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        raise DataFormatError(f"{path}: damaged NPZ archive ({name}: {exc})") from exc
    missing = [key for key in NPZ_KEYS if key not in present]
    if missing:
        raise DataFormatError(f"{path}: missing arrays {missing} (has {present})")
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise DataFormatError(f"{path}: x_{split} has shape {images.shape} (expected N×28×28)")
        if labels.shape != (images.shape[0],):
            raise DataFormatError(
                f"{path}: y_{split} has shape {labels.shape} (expected ({images.shape[0]},))"
            )
        for key, top in ((f"x_{split}", 255), (f"y_{split}", 9)):
            values = arrays[key]
            if values.size and (values.min() < 0 or values.max() > top):
                bad = int(np.flatnonzero((values.reshape(values.shape[0], -1) > top).any(1))[0])
                raise DataFormatError(f"{path}: {key}[{bad}] has a value outside 0–{top}")
            arrays[key] = values.astype(np.uint8)
    return arrays


def write_npz_atomic(path: Path, arrays: dict[str, np.ndarray], *, compress: bool = True) -> None:
    """Write arrays to `path` so that a kill mid-write never leaves a half-written file."""
    from digits.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    save = np.savez_compressed if compress else np.savez
    save(buffer, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(path, buffer.getvalue())


def npz_is_compressed(path: Path) -> bool:
    """Whether any member of the NPZ archive at `path` is deflated."""
    with zipfile.ZipFile(path) as archive:
        return any(info.compress_type != zipfile.ZIP_STORED for info in archive.infolist())
