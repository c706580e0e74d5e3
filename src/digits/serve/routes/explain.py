"""`POST /api/explain`: the answer /api/predict gives, and which pixels of the 28×28 drove it.

It takes the same bodies as /api/predict (parsed by the same helpers) and answers with the same
fields, plus a signed 28×28 attribution map and that map drawn over the input as a PNG. Only the
model-agnostic methods are offered: they need nothing but the model's answers on perturbed copies
of the input, asked of the ONNX model the service already holds. An explanation is tens of such
answers, or hundreds, so all the work is done in the thread pool.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from digits.explain_agnostic import MissingLibraryError, agnostic_attributions
from digits.explain_overlay import overlay
from digits.preprocess import preprocess
from digits.serve.deps import RecognizerDep, SettingsDep
from digits.serve.errors import APIError
from digits.serve.imaging import (
    OpenedImage,
    decode_base64,
    decode_opened,
    open_image,
    pixels_to_array,
    png_data_url,
)
from digits.serve.recognizer import Recognizer, prepared_or_bad_input
from digits.serve.routes.predict import ERRORS, body_doc, image_or_json, json_response
from digits.serve.schemas import ExplainMethod, ExplainResponse, PredictRequest

router = APIRouter(tags=["recognition"])

# Occlusion: 170 copies in one batch, several times faster than SHAP and LIME, which also stall
# a worker's first request while their libraries load (benchmarks/explain_speed.py,
# docs/benchmarks.md "Explanations"); and it needs no library beyond the service's own. LIME's
# map is the more faithful past the first 20 deleted pixels (docs/results.md, "Explanations:
# how faithful"): it is one query parameter away.
DEFAULT_METHOD: ExplainMethod = "occlusion"
METHOD_HELP = (
    "`occlusion` (default: a 4×4 black square at every position), `shap` (Shapley values of "
    "superpixels for the digit's log-odds) or `lime` (a weighted linear fit over superpixels)."
)


def _explain_pixels(
    recognizer: Recognizer, pixels: np.ndarray, method: ExplainMethod
) -> ExplainResponse:
    answer = recognizer.predict_pixels(pixels)
    if answer.probabilities is None:  # "no digit": nothing reached the model
        return ExplainResponse(
            **answer.model_dump(), method=method, explained=None, attributions=None, overlay=None
        )
    # The most probable digit, also for "not sure": the map says what the model leant towards.
    target = int(np.argmax(answer.probabilities))
    try:
        values = agnostic_attributions(recognizer.predictor.predict_arrays, pixels, target, method)
    except MissingLibraryError as exc:
        raise APIError(
            422, "method_unavailable", f"method {method!r} is not available here: {exc}"
        ) from None
    return ExplainResponse(
        **answer.model_dump(),
        method=method,
        explained=target,
        attributions=[[float(f"{v:.6g}") for v in row] for row in values],
        overlay=png_data_url(overlay(pixels, values)),
    )


def _explain_opened(
    recognizer: Recognizer, opened: OpenedImage, method: ExplainMethod
) -> ExplainResponse:
    image, _ = decode_opened(opened)
    prepared = prepared_or_bad_input(lambda: preprocess(image, name="the image"))
    if prepared.pixels is None:
        # The very answer /api/predict gives for the image.
        answer = recognizer.predict_opened(opened)
        return ExplainResponse(
            **answer.model_dump(), method=method, explained=None, attributions=None, overlay=None
        )
    return _explain_pixels(recognizer, prepared.pixels, method)


@router.post(
    "/explain",
    response_model=ExplainResponse,
    summary="Explain one digit",
    responses=ERRORS,
    openapi_extra=body_doc(PredictRequest),
)
async def explain(
    request: Request,
    recognizer: RecognizerDep,
    settings: SettingsDep,
    method: Annotated[ExplainMethod, Query(description=METHOD_HELP)] = DEFAULT_METHOD,
) -> Response:
    """What /api/predict answers for the image, and which of the 28×28 pixels drove it.

    The body is the same as /api/predict's: the image itself (`image/*`), multipart field
    `file`, or JSON with `image` (base64) or 784 MNIST `pixels`. `attributions` is 28 rows of 28
    signed numbers over the image in `preview`: above 0 where the pixel pushed the answer towards
    the digit in `explained`, below 0 where it pushed away. `overlay` draws them over the 28×28,
    red and blue. Hiding a part of the image, for every method, makes it black (no ink).
    A `"no_digit"` answer has no map: `explained`, `attributions` and `overlay` are null."""
    data = await image_or_json(request, settings, PredictRequest)
    if isinstance(data, PredictRequest):
        if data.pixels is not None:
            pixels = pixels_to_array(data.pixels)
            return json_response(
                await run_in_threadpool(_explain_pixels, recognizer, pixels, method)
            )
        assert data.image is not None
        data = decode_base64(data.image, settings.max_upload_bytes)
    opened = open_image(data, settings.max_upload_bytes, settings.max_pixels)
    return json_response(await run_in_threadpool(_explain_opened, recognizer, opened, method))
