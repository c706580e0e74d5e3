"""The web service: a FastAPI app around the ONNX predictor, with a drawing page and an HTTP API.

`create_app()` builds it; `digits serve` runs it on uvicorn. Importing this package never imports
torch. Its names are imported lazily, so that `digits.serve.settings` alone stays light: the
supervising process of a multi-worker server needs the settings, not the app.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from digits.serve.app import create_app

        return create_app
    if name == "Settings":
        from digits.serve.settings import Settings

        return Settings
    raise AttributeError(f"module 'digits.serve' has no attribute {name!r}")
