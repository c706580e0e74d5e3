"""The one table of corrections, in SQLAlchemy Core: the same definition on SQLite and PostgreSQL.

A row is what a person said a digit was and what the model had answered, with the image they gave
and the 28×28 the model saw. Nothing about the person is kept: no address, no agent, no session.
"""

from __future__ import annotations

from typing import get_args

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
)

from digits.answers import Answer

TABLE = "corrections"
PIXELS = 28 * 28
ANSWERS: tuple[str, ...] = get_args(Answer)
"""The kinds of model answer, as `digits.answers` names them."""
MAX_MODEL_NAME = 200
MAX_MEDIA_TYPE = 100

metadata = MetaData()

_answers = ", ".join(f"'{kind}'" for kind in ANSWERS)
corrections = Table(
    TABLE,
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False, comment="UTC"),
    Column("label", SmallInteger, nullable=False, comment="the digit the person says it is"),
    Column("model_digit", SmallInteger, nullable=True, comment="the model's digit, if it gave one"),
    Column("model_answer", String(16), nullable=False, comment="digit/not_sure/not_digit/no_digit"),
    Column("confidence", Float, nullable=True, comment="the model's best digit's probability"),
    Column("model_name", String(MAX_MODEL_NAME), nullable=False),
    Column("image", LargeBinary, nullable=False, comment="the file the person gave"),
    Column("media_type", String(MAX_MEDIA_TYPE), nullable=False, comment="decided from its bytes"),
    # Null when preparation found no ink: the model saw nothing, and there is nothing to train on.
    Column("pixels", LargeBinary, nullable=True, comment="the 28×28 the model saw, row by row"),
    # What the row counts against the store's cap (image and 28×28), indexed: summing an index
    # reads a few pages, summing the rows reads all of them, a page or more each.
    Column("stored_bytes", Integer, nullable=False, comment="image and 28×28 bytes"),
    Index("corrections_stored_bytes", "stored_bytes"),
    CheckConstraint("label BETWEEN 0 AND 9", name="label_is_a_digit"),
    CheckConstraint("model_digit IS NULL OR model_digit BETWEEN 0 AND 9", name="model_digit"),
    CheckConstraint(f"model_answer IN ({_answers})", name="model_answer_kind"),
    CheckConstraint("(model_digit IS NULL) = (model_answer <> 'digit')", name="digit_iff_answer"),
)

COLUMNS = frozenset(column.name for column in corrections.columns)
