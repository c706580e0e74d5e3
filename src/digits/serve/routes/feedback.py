"""`POST /api/feedback`: a person's correction of an answer, kept in the feedback store.

The image is prepared and classified here exactly as `/api/predict` does it, so the model's answer
kept beside the person's digit is the server's own, never one a client claims. The store
(`digits.feedback`) is opened on the first correction a worker receives: each worker process has
its own connections, and a database that is down costs the corrections, never the predictions.
"""

from __future__ import annotations

import base64
import io
import logging
import re
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from digits.feedback import (
    FeedbackError,
    FeedbackStore,
    ImageTooLargeError,
    StoreFullError,
    open_store,
)
from digits.serve.deps import RecognizerDep, SettingsDep
from digits.serve.errors import APIError, too_large, unsupported
from digits.serve.imaging import decode_base64, open_image
from digits.serve.schemas import ErrorResponse, FeedbackRequest, FeedbackResponse, PredictResponse
from digits.serve.settings import Settings

router = APIRouter(tags=["feedback"])
log = logging.getLogger("digits.serve")

# As /api/predict: images up to this many decoded pixels are prepared inline.
INLINE_PIXELS = 320 * 320
PREVIEW_PREFIX = "data:image/png;base64,"
LABEL = re.compile(r"[0-9]")

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The image could not be decoded."},
    404: {"model": ErrorResponse, "description": "This service keeps no corrections."},
    409: {"model": ErrorResponse, "description": "The store is full: no more are kept."},
    413: {"model": ErrorResponse, "description": "The image is over the limit for corrections."},
    415: {"model": ErrorResponse, "description": "Not an image, or not multipart or JSON."},
    422: {"model": ErrorResponse, "description": "No image, or a label that is not a digit."},
    503: {"model": ErrorResponse, "description": "The store cannot be reached just now."},
}
BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "label"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The image that was sent for the answer.",
                        },
                        "label": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": 9,
                            "description": "The digit it is.",
                        },
                    },
                }
            },
            "application/json": {"schema": {"$ref": "#/components/schemas/FeedbackRequest"}},
        },
    }
}


def _invalid(detail: str) -> APIError:
    return APIError(422, "invalid_request", detail)


def _unavailable() -> APIError:
    return APIError(
        503, "feedback_unavailable", "corrections cannot be kept just now; try again later"
    )


async def feedback_store(request: Request, settings: SettingsDep) -> FeedbackStore:
    """This worker's store, opened on first use (async: runs in the event loop, so once)."""
    if not settings.feedback_url:
        raise APIError(
            404, "feedback_off", "this service keeps no corrections (its feedback store is off)"
        )
    store: FeedbackStore | None = getattr(request.app.state, "feedback_store", None)
    if store is None:
        try:
            store = open_store(
                settings.feedback_url,
                max_image_bytes=settings.feedback_max_image_bytes,
                max_store_bytes=settings.feedback_max_store_bytes,
            )
        except FeedbackError as exc:
            log.error("cannot open the feedback store: %s", exc)
            raise _unavailable() from None
        request.app.state.feedback_store = store
    return store


StoreDep = Annotated[FeedbackStore, Depends(feedback_store)]


def _label(value: object) -> int:
    if not isinstance(value, str) or not LABEL.fullmatch(value.strip()):
        shown = "nothing" if value is None else repr(value if isinstance(value, str) else "a file")
        raise _invalid(f"label: expected one digit 0–9, got {shown}")
    return int(value.strip())


async def _multipart(request: Request, settings: Settings) -> tuple[bytes, int]:
    async with request.form(max_files=1, max_fields=4) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _invalid('multipart: send the image in a file field named "file"')
        label = _label(form.get("label"))
        data = await upload.read(settings.max_upload_bytes + 1)
    return data, label


async def _json(request: Request, settings: Settings) -> tuple[bytes, int]:
    try:
        body = FeedbackRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        ]
        raise _invalid("; ".join(problems)) from None
    return decode_base64(body.image, settings.max_upload_bytes), body.label


async def _correction(request: Request, settings: Settings) -> tuple[bytes, int]:
    """The image's bytes and the person's digit, from multipart or JSON."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await _multipart(request, settings)
    if media == "application/json":
        return await _json(request, settings)
    raise unsupported(
        f"content type {media or '(none)'!r}: send multipart/form-data with the image in field "
        '"file" and the digit in field "label", or application/json {"image", "label"}'
    )


def _seen(answer: PredictResponse) -> np.ndarray | None:
    """The 28×28 the model saw, read back from the answer's lossless PNG preview."""
    if answer.preview is None:
        return None
    png = base64.b64decode(answer.preview.removeprefix(PREVIEW_PREFIX))
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.uint8)
    if pixels.shape != (28, 28):
        raise ValueError(f"the preview is {pixels.shape}, not 28×28")
    return pixels


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    status_code=201,
    summary="Correct an answer",
    responses=ERRORS,
    openapi_extra=BODY_DOC,
)
async def feedback(
    request: Request, recognizer: RecognizerDep, settings: SettingsDep, store: StoreDep
) -> FeedbackResponse:
    """Keep the digit a person says an image shows, with the model's own answer to it.

    Send the image that was sent for the answer and the digit it is (`label`, 0–9), as multipart
    (`file` and `label`) or JSON (`image` as base64, `label`). The image is prepared and
    classified again here, as `/api/predict` does; what is kept is the image, its type (from its
    bytes), the 28×28 the model saw, its answer and confidence, the model's name and the time,
    nothing about the sender. `GET /api/model` says whether corrections are kept (`feedback`)."""
    data, label = await _correction(request, settings)
    if len(data) > settings.feedback_max_image_bytes:
        raise too_large(
            f"the image is {len(data)} bytes; corrections keep images up to "
            f"{settings.feedback_max_image_bytes} bytes"
        )
    opened = open_image(data, settings.max_upload_bytes, settings.max_pixels)
    if opened.decoded_pixels <= INLINE_PIXELS:
        answer = recognizer.predict_opened(opened)
    else:
        answer = await run_in_threadpool(recognizer.predict_opened, opened)
    fmt = opened.image.format or ""
    try:
        saved = await run_in_threadpool(
            store.add,
            label=label,
            model_digit=answer.digit,
            model_answer=answer.answer,
            confidence=answer.confidence,
            model_name=answer.model,
            image=data,
            media_type=Image.MIME.get(fmt, f"image/{fmt.lower() or 'unknown'}"),
            pixels=_seen(answer),
        )
    except ImageTooLargeError:
        raise too_large(
            f"corrections keep images up to {store.max_image_bytes} bytes; this one is {len(data)}"
        ) from None
    except StoreFullError as exc:
        log.warning("%s", exc)
        raise APIError(
            409, "store_full", "the corrections store is full: no more corrections are kept"
        ) from None
    except FeedbackError as exc:
        log.error("keeping a correction failed: %s", exc)
        raise _unavailable() from None
    return FeedbackResponse(
        id=saved.id,
        label=label,
        model_digit=answer.digit,
        model_answer=answer.answer,
        confidence=answer.confidence,
        right=answer.digit == label,
        model=answer.model,
    )
