"""The application factory: `create_app()` builds the FastAPI app around one loaded model.

The model is loaded here, once per process, so a bad MODEL fails at start-up and not on the first
request. Nothing on this path imports torch: the model runs on ONNX Runtime.
"""

from __future__ import annotations

import ctypes

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from digits import __version__
from digits.serve import limits
from digits.serve.discovery import find_best_run
from digits.serve.errors import install_error_handlers
from digits.serve.limits import BodyLimitMiddleware
from digits.serve.recognizer import Recognizer
from digits.serve.routes import docs, meta, page, predict
from digits.serve.routes.explain import router as explain_router
from digits.serve.routes.feedback import router as feedback_router
from digits.serve.routes.page import STATIC_DIR
from digits.serve.settings import Settings

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
DESCRIPTION = (
    "Handwritten digit recognition over HTTP. Send an image (the file itself as the body, with "
    "its `image/*` type; multipart field `file`; or JSON with `image` as base64) or 784 MNIST "
    "pixels; get the digit, its confidence, all ten probabilities "
    'and the 28×28 image the model saw. Errors are JSON: `{"error": code, "detail": text}`.'
)


def create_app(settings: Settings | None = None, recognizer: Recognizer | None = None) -> FastAPI:
    """The web service. `settings` default to the environment; the model to `settings.model`,
    else the best run under `settings.runs_dir`."""
    settings = settings or Settings()
    _return_freed_memory()
    # Read by uvicorn's protocol in this process, for every connection it accepts.
    limits.HeadGuard.header_timeout_s = settings.header_timeout_s
    if recognizer is None:
        model_path = settings.model or find_best_run(settings.runs_dir)
        recognizer = Recognizer.load(model_path, settings.threshold, settings.max_digits)

    app = FastAPI(
        title="digits",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # replaced by the offline page in routes/docs.py
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.recognizer = recognizer

    install_error_handlers(app)
    docs.complete_openapi(app)  # request bodies documented by hand name their models by $ref
    app.include_router(page.router)
    # Load balancers and uptime checks probe with HEAD; FastAPI routes answer only what they list.
    for path, endpoint in (
        ("/", page.index),
        ("/docs", docs.api_docs),
        ("/api/health", meta.health),
    ):
        app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)
    app.include_router(docs.router)
    app.include_router(meta.router, prefix="/api")
    app.include_router(predict.router, prefix="/api")
    app.include_router(explain_router, prefix="/api")
    app.include_router(feedback_router, prefix="/api")
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
        )
    # Added last, so it runs first: an oversized body is refused before anything else reads it.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        slots=settings.image_slots,
        wait_s=settings.slot_wait_s,
        body_budget=settings.body_budget_bytes,
    )
    return app


def _return_freed_memory() -> None:
    """Make glibc give large freed blocks back to the system at once.

    A decoded image is tens of megabytes in blocks of up to 16 MB. By default glibc raises its
    mmap threshold each time such a block is freed, so the next ones come from the heap and stay
    in the worker's resident memory after the request; a fixed 1 MB threshold keeps them mmapped,
    returned on free. Elsewhere than glibc this does nothing."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 1024 * 1024)
    except (OSError, AttributeError):
        pass


def app_from_environment() -> FastAPI:
    """Factory for uvicorn (`--factory`), used by every worker process of `digits serve`."""
    return create_app(Settings())
