"""The waterfall of a spoken turn, as the server measured it: read from its log, summarized, drawn in text.

The server logs one line per spoken turn at its first reply audio (openlive/session/turn_timing.py):

    ... session=<id> turn timing: turn=2 early=1 eot_judged_ms=380 eot_decided_ms=410 asr_final_ms=300
        llm_request_ms=310 llm_first_token_ms=520 first_clause_ms=900 first_audio_ms=1130 first_clause_words=4

every time in milliseconds after the end of speech (when the server had the turn's last voiced
audio); and what a quick first sound may cost: the first piece's words and length, and the stalls
(silence inside the reply for a listener playing it as it arrives). `start_openlive` keeps the server's INFO log where OPENLIVE_BENCH_SERVER_LOG says;
`server_log()` makes sure it does, so the benchmark reads the figures the server itself took,
matched to its own sessions by the session id of setupComplete.

The legs are the critical path to the first sound, and add up to first_audio_ms:

    end_of_turn     speech end → the turn is decided
    recognition     → the transcript, where it was not ready when the turn was decided
    llm_first_token → the LLM's first token, where it had not come by then (early replies: often 0)
    first_clause    → the first piece of text to speak is complete
    synthesis       → its first audio is sent
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import percentile

ENV = "OPENLIVE_BENCH_SERVER_LOG"
MARKS = ("eot_judged", "eot_decided", "asr_final", "llm_request", "llm_first_token", "first_clause", "first_audio")
LEGS = ("end_of_turn", "recognition", "llm_first_token", "first_clause", "synthesis")
_TEXT_LINE = re.compile(r"session=(\S+) turn timing: (.*)$")
_FIELD = re.compile(r"(\w+)=(-?\d+)")


@contextmanager
def server_log() -> Iterator[Path]:
    """The file the servers started inside this block log to (at INFO): OPENLIVE_BENCH_SERVER_LOG
    if set, else a temporary file, removed afterwards."""
    given = os.environ.get(ENV)
    if given:
        yield Path(given)
        return
    fd, name = tempfile.mkstemp(prefix="openlive-bench-", suffix=".log")
    os.close(fd)
    os.environ[ENV] = name
    try:
        yield Path(name)
    finally:
        os.environ.pop(ENV, None)
        Path(name).unlink(missing_ok=True)


def parse_line(line: str) -> tuple[str, dict[str, int]] | None:
    """(session id, fields) of a `turn timing` line, in the text or the JSON log format."""
    if "turn timing:" not in line:
        return None
    line = line.strip()
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            return None
        session, message = str(entry.get("session", "-")), str(entry.get("msg", ""))
        body = message.split("turn timing:", 1)[1]
    else:
        match = _TEXT_LINE.search(line)
        if match is None:
            return None
        session, body = match.groups()
    return session, {key: int(value) for key, value in _FIELD.findall(body)}


def read_timings(path: Path) -> dict[str, list[dict[str, int]]]:
    """Every `turn timing` line in the log, by session id, in order."""
    found: dict[str, list[dict[str, int]]] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        parsed = parse_line(line)
        if parsed is not None:
            found.setdefault(parsed[0], []).append(parsed[1])
    return found


def legs(timing: dict[str, int]) -> dict[str, int] | None:
    """The critical path to the first sound, leg by leg (they add up to first_audio_ms)."""
    if "first_audio_ms" not in timing or "eot_decided_ms" not in timing:
        return None
    decided = timing["eot_decided_ms"]
    heard = max(decided, timing.get("asr_final_ms", decided))
    token = max(heard, timing.get("llm_first_token_ms", heard))
    clause = max(token, timing.get("first_clause_ms", token))
    audio = timing["first_audio_ms"]
    return {"end_of_turn": decided, "recognition": heard - decided, "llm_first_token": token - heard,
            "first_clause": clause - token, "synthesis": audio - clause}


def turn_waterfall(timing: dict[str, int]) -> dict[str, Any]:
    """One turn's marks (ms after the end of speech) and its legs."""
    row: dict[str, Any] = {f"{m}_ms": timing[f"{m}_ms"] for m in MARKS if f"{m}_ms" in timing}
    row["early_reply"] = bool(timing.get("early", 0))
    for key in ("first_clause_words", "first_piece_ms", "stalls", "stall_ms"):
        if key in timing:
            row[key] = timing[key]
    row["legs_ms"] = legs(timing)
    return row


def attach(sessions: Sequence[Sequence[dict[str, Any]]], path: Path) -> None:
    """Give each measured turn (a row with `session_id` and `turn`) the server's waterfall of it."""
    timings = read_timings(path)
    for rows in sessions:
        for row in rows:
            found = timings.get(row.get("session_id") or "", [])
            match = next((t for t in found if t.get("turn") == row["turn"]), None)
            if match is not None:
                row["waterfall"] = turn_waterfall(match)


def p50(values: Sequence[float]) -> float | None:
    return round(percentile(list(values), 0.5)) if values else None


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Per mark and per leg, the p50 over the turns that have a waterfall; how many replies were
    early; what the speed cost: the first piece's words, and the turns whose speech stalled."""
    falls = [r["waterfall"] for r in rows if r.get("waterfall")]
    if not falls:
        return None
    marks = {f"{m}_ms": p50([f[f"{m}_ms"] for f in falls if f"{m}_ms" in f]) for m in MARKS}
    with_legs = [f["legs_ms"] for f in falls if f.get("legs_ms")]
    stalled = [f["stall_ms"] for f in falls if f.get("stalls")]
    return {"n": len(falls), "early_replies": sum(1 for f in falls if f["early_reply"]),
            "at_p50_ms": {k: v for k, v in marks.items() if v is not None},
            "legs_p50_ms": {leg: p50([x[leg] for x in with_legs]) for leg in LEGS} if with_legs else None,
            "first_clause_words_p50": p50([f["first_clause_words"] for f in falls if "first_clause_words" in f]),
            "turns_with_stalls": len(stalled), "stall_ms_p50_of_those": p50(stalled)}


def draw(title: str, summary_: dict[str, Any] | None, width: int = 48) -> str:
    """The p50 legs as text bars, one line each."""
    if not summary_ or not summary_.get("legs_p50_ms"):
        return f"{title}: no waterfall (the server logged no turn timing)"
    legs_ = summary_["legs_p50_ms"]
    total = max(1, sum(v for v in legs_.values() if v))
    scale = width / max(total, summary_["at_p50_ms"].get("first_audio_ms") or 0, 1)
    lines = [f"{title} (p50 of {summary_['n']} turns, {summary_['early_replies']} early replies; "
             f"first audio p50 {summary_['at_p50_ms'].get('first_audio_ms')} ms after the end of speech; "
             f"{summary_['turns_with_stalls']} turns stalled)"]
    start = 0.0
    for leg in LEGS:
        ms = legs_.get(leg) or 0
        lines.append(f"  {leg:<16}{ms:>6} ms  {' ' * round(start * scale)}{'#' * max(1 if ms else 0, round(ms * scale))}")
        start += ms
    return "\n".join(lines)
