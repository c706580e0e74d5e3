"""Request dependencies: the loaded model and the settings, as `Annotated` types for routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from digits.serve.recognizer import Recognizer
from digits.serve.settings import Settings

# Both are async only so that FastAPI calls them inline: it runs plain `def` dependencies in the
# thread pool, a hop per dependency per request for what is an attribute lookup.


async def get_recognizer(request: Request) -> Recognizer:
    recognizer: Recognizer = request.app.state.recognizer
    return recognizer


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


RecognizerDep = Annotated[Recognizer, Depends(get_recognizer)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
