"""Run llama.cpp's OpenAI-compatible server (from xllamacpp) on its own, as a separate process.

    python -m openlive.engines.llm.llama_server --model qwen2.5-coder-0.5b --port 8081 [--jinja]

Useful to share one LLM among several openlive nodes (point them at it with engine = "openai"),
and as the real OpenAI-compatible server the remote engine is tested and benchmarked against.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from .packaged import resolve_model_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", help="packaged id, .gguf path or hf:owner/repo/file")
    parser.add_argument("--data-dir", type=Path, default=Path("~/.openlive").expanduser())
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--n-ctx", type=int, default=16384)
    parser.add_argument("--n-parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--jinja", action="store_true",
                        help="render prompts with the model's own Jinja chat template: native tool calling "
                             "(`tools` in, `tool_calls` out), as llama-server --jinja")
    parser.add_argument("--chat-template-file", type=Path, default=None,
                        help="a Jinja chat template to use instead of the model's own (as llama-server's option)")
    args = parser.parse_args(argv)

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(resolve_model_file(args.model, args.data_dir))
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.n_ctx
    params.n_parallel = args.n_parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.verbosity = -1
    params.use_jinja = args.jinja
    if args.chat_template_file is not None:
        params.chat_template = args.chat_template_file.read_text(encoding="utf-8")
    server = xllamacpp.Server(params)
    print(f"llama.cpp server listening on {server.listening_address}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
