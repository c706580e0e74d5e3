"""The web service: a FastAPI app around the ONNX predictor, with a drawing page and an HTTP API.

`create_app()` builds it; `digits serve` runs it on uvicorn. Importing this package never imports
torch.
"""

from __future__ import annotations

from digits.serve.app import create_app
from digits.serve.settings import Settings

__all__ = ["Settings", "create_app"]
