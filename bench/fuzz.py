"""Fuzz a live server's WebSocket for longer than CI does (issue 13).

    .venv/bin/python bench/fuzz.py [--examples 5000] [--out FILE]

The same generator as tests/e2e/test_fuzz_live.py (tests/support/live_fuzz.py): hostile frame
sequences, each on a fresh connection to a real server process (the scripted engine), after a
valid setup or instead of it. Every ending is counted by close code; any that the real service
would not give (1011, a close without a reason, a dropped connection) is kept with its frames.
Afterwards the server's log is searched for tracebacks. Writes JSON (bench/results/fuzz.json).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import RESULTS, free_port, machine, progress, stop, wait_http, write_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, for tests.support
from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.support.live_fuzz import LIVE_PATH, acceptable, cases, probe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--data-dir", type=Path, default=Path("~/.openlive"))
    parser.add_argument("--out", type=Path, default=RESULTS / "fuzz.json")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="openlive-fuzz-"))
    (workdir / "openlive.toml").write_text('[llm.default]\nengine = "scripted"\n')
    port = free_port()
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "openlive", "serve", "--no-tls", "--port", str(port),
                                    "--config", str(workdir / "openlive.toml"),
                                    "--data-dir", str(args.data_dir.expanduser())], stdout=log, stderr=log)
    uri = f"ws://127.0.0.1:{port}{LIVE_PATH}"
    endings: collections.Counter[str] = collections.Counter()
    bad: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process)

        @settings(max_examples=args.examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(cases)
        def fuzz(case: tuple[bool, list[str | bytes]]) -> None:
            ending = asyncio.run(probe(uri, *case))
            endings["open" if ending.code is None else str(ending.code)] += 1
            if not acceptable(ending) and len(bad) < 20:
                bad.append({"code": ending.code, "reason": ending.reason, "setup_first": case[0],
                            "frames": [repr(f)[:300] for f in case[1]]})
            n = sum(endings.values())
            if n % 50 == 0:
                progress(f"fuzz: {n}/{args.examples} connections, endings {dict(endings)}          ")

        fuzz()
    finally:
        stop(process)
    log_text = log_path.read_text(errors="replace")
    result = {"benchmark": "fuzz", "machine": machine(), "examples": args.examples,
              "connections": sum(endings.values()), "endings_by_close_code": dict(endings),
              "unacceptable": bad, "tracebacks_in_log": log_text.count("Traceback"),
              "closes_1011_in_log": log_text.count("closing 1011"),
              "seconds": round(time.monotonic() - started, 1)}
    write_result("fuzz", result, args.out)


if __name__ == "__main__":
    main()
