"""The corrections store: `open_store(url)` → a `FeedbackStore` that adds, counts and reads rows.

SQLite (`sqlite:///FILE`) for one machine: every connection is put in WAL journal mode, where
readers never wait for a writer, and given a busy timeout, so the service's worker processes
queue for the write lock instead of failing. Each write begins with `BEGIN IMMEDIATE`: it takes
the write lock before it reads the store's size, so the check and the insert see the same store
(a deferred transaction that reads, then writes, fails at once in WAL mode when another process
wrote in between, whatever the timeout). PostgreSQL (`postgresql://...`) for several machines;
there a write locks the table against other writers (readers go on) for the same reason.

Two caps keep a public page from filling a disk: `max_image_bytes` for each image and
`max_store_bytes` for all of them together (the image files and the 28×28s, the bytes that grow
with use; rows add a few dozen bytes each on top). Past the store cap, `add` raises
`StoreFullError`.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Connection, Engine, case, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from digits.feedback.schema import (
    ANSWERS,
    COLUMNS,
    MAX_MEDIA_TYPE,
    MAX_MODEL_NAME,
    PIXELS,
    TABLE,
    corrections,
    metadata,
)
from digits.feedback.urls import database_url, is_postgres, shown_url, sqlite_file

MIB = 1024 * 1024
DEFAULT_MAX_IMAGE_BYTES = 4 * MIB
"""Largest image kept: a phone photo, or some thousand drawings from the page (~5 KB each)."""
DEFAULT_MAX_STORE_BYTES = 1024 * MIB
"""All images and 28×28s together: ~200 000 drawings, or ~250 photos at the image cap."""
SQLITE_BUSY_TIMEOUT_S = 30
"""How long a write waits for another process's write lock on a SQLite file before failing."""
CONNECT_TIMEOUT_S = 10
"""How long connecting to a PostgreSQL server may take before the store counts as unreachable."""
_WRITE = "digits_feedback_write"  # execution option: begin this transaction as a writer
# Any fixed 64-bit key: held while the table is created, so two processes starting on an empty
# PostgreSQL database do not both try (the loser would fail on a duplicate type name).
_SETUP_LOCK_KEY = zlib.crc32(b"digits.feedback.schema")


class FeedbackError(ValueError):
    """The store cannot do what was asked: the message names the URL (password masked) and why."""


class StoreFullError(FeedbackError):
    """Adding would take the store past its cap."""


class ImageTooLargeError(FeedbackError):
    """The image is over the per-image cap."""


class Saved(NamedTuple):
    id: int
    created_at: dt.datetime


class Example(NamedTuple):
    """One correction as training data: the file the person gave, its media type, the 28×28
    (uint8, ink bright on dark, as MNIST) the model saw, and the digit the person said it is."""

    image: bytes
    media_type: str
    pixels: np.ndarray
    label: int


@dataclass(frozen=True)
class Stats:
    """What the store holds, for `digits feedback stats`."""

    url: str
    """The store, password masked."""
    count: int
    per_digit: dict[str, int]
    """Corrections by the person's label, "0" to "9"."""
    model_right_per_digit: dict[str, int]
    """Of those, how many the model had answered with that very digit."""
    model_right: float | None
    """Share of all corrections the model had got right; None for an empty store."""
    answers: dict[str, int]
    """Corrections by the kind of answer the model had given (digit, not_sure, ...)."""
    models: dict[str, int]
    """Corrections by the name of the model that answered."""
    trainable: int
    """Corrections with a 28×28 (the rest had no ink the model could see)."""
    stored_bytes: int
    """Bytes counted against the store cap: the images and the 28×28s."""
    first: str | None
    last: str | None
    """Times of the oldest and newest correction, ISO 8601 in UTC."""

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _reason(exc: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's "(Background on ...)" tail."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0].strip() if lines else type(original).__name__


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite keeps no zone (the values are UTC by construction); PostgreSQL answers in its own.
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Put the file in WAL mode (it stays so; later connections find it there already).

    Switching modes is the one step SQLite does not wait for with the busy timeout: processes
    opening a new file together see "database is locked" at once. They try again until the
    timeout instead."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            (mode,) = cursor.execute("PRAGMA journal_mode = WAL").fetchone()
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
    if str(mode).lower() != "wal":  # e.g. a file system without shared memory
        raise sqlite3.OperationalError(f"cannot use WAL journal mode here (mode is {mode!r})")


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _connect(connection: Any, _record: Any) -> None:
        # The driver would begin transactions itself (deferred, and only before writes); with
        # this it leaves that to the "begin" hook below.
        connection.isolation_level = None
        cursor = connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        _use_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        writer = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


def open_store(
    url: str,
    *,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    max_store_bytes: int = DEFAULT_MAX_STORE_BYTES,
    create: bool = True,
) -> FeedbackStore:
    """The store at `url` (`sqlite:///FILE` or `postgresql://...`). With `create`, a missing
    SQLite file (and its folder) and the table are made on first use; without, the store must be
    there already (for reading: a mistyped URL is an error, not a new empty store).

    Nothing connects yet: a server that is down fails the first call that needs it."""
    shown = shown_url(url)
    if max_image_bytes < 1 or max_store_bytes < 1:
        raise ValueError(f"{shown}: the caps must be at least 1 byte")
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise FeedbackError(
            f"{shown}: not a database URL (expected sqlite:///FILE or postgresql://...)"
        ) from None
    if backend == "sqlite":
        path = sqlite_file(url)
        if path is None:
            raise FeedbackError(f"{shown}: give a file (sqlite:///FILE), not an in-memory database")
        if not create and not path.is_file():
            raise FeedbackError(f"{shown}: no database there ({path} does not exist)")
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise FeedbackError(f"{shown}: cannot make {path.parent}: {exc.strerror}") from None
        engine = _sqlite_engine(url)
    elif backend == "postgresql" and is_postgres(url):
        try:
            engine = create_engine(
                database_url(url),
                pool_pre_ping=True,  # a server restarted between requests is reconnected to
                connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
            )
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise FeedbackError(f"{shown}: cannot use this URL: {_reason(exc)}") from None
    else:
        raise FeedbackError(
            f"{shown}: unsupported database {backend!r} (use sqlite:///FILE or postgresql://...)"
        )
    return FeedbackStore(engine, shown, max_image_bytes, max_store_bytes, create)


class FeedbackStore:
    """Corrections in one database. Thread-safe; each process opens its own."""

    def __init__(
        self, engine: Engine, shown: str, max_image_bytes: int, max_store_bytes: int, create: bool
    ) -> None:
        self.engine = engine
        self.url = shown
        """The URL with its password masked."""
        self.max_image_bytes = max_image_bytes
        self.max_store_bytes = max_store_bytes
        self._create = create
        self._ready = False
        self._setup = threading.Lock()

    # --- connections ---------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Database failures as one line naming the store."""
        try:
            yield
        except FeedbackError:
            raise
        except SQLAlchemyError as exc:
            raise FeedbackError(f"{self.url}: {_reason(exc)}") from None

    def _prepare(self) -> None:
        """Check the table once (and create it, when allowed and missing)."""
        if self._ready:
            return
        with self._setup, self._errors():
            if self._ready:
                return
            with self.engine.connect() as connection:
                connection.execution_options(**{_WRITE: self._create})
                with connection.begin():
                    if self._create and self.engine.dialect.name == "postgresql":
                        connection.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SETUP_LOCK_KEY}
                        )
                    found = inspect(connection).has_table(TABLE)
                    if not found and not self._create:
                        raise FeedbackError(
                            f"{self.url}: no feedback store there (no table {TABLE!r})"
                        )
                    if not found:
                        metadata.create_all(connection)
                    else:
                        self._check_columns(connection)
            self._ready = True

    def _check_columns(self, connection: Connection) -> None:
        present = {column["name"] for column in inspect(connection).get_columns(TABLE)}
        missing = sorted(COLUMNS - present)
        if missing:
            raise FeedbackError(
                f"{self.url}: table {TABLE!r} is not a feedback store's (it lacks "
                f"{', '.join(missing)})"
            )

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        self._prepare()
        with self._errors(), self.engine.connect() as connection, connection.begin():
            yield connection

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------------------

    def add(
        self,
        *,
        label: int,
        model_digit: int | None,
        model_answer: str,
        confidence: float | None,
        model_name: str,
        image: bytes,
        media_type: str,
        pixels: np.ndarray | None,
    ) -> Saved:
        """Keep one correction: `label` is the person's digit; `model_*` and `confidence` what
        the model answered; `image` the file they gave; `pixels` the 28×28 uint8 the model saw
        (None when there was no ink to see). Past the caps: ImageTooLargeError, StoreFullError."""
        row = self._validated(
            label, model_digit, model_answer, confidence, model_name, image, media_type, pixels
        )
        size = len(image) + (0 if row["pixels"] is None else PIXELS)
        if len(image) > self.max_image_bytes:
            raise ImageTooLargeError(
                f"{self.url}: the image is {len(image)} bytes, over the {self.max_image_bytes} "
                "bytes kept per image"
            )
        self._prepare()
        with self._errors(), self.engine.connect() as connection:
            connection.execution_options(**{_WRITE: True})
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    # Conflicts with itself, not with reads: one writer at a time checks the cap.
                    connection.execute(text(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE"))
                used = self._stored_bytes(connection)
                if used + size > self.max_store_bytes:
                    raise StoreFullError(
                        f"{self.url}: the store is full ({used} of {self.max_store_bytes} bytes "
                        "used); corrections are not being kept"
                    )
                created = dt.datetime.now(dt.UTC)
                new_id = connection.execute(
                    corrections.insert().values(created_at=created, stored_bytes=size, **row)
                ).inserted_primary_key
        assert new_id is not None
        return Saved(int(new_id[0]), created)

    @staticmethod
    def _validated(
        label: int,
        model_digit: int | None,
        model_answer: str,
        confidence: float | None,
        model_name: str,
        image: bytes,
        media_type: str,
        pixels: np.ndarray | None,
    ) -> dict[str, Any]:
        def digit(value: object) -> bool:
            return (
                isinstance(value, int | np.integer)
                and not isinstance(value, bool)
                and (0 <= int(value) <= 9)
            )

        if not digit(label):
            raise ValueError(f"label: expected a digit 0–9, got {label!r}")
        if model_answer not in ANSWERS:
            raise ValueError(f"model_answer: expected one of {', '.join(ANSWERS)}")
        if (model_digit is None) != (model_answer != "digit") or not (
            model_digit is None or digit(model_digit)
        ):
            raise ValueError("model_digit: a digit 0–9 exactly when model_answer is 'digit'")
        if confidence is not None and not 0.0 <= float(confidence) <= 1.0:
            raise ValueError(f"confidence: expected 0–1, got {confidence!r}")
        if not model_name or len(model_name) > MAX_MODEL_NAME:
            raise ValueError(f"model_name: expected 1–{MAX_MODEL_NAME} characters")
        if not image:
            raise ValueError("image: empty")
        if not media_type.startswith("image/") or len(media_type) > MAX_MEDIA_TYPE:
            raise ValueError(f"media_type: expected image/..., got {media_type!r}")
        stored: bytes | None = None
        if pixels is not None:
            array = np.asarray(pixels)
            if array.shape != (28, 28) or array.dtype != np.uint8:
                raise ValueError(f"pixels: expected 28×28 uint8, got {array.shape} {array.dtype}")
            stored = np.ascontiguousarray(array).tobytes()
        return {
            "label": int(label),
            "model_digit": None if model_digit is None else int(model_digit),
            "model_answer": model_answer,
            "confidence": None if confidence is None else float(confidence),
            "model_name": model_name,
            "image": bytes(image),
            "media_type": media_type,
            "pixels": stored,
        }

    @staticmethod
    def _stored_bytes(connection: Connection) -> int:
        column = corrections.c.stored_bytes
        return int(connection.execute(select(func.coalesce(func.sum(column), 0))).scalar_one())

    # --- reading -------------------------------------------------------------------------------

    def count(self) -> int:
        with self._reading() as connection:
            return int(
                connection.execute(select(func.count()).select_from(corrections)).scalar_one()
            )

    def stats(self) -> Stats:
        c = corrections.c
        right = case((c.model_digit == c.label, 1), else_=0)
        with self._reading() as connection:
            by_label = connection.execute(
                select(c.label, func.count(), func.sum(right)).group_by(c.label)
            ).all()
            by_answer = connection.execute(
                select(c.model_answer, func.count()).group_by(c.model_answer)
            ).all()
            by_model = connection.execute(
                select(c.model_name, func.count()).group_by(c.model_name).order_by(c.model_name)
            ).all()
            trainable = connection.execute(
                select(func.count()).where(c.pixels.is_not(None))
            ).scalar_one()
            first, last = connection.execute(
                select(func.min(c.created_at), func.max(c.created_at))
            ).one()
            stored = self._stored_bytes(connection)
        per_digit = {str(digit): 0 for digit in range(10)}
        right_per_digit = dict(per_digit)
        for label, count, got_right in by_label:
            per_digit[str(label)] = int(count)
            right_per_digit[str(label)] = int(got_right or 0)
        total = sum(per_digit.values())
        return Stats(
            url=self.url,
            count=total,
            per_digit=per_digit,
            model_right_per_digit=right_per_digit,
            model_right=sum(right_per_digit.values()) / total if total else None,
            answers={kind: 0 for kind in ANSWERS} | {k: int(n) for k, n in by_answer},
            models={name: int(n) for name, n in by_model},
            trainable=int(trainable),
            stored_bytes=stored,
            first=None if first is None else _utc(first).isoformat(),
            last=None if last is None else _utc(last).isoformat(),
        )

    def examples(self) -> Iterator[Example]:
        """Every correction with a 28×28, oldest first, streamed (not all held at once)."""
        c = corrections.c
        query = (
            select(c.image, c.media_type, c.pixels, c.label)
            .where(c.pixels.is_not(None))
            .order_by(c.id)
        )
        with self._reading() as connection:
            for row in connection.execution_options(yield_per=256).execute(query):
                yield Example(bytes(row.image), row.media_type, _pixels(row.pixels), int(row.label))

    def labelled_pixels(self) -> Iterator[tuple[int, np.ndarray, int]]:
        """(id, 28×28, label) of every correction with a 28×28, oldest first; the image files
        are not read."""
        c = corrections.c
        query = select(c.id, c.pixels, c.label).where(c.pixels.is_not(None)).order_by(c.id)
        with self._reading() as connection:
            for row in connection.execution_options(yield_per=1024).execute(query):
                yield int(row.id), _pixels(row.pixels), int(row.label)


def _pixels(data: bytes) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype=np.uint8).reshape(28, 28)


def read_feedback(url: str) -> tuple[np.ndarray, np.ndarray]:
    """The corrections at `url` as training data: N×28×28 uint8 images (the 28×28s the model
    saw, ink bright on dark as in MNIST) and N int64 labels, oldest first. Corrections without a
    28×28 (no ink was found) are left out; a store with none to train on is an error."""
    with open_store(url, create=False) as store:
        rows = list(store.labelled_pixels())
        if not rows:
            raise FeedbackError(f"{store.url}: the store holds no corrections to train on")
    images = np.stack([pixels for _, pixels, _ in rows])
    labels = np.asarray([label for _, _, label in rows], dtype=np.int64)
    return images, labels
