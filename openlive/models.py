"""Live API model names: how a client spells them, and which pipeline serves each."""

from __future__ import annotations

import re
from typing import Any

from .config import Config, ModelEntry

# "models/x", "publishers/google/models/x", "projects/p/locations/l/publishers/google/models/x",
# and Firebase AI Logic's Google AI form "projects/p/models/x"
_PREFIX = re.compile(r"^(?:projects/[^/]+/(?:locations/[^/]+/)?)?(?:publishers/[^/]+/)?models/")


def bare_model_id(name: str) -> str:
    return _PREFIX.sub("", name.strip())


# Google adds Live model names every few months ("gemini-3.8-live", "gemini-3.1-flash-live-preview",
# "gemini-2.5-flash-native-audio-preview-12-2025"); frameworks default to the newest. Any Gemini
# Live name is served by the default pipeline unless [models] names it, so a framework's default
# model just works; other unknown names are still "not found".
_GEMINI_LIVE = re.compile(r"^gemini-[\w.-]*(?:live|native-audio)[\w.-]*$", re.IGNORECASE)


def resolve_model(config: Config, name: str) -> ModelEntry | None:
    bare = bare_model_id(name)
    entry = config.models.get(bare)
    if entry is None and _GEMINI_LIVE.match(bare) and "default" in config.used_llms:
        entry = ModelEntry(bare)
    return entry


# The REST methods (`generateContent`, `countTokens`) are called with the SDKs' everyday model
# names ("gemini-2.5-flash", "gemini-3-flash-preview"): any Gemini name is served by the default
# pipeline there too, unless [models] names it.
_GEMINI = re.compile(r"^gemini-[\w.-]+$", re.IGNORECASE)


def resolve_generate_model(config: Config, name: str) -> ModelEntry | None:
    """The pipeline that answers `generateContent` for `name`: as for Live, and any other Gemini name."""
    entry = resolve_model(config, name)
    bare = bare_model_id(name)
    if entry is None and _GEMINI.match(bare) and "default" in config.used_llms:
        entry = ModelEntry(bare)
    return entry


def _display_name(entry: ModelEntry) -> str:
    if entry.display_name:
        return entry.display_name
    return " ".join(w.capitalize() if not w[0].isdigit() else w for w in entry.name.split("-"))


def rest_model(entry: ModelEntry, *, vertex: bool = False) -> dict[str, Any]:
    """A model as the REST API lists it, so `client.models.list()` works unchanged."""
    if vertex:
        return {
            "name": f"publishers/google/models/{entry.name}",
            "displayName": _display_name(entry),
            "description": entry.description or f"Served by openlive ({entry.llm})",
            "versionId": "001",
        }
    return {
        "name": f"models/{entry.name}",
        "version": "001",
        "displayName": _display_name(entry),
        "description": entry.description or f"Served by openlive ({entry.llm})",
        "inputTokenLimit": entry.input_token_limit,
        "outputTokenLimit": entry.output_token_limit,
        "supportedGenerationMethods": ["bidiGenerateContent", "generateContent", "streamGenerateContent",
                                       "countTokens"],
        "temperature": 1.0,
        "maxTemperature": 2.0,
        "topP": 0.95,
        "topK": 64,
    }
