"""The inputs of a batch: files as given, folders walked in sorted order, and archives (.zip,
.tar and compressed tars) read member by member without unpacking, all listed lazily; and the
bytes of one input, or an InputError saying why it has none.
"""

from __future__ import annotations

import errno
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from digits.predictor import IMAGE_SUFFIXES, iter_images

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


class InputError(ValueError):
    """A path that is not a readable regular file; the message names it and says what it is."""


def _folder_problem(path: Path) -> str:
    if path.is_symlink() and Path(os.path.realpath(path.parent)).is_relative_to(
        os.path.realpath(path)
    ):
        return f"symbolic link to a folder that contains it ({os.readlink(path)}): a loop"
    try:
        os.scandir(path).close()
    except OSError as exc:
        return f"folder cannot be read ({exc.strerror or exc})"
    return "is a folder, not an image"


def read_input(path: Path, name: str | None = None) -> bytes:
    """The bytes of one input file. Anything else (a FIFO, which would block forever, a device,
    a folder, a dangling or looping symbolic link) raises InputError saying what it is; messages
    call the file `name` (default: the path), the name it has in the results."""
    shown = str(path) if name is None else name
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{shown}: symbolic link loop ({exc.strerror})") from None
        if path.is_symlink():
            raise InputError(f"{shown}: dangling symbolic link (to {os.readlink(path)})") from None
        if exc.errno == errno.ENOENT:
            raise InputError(f"{shown}: no such file") from None
        raise InputError(f"{shown}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{shown}: {_folder_problem(path)}")
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "a special file")
        raise InputError(f"{shown}: is {kind}, not a file")
    try:
        # Non-blocking, so that a FIFO swapped in after the check cannot hang the batch.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputError(f"{shown}: cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise InputError(f"{shown}: not a regular file")
        try:
            return handle.read()
        except OSError as exc:
            raise InputError(f"{shown}: cannot be read ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class Input:
    """One entry of the listing. A file is read by whoever predicts it (a worker, possibly on
    another machine), so only its name travels; an archive member travels as its bytes, since
    only the listing's single pass can read a compressed tar; `error` is known when listed."""

    name: str
    data: bytes | None = None
    error: str | None = None

    def read(self, base: str | None = None) -> bytes:
        """The bytes; a relative file name is taken from `base` when given (the folder the
        command ran in, for a worker that runs elsewhere)."""
        if self.error is not None:
            raise InputError(self.error)
        if self.data is not None:
            return self.data
        path = Path(self.name)
        if base is not None and not path.is_absolute():
            path = Path(base) / path
        return read_input(path, name=self.name)


def archive_kind(path: Path) -> str | None:
    """ "zip" or "tar" for a regular file named as an archive; None for anything else (a FIFO
    named x.zip stays a file input, refused as one)."""
    name = path.name.lower()
    if not name.endswith(ARCHIVE_SUFFIXES) or not path.is_file():
        return None
    return "zip" if name.endswith(".zip") else "tar"


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def _zip_members(path: Path) -> Iterator[Input]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir() or not _is_image_name(info.filename):
                continue
            name = f"{path}/{info.filename}"
            try:
                yield Input(name, data=archive.read(info))
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as exc:
                # A damaged, encrypted or oddly compressed member costs only itself.
                yield Input(name, error=f"{name}: cannot be read from the archive ({exc})")


def _tar_members(path: Path) -> Iterator[Input]:
    # Stream mode ("r|*"): one pass, any compression, no index of the whole archive in memory.
    with tarfile.open(path, mode="r|*") as archive:
        for member in archive:
            inner = member.name.removeprefix("./")
            if member.isdir() or not _is_image_name(inner):
                continue
            name = f"{path}/{inner}"
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is None:
                yield Input(name, error=f"{name}: a link or special file in the archive")
            else:
                yield Input(name, data=handle.read())


def _archive_members(path: Path, kind: str) -> Iterator[Input]:
    """The image members of an archive, in the order it stores them; an archive that cannot be
    read (damaged, truncated) adds one error entry under its own name where reading stopped."""
    try:
        yield from _zip_members(path) if kind == "zip" else _tar_members(path)
    except (
        OSError,
        EOFError,
        tarfile.TarError,
        zipfile.BadZipFile,
        zlib.error,
        lzma.LZMAError,
    ) as exc:
        yield Input(str(path), error=f"{path}: not a readable archive ({exc})")


def iter_inputs(sources: Iterable[str | Path]) -> Iterator[Input]:
    """Every input of SRC... in order: files as given, folders walked as `find_images` walks
    them, archives (.zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) member by member, each member
    named `ARCHIVE/inner/path.png`."""
    for source in map(Path, sources):
        kind = archive_kind(source)
        if kind is not None:
            yield from _archive_members(source, kind)
        else:
            yield from (Input(str(path)) for path in iter_images([source]))
