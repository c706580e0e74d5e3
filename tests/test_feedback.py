"""The corrections store (digits.feedback) on real databases: a SQLite file and a PostgreSQL server
started on loopback (tests/postgres.py), written by several processes at once, its caps, its
statistics, its export and `read_feedback`, and the `digits feedback` commands."""

from __future__ import annotations

import datetime as dt
import io
import json
import multiprocessing
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine
from typer.testing import CliRunner

from digits.cli import app
from digits.data import DigitData
from digits.data.image_folder import read_image_folder
from digits.feedback import (
    FeedbackError,
    ImageTooLargeError,
    StoreFullError,
    database_url,
    export_images,
    open_store,
    read_feedback,
    shown_url,
)
from digits.feedback.schema import PIXELS
from tests.helpers import random_digits

runner = CliRunner()
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(200))  # stands for the file a person sent


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'store' / 'feedback.sqlite'}"


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    """An empty database of its own on the session's PostgreSQL server."""
    name = f"feedback_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database_url(postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield postgres_url.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same tests on both databases."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    found: str = request.getfixturevalue("pg_url")
    return found


def add(store: Any, label: int, pixels: np.ndarray | None, /, **changes: Any) -> Any:
    """One correction with plausible defaults: the model answered `label + 1` (wrong)."""
    values: dict[str, Any] = {
        "label": label,
        "model_digit": (label + 1) % 10,
        "model_answer": "digit",
        "confidence": 0.75,
        "model_name": "cnn",
        "image": IMAGE,
        "media_type": "image/png",
        "pixels": pixels,
    } | changes
    return store.add(**values)


# --- storing and reading back ------------------------------------------------------------------


def test_rows_come_back_as_they_were_added(url: str) -> None:
    images, labels = random_digits(12, seed=1)
    before = dt.datetime.now(dt.UTC)
    with open_store(url) as store:
        ids = [
            add(store, int(label), image, image=IMAGE + bytes([index])).id
            for index, (image, label) in enumerate(zip(images, labels, strict=True))
        ]
        examples = list(store.examples())
        stats = store.stats()
    after = dt.datetime.now(dt.UTC)

    assert ids == sorted(set(ids))
    assert [e.label for e in examples] == labels.tolist()
    assert all(e.media_type == "image/png" for e in examples)
    assert [e.image for e in examples] == [IMAGE + bytes([i]) for i in range(12)]
    np.testing.assert_array_equal(np.stack([e.pixels for e in examples]), images)
    assert all(e.pixels.dtype == np.uint8 and e.pixels.shape == (28, 28) for e in examples)
    assert stats.first is not None and stats.last is not None
    first, last = dt.datetime.fromisoformat(stats.first), dt.datetime.fromisoformat(stats.last)
    assert first.utcoffset() == dt.timedelta(0)  # kept and given back in UTC
    assert before - dt.timedelta(seconds=1) <= first <= last <= after + dt.timedelta(seconds=1)

    pixels, read_labels = read_feedback(url)
    assert pixels.dtype == np.uint8 and pixels.shape == (12, 28, 28)
    assert read_labels.dtype == np.int64
    np.testing.assert_array_equal(pixels, images)
    np.testing.assert_array_equal(read_labels, labels.astype(np.int64))


def test_stats_count_labels_answers_and_what_the_model_got_right(url: str) -> None:
    images, _ = random_digits(6, seed=2)
    with open_store(url) as store:
        add(store, 3, images[0], model_digit=3)  # right
        add(store, 3, images[1], model_digit=8)  # wrong
        add(store, 7, images[2], model_digit=7, model_name="bn-cnn")  # right
        add(store, 7, images[3], model_digit=None, model_answer="not_sure")
        add(store, 1, images[4], model_digit=None, model_answer="not_digit")
        add(store, 5, None, model_digit=None, model_answer="no_digit", confidence=None)
        stats = store.stats()

    assert stats.count == 6
    assert stats.per_digit == {str(d): n for d, n in enumerate([0, 1, 0, 2, 0, 1, 0, 2, 0, 0])}
    assert stats.model_right_per_digit["3"] == 1 and stats.model_right_per_digit["7"] == 1
    assert stats.model_right == pytest.approx(2 / 6)
    assert stats.answers == {"digit": 3, "no_digit": 1, "not_digit": 1, "not_sure": 1}
    assert stats.models == {"bn-cnn": 1, "cnn": 5}
    assert stats.trainable == 5
    assert stats.stored_bytes == 6 * len(IMAGE) + 5 * PIXELS
    # The row without a 28×28 is kept, but is nothing to train on.
    assert len(read_feedback(url)[0]) == 5


def test_an_empty_store_has_stats_but_nothing_to_train_on(url: str) -> None:
    with open_store(url) as store:
        stats = store.stats()
    assert stats.count == 0 and stats.model_right is None and stats.first is None
    assert set(stats.per_digit.values()) == {0}
    with pytest.raises(FeedbackError, match="no corrections to train on"):
        read_feedback(url)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"label": 10}, "label"),
        ({"label": -1}, "label"),
        ({"label": True}, "label"),
        ({"label": "7"}, "label"),
        ({"model_digit": None}, "model_digit"),  # answer "digit" without its digit
        ({"model_answer": "maybe"}, "model_answer"),
        ({"confidence": 1.5}, "confidence"),
        ({"model_name": ""}, "model_name"),
        ({"image": b""}, "image"),
        ({"media_type": "text/plain"}, "media_type"),
        ({"pixels": np.zeros((28, 27), np.uint8)}, "pixels"),
        ({"pixels": np.zeros((28, 28), np.float32)}, "pixels"),
    ],
)
def test_bad_rows_are_refused_before_anything_is_written(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    url = sqlite_url(tmp_path)
    with open_store(url) as store:
        with pytest.raises(ValueError, match=message):
            add(store, 4, np.zeros((28, 28), np.uint8), **changes)
        assert store.count() == 0


# --- caps --------------------------------------------------------------------------------------


def test_an_image_over_its_cap_is_refused(url: str) -> None:
    pixels = random_digits(1)[0][0]
    with open_store(url, max_image_bytes=len(IMAGE)) as store:
        add(store, 2, pixels)  # exactly at the cap: kept
        with pytest.raises(ImageTooLargeError, match=f"over the {len(IMAGE)} bytes"):
            add(store, 2, pixels, image=IMAGE + b"x")
        assert store.count() == 1


def test_past_the_store_cap_adding_is_refused_and_nothing_changes(url: str) -> None:
    images, _ = random_digits(4, seed=3)
    row = len(IMAGE) + PIXELS
    with open_store(url, max_store_bytes=3 * row) as store:
        for image in images[:3]:
            add(store, 9, image)
        with pytest.raises(StoreFullError, match=r"full \(" + str(3 * row)):
            add(store, 9, images[3])
        assert store.count() == 3
    # A store opened with a higher cap takes more: the cap is the service's setting, not the data's.
    with open_store(url, max_store_bytes=4 * row) as store:
        add(store, 9, images[3])
        assert store.count() == 4


# --- several processes at once -----------------------------------------------------------------


def write_rows(url: str, worker: int, rows: int, cap: int | None, start: Any, out: Any) -> None:
    """One process's share: `rows` corrections as fast as it can, after all have started."""
    options = {} if cap is None else {"max_store_bytes": cap}
    saved = refused = 0
    failures: list[str] = []
    images, labels = random_digits(rows, seed=100 + worker)
    with open_store(url, **options) as store:
        start.wait(timeout=60)
        for image, label in zip(images, labels, strict=True):
            try:
                add(store, int(label), image, model_name=f"worker-{worker}")
                saved += 1
            except StoreFullError:
                refused += 1
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
    out.put((worker, saved, refused, failures))


def run_writers(url: str, workers: int, rows: int, cap: int | None = None) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(workers), context.Queue()
    processes = [
        context.Process(target=write_rows, args=(url, index, rows, cap, start, out))
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    results = sorted(out.get(timeout=180) for _ in processes)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    return results


def test_two_processes_write_at_once_and_every_row_is_there(url: str) -> None:
    # Both start on a store that does not exist yet: creating the table is raced for too.
    results = run_writers(url, workers=2, rows=60)

    assert [failures for *_, failures in results] == [[], []]
    assert [(worker, saved) for worker, saved, *_ in results] == [(0, 60), (1, 60)]
    with open_store(url, create=False) as store:
        stats = store.stats()
    assert stats.count == 120
    assert stats.models == {"worker-0": 60, "worker-1": 60}
    pixels, labels = read_feedback(url)
    expected = [random_digits(60, seed=100 + worker) for worker in (0, 1)]
    # Each worker's rows are all there, unchanged (in whatever order the two interleaved).
    got = sorted(zip(labels.tolist(), (p.tobytes() for p in pixels), strict=True))
    want = sorted(
        (int(y), x.tobytes()) for images, ys in expected for x, y in zip(images, ys, strict=True)
    )
    assert got == want
    if url.startswith("sqlite"):
        file = url.removeprefix("sqlite:///")
        assert sqlite3.connect(file).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_writers_racing_for_the_last_room_never_pass_the_cap(url: str) -> None:
    row = len(IMAGE) + PIXELS
    results = run_writers(url, workers=2, rows=40, cap=50 * row)

    assert [failures for *_, failures in results] == [[], []]
    saved = sum(result[1] for result in results)
    refused = sum(result[2] for result in results)
    assert (saved, refused) == (50, 30)
    with open_store(url, create=False) as store:
        assert store.count() == 50
        assert store.stats().stored_bytes == 50 * row


# --- opening -----------------------------------------------------------------------------------


def test_reading_a_missing_sqlite_file_names_it_and_creates_nothing(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    with pytest.raises(FeedbackError, match=r"feedback\.sqlite: no database there"):
        read_feedback(url)
    assert not (tmp_path / "store").exists()


def test_a_database_without_the_table_is_no_store(url: str) -> None:
    if url.startswith("sqlite"):  # an empty database file (the PostgreSQL one is empty already)
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir()
        sqlite3.connect(path).close()
    open_store(url).close()  # opened, never used: nothing is created
    with pytest.raises(FeedbackError, match="no feedback store there"):
        open_store(url, create=False).count()


def test_a_table_of_another_shape_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE corrections (id INTEGER PRIMARY KEY, note TEXT)")
    with pytest.raises(FeedbackError, match="not a feedback store's.*created_at"):
        open_store(f"sqlite:///{path}").count()


def test_a_file_that_is_no_database_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("shopping list\n" * 100)
    with pytest.raises(FeedbackError) as caught:
        open_store(f"sqlite:///{path}", create=False).count()
    assert str(caught.value).startswith(f"sqlite:///{path}: ")
    assert "\n" not in str(caught.value)


def test_an_unreachable_server_is_one_line_with_the_password_masked() -> None:
    url = "postgresql://digits:hunter2@127.0.0.1:9/feedback"  # the discard port: refused
    with pytest.raises(FeedbackError) as caught:
        open_store(url).count()
    message = str(caught.value)
    assert message.startswith("postgresql://digits:***@127.0.0.1:9/feedback: ")
    assert "hunter2" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/feedback", "unsupported database 'mysql'"),
        ("sqlite://", "give a file"),
        ("sqlite:///:memory:", "give a file"),
        ("not a url", "not a database URL"),
    ],
)
def test_urls_that_name_no_usable_store(url: str, message: str) -> None:
    with pytest.raises(FeedbackError, match=message):
        open_store(url)


def test_plain_postgresql_urls_go_through_psycopg_3() -> None:
    assert database_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert database_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert database_url("sqlite:///x.sqlite") == "sqlite:///x.sqlite"
    assert shown_url("postgresql://u:secret@h/d") == "postgresql://u:***@h/d"


# --- export ------------------------------------------------------------------------------------


def labelled_store(url: str, mnist: DigitData, count: int) -> None:
    with open_store(url) as store:
        for image, label in zip(mnist.x_test[:count], mnist.y_test[:count], strict=True):
            add(store, int(label), image)
        add(store, 6, None, model_digit=None, model_answer="no_digit", confidence=None)


def test_export_writes_an_image_folder_once(url: str, tmp_path: Path, mnist: DigitData) -> None:
    labelled_store(url, mnist, 20)
    out = tmp_path / "export"

    first = export_images(url, out)
    files = sorted(out.glob("*/*.png"))
    assert (first.written, first.kept, first.without_pixels) == (20, 0, 1)
    assert len(files) == 20
    by_name = {path.name: path for path in files}
    for index, (image, label) in enumerate(zip(mnist.x_test[:20], mnist.y_test[:20], strict=True)):
        (path,) = [p for name, p in by_name.items() if name.startswith(f"{index + 1:07d}-")]
        assert path.parent.name == str(label)
        np.testing.assert_array_equal(np.asarray(Image.open(path)), image)

    again = export_images(url, out)
    assert (again.written, again.kept) == (0, 20)
    assert sorted(out.glob("*/*.png")) == files  # the same names: nothing duplicated

    with open_store(url) as store:
        add(store, 4, mnist.x_test[20])
    third = export_images(url, out)
    assert (third.written, third.kept) == (1, 20)

    # The project's own reader takes the folder back, each file under its label.
    read = read_image_folder(out)
    assert sorted(read.labels.tolist()) == sorted([*mnist.y_test[:20].tolist(), 4])


# --- the command line --------------------------------------------------------------------------


def test_stats_json_has_the_counts(url: str, mnist: DigitData) -> None:
    labelled_store(url, mnist, 10)
    with open_store(url) as store:
        add(store, int(mnist.y_test[10]), mnist.x_test[10], model_digit=int(mnist.y_test[10]))

    result = runner.invoke(app, ["feedback", "stats", url, "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    labels = [*mnist.y_test[:10].tolist(), 6, int(mnist.y_test[10])]
    assert document["count"] == 12
    assert document["per_digit"] == {str(d): labels.count(d) for d in range(10)}
    assert document["model_right"] == pytest.approx(1 / 12)
    assert document["trainable"] == 11
    assert document["url"] == shown_url(url)


def test_stats_table_fits_80_columns(tmp_path: Path, mnist: DigitData) -> None:
    url = sqlite_url(tmp_path)
    labelled_store(url, mnist, 30)
    result = runner.invoke(app, ["feedback", "stats", url], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.rstrip("\n").split("\n")
    table = lines[lines.index(next(line for line in lines if line.startswith("digit"))) :]
    assert all(len(line) <= 80 for line in table), max(table, key=len)
    assert len(table) == 2 + 10  # header, rule, one row per digit
    assert "31 corrections (30 with a 28×28" in result.stdout


def test_export_command_writes_the_folder(tmp_path: Path, mnist: DigitData) -> None:
    url = sqlite_url(tmp_path)
    labelled_store(url, mnist, 5)
    out = tmp_path / "folder"
    result = runner.invoke(app, ["feedback", "export", url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "5 images (5 new, 0 there already)" in result.stdout
    assert "left out 1" in result.stdout
    assert len(list(out.glob("*/*.png"))) == 5


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder: None, "no database there"),
        (
            lambda folder: sqlite3.connect(folder / "store" / "feedback.sqlite").close(),
            "no feedback store there",
        ),
    ],
    ids=["missing", "empty"],
)
def test_command_errors_are_one_line_naming_the_url(
    tmp_path: Path, make: Any, message: str
) -> None:
    (tmp_path / "store").mkdir()
    make(tmp_path)
    url = sqlite_url(tmp_path)
    for command in (["stats", url], ["export", url, "--out", str(tmp_path / "x")]):
        result = runner.invoke(app, ["feedback", *command])
        assert result.exit_code == 1
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith(f"error: {url}: {message}")


def test_export_png_is_the_28x28_bright_on_dark(tmp_path: Path, mnist: DigitData) -> None:
    url = sqlite_url(tmp_path)
    labelled_store(url, mnist, 1)
    export_images(url, tmp_path / "out")
    (path,) = tmp_path.glob("out/*/*.png")
    image = Image.open(io.BytesIO(path.read_bytes()))
    assert image.size == (28, 28) and image.mode == "L"
    # MNIST's background is black, its ink white: the corners stay dark.
    assert np.asarray(image)[[0, 0, -1, -1], [0, -1, 0, -1]].max() == 0
