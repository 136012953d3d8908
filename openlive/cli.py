"""The `openlive` command: `openlive serve`, `openlive models` and `openlive talk`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .config import Config, ConfigError, load_config

log = logging.getLogger("openlive")


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--data-dir", type=Path, help="where models, certificates and state live (default ~/.openlive)")
    parser.add_argument("--llm-model", help="model of the default LLM engine: a packaged id "
                        "(qwen2.5-coder-1.5b, the default; qwen2.5-coder-0.5b, smollm2-135m), a .gguf path, or "
                        "hf:owner/repo/file.gguf")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("--log-format", choices=["text", "json"], default=None)


def _config_from(args: argparse.Namespace) -> Config:
    return load_config(
        args.config,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=args.data_dir,
        api_keys=tuple(getattr(args, "api_key", None) or ()),
        tls=False if getattr(args, "no_tls", False) else None,
        tls_cert=getattr(args, "tls_cert", None),
        tls_key=getattr(args, "tls_key", None),
        log_level=args.log_level,
        log_format=args.log_format,
        llm_model=args.llm_model,
    )


def _print_banner(config: Config, cert: Path | None) -> None:
    host = f"[{config.host}]" if ":" in config.host else config.host
    scheme = "https" if cert else "http"
    base = f"{scheme}://{host}:{config.port}"
    key = "<your key>" if config.api_keys else "anything"
    lines = [f"openlive is serving the Live API at {base}", "", "Point the Google SDKs at it:"]
    if cert:
        lines.append(f"  Python: GOOGLE_GEMINI_BASE_URL={base} SSL_CERT_FILE={cert} GEMINI_API_KEY={key}")
        lines.append(f"  Node:   NODE_EXTRA_CA_CERTS={cert}  and  httpOptions: {{ baseUrl: '{base}' }}")
    else:
        lines.append(f"  Node:   httpOptions: {{ baseUrl: '{base}' }}   (the Python SDK needs TLS: drop --no-tls)")
    lines.append(f"  Health: {base}/healthz")
    lines.append(f"  Try it in a browser: {base}/   (the playground)")
    print("\n".join(lines), file=sys.stderr, flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .engines.registry import prepare_model_files
    from .logs import configure_logging
    from .server.app import OpenLiveApp
    from .server.handshake import deadline_protocol
    from .server.tls import ensure_self_signed
    from .server.ws_protocol import GuardedWebSocketProtocol

    config = _config_from(args)
    configure_logging(config.log_level, config.log_format, secrets=config.secrets)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    # Joining packaged weights takes a while the first time: do it in front of the user, with progress.
    prepare_model_files(config, progress=sys.stderr.isatty() or bool(os.environ.get("OPENLIVE_PROGRESS")))
    cert = key = None
    if config.tls:
        if config.tls_cert and config.tls_key:
            cert, key = config.tls_cert, config.tls_key
        else:
            cert, key = ensure_self_signed(config.data_dir / "tls")
    app = OpenLiveApp(config)
    _print_banner(config, cert)
    server = uvicorn.Server(uvicorn.Config(
        app.asgi,
        host=config.host,
        port=config.port,
        ssl_certfile=str(cert) if cert else None,
        ssl_keyfile=str(key) if key else None,
        ws=GuardedWebSocketProtocol,
        ws_max_size=config.max_frame_bytes,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        http=deadline_protocol(config.handshake_timeout_s),
        limit_concurrency=config.max_connections,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=5,
    ))
    server.run()
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .engines.registry import prepare_model_files

    config = _config_from(args)
    if args.prepare:
        prepare_model_files(config, progress=True)
    print("Models:")
    width = max(len(name) for name in config.models)
    for name, entry in sorted(config.models.items()):
        llm = config.llms[entry.llm]
        print(f"  {name:<{width}}  llm={entry.llm} ({llm.engine}: {llm.base_url or llm.model})")
    print("Voices:")
    rows = [_voice_row(config, name) for name in sorted(config.voices)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  " + "  ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row[:3])) + f"  {row[3]}")
    return 0


def _voice_row(config: Config, name: str) -> tuple[str, str, str, str]:
    """(name, engine, gender, languages) of a configured voice; languages as far as known without loading it."""
    from .engines.tts.base import TTSError
    from .engines.tts.registry import build_voice

    voice = config.voices[name]
    default = " (default)" if name == config.speech.default_voice else ""
    try:
        languages = build_voice(voice).info.languages  # reads a Piper voice's small JSON, not its model
        spoken = ", ".join(sorted(languages)) if languages else "any (eSpeak NG: ~100 languages)"
    except (TTSError, OSError) as exc:
        spoken = f"unavailable: {exc}"
    return name + default, voice.engine, voice.gender, spoken


def _add_talk_args(parser: argparse.ArgumentParser) -> None:
    """The `openlive talk` options (defined here so that `openlive --help` does not import the client)."""
    parser.add_argument("--base-url", default=None, help="the server (default https://127.0.0.1:8443, or "
                        "GOOGLE_GEMINI_BASE_URL; https://generativelanguage.googleapis.com for Google's)")
    parser.add_argument("--api-key", default=None, help="API key (default: GEMINI_API_KEY / GOOGLE_API_KEY, "
                        "else 'anything', which a local openlive without keys accepts)")
    parser.add_argument("--api-version", default=None, help="v1beta (default), v1, v1alpha (ephemeral tokens)")
    parser.add_argument("--vertex", action="store_true", help="use the Vertex AI (express mode) path")
    parser.add_argument("--model", default="gemini-live-2.5-flash-preview",
                        help="Live model name (default %(default)s)")
    parser.add_argument("--voice", help="voice name: Puck, Charon, Kore, Fenrir, Aoede, Leda, Orus, Zephyr, ...")
    parser.add_argument("--language", help="BCP-47 language of the conversation, e.g. en-US, de-DE")
    parser.add_argument("--system", help="system instruction")
    parser.add_argument("--code-execution", action="store_true", help="let the model run Python (codeExecution)")
    parser.add_argument("--search", action="store_true", help="let the model search (googleSearch)")
    parser.add_argument("--text", action="store_true", help="type instead of speaking; replies as text")
    parser.add_argument("--image", type=Path, help="show the model a picture (JPEG, PNG or WebP) as a video frame, or "
                        "a folder of them as frames one a second, in name order")
    parser.add_argument("--input", type=Path, help="headless: a WAV file to say (16-bit PCM, any rate)")
    parser.add_argument("--output", type=Path, help="headless: where to write the spoken reply (24 kHz WAV)")
    parser.add_argument("--fast", action="store_true", help="headless: send the WAV faster than real time")
    parser.add_argument("--timeout", type=float, default=60.0, help="headless: seconds to wait for the reply")
    parser.add_argument("--data-dir", type=Path, help="a local openlive's data dir, whose tls/cert.pem is "
                        "trusted for loopback servers (default ~/.openlive)")
    parser.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
    parser.add_argument("--no-echo-gate", action="store_true", help="voice: send the microphone unfiltered "
                        "while the reply plays (use with headphones)")


def cmd_talk(args: argparse.Namespace) -> int:
    from .client import talk

    return talk.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openlive", description="A self-hosted Live API server with open models.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the Live API on the configured models")
    _add_config_args(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8443)")
    serve.add_argument("--api-key", action="append", help="accepted API key (repeatable; also OPENLIVE_API_KEYS)")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate (default: a self-signed one in the data dir)")
    serve.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    serve.add_argument("--no-tls", action="store_true", help="plain ws:// and http:// (the Python SDK needs TLS)")
    serve.set_defaults(func=cmd_serve)

    models = sub.add_parser("models", help="list the configured model names, their engines, and the voices")
    _add_config_args(models)
    models.add_argument("--prepare", action="store_true", help="prepare model files now (join, verify, cache)")
    models.set_defaults(func=cmd_models)

    talk = sub.add_parser("talk", help="talk to a Live API server (ours or Google's) from the terminal: "
                          "microphone and speaker, --text, or --input/--output WAV files")
    _add_talk_args(talk)
    talk.set_defaults(func=cmd_talk)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"openlive: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from .engines.llm.packaged import ModelPreparationError

        if isinstance(exc, ModelPreparationError):
            print(f"openlive: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
