"""Shared pieces of the benchmarks: ports, processes, percentiles, result files."""

from __future__ import annotations

import json
import os
import platform
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, verify: ssl.SSLContext | bool = True, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, verify=verify, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout}s")


def start_openlive(data_dir: Path, config: Path | None = None, *extra: str) -> tuple[subprocess.Popen, str]:
    """Start `openlive serve` on a free port; return the process and its https base URL once healthy."""
    from openlive.server.tls import ensure_self_signed

    cert, _ = ensure_self_signed(data_dir / "tls")
    port = free_port()
    # OPENLIVE_BENCH_SERVER_LOG=FILE keeps the server's INFO log (its end-of-turn verdicts, for one).
    log_file = os.environ.get("OPENLIVE_BENCH_SERVER_LOG")
    cmd = [sys.executable, "-m", "openlive", "serve", "--data-dir", str(data_dir), "--port", str(port),
           "--log-level", "INFO" if log_file else "WARNING", *extra]
    if config is not None:
        cmd += ["--config", str(config)]
    sink = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 (the server keeps it)
    process = subprocess.Popen(cmd, stdout=sink, stderr=sink)
    base = f"https://127.0.0.1:{port}"
    wait_http(f"{base}/healthz", process, verify=ssl.create_default_context(cafile=str(cert)))
    os.environ["SSL_CERT_FILE"] = str(cert)  # the SDK trusts the server as users are told to
    return process, base


def stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary_ms(values: list[float]) -> dict[str, float]:
    """Percentiles of durations given in seconds, reported in milliseconds."""
    return {"p50_ms": round(percentile(values, 0.5) * 1000, 2), "p90_ms": round(percentile(values, 0.9) * 1000, 2),
            "mean_ms": round(statistics.fmean(values) * 1000, 2), "n": len(values)}


def machine() -> dict[str, object]:
    """The machine, and how busy it was when the figures were taken (1-, 5- and 15-minute load)."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def progress(line: str) -> None:
    print(f"\r{line}", end="", file=sys.stderr, flush=True)


def write_result(name: str, result: dict, out: Path | None = None) -> Path:
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(file=sys.stderr)
    print(json.dumps(result, indent=2))
    return path


def pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only; ImportError without the `bench` extra."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_result_and_plot(name: str, result: dict, out: Path, draw: Callable[[dict, Path], None], plot: Path) -> None:
    """The JSON, then its plot (said and skipped where matplotlib is not installed)."""
    write_result(name, result, out)
    try:
        draw(result, plot)
        print(f"plot: {plot}")
    except ImportError:
        print("no plot: pip install -e '.[bench]' (matplotlib)")


async def scrape_metrics(base: str, cafile: str) -> list[Any]:
    """The server's /metrics as prometheus_client samples (name, labels, value); asynchronous, so
    that the benchmark's own clients keep their pace while it is read."""
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient(verify=cafile, timeout=30) as http:
        body = (await http.get(f"{base}/metrics")).text
    return [sample for family in text_string_to_metric_families(body) for sample in family.samples]
