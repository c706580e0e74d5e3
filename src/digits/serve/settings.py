"""Service settings: defaults, overridden by `DIGITS_SERVE_*` environment variables.

`digits serve` resolves the model and writes its options into the environment before uvicorn
starts, so every worker process builds the same app from the same settings.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from digits.answers import NOT_SURE_THRESHOLD
from digits.feedback import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_STORE_BYTES
from digits.feedback import default_url as default_feedback_url

MIB = 1024 * 1024


class Settings(BaseSettings):
    """How the web service runs; each field is also `DIGITS_SERVE_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="DIGITS_SERVE_", extra="ignore")

    model: Path | None = None
    """A run directory holding model.onnx, or an .onnx file; None serves the best run found."""
    runs_dir: Path = Path("runs")
    """Where to look for trained runs when no model is given."""
    host: str = "127.0.0.1"
    """Interface to listen on; loopback unless asked otherwise."""
    port: int = Field(default=8000, ge=0, le=65535)
    """TCP port."""
    workers: int = Field(default=1, ge=1, le=64)
    """Worker processes, each with its own copy of the model."""
    max_upload_bytes: int = Field(default=8 * MIB, ge=1024)
    """Largest image file accepted, in bytes (a base64 body may be a third larger)."""
    max_pixels: int = Field(default=12_600_000, ge=784)
    """Largest image decoded, in pixels (width × height), checked from the header before any
    pixel is: a 4096 × 3072 photo or an A4 page at 300 dpi. A JPEG counts at the reduced scale
    it is decoded at (up to 1/8 on each side), so bigger photos pass; see docs/benchmarks.md."""
    body_budget_bytes: int = Field(default=32 * MIB, ge=1024)
    """Request bodies held in memory at once, over all requests; past it, reading waits."""
    image_slots: int = Field(default=2, ge=1, le=64)
    """Requests with a body (images) worked on at once per worker; the rest wait."""
    slot_wait_s: float = Field(default=10.0, gt=0)
    """How long a request waits for an image slot before it is answered 503 with Retry-After."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """Time allowed for a whole request body to arrive, else 408."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """Time allowed for a request's line and headers to arrive, else the connection is closed."""
    keep_alive_s: int = Field(default=5, ge=1)
    """How long an idle keep-alive connection stays open."""
    max_connections: int = Field(default=64, ge=1)
    """Connections and requests one worker takes at once; past it, 503."""
    threshold: float = Field(default=NOT_SURE_THRESHOLD, ge=0.0, le=1.0)
    """Below this confidence the answer is "not sure" and `digit` is null."""
    max_digits: int = Field(default=32, ge=1, le=1000)
    """Most digits /api/read returns for one image."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed to call the API from a browser; empty turns CORS off."""
    access_log: bool = False
    """One log line per request. Off by default: it costs about a twentieth of a drawing's
    CPU time, and the reverse proxy in front (see the README) logs requests anyway."""
    feedback_url: str = Field(default_factory=default_feedback_url)
    """Where corrections sent from the page are kept: `sqlite:///FILE` or `postgresql://...`
    (default: feedback.sqlite in the user's data folder); empty turns feedback off."""
    feedback_max_image_bytes: int = Field(default=DEFAULT_MAX_IMAGE_BYTES, ge=1024)
    """Largest image kept with a correction, in bytes; a larger one is refused (413)."""
    feedback_max_store_bytes: int = Field(default=DEFAULT_MAX_STORE_BYTES, ge=MIB)
    """All kept images and 28×28s together, in bytes; past it corrections are refused (409)."""

    @property
    def max_body_bytes(self) -> int:
        """Largest request body: a base64 image in JSON, or a multipart file with its headers."""
        return self.max_upload_bytes * 4 // 3 + 64 * 1024
