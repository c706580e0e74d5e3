"""Corrections people send from the page, kept in a database (SQLite or PostgreSQL).

Torch-free and web-free: the service writes through it, `digits feedback` reads it, and
`read_feedback(url)` hands the corrections to fine-tuning as arrays.
"""

from digits.feedback.export import Exported, export_images
from digits.feedback.store import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_STORE_BYTES,
    Example,
    FeedbackError,
    FeedbackStore,
    ImageTooLargeError,
    Saved,
    Stats,
    StoreFullError,
    open_store,
    read_feedback,
)
from digits.feedback.urls import database_url, default_url, shown_url

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_STORE_BYTES",
    "Example",
    "Exported",
    "FeedbackError",
    "FeedbackStore",
    "ImageTooLargeError",
    "Saved",
    "Stats",
    "StoreFullError",
    "database_url",
    "default_url",
    "export_images",
    "open_store",
    "read_feedback",
    "shown_url",
]
