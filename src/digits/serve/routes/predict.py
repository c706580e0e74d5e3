"""`POST /api/predict` and `POST /api/read`: an image in, the digit (or digits) out.

Both take the image as a multipart upload (field `file`) or as JSON; /api/predict also takes 784
MNIST pixels. Large images are decoded and prepared in the thread pool: a photo takes tens of
milliseconds and must not hold up the event loop. Small ones (the page's drawings, scans of a
digit) take about a millisecond, less than the hop to the thread pool and back costs in CPU, so
/api/predict prepares them inline; the header, read first in the loop, tells which is which.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from digits.serve.deps import RecognizerDep, SettingsDep
from digits.serve.errors import APIError, unsupported
from digits.serve.imaging import decode_base64, open_image, pixels_to_array
from digits.serve.schemas import (
    ErrorResponse,
    PredictRequest,
    PredictResponse,
    ReadRequest,
    ReadResponse,
)
from digits.serve.settings import Settings

router = APIRouter(tags=["recognition"])

# Images up to this many decoded pixels are prepared inline (preprocessing works at 320 pixels a
# side, so up to that size the whole answer costs about a millisecond of CPU).
INLINE_PIXELS = 320 * 320

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The image could not be decoded."},
    413: {"model": ErrorResponse, "description": "The body, file or pixel count is too large."},
    415: {"model": ErrorResponse, "description": "Not an image, or not multipart or JSON."},
    422: {"model": ErrorResponse, "description": "The request is malformed."},
}
MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "An image."}},
}


def body_doc(json_model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body that is multipart with `file`, the image itself, or the JSON model."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": MULTIPART_SCHEMA},
                "image/*": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{json_model.__name__}"}
                },
            },
        }
    }


def json_response(answer: BaseModel) -> Response:
    # Serialised once, here: returning the model would make FastAPI validate it a second time.
    return Response(answer.model_dump_json(), media_type="application/json")


def _invalid(detail: str) -> APIError:
    return APIError(422, "invalid_request", detail)


async def _uploaded_file(request: Request, settings: Settings) -> bytes:
    # One file and a few small fields at most: a form with thousands of parts is refused early.
    async with request.form(max_files=1, max_fields=4) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _invalid('multipart: send the image in a file field named "file"')
        data = await upload.read(settings.max_upload_bytes + 1)
    return data


async def _json_body(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        ]
        raise _invalid("; ".join(problems)) from None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _unsupported_body(media: str) -> APIError:
    return unsupported(
        f"content type {media or '(none)'!r}: send multipart/form-data with the image in field "
        '"file", the image itself (image/*), or application/json'
    )


JsonBody = TypeVar("JsonBody", bound=BaseModel)


async def image_or_json(
    request: Request, settings: Settings, model: type[JsonBody]
) -> bytes | JsonBody:
    """The image file's bytes (multipart field `file`, or the body itself when it is sent as
    image/*: no form to parse, the cheapest way in), or the JSON body as `model`."""
    media = _media_type(request)
    if media == "multipart/form-data":
        return await _uploaded_file(request, settings)
    if media.startswith("image/"):
        return await request.body()  # bounded by the body limit already
    if media == "application/json":
        parsed: JsonBody = await _json_body(request, model)
        return parsed
    raise _unsupported_body(media)


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Recognise one digit",
    responses=ERRORS,
    openapi_extra=body_doc(PredictRequest),
)
async def predict(request: Request, recognizer: RecognizerDep, settings: SettingsDep) -> Response:
    """The digit in an image, prepared as MNIST was (grey, ink bright, cropped, 20 px, centred).

    `digit` is null, with a `reason` and the kind of `answer`, when there is no ink ("no digit:
    ..."), the model takes it for a letter, symbol or drawing ("not a digit: ...", models trained
    with that class) or the confidence is below the threshold ("not sure: ..."). JSON `pixels`
    are taken as an MNIST image already and go to the model unchanged."""
    data = await image_or_json(request, settings, PredictRequest)
    if isinstance(data, PredictRequest):
        if data.pixels is not None:
            # A fraction of a millisecond of work: cheaper inline than a hop to the thread pool.
            return json_response(recognizer.predict_pixels(pixels_to_array(data.pixels)))
        assert data.image is not None
        data = decode_base64(data.image, settings.max_upload_bytes)
    opened = open_image(data, settings.max_upload_bytes, settings.max_pixels)
    if opened.decoded_pixels <= INLINE_PIXELS:
        return json_response(recognizer.predict_opened(opened))
    return json_response(await run_in_threadpool(recognizer.predict_opened, opened))


@router.post(
    "/read",
    response_model=ReadResponse,
    summary="Read several digits",
    responses=ERRORS,
    openapi_extra=body_doc(ReadRequest),
)
async def read(request: Request, recognizer: RecognizerDep, settings: SettingsDep) -> Response:
    """Every digit in an image, left to right, each with its box, confidence and preview.

    `text` joins them, with "?" for a digit the model is not sure of."""
    data = await image_or_json(request, settings, ReadRequest)
    if isinstance(data, ReadRequest):
        data = decode_base64(data.image, settings.max_upload_bytes)
    reading = await run_in_threadpool(
        recognizer.read_file, data, settings.max_upload_bytes, settings.max_pixels
    )
    return json_response(reading)
