"""Request dependencies: the loaded model and the settings, as `Annotated` types for routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from digits.serve.recognizer import Recognizer
from digits.serve.settings import Settings


def get_recognizer(request: Request) -> Recognizer:
    recognizer: Recognizer = request.app.state.recognizer
    return recognizer


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


RecognizerDep = Annotated[Recognizer, Depends(get_recognizer)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
