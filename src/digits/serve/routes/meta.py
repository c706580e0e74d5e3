"""`GET /api/health` and `GET /api/model`: is the service up, and what does it serve."""

from __future__ import annotations

import time

from fastapi import APIRouter

from digits import __version__
from digits.serve.deps import RecognizerDep, SettingsDep
from digits.serve.schemas import Calibration, Health, ModelInfo

router = APIRouter(tags=["service"])
STARTED = time.monotonic()


@router.get("/health", summary="Is the service up")
async def health(recognizer: RecognizerDep) -> Health:
    """`ok` once the model is loaded; for load balancers and start-up checks."""
    return Health(
        status="ok",
        model=recognizer.info.name,
        version=__version__,
        uptime_s=round(time.monotonic() - STARTED, 3),
    )


@router.get("/model", summary="The model being served")
async def model_info(recognizer: RecognizerDep, settings: SettingsDep) -> ModelInfo:
    """Name, recipe, test accuracy, calibration temperature, threshold and package version, and
    whether corrections are kept (`feedback`)."""
    info = recognizer.info
    return ModelInfo(
        name=info.name,
        recipe=info.recipe,
        accuracy=info.accuracy,
        parameters=info.parameters,
        calibration=Calibration(temperature=info.temperature, source=info.calibration),
        preprocessing_version=info.preprocessing_version,
        source=info.source,
        threshold=settings.threshold,
        version=__version__,
        feedback=bool(settings.feedback_url),
    )
