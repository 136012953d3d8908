"""Configuration: a TOML file, then environment and command-line overrides.

Engines and model names are rows in tables the user extends; nothing is chosen by editing code.

    [server]
    host = "127.0.0.1"
    port = 8443
    data_dir = "~/.openlive"
    api_keys = ["secret-1"]          # or OPENLIVE_API_KEYS="a,b"; none = accept any key on loopback
    tls = true                       # false: plain ws:// and http://
    tls_cert = "/path/cert.pem"      # default: a self-signed one under data_dir/tls
    tls_key = "/path/key.pem"

    [sessions]
    lifetime_s = 600                 # a connection's life; goAway comes goaway_lead_s before the end
    resumption_ttl_s = 86400         # how long a resumption handle stays valid

    [limits]                         # per API key, across all nodes sharing the store
    sessions_per_key = 10
    tokens_per_minute = 4000000

    [store]                          # resumption snapshots, quota counters, ephemeral tokens
    backend = "redis"                # default "sqlite" (a file in data_dir); redis for several nodes
    url = "redis://10.0.0.7:6379/0"

    [llm.default]                    # an LLM engine, by name
    engine = "embedded"              # embedded | openai | scripted
    model = "qwen2.5-coder-0.5b"     # packaged id, a .gguf path, or hf:owner/repo/file.gguf

    [llm.big]
    engine = "openai"                # any OpenAI-compatible server: vLLM, llama.cpp, Ollama
    base_url = "http://10.0.0.5:8000/v1"
    model = "Qwen/Qwen2.5-7B-Instruct"

    [vision]                         # video frames: how the model sees them
    engine = "embedded"              # embedded (text, faces, colours, as words) | remote (the LLM,
                                     # an OpenAI-compatible vision model, gets the frames) | none

    [models]                         # Live API model names -> LLM engine name
    "gemini-live-2.5-flash-preview" = "big"
    "my-agent" = { llm = "default", display_name = "My agent" }

    [generations]                    # which Gemini generation's wire behaviour a model name gets
    "my-agent*" = "2.x"              # glob over the bare name; "2.x" or "3.x"
    default = "3.x"                  # names with no version in them (default 3.x)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .protocol.bounded_json import JSONLimitError, loads_toml

# The Live models Google documents; each resolves to the default pipeline unless configured.
BUILTIN_MODEL_NAMES: tuple[str, ...] = (
    "gemini-2.0-flash-live-001",
    "gemini-2.0-flash-live-preview-04-09",
    "gemini-live-2.5-flash-preview",
    "gemini-live-2.5-flash",
    "gemini-live-2.5-flash-preview-native-audio",
    "gemini-live-2.5-flash-native-audio",
    "gemini-2.5-flash-native-audio-preview-09-2025",
    "gemini-2.5-flash-native-audio-preview-12-2025",
    "gemini-2.5-flash-preview-native-audio-dialog",
    "gemini-2.5-flash-exp-native-audio-thinking-dialog",
)

LLM_ENGINE_KINDS = ("embedded", "openai", "scripted")
GENERATION_NAMES = ("2.x", "3.x")  # session/generation.py
VOICE_ENGINE_KINDS = ("piper", "espeak", "openai")


class ConfigError(ValueError):
    """The configuration cannot work; the message says which setting and why."""


@dataclass(frozen=True)
class LLMConfig:
    name: str
    engine: str = "embedded"
    model: str = "qwen2.5-coder-1.5b"
    # embedded: a smaller model of the same tokenizer family that drafts tokens for `model`
    # (speculative decoding); "" for none.
    draft_model: str = ""
    base_url: str | None = None
    api_key: str | None = None
    script: Path | None = None
    n_ctx: int = 32768  # shared by n_parallel slots: 8192 tokens a session
    n_parallel: int = 4
    # embedded: memory for the prompt states of conversations that lost their slot to another,
    # so that they need not be read again (llama.cpp's RAM cache; its own default, 8 GiB, let the
    # server grow by megabytes with every conversation that came and went). 0: none.
    prompt_cache_mib: int = 512
    n_threads: int | None = None
    token_delay_ms: float | None = None
    timeout_s: float = 60.0
    extra_body: dict[str, Any] = field(default_factory=dict)
    # How the model calls functions. "grammar": openlive asks for JSON that names the tool, the
    # runtime's grammar enforcing it (what small models do best). "native": the server's own
    # tool calling (OpenAI `tools` and `tool_calls`: vLLM, llama.cpp's server with --jinja,
    # Ollama), for engine = "openai" with a model trained to call tools.
    tool_mode: str = "grammar"


@dataclass(frozen=True)
class VoiceConfig:
    """A voice name clients may ask for, and the engine and settings that speak it."""

    name: str
    engine: str = "espeak"  # piper | espeak | openai (a server with POST /audio/speech)
    gender: str = "male"  # female | male
    model: str = "joe"  # piper: packaged voice id or a path to a .onnx (with its .onnx.json)
    length_scale: float = 1.0  # piper: > 1 speaks slower
    speaker_id: int | None = None  # piper: multi-speaker models
    variant: str = "m1"  # espeak: m1..m8, f1..f5
    pitch: int = 50  # espeak: 0..100
    rate: int = 175  # espeak: words per minute
    base_url: str | None = None  # openai: e.g. "http://tts-box:8000/v1" (speaches, Kokoro-FastAPI, openlive)
    remote_model: str = "tts-1"  # openai: the model name the server expects
    remote_voice: str = "alloy"  # openai: the server's own name for the voice
    api_key: str | None = None  # openai
    sample_rate: int = 24000  # openai: the rate of the server's raw PCM ("pcm" response format)
    speed: float | None = None  # openai: > 1 speaks faster
    timeout_s: float = 30.0  # openai


# The Live API's eight voices. Puck (the default) is the natural Piper voice; the others are
# eSpeak NG variants tuned apart in pitch and pace so that each name sounds like someone else.
DEFAULT_VOICES: dict[str, VoiceConfig] = {
    v.name: v
    for v in (
        VoiceConfig("Puck", engine="piper", gender="male", model="joe"),
        VoiceConfig("Charon", gender="male", variant="m3", pitch=25, rate=160),
        VoiceConfig("Fenrir", gender="male", variant="m1", pitch=45, rate=195),
        VoiceConfig("Orus", gender="male", variant="m7", pitch=40, rate=145),
        VoiceConfig("Aoede", gender="female", variant="f1", pitch=62, rate=170),
        VoiceConfig("Kore", gender="female", variant="f3", pitch=70, rate=175),
        VoiceConfig("Leda", gender="female", variant="f4", pitch=90, rate=150),
        VoiceConfig("Zephyr", gender="female", variant="f2", pitch=55, rate=195),
    )
}


@dataclass(frozen=True)
class SpeechConfig:
    default_voice: str = "Puck"
    chunk_ms: int = 200  # audio per server message: small enough to play as it comes
    # How far speech may run ahead of real time. Holding the rest back means a barge-in stops the
    # reply close to where the listener is, and history keeps what was heard. 0: no pacing.
    max_lead_ms: int = 1000
    max_parallel: int = 2  # syntheses running at once across all sessions (CPU-bound)
    # The first piece of a spoken reply is cut early so that speech starts soon: at the first
    # comma-like pause once it has `first_min_words`, else after `first_max_words` words (never
    # after "the", "of", "and"), or at the sentence's end if that comes first (session/speech.py).
    first_min_words: int = 3
    first_max_words: int = 5


@dataclass(frozen=True)
class ASRConfig:
    engine: str = "embedded"  # embedded | openai (a server with POST /audio/transcriptions)
    model: str = "whisper-tiny.en"  # embedded: "whisper-base" (multilingual), a CTranslate2 folder, "hf:<name>"
    base_url: str | None = None  # openai: e.g. "http://asr-box:8000/v1"
    remote_model: str = "whisper-1"  # openai: the model name the server expects
    api_key: str | None = None
    timeout_s: float = 30.0
    language: str | None = None  # a fixed language; None: the session's languageCode, else detect
    cpu_threads: int = 2
    max_waiting: int = 16  # utterances queued across sessions before new ones wait
    # Live captions: the user's words while they speak, as interim inputTranscription pieces, to
    # sessions on 2.x models (3.x models send one transcription when the turn ends, as Google's
    # do). Speech is re-read every `interim_every_s` of new speech, when nothing else needs the CPU.
    interim_transcription: bool = True
    interim_every_s: float = 1.0


@dataclass(frozen=True)
class TurnConfig:
    """End of turn: semantic models decide whether a pause ends the user's turn.

    Used when the client leaves `silenceDurationMs` unset (a client that sets it gets plain
    silence of exactly that length, as Google documents). Two models vote: smart-turn on the
    audio, a small LLM on the transcript (session/end_of_turn.py says how their votes combine)."""

    engine: str = "smart-turn"  # smart-turn | silence (the VAD alone, 500 ms; no model at all)
    model: str = "smart-turn-v3.2"  # the packaged model, or a path to your own smart-turn .onnx
    threshold: float = 0.5  # smart-turn's P(complete) at or above which it votes "complete"
    # The text model: a packaged LLM id, a .gguf path or hf:owner/repo/file.gguf; "" for none.
    text_model: str = "qwen2.5-coder-0.5b"
    text_threshold: float = 0.1  # its P(message ends here) at or above which it votes "complete"
    text_threads: int = 2
    check_ms: int = 64  # quiet before the models are asked: 2 VAD frames (their work overlaps the quiet after)
    quick_quiet_ms: int = 200  # the quiet that ends a turn both models call complete
    unsure_quiet_ms: int = 1500  # the quiet that ends a turn when the models disagree
    max_wait_ms: int = 2500  # the longest pause an unfinished sentence gets
    # Start the LLM on the words heard in a pause, before the turn is known to be over: the reply
    # is ready sooner (by the models' decision time, and by the whole wait of a disputed pause);
    # when the user goes on, that LLM work was for nothing (session/early_reply.py).
    early_reply: bool = True
    cpu_threads: int = 1


@dataclass(frozen=True)
class SearchConfig:
    """Where the googleSearch tool looks: nothing, a folder of documents, or a search service."""

    provider: str = "none"  # none | local | http
    folder: Path | None = None  # local: .md/.txt/.html files, ranked with SQLite FTS5
    base_uri: str | None = None  # local: URIs to show instead of file:// paths
    url: str | None = None  # http: e.g. SearxNG's http://searx:8080/search (JSON API)
    api_key: str | None = None
    timeout_s: float = 10.0


@dataclass(frozen=True)
class UrlContextConfig:
    """The urlContext tool: pages at the URLs a user's turn names, fetched by this server and read
    by the model (engines/search/url_context.py). A client turns it on per session, as with Google."""

    enabled: bool = True  # false: a session asking for urlContext is refused ("url_context is not supported.")
    # Addresses that are not globally routable (loopback, private, link-local, CGNAT, multicast...),
    # checked after DNS resolution on every redirect hop: true lets clients reach this server's
    # own network through it (SSRF), so only where every client is trusted.
    allow_private: bool = False
    max_bytes: int = 2_000_000  # a larger page is not read (URL_RETRIEVAL_STATUS_ERROR)
    timeout_s: float = 10.0  # for the whole fetch, redirects included
    max_redirects: int = 5
    max_urls: int = 3  # per user turn; more are left unread (and unreported)
    max_chars: int = 4000  # of a page's text for the model (~1000 tokens); the most relevant parts are kept


@dataclass(frozen=True)
class CodeConfig:
    """Limits of the codeExecution sandbox (bubblewrap)."""

    wall_s: float = 10.0
    cpu_s: float = 5.0
    memory_mb: int = 256
    max_processes: int = 16
    max_output_bytes: int = 64_000
    max_file_mb: int = 8


VISION_ENGINE_KINDS = ("embedded", "remote", "none")


@dataclass(frozen=True)
class VisionConfig:
    """How video frames (realtimeInput.video, inline images) are seen, and what a frame may be.

    embedded: described in words by a small offline pipeline (RapidOCR for text, OpenCV for faces,
    colours and brightness); the LLM reads the description. remote: every LLM in use is an
    OpenAI-compatible vision model, and the frames themselves go into its chat request as
    image_url data URLs. none: frames are checked and counted, not seen."""

    engine: str = "embedded"
    read_text: bool = True  # embedded: OCR (the slow part, ~0.3 s a frame on one core)
    find_faces: bool = True  # embedded: OpenCV's Haar cascade
    ocr_threads: int = 1
    max_waiting: int = 8  # frames waiting for the worker across all sessions; older ones are dropped
    max_frame_bytes: int = 8 << 20  # one frame, encoded
    max_frame_pixels: int = 8192 * 8192  # width × height, read from the header before decoding


@dataclass(frozen=True)
class SessionsConfig:
    """How long a connection lasts and how long a conversation can be resumed."""

    lifetime_s: float = 600.0  # a connection's life (Vertex: 10 minutes); 0: unlimited
    goaway_lead_s: float = 60.0  # goAway comes this long before the end
    resumption_ttl_s: float = 86400.0  # a handle stays valid this long (Vertex: 24 h; Gemini API: 2 h)


@dataclass(frozen=True)
class LimitsConfig:
    """Per API key, across every node sharing the store; 0: no limit."""

    sessions_per_key: int = 10
    tokens_per_minute: int = 4_000_000
    # Sessions this server process holds at once, whoever's (0: no limit). Past it a new session
    # is refused with the quota error, rather than every session slowing to a halt: size it
    # from bench/load.py on the machine (README, "Sizing").
    max_sessions: int = 0


@dataclass(frozen=True)
class StoreConfig:
    """Where resumption snapshots, quota counters and ephemeral tokens live."""

    backend: str = "sqlite"  # sqlite (one node, embedded) | redis (several nodes)
    path: Path | None = None  # sqlite: default <data_dir>/state.sqlite3
    url: str | None = None  # redis: e.g. "redis://10.0.0.7:6379/0"
    prefix: str = "openlive:"  # redis: key prefix, so deployments can share a server
    max_mb: float = 0  # sqlite: the file's cap in MiB (0: none); past it, new snapshots fail as on a full disk


@dataclass(frozen=True)
class ModelEntry:
    """One Live API model name and the pipeline that serves it."""

    name: str
    llm: str = "default"
    display_name: str | None = None
    description: str | None = None
    input_token_limit: int = 131072
    output_token_limit: int = 8192
    # Tokens a session may hold; None: what the LLM engine can read (embedded: its per-slot context).
    context_window: int | None = None


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8443
    data_dir: Path = Path("~/.openlive")
    api_keys: tuple[str, ...] = ()
    tls: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_frame_bytes: int = 16 << 20
    ready_timeout_s: float = 120.0
    # A connection must have sent a whole HTTP request head (a WebSocket upgrade) this soon after
    # connecting, or it is closed (a slow-loris client would otherwise hold it forever).
    handshake_timeout_s: float = 10.0
    # Connections (and requests in flight) at once; past it, new ones get HTTP 503.
    max_connections: int = 1000
    # A client that has not taken a server frame in this long has stopped reading: its session is
    # closed, rather than held with its replies queued (memory) and its engines' work blocked.
    send_timeout_s: float = 10.0
    # A cap on the client frames a connection is read a second on average (a second's worth at
    # once); 0, the default, is no cap. Past it, reading waits (TCP backpressure); nothing is
    # closed or dropped. Without a cap a client is read as fast as its session handles frames
    # (Firebase's Web SDK sends ~375 audio frames a second; a recording may be streamed faster).
    max_frames_per_s: float = 0.0
    log_level: str = "INFO"
    log_format: str = "text"
    llms: dict[str, LLMConfig] = field(default_factory=lambda: {"default": LLMConfig("default")})
    models: dict[str, ModelEntry] = field(default_factory=dict)
    # [generations]: glob over a bare model name (or "default") -> "2.x" / "3.x" (session/generation.py)
    generations: dict[str, str] = field(default_factory=dict)
    voices: dict[str, VoiceConfig] = field(default_factory=dict)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    asr: ASRConfig = field(default_factory=ASRConfig)
    turn: TurnConfig = field(default_factory=TurnConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    url_context: UrlContextConfig = field(default_factory=UrlContextConfig)
    code: CodeConfig = field(default_factory=CodeConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)

    def __post_init__(self) -> None:
        table = {name: ModelEntry(name) for name in BUILTIN_MODEL_NAMES}
        table.update(self.models)
        object.__setattr__(self, "models", table)
        object.__setattr__(self, "voices", {**DEFAULT_VOICES, **self.voices})
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())

    def context_window(self, entry: ModelEntry) -> int:
        """Tokens a session of this model may hold before it must slide its window or end."""
        if entry.context_window is not None:
            return entry.context_window
        llm = self.llms[entry.llm]
        if llm.engine == "embedded":
            # llama.cpp splits its context among parallel slots; keep room for the reply.
            return max(512, llm.n_ctx // max(1, llm.n_parallel) - min(entry.output_token_limit, 1024))
        return 32768  # the Vertex default for Live models

    @property
    def store_path(self) -> Path:
        return self.store.path or self.data_dir / "state.sqlite3"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every credential in the configuration: the log redacts them wherever they appear."""
        password = _url_password(self.store.url)
        values = [*self.api_keys, *(llm.api_key for llm in self.llms.values()), self.asr.api_key,
                  *(voice.api_key for voice in self.voices.values()), self.search.api_key, password,
                  unquote(password) if password else None]
        return tuple(dict.fromkeys(v for v in values if v))

    @property
    def used_llms(self) -> list[str]:
        """LLM engines some model name refers to: only those are loaded."""
        return sorted({entry.llm for entry in self.models.values()})

    def validate(self) -> None:
        for entry in self.models.values():
            if entry.llm not in self.llms:
                raise ConfigError(f"model {entry.name!r} uses LLM {entry.llm!r}, which no [llm.{entry.llm}] defines")
        for llm in self.llms.values():
            if llm.engine not in LLM_ENGINE_KINDS:
                raise ConfigError(f"[llm.{llm.name}] engine must be one of {', '.join(LLM_ENGINE_KINDS)}")
            if llm.engine == "openai" and not llm.base_url:
                raise ConfigError(f"[llm.{llm.name}] engine 'openai' needs base_url")
            if llm.tool_mode not in ("grammar", "native"):
                raise ConfigError(f"[llm.{llm.name}] tool_mode must be grammar or native")
            if llm.tool_mode == "native" and llm.engine != "openai":
                raise ConfigError(f"[llm.{llm.name}] tool_mode 'native' needs engine 'openai'")
            if not 0 <= llm.prompt_cache_mib <= 1 << 20:
                raise ConfigError(f"[llm.{llm.name}] prompt_cache_mib must be 0 to 1048576")
        for voice in self.voices.values():
            if voice.engine not in VOICE_ENGINE_KINDS:
                raise ConfigError(f"[voices.{voice.name}] engine must be one of {', '.join(VOICE_ENGINE_KINDS)}")
            if voice.gender not in ("female", "male"):
                raise ConfigError(f"[voices.{voice.name}] gender must be female or male")
            if voice.engine == "openai" and not voice.base_url:
                raise ConfigError(f"[voices.{voice.name}] engine 'openai' needs base_url")
        if self.turn.engine not in ("smart-turn", "silence"):
            raise ConfigError("[turn] engine must be smart-turn or silence")
        turn = self.turn
        if (not 0.0 < turn.threshold < 1.0 or not 0.0 < turn.text_threshold < 1.0 or turn.check_ms < 32
                or not turn.check_ms <= turn.quick_quiet_ms <= turn.unsure_quiet_ms <= turn.max_wait_ms
                or turn.text_threads < 1):
            raise ConfigError("[turn] needs 0 < threshold, text_threshold < 1, check_ms >= 32, check_ms <= "
                              "quick_quiet_ms <= unsure_quiet_ms <= max_wait_ms and text_threads >= 1")
        if self.asr.engine not in ("embedded", "openai"):
            raise ConfigError("[asr] engine must be embedded or openai")
        if self.asr.engine == "openai" and not self.asr.base_url:
            raise ConfigError("[asr] engine 'openai' needs base_url")
        if not self.asr.interim_every_s >= 0.25:
            raise ConfigError("[asr] interim_every_s must be at least 0.25 (set interim_transcription = false "
                              "to send no captions)")
        if self.search.provider not in ("none", "local", "http"):
            raise ConfigError("[search] provider must be none, local or http")
        if self.search.provider == "local" and not self.search.folder:
            raise ConfigError("[search] provider 'local' needs folder")
        if self.search.provider == "http" and not self.search.url:
            raise ConfigError("[search] provider 'http' needs url")
        pages = self.url_context
        if (pages.max_bytes < 1 or not pages.timeout_s > 0 or pages.max_redirects < 0 or pages.max_urls < 1
                or pages.max_chars < 200):
            raise ConfigError("[url_context] needs max_bytes >= 1, timeout_s > 0, max_redirects >= 0, max_urls >= 1 "
                              "and max_chars >= 200")
        if (not self.handshake_timeout_s > 0 or not self.send_timeout_s > 0
                or not (self.max_frames_per_s == 0 or self.max_frames_per_s >= 1) or self.max_connections < 1):
            raise ConfigError("[server] handshake_timeout_s and send_timeout_s must be above 0, max_frames_per_s "
                              "0 (no cap) or at least 1, and max_connections at least 1")
        if self.speech.default_voice not in self.voices:
            raise ConfigError(f"[speech] default_voice {self.speech.default_voice!r} is not a configured voice")
        if not 1 <= self.speech.first_min_words <= self.speech.first_max_words:
            raise ConfigError("[speech] needs 1 <= first_min_words <= first_max_words")
        vision = self.vision
        if vision.engine not in VISION_ENGINE_KINDS:
            raise ConfigError(f"[vision] engine must be one of {', '.join(VISION_ENGINE_KINDS)}")
        if vision.engine == "remote":
            blind = [name for name in self.used_llms if self.llms[name].engine != "openai"]
            if blind:
                raise ConfigError(f"[vision] engine 'remote' sends frames to the LLM itself, but [llm.{blind[0]}] is "
                                  "not an OpenAI-compatible server (engine = \"openai\") that could read them")
        if vision.max_waiting < 1 or vision.max_frame_bytes < 1 or vision.max_frame_pixels < 1 \
                or vision.ocr_threads < 1:
            raise ConfigError("[vision] max_waiting, max_frame_bytes, max_frame_pixels and ocr_threads must be at "
                              "least 1")
        if self.store.backend not in ("sqlite", "redis"):
            raise ConfigError("[store] backend must be sqlite or redis")
        if self.store.backend == "redis" and not self.store.url:
            raise ConfigError("[store] backend 'redis' needs url (redis://host:port/db)")
        if self.sessions.lifetime_s > 0 and not 0 <= self.sessions.goaway_lead_s < self.sessions.lifetime_s:
            raise ConfigError("[sessions] goaway_lead_s must be at least 0 and less than lifetime_s")
        if self.tls and bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key go together")
        if not self.api_keys and not is_loopback(self.host):
            raise ConfigError(
                f"refusing to listen on {self.host} with no API keys: anyone could use it. "
                "Set --api-key (or OPENLIVE_API_KEYS), or listen on 127.0.0.1."
            )


def _url_password(url: str | None) -> str | None:
    """The password in scheme://user:password@host, if any, as written (percent-encoded)."""
    if not url:
        return None
    try:
        return urlsplit(url).password or None
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _llm_from_table(name: str, table: dict[str, Any]) -> LLMConfig:
    allowed = {f for f in LLMConfig.__dataclass_fields__ if f != "name"}
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"[llm.{name}]: unknown setting(s) {', '.join(sorted(unknown))}")
    values = dict(table)
    if "script" in values:
        values["script"] = Path(values["script"]).expanduser()
    return LLMConfig(name=name, **values)


def _table(cls: type, section: str, values: dict[str, Any], **fixed: Any) -> Any:
    """Build a settings dataclass from a TOML table, refusing settings it does not have."""
    allowed = set(cls.__dataclass_fields__) - set(fixed)
    unknown = set(values) - allowed
    if unknown:
        raise ConfigError(f"[{section}]: unknown setting(s) {', '.join(sorted(unknown))}")
    return cls(**fixed, **values)


def _model_from_value(name: str, value: Any) -> ModelEntry:
    if isinstance(value, str):
        return ModelEntry(name, llm=value)
    if isinstance(value, dict):
        allowed = {f for f in ModelEntry.__dataclass_fields__ if f != "name"}
        unknown = set(value) - allowed
        if unknown:
            raise ConfigError(f"[models] {name!r}: unknown setting(s) {', '.join(sorted(unknown))}")
        return ModelEntry(name, **value)
    raise ConfigError(f"[models] {name!r} must be an LLM name or a table")


# Settings a container or a CI job can give without a file or flags; flags still win.
_ENV_SETTINGS = {"OPENLIVE_HOST": ("host", str), "OPENLIVE_PORT": ("port", int),
                 "OPENLIVE_DATA_DIR": ("data_dir", Path)}


def _voice_base(name: str) -> dict[str, Any]:
    """A [voices.X] table for a built-in name changes only the settings it gives."""
    base = DEFAULT_VOICES.get(name)
    if base is None:
        return {}
    return {k: getattr(base, k) for k in VoiceConfig.__dataclass_fields__ if k != "name"}


def load_config(path: Path | None = None, **overrides: Any) -> Config:
    """Read the TOML file (if any), then the OPENLIVE_* environment, then non-None overrides."""
    data: dict[str, Any] = {}
    path = path or (Path(os.environ["OPENLIVE_CONFIG"]) if os.environ.get("OPENLIVE_CONFIG") else None)
    if path is not None:
        try:
            data = loads_toml(Path(path).expanduser().read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, JSONLimitError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
    unknown = set(data) - {"server", "llm", "models", "generations", "voices", "speech", "asr", "turn", "search",
                           "url_context", "code", "vision", "sessions", "limits", "store"}
    if unknown:
        raise ConfigError(f"unknown section(s) in {path}: {', '.join(sorted(unknown))}")
    server = dict(data.get("server", {}))
    allowed_server = {f for f in Config.__dataclass_fields__
                      if f not in ("llms", "models", "generations", "voices", "speech", "asr", "turn", "search",
                                   "url_context", "code", "vision", "sessions", "limits", "store")}
    unknown = set(server) - allowed_server
    if unknown:
        raise ConfigError(f"[server]: unknown setting(s) {', '.join(sorted(unknown))}")
    for key in ("data_dir", "tls_cert", "tls_key"):
        if server.get(key):
            server[key] = Path(server[key]).expanduser()
    server["api_keys"] = tuple(server.get("api_keys", ()))

    llms = {"default": LLMConfig("default")}
    llms.update({name: _llm_from_table(name, table) for name, table in data.get("llm", {}).items()})
    models = {name: _model_from_value(name, value) for name, value in data.get("models", {}).items()}
    generations = dict(data.get("generations", {}))
    bad = {k: v for k, v in generations.items() if v not in GENERATION_NAMES}
    if bad:
        raise ConfigError(f"[generations]: {', '.join(f'{k!r} = {v!r}' for k, v in bad.items())}: "
                          f"a generation is one of {', '.join(GENERATION_NAMES)}")
    voices = {name: _table(VoiceConfig, f"voices.{name}", {**_voice_base(name), **table}, name=name)
              for name, table in data.get("voices", {}).items()}
    speech = _table(SpeechConfig, "speech", data.get("speech", {}))
    asr = _table(ASRConfig, "asr", data.get("asr", {}))
    turn = _table(TurnConfig, "turn", data.get("turn", {}))
    search_table = dict(data.get("search", {}))
    if search_table.get("folder"):
        search_table["folder"] = Path(search_table["folder"]).expanduser()
    search = _table(SearchConfig, "search", search_table)
    url_context = _table(UrlContextConfig, "url_context", data.get("url_context", {}))
    code = _table(CodeConfig, "code", data.get("code", {}))
    vision = _table(VisionConfig, "vision", data.get("vision", {}))
    sessions = _table(SessionsConfig, "sessions", data.get("sessions", {}))
    limits = _table(LimitsConfig, "limits", data.get("limits", {}))
    store_table = dict(data.get("store", {}))
    if store_table.get("path"):
        store_table["path"] = Path(store_table["path"]).expanduser()
    store = _table(StoreConfig, "store", store_table)
    config = Config(**server, llms=llms, models=models, generations=generations, voices=voices, speech=speech,
                    asr=asr, turn=turn, search=search, url_context=url_context, code=code, vision=vision,
                    sessions=sessions, limits=limits, store=store)

    env_keys = tuple(k.strip() for k in os.environ.get("OPENLIVE_API_KEYS", "").split(",") if k.strip())
    llm_model = overrides.pop("llm_model", None)
    api_keys = overrides.pop("api_keys", None) or ()
    changes: dict[str, Any] = {}
    for var, (name, kind) in _ENV_SETTINGS.items():
        if os.environ.get(var):
            try:
                changes[name] = kind(os.environ[var])
            except ValueError:
                raise ConfigError(f"{var}={os.environ[var]!r} is not a valid {name}") from None
    changes.update({k: v for k, v in overrides.items() if v is not None})
    if api_keys or env_keys:
        changes["api_keys"] = tuple(dict.fromkeys((*config.api_keys, *env_keys, *api_keys)))
    config = replace(config, **changes)
    if llm_model:
        default = config.llms["default"]
        config.llms["default"] = replace(default, model=llm_model)
    config.validate()
    return config
