"""Database URLs as people write them, turned into what SQLAlchemy opens and what messages show.

These are the rules `digits tune --storage` follows, here without torch or Optuna so that the
service's feedback store can use them: a plain `postgresql://` goes through psycopg 3, and a
password never reaches a message.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
DEFAULT_FILE_NAME = "feedback.sqlite"


def default_url() -> str:
    """`sqlite:///<user data dir>/feedback.sqlite`: the service's store when none is named."""
    return SQLITE_PREFIX + str(Path(platformdirs.user_data_dir("digits")) / DEFAULT_FILE_NAME)


def sqlite_file(url: str) -> Path | None:
    """The file of a `sqlite:///FILE` URL (query string dropped); None for other URLs and for
    an in-memory database."""
    if not url.startswith(SQLITE_PREFIX):
        return None
    path = url.removeprefix(SQLITE_PREFIX).split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES) or url.startswith("postgresql+")


def database_url(url: str) -> str:
    """The SQLAlchemy URL for a URL as users write it: a plain `postgresql://` (or
    `postgres://`) goes through psycopg 3, the driver the `serve` and `train` extras install
    (SQLAlchemy's default for that scheme would be psycopg2)."""
    for scheme in POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


def shown_url(url: str) -> str:
    """The URL with its password masked, for messages and tables."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
