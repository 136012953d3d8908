"""REST beside Live: `models.countTokens`, `generateContent` and `streamGenerateContent`.

The Gemini API's request/response methods, on the same engines the Live sessions use, so
`client.models.count_tokens`, `generate_content` and `generate_content_stream` of the SDKs work
unchanged against this server (any API version: `v1`, `v1beta`, `v1alpha`; Vertex-style paths too).
Transport only, like the rest of `server/`: a request becomes one conversation context
(session/context.py, with the engine's guidance, the instruction and the tools put together as a
Live session puts them), the LLM streams it, and the answer goes back in Google's shapes.

What a request may hold, and how it is read:

- text parts, and `text/*` inline data (read as text);
- images (`inlineData` image/*): checked like Live frames, then given to an LLM that sees, or
  described in words by the vision engine (`[camera] …` notes before the turn's words), exactly as
  a Live session does with the images of a `clientContent` turn;
- function declarations (`tools`): answered with `functionCall` parts, through the same JSON
  router (session/tools.py) or native tool calling that Live sessions use; `functionCall` and
  `functionResponse` parts in the history are read as a Live session's calls and results;
- `generationConfig`: sampling (temperature, topP, topK, seed, penalties, maxOutputTokens,
  stopSequences), one candidate, `responseMimeType` "application/json" with `responseSchema` or
  `responseJsonSchema` (the engine's grammar enforces it).

Anything else a request asks for (audio or video to answer, files, Google's server-side tools,
cached contents, several candidates, logprobs, speech or image output) is refused with 400
INVALID_ARGUMENT naming it, in Google's error shape, which the SDKs raise as `ClientError`.

Tokens are counted as Google counts them: text by the engine's tokenizer, an image at 258 tokens
(one per 768×768 tile when either side is over 384 pixels), audio at 32 tokens a second. The
usage a response reports for the prompt is what `countTokens` says for the same request.

Auth as the other REST routes: an API key (`x-goog-api-key`, `?key=`, a bearer token) when keys
are configured; ephemeral tokens are for the Live API only, as in Google's service. A key's
`tokens_per_minute` is charged as a Live turn is (the prompt before it runs, the answer after).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import math
import re
import secrets
import uuid
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .. import metrics
from ..config import Config, ModelEntry
from ..engines.llm.base import (ChatRequest, EngineError, Finished, LLMEngine, SamplingParams, TextDelta,
                                ToolCallsMade, count_tokens, estimate_tokens)
from ..engines.registry import Engines
from ..engines.vision.images import FrameError, check_frame, mime_of, side_for
from ..models import resolve_generate_model
from ..protocol.bounded_json import JSONLimitError, Limits, loads
from ..protocol.codec import _describe as describe_validation_error
from ..protocol.errors import CloseCode, ProtocolError
from ..protocol.messages import Content, GenerationConfig, Tool, WireModel
from ..redaction import fingerprint
from ..session.camera import NOTE_PREFIX
from ..session.context import RESULT_ADVICE, ContextPolicy, Conversation
from ..session.tools import MAX_PARALLEL_CALLS, RouterStream, ToolSet, openapi_to_json_schema
from ..session.user_audio import pcm_rate
from .auth import AuthError, KeyChecker, credential_from, owner_of
from .ephemeral import TOKEN_PREFIX
from .limits import EXHAUSTED, KeyLimits

log = logging.getLogger(__name__)

# POST /{version}/models/{model}:{method}, and Vertex's /{version}/projects/p/locations/l/publishers/google/models/…
_METHOD_PATH = re.compile(r"/(?P<version>v\d\w*)/(?:projects/[^/]+/locations/[^/]+/)?(?:publishers/google/)?"
                          r"models/(?P<model>[^/:]+):(?P<method>\w+)$")
COUNT, GENERATE, STREAM = "countTokens", "generateContent", "streamGenerateContent"

# Google's figures (ai.google.dev/gemini-api/docs/tokens): an image with both sides at most 384
# pixels is 258 tokens; a larger one is cut into 768×768 tiles of 258 tokens each. Audio is 32
# tokens a second (the Live API counts its realtime audio at 25: session/context.py).
IMAGE_TOKENS = 258
IMAGE_SMALL_SIDE = 384
IMAGE_TILE_SIDE = 768
AUDIO_TOKENS_PER_SECOND = 32
MAX_IMAGES = 16  # images one request may show the model (each is looked at, ~0.3 s of CPU described)
VISION_TIMEOUT_S = 30.0
VISION_TRIES = 3  # a frame dropped from a full vision queue is queued again, this many times in all
_WAV = {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"}
_JSON_MIME = "application/json"
UNAVAILABLE = "The service is currently unavailable."
INTERNAL = "Internal error occurred."


class RestError(Exception):
    """A request refused, as Google's REST error body: {"error": {"code", "message", "status"}}."""

    def __init__(self, http_status: int, status: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.http_status, "message": self.message, "status": self.status}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.http_status)


def invalid(message: str) -> RestError:
    return RestError(400, "INVALID_ARGUMENT", message)


def unsupported(feature: str) -> RestError:
    return invalid(f"{feature} is not supported by this server's generateContent (openlive).")


def from_protocol_error(exc: ProtocolError) -> RestError:
    """An error the Live side raises (token budget, context window, store down) as its REST twin."""
    if exc.reason.startswith(EXHAUSTED):
        return RestError(429, "RESOURCE_EXHAUSTED", exc.reason)
    if exc.code == CloseCode.INVALID_ARGUMENT:
        return invalid(exc.reason)
    if exc.reason == UNAVAILABLE:
        return RestError(503, "UNAVAILABLE", UNAVAILABLE)
    return RestError(500, "INTERNAL", INTERNAL)


# ------------------------------------------------------------------------------------ requests


class RestGenerationConfig(GenerationConfig):
    image_config: dict[str, Any] | None = None


class GenerateContentRequest(WireModel):
    model: str | None = None  # inside countTokens' generateContentRequest
    contents: list[Content] = Field(default_factory=list)
    system_instruction: Content | None = None
    tools: list[Tool] | None = None
    tool_config: dict[str, Any] | None = None
    safety_settings: list[dict[str, Any]] | None = None
    generation_config: RestGenerationConfig | None = None
    cached_content: str | None = None
    labels: dict[str, str] | None = None
    service_tier: str | None = None
    store: bool | None = None
    continuation_token: str | None = None


class CountTokensRequest(WireModel):
    contents: list[Content] = Field(default_factory=list)
    generate_content_request: GenerateContentRequest | None = None
    # Vertex's countTokens carries these beside the contents.
    system_instruction: Content | None = None
    tools: list[Tool] | None = None
    generation_config: RestGenerationConfig | None = None
    model: str | None = None


def _parse(model: type[WireModel], body: Any) -> Any:
    if not isinstance(body, dict):
        raise invalid("Invalid JSON payload received. Expected an object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid(describe_validation_error(exc.errors(include_url=False)[0], limit=1000)) from None


# ------------------------------------------------------------------------------------ the prompt


@dataclass
class Item:
    """One part of one turn, as it will be read: text, an image, a call the model made, a result."""

    kind: str  # "text" | "image" | "audio" | "call" | "result"
    text: str = ""  # text; for a call or result, the line the model reads
    data: bytes = b""
    mime: str = ""
    tokens: int = 0  # image and audio: as Google counts them
    # a call: {"id", "name", "args"}; a result: {"id", "name", "response"}
    call: dict[str, Any] = field(default_factory=dict)


@dataclass
class Turn:
    role: str  # "user" | "model"
    items: list[Item]


@dataclass
class Prompt:
    system: str
    turns: list[Turn]
    tools: list[Tool]
    text_tokens: int = 0
    image_tokens: int = 0
    audio_tokens: int = 0

    @property
    def total(self) -> int:
        return self.text_tokens + self.image_tokens + self.audio_tokens

    def details(self) -> list[dict[str, Any]]:
        """promptTokensDetails: the tokens of each modality there is."""
        counts = (("TEXT", self.text_tokens), ("IMAGE", self.image_tokens), ("AUDIO", self.audio_tokens))
        return [{"modality": name, "tokenCount": n} for name, n in counts if n] \
            or [{"modality": "TEXT", "tokenCount": 0}]

    def items(self, kind: str) -> list[Item]:
        return [item for turn in self.turns for item in turn.items if item.kind == kind]


def image_tokens(width: int, height: int) -> int:
    if width <= IMAGE_SMALL_SIDE and height <= IMAGE_SMALL_SIDE:
        return IMAGE_TOKENS
    return math.ceil(width / IMAGE_TILE_SIDE) * math.ceil(height / IMAGE_TILE_SIDE) * IMAGE_TOKENS


def audio_seconds(data: bytes, mime_type: str) -> float:
    """How long a WAV or raw PCM (audio/pcm;rate=N) blob plays; 400 for audio we cannot measure."""
    if mime_of(mime_type) in _WAV:
        try:
            with wave.open(io.BytesIO(data), "rb") as wav:
                frames, rate = wav.getnframes(), wav.getframerate()
        except (wave.Error, EOFError, ValueError):
            raise invalid("Request contains an invalid argument: the audio is not a readable WAV.") from None
        if rate <= 0:
            raise invalid("Request contains an invalid argument: the WAV has no sample rate.")
        return frames / rate
    try:
        rate = pcm_rate(mime_type)
    except ProtocolError:
        raise invalid(f"Request contains an invalid argument: tokens of {mime_of(mime_type)[:40]} audio cannot be "
                      "counted here; send audio/wav or audio/pcm;rate=N.") from None
    return len(data) / 2 / rate


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def read_prompt(request: GenerateContentRequest, frame_limits_check: Callable[[bytes, str], tuple[int, int]]) \
        -> Prompt:
    """The request's turns as items, every part checked; tokens are counted later (`count_prompt`)."""
    system = request.system_instruction.text() if request.system_instruction else ""
    turns: list[Turn] = []
    calls_by_name: dict[str, list[str]] = {}  # ids of the calls made so far, for results that name no id
    for index, content in enumerate(request.contents):
        if content.role not in (None, "", "user", "model", "function", "tool"):
            raise invalid("Please use a valid role: user, model.")
        role = "model" if content.role == "model" else "user"
        items: list[Item] = []
        for part_index, part in enumerate(content.parts):
            where = f"contents[{index}].parts[{part_index}]"
            if part.text is not None:
                if part.text and not part.thought:
                    items.append(Item("text", part.text))
            elif part.inline_data is not None:
                items.append(_inline_item(part.inline_data.data, part.inline_data.mime_type, where,
                                          frame_limits_check))
            elif part.function_call is not None:
                call = part.function_call
                if not call.name:
                    raise invalid(f"Request contains an invalid argument: {where}.function_call needs a name.")
                call_id = call.id or f"function-call-{uuid.uuid4().hex[:12]}"
                calls_by_name.setdefault(call.name, []).append(call_id)
                args = call.args or {}
                items.append(Item("call", f"{call.name}({_compact(args)})",
                                  call={"id": call_id, "name": call.name, "args": args}))
            elif part.function_response is not None:
                result = part.function_response
                name = result.name or ""
                waiting = calls_by_name.get(name) or []
                call_id = result.id or (waiting.pop(0) if waiting else f"function-call-{uuid.uuid4().hex[:12]}")
                response = result.response if result.response is not None else {}
                items.append(Item("result", f"[{name} result: {_compact(response)}]",
                                  call={"id": call_id, "name": name, "response": response}))
            elif part.file_data is not None:
                raise unsupported(f"{where}.file_data (files by URI; send the bytes as inline_data)")
            elif part.executable_code is not None or part.code_execution_result is not None:
                raise unsupported(f"{where}: code execution parts")
            elif part.tool_call is not None or part.tool_response is not None:
                raise unsupported(f"{where}: server-side tool parts")
        turns.append(Turn(role, items))
    tools = request.tools or []
    for index, tool in enumerate(tools):
        others = [name for name, value in tool if value is not None and name != "function_declarations"]
        if others:
            raise unsupported(f"tools[{index}].{others[0]}")
    return Prompt(system, turns, list(tools))


def _inline_item(data: bytes, mime_type: str, where: str,
                 frame_limits_check: Callable[[bytes, str], tuple[int, int]]) -> Item:
    mime = mime_of(mime_type)
    if mime.startswith("image/"):
        try:
            width, height = frame_limits_check(data, mime_type)
        except FrameError as exc:
            raise invalid(f"Request contains an invalid argument: {where}.inline_data: {exc}.") from None
        return Item("image", data=data, mime=mime, tokens=image_tokens(width, height))
    if mime.startswith("audio/"):
        seconds = audio_seconds(data, mime_type)
        return Item("audio", data=data, mime=mime, tokens=math.ceil(seconds * AUDIO_TOKENS_PER_SECOND))
    if mime.startswith("text/") or mime in ("application/json", "application/xml"):
        try:
            return Item("text", data.decode("utf-8"))
        except UnicodeDecodeError:
            raise invalid(f"Request contains an invalid argument: {where}.inline_data is not UTF-8 text.") from None
    raise unsupported(f"{where}.inline_data of type {mime[:60] or '(none)'}")


async def count_prompt(prompt: Prompt, llm: LLMEngine) -> Prompt:
    """Fill in the prompt's tokens: its text through the engine's tokenizer (in one call), media by Google's rates."""
    texts = [prompt.system] if prompt.system else []
    for turn in prompt.turns:
        texts += [item.text for item in turn.items if item.kind in ("text", "call", "result")]
    if prompt.tools:
        texts.append(_compact([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in prompt.tools]))
    joined = "\n".join(t for t in texts if t)
    prompt.text_tokens = await count_tokens(llm, joined) if joined else 0
    prompt.image_tokens = sum(item.tokens for item in prompt.items("image"))
    prompt.audio_tokens = sum(item.tokens for item in prompt.items("audio"))
    return prompt


# ------------------------------------------------------------------------------------ generation


@dataclass
class Plan:
    """One generateContent call, ready to run."""

    entry: ModelEntry
    llm: LLMEngine
    request: ChatRequest
    mode: str  # "text" | "json" | "grammar" (tools through the JSON router) | "native" (the server calls tools)
    toolset: ToolSet
    prompt: Prompt
    max_output_tokens: int | None  # as the client asked
    callable: frozenset[str] = frozenset()  # functions this answer may call (toolConfig, just answered)
    response_id: str = field(default_factory=lambda: secrets.token_urlsafe(16))


@dataclass
class Outcome:
    """How a generation ended: the calls it made, why it stopped, what it wrote."""

    calls: list[dict[str, Any]]
    finish_reason: str  # Google's: "STOP" | "MAX_TOKENS"
    output_tokens: int


def _sampling(config: RestGenerationConfig | None, entry: ModelEntry) -> SamplingParams:
    if config is None:
        return SamplingParams(max_tokens=entry.output_token_limit)
    return SamplingParams(temperature=config.temperature, top_p=config.top_p, top_k=config.top_k,
                          max_tokens=config.max_output_tokens or entry.output_token_limit, seed=config.seed,
                          stop=tuple(config.stop_sequences or ()), presence_penalty=config.presence_penalty,
                          frequency_penalty=config.frequency_penalty)


def _check_generation_config(config: RestGenerationConfig | None) -> None:
    if config is None:
        return
    if config.candidate_count is not None and config.candidate_count > 1:
        raise invalid("Only one candidate can be specified in the current model")
    modalities = [m for m in config.response_modalities or () if m not in ("MODALITY_UNSPECIFIED", "TEXT")]
    if modalities:
        raise unsupported(f"generation_config.response_modalities {modalities[0]} (text only)")
    if config.response_logprobs or config.logprobs:
        raise unsupported("generation_config.response_logprobs")
    if config.speech_config is not None or config.audio_transcription_config is not None:
        raise unsupported("generation_config.speech_config (text output only)")
    mime = (config.response_mime_type or "text/plain").lower()
    if mime not in ("text/plain", _JSON_MIME):
        raise unsupported(f"generation_config.response_mime_type {mime[:60]} (use text/plain or application/json)")
    if (config.response_schema is not None or config.response_json_schema is not None) and mime != _JSON_MIME:
        raise invalid("Request contains an invalid argument: response_mime_type must be application/json when "
                      "response_schema or response_json_schema is set.")


def _response_schema(config: RestGenerationConfig | None) -> dict[str, Any] | None:
    """The JSON schema the answer must follow; None for free text. {} is any JSON value."""
    if config is None or (config.response_mime_type or "").lower() != _JSON_MIME:
        return None
    if config.response_json_schema is not None:
        schema = config.response_json_schema
    elif config.response_schema is not None:
        schema = openapi_to_json_schema(config.response_schema)
    else:
        return {}
    if not isinstance(schema, dict):
        raise invalid("Request contains an invalid argument: the response schema must be a JSON object.")
    return schema


def _function_calling(tool_config: dict[str, Any] | None, toolset: ToolSet) -> tuple[str, frozenset[str]]:
    """toolConfig.functionCallingConfig: its mode (AUTO, ANY, NONE) and the functions it allows."""
    config = (tool_config or {}).get("functionCallingConfig", (tool_config or {}).get("function_calling_config"))
    if config is None:
        return "AUTO", frozenset(toolset.functions)
    if not isinstance(config, dict):
        raise invalid("Invalid value at 'tool_config.function_calling_config': expected an object.")
    mode = str(config.get("mode") or "AUTO").upper()
    if mode in ("MODE_UNSPECIFIED", "VALIDATED"):
        mode = "AUTO"
    if mode not in ("AUTO", "ANY", "NONE"):
        raise invalid(f"Invalid value at 'tool_config.function_calling_config.mode' (TYPE_ENUM), \"{mode[:40]}\"")
    allowed = config.get("allowedFunctionNames", config.get("allowed_function_names"))
    if allowed is None:
        return mode, frozenset(toolset.functions)
    if not isinstance(allowed, list) or not all(isinstance(n, str) for n in allowed):
        raise invalid("Invalid value at 'tool_config.function_calling_config.allowed_function_names': "
                      "expected a list of names.")
    unknown = [n for n in allowed if n not in toolset.functions]
    if unknown:
        raise invalid(f"Request contains an invalid argument: allowed_function_names names {unknown[0][:60]!r}, "
                      "which no function declaration declares.")
    return mode, frozenset(allowed)


def _must_call(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool turn's schema without its "none" branch: the model must call a function (mode ANY)."""
    options = schema.get("anyOf")
    if not isinstance(options, list) or len(options) < 2:
        return schema
    rest = [o for o in options if o.get("properties", {}).get("tool", {}).get("const") != "none"]
    root: dict[str, Any] = rest[0] if len(rest) == 1 else {"anyOf": rest}
    return {**root, "$defs": schema["$defs"]} if "$defs" in schema else root


def _finish_reason(finished: Finished | None, max_output_tokens: int | None) -> str:
    if finished is None:
        return "STOP"
    if finished.finish_reason == "length" or (max_output_tokens and finished.completion_tokens >= max_output_tokens):
        return "MAX_TOKENS"
    return "STOP"


async def generate(plan: Plan) -> AsyncIterator[str | Outcome]:
    """The answer's text as it streams, then one Outcome."""
    finished: Finished | None = None
    native_calls: tuple[Any, ...] = ()
    router = RouterStream() if plan.mode == "grammar" else None
    written: list[str] = []
    emitted = False
    stream = plan.llm.stream(plan.request)
    try:
        with metrics.in_flight("llm"):
            timer = metrics.FirstToken(plan.llm.name)
            async for chunk in stream:
                if isinstance(chunk, TextDelta):
                    timer.token()
                    written.append(chunk.text)
                    text = router.push(chunk.text) if router is not None else chunk.text
                    if text:
                        emitted = True
                        yield text
                    if router is not None and router.call_complete:
                        break  # the call is written; its unused "reply" field would only cost time
                elif isinstance(chunk, ToolCallsMade):
                    native_calls = chunk.calls
                elif isinstance(chunk, Finished):
                    finished = chunk
    finally:
        await stream.aclose()  # type: ignore[attr-defined]  # closing the request stops the LLM server
    calls: list[dict[str, Any]] = []
    if router is not None:
        decision = router.decision()
        function = plan.toolset.functions.get(decision.tool) if decision.tool in plan.callable else None
        if function is not None:
            arg_sets = decision.args if isinstance(decision.args, list) else [decision.args]
            calls = [{"name": function.name, "args": args} for args in arg_sets if isinstance(args, dict)]
        elif decision.text and not emitted:
            yield decision.text  # an engine without a grammar wrote plain text: that is the answer
    elif native_calls:
        calls = [{"name": c.name, "args": c.args} for c in native_calls if c.name in plan.callable]
    calls = [{"id": f"function-call-{uuid.uuid4().hex[:12]}", **c} for c in calls[:MAX_PARALLEL_CALLS]]
    output = finished.completion_tokens if finished is not None else estimate_tokens("".join(written))
    yield Outcome(calls, _finish_reason(finished, plan.max_output_tokens), output)


# ------------------------------------------------------------------------------------ the API


class GenerateAPI:
    """The REST methods beside Live; `handle` serves POST …/models/{model}:{method}."""

    def __init__(self, config: Config, engines: Engines, keys: KeyChecker, *, limits: Callable[[], KeyLimits | None],
                 frame_limits: Limits, read_body: Callable[[Request], Awaitable[bytes]]) -> None:
        self.config = config
        self.engines = engines
        self.keys = keys
        self._limits = limits
        self.frame_limits = frame_limits
        self._read_body = read_body

    async def handle(self, request: Request) -> Response:
        method = "REST"
        try:
            path = re.sub(r"/+", "/", request.url.path)
            m = _METHOD_PATH.search(path)
            if not m or m["method"] not in (COUNT, GENERATE, STREAM):
                raise RestError(404, "NOT_FOUND", f"Method not found: {path[:200]}")
            method = m["method"]
            credential = credential_from(request.headers, request.query_params)
            self._authorize(credential)
            entry = resolve_generate_model(self.config, m["model"])
            if entry is None:
                raise RestError(404, "NOT_FOUND",
                                f"models/{m['model'][:100]} is not found for API version {m['version']}, or is not "
                                f"supported for {method}. Call ListModels to see the list of available models and "
                                "their supported methods.")
            body = await self._body(request)
            llm = await self._llm(entry)
            if method == COUNT:
                return await self._count(body, llm)
            plan = await self._plan(_parse(GenerateContentRequest, body), entry, llm)
            owner = owner_of(credential)
            await self._admit(owner, plan.prompt.total)
            log.info("%s model=%s llm=%s credential=%s: %d prompt tokens (%s)", method, entry.name, entry.llm,
                     fingerprint(credential), plan.prompt.total, plan.mode)
            if method == STREAM:
                sse = request.query_params.get("alt") == "sse"
                return StreamingResponse(self._stream(plan, owner, sse=sse),
                                         media_type="text/event-stream" if sse else "application/json")
            return await self._until_disconnected(request, self._whole(plan, owner))
        except RestError as exc:
            return exc.response()
        except ProtocolError as exc:
            return from_protocol_error(exc).response()
        except EngineError as exc:
            log.error("%s: engine failed: %s", method, exc)
            return RestError(500, "INTERNAL", INTERNAL).response()
        except Exception:
            log.exception("%s failed", method)
            return RestError(500, "INTERNAL", INTERNAL).response()

    # ------------------------------------------------------------------ steps

    def _authorize(self, credential: str | None) -> None:
        if credential and credential.startswith(TOKEN_PREFIX):
            # As in Google's service: ephemeral tokens open Live sessions and nothing else.
            raise RestError(403, "PERMISSION_DENIED", "Ephemeral tokens are only accepted by the Live API "
                                                      "(BidiGenerateContent); use an API key.")
        try:
            self.keys.check(credential)
        except AuthError as exc:
            raise RestError(exc.http_status, exc.status, exc.message) from None

    async def _body(self, request: Request) -> Any:
        try:
            return loads(await self._read_body(request) or b"{}", self.frame_limits)
        except JSONLimitError as exc:
            raise invalid(exc.message) from None

    async def _llm(self, entry: ModelEntry) -> LLMEngine:
        if not await self.engines.wait_ready(self.config.ready_timeout_s) or entry.llm not in self.engines.llms:
            raise RestError(503, "UNAVAILABLE", UNAVAILABLE)
        return self.engines.llms[entry.llm]

    def _check_image(self, data: bytes, mime_type: str) -> tuple[int, int]:
        return check_frame(data, mime_type, self.engines.frame_limits)

    async def _count(self, body: Any, llm: LLMEngine) -> Response:
        wanted = _parse(CountTokensRequest, body)
        request = wanted.generate_content_request or GenerateContentRequest(
            contents=wanted.contents, system_instruction=wanted.system_instruction, tools=wanted.tools)
        prompt = await count_prompt(read_prompt(request, self._check_image), llm)
        return JSONResponse({"totalTokens": prompt.total, "promptTokensDetails": prompt.details()})

    async def _plan(self, wanted: GenerateContentRequest, entry: ModelEntry, llm: LLMEngine) -> Plan:
        config = wanted.generation_config
        _check_generation_config(config)
        if wanted.cached_content:
            raise unsupported("cached_content")
        if not wanted.contents:
            raise invalid("* GenerateContentRequest.contents: contents is not specified")
        prompt = read_prompt(wanted, self._check_image)
        if prompt.items("audio"):
            raise unsupported("audio input (send it to the Live API, or transcribe it with /v1/audio/transcriptions)")
        if len(prompt.items("image")) > MAX_IMAGES:
            raise invalid(f"Request contains an invalid argument: at most {MAX_IMAGES} images per request.")
        if not any(item.kind != "call" for turn in prompt.turns if turn.role == "user" for item in turn.items):
            raise invalid("* GenerateContentRequest.contents: contents must hold a user turn with content")
        toolset = ToolSet.from_setup(prompt.tools)
        schema = _response_schema(config)
        if toolset and schema is not None:
            raise invalid("Function calling with a response mime type: 'application/json' is unsupported")
        native = getattr(llm, "tool_mode", "grammar") == "native"
        conversation = Conversation(system_instruction=prompt.system, tools=prompt.tools or None,
                                    policy=ContextPolicy(self.config.context_window(entry), None,
                                                         self.config.context_window(entry)),
                                    modality="TEXT", language=None, guidance=getattr(llm, "system_guidance", ""))
        conversation.max_images = MAX_IMAGES
        side = side_for(config.media_resolution if config else None)
        for turn in prompt.turns:
            await self._into_conversation(conversation, turn, side)
        just_answered = self._just_answered(prompt, toolset)
        if just_answered and len(toolset.functions) > 1:
            # As a Live session says it when the answering round could call something else.
            results = [i for i in prompt.turns[-1].items if i.kind == "result"]
            conversation.append("user", RESULT_ADVICE[len(results) > 1])
        await count_prompt(prompt, llm)
        await conversation.fit(llm)  # the whole context (guidance and notes too) within the model's window
        params = _sampling(config, entry)
        mode, allowed = _function_calling(wanted.tool_config, toolset) if toolset else ("AUTO", frozenset())
        callable_now = frozenset() if mode == "NONE" else allowed
        if not toolset:
            request = conversation.chat_request(params, schema)
            kind = "json" if schema is not None else "text"
        elif native:
            tools = [t for t in toolset.native_tools() if t["function"]["name"] in allowed]
            request = conversation.chat_request(params, tools=tools or toolset.native_tools())
            choice = {"NONE": "none", "ANY": "required"}.get(mode) if tools else "none"
            if choice is not None:
                request = ChatRequest(request.messages, request.params, tools=request.tools, tool_choice=choice)
            kind = "native"
        else:
            exclude = (set(toolset.functions) - allowed) | (just_answered if mode != "ANY" else set())
            callable_now = callable_now - exclude
            turn_schema = toolset.schema(allow_tools=bool(callable_now), exclude=exclude)
            if mode == "ANY" and callable_now:
                turn_schema = _must_call(turn_schema)
            request = conversation.chat_request(params, turn_schema)
            kind = "grammar"
        return Plan(entry, llm, request, kind, toolset, prompt,
                    config.max_output_tokens if config is not None else None, callable=callable_now)

    async def _into_conversation(self, conversation: Conversation, turn: Turn, side: int) -> None:
        notes: list[str] = []
        images: list[str] = []
        for item in turn.items:
            if item.kind == "text":
                conversation.append(turn.role, item.text)
            elif item.kind == "call":
                conversation.append_calls([item.call])
            elif item.kind == "result":
                call = item.call
                conversation.append_result(call["id"], call["name"], call["response"], item.text)
            elif item.kind == "image" and turn.role == "user":
                note, image = await self._look(item, side)
                conversation.add_media_tokens(item.tokens)
                notes.append(note)
                images += image
        if notes or images:
            conversation.add_camera_notes(notes, images)

    @staticmethod
    def _just_answered(prompt: Prompt, toolset: ToolSet) -> set[str]:
        """Functions whose results end the conversation: small models ask for them again, as Live
        sessions found (session/reply.py), so that round may not call them."""
        last = prompt.turns[-1] if prompt.turns else None
        if last is None or last.role != "user":
            return set()
        return {i.call["name"] for i in last.items if i.kind == "result"} & set(toolset.functions)

    async def _look(self, item: Item, side: int) -> tuple[str, list[str]]:
        """An image as a Live session's camera takes it: the image itself for an LLM that sees, else a note."""
        vision = self.engines.vision
        if vision is None:
            raise unsupported("image input (this server's [vision] engine is none)")
        key = ("rest", uuid.uuid4().hex)
        for _ in range(VISION_TRIES):
            try:
                async with asyncio.timeout(VISION_TIMEOUT_S):  # not wait_for: on 3.11 it can lose a cancel
                    sight = await vision.submit(key, item.data, side=side)
            except FrameError as exc:
                raise invalid(f"Request contains an invalid argument: {exc}.") from None
            except TimeoutError:
                break
            if sight is not None:
                if sight.jpeg is not None:
                    url = "data:image/jpeg;base64," + base64.b64encode(sight.jpeg).decode("ascii")
                    return f"{NOTE_PREFIX} An image is attached.", [url]
                return f"{NOTE_PREFIX} {sight.describe()}", []
            # Dropped from a full queue (every session's camera shares it): ask again.
        log.warning("an image of a REST request was not looked at: the vision engine is overloaded")
        raise RestError(503, "UNAVAILABLE", UNAVAILABLE)

    async def _admit(self, owner: str, tokens: int) -> None:
        limits = self._limits()
        if limits is not None:
            await limits.budget(owner).admit(tokens)

    async def _spend(self, owner: str, tokens: int) -> None:
        limits = self._limits()
        if limits is not None:
            await limits.budget(owner).spend(tokens)

    # ------------------------------------------------------------------ answers

    def _chunk(self, plan: Plan, parts: list[dict[str, Any]], outcome: Outcome | None) -> dict[str, Any]:
        """One GenerateContentResponse: the whole answer, or a streamed piece of it (the last with its end)."""
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        prompt = plan.prompt.total
        usage: dict[str, Any] = {"promptTokenCount": prompt, "totalTokenCount": prompt}
        if outcome is not None:
            candidate["finishReason"] = outcome.finish_reason
            usage = {"promptTokenCount": prompt, "candidatesTokenCount": outcome.output_tokens,
                     "totalTokenCount": prompt + outcome.output_tokens,
                     "promptTokensDetails": plan.prompt.details(),
                     "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": outcome.output_tokens}]}
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": plan.entry.name,
                "responseId": plan.response_id}

    @staticmethod
    def _parts(text: str, outcome: Outcome) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = [{"text": text}] if text or not outcome.calls else []
        return parts + [{"functionCall": call} for call in outcome.calls]

    async def _whole(self, plan: Plan, owner: str) -> Response:
        texts: list[str] = []
        outcome: Outcome | None = None
        async for piece in generate(plan):
            if isinstance(piece, Outcome):
                outcome = piece
            else:
                texts.append(piece)
        assert outcome is not None  # generate() always ends with one
        await self._finished(plan, owner, outcome)
        return JSONResponse(self._chunk(plan, self._parts("".join(texts), outcome), outcome))

    async def _stream(self, plan: Plan, owner: str, *, sse: bool) -> AsyncIterator[bytes]:
        """Server-sent events (`alt=sse`, what the SDKs ask for), or else one JSON array sent as it grows."""
        first = True

        def frame(message: dict[str, Any]) -> bytes:
            nonlocal first
            text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
            if sse:
                return f"data: {text}\r\n\r\n".encode("utf-8")
            opening, first = ("[" if first else ",\r\n"), False
            return (opening + text).encode("utf-8")

        try:
            async for piece in generate(plan):
                if isinstance(piece, Outcome):
                    await self._finished(plan, owner, piece)
                    yield frame(self._chunk(plan, self._parts("", piece) if piece.calls else [{"text": ""}], piece))
                else:
                    yield frame(self._chunk(plan, [{"text": piece}], None))
        except ProtocolError as exc:
            yield frame(from_protocol_error(exc).body())
        except EngineError as exc:
            log.error("%s: engine failed: %s", STREAM, exc)
            yield frame(RestError(500, "INTERNAL", INTERNAL).body())
        except Exception:
            log.exception("%s failed", STREAM)
            yield frame(RestError(500, "INTERNAL", INTERNAL).body())
        if not sse:
            yield b"[]" if first else b"]"

    async def _finished(self, plan: Plan, owner: str, outcome: Outcome) -> None:
        await self._spend(owner, outcome.output_tokens)
        log.info("generated %d tokens (%s)%s", outcome.output_tokens, outcome.finish_reason,
                 f", {len(outcome.calls)} function call(s)" if outcome.calls else "")

    @staticmethod
    async def _until_disconnected(request: Request, work: Awaitable[Response]) -> Response:
        """Run `work`, but stop it (and so the LLM) if the client goes away first."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=0.5)
                if done:
                    return task.result()
                if await request.is_disconnected():
                    log.info("the client went away before its answer was ready")
                    return Response(status_code=499)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
