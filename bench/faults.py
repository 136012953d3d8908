"""Faults: every failure the server promises to survive, run as one suite with one verdict (issue 13).

    .venv/bin/python bench/faults.py [--out FILE]

Each fault is an end-to-end test against real server processes (tests/e2e), so the same promises
are also kept in CI; this runs just them and writes one JSON file of what held:

- kill -9 of the server mid-session, restart, resume: the fact told before the kill is recalled
  (the real embedded model answers);
- a connection cut in the middle of a frame: the turns already acknowledged resume;
- a client that stops reading: closed with 1008 after `send_timeout_s`, server memory bounded;
- a flood of 100,000 tiny frames: slowed by TCP backpressure, never closed; every frame read,
  server memory bounded, and a neighbour session's turns answered on time;
- the store's disk full: no new handle is sent, and the last one sent still resumes;
- Redis stopped and restarted under a running session: the session goes on, and resumes after.

Writes JSON (bench/results/faults.json): per fault, passed or not, its duration, and the
failure's message if any.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

from common import RESULTS, machine, write_result

ROOT = Path(__file__).resolve().parents[1]
FAULTS = {
    "kill -9 mid-reply, restart, resume": "tests/e2e/test_resumption.py::test_a_fact_survives_sigkill_of_the_server",
    "connection cut mid-frame": "tests/e2e/test_faults.py::test_a_connection_cut_mid_frame_loses_nothing_acknowledged",
    "client stops reading": "tests/e2e/test_connection_limits.py::"
                            "test_a_client_that_stops_reading_is_closed_and_its_backlog_stays_bounded",
    "flood of tiny frames": "tests/e2e/test_backpressure.py::"
                            "test_a_flood_of_100k_frames_is_slowed_not_closed_and_its_neighbour_is_served",
    "store disk full": "tests/e2e/test_faults.py::test_a_full_store_gives_no_new_handle_and_the_last_one_still_resumes",
    "Redis stopped and restarted": "tests/e2e/test_faults.py::test_redis_stopped_and_restarted_under_a_running_session",
}


def outcomes(report: Path) -> dict[str, dict[str, Any]]:
    """Test name → outcome, from pytest's JUnit XML."""
    found: dict[str, dict[str, Any]] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        found[case.get("name", "")] = {
            "outcome": "passed" if problem is None else problem.tag,
            "seconds": round(float(case.get("time", 0)), 1),
            **({"message": (problem.get("message") or "")[:500]} if problem is not None else {}),
        }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "faults.json")
    args = parser.parse_args()
    report = Path(tempfile.mkdtemp(prefix="openlive-faults-")) / "junit.xml"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                    *FAULTS.values()], cwd=ROOT, check=False)
    found = outcomes(report) if report.exists() else {}
    faults = {name: found.get(test.rsplit("::", 1)[1], {"outcome": "not run"}) for name, test in FAULTS.items()}
    result = {"benchmark": "faults", "machine": machine(), "seconds": round(time.monotonic() - started, 1),
              "held": sum(1 for f in faults.values() if f["outcome"] == "passed"), "of": len(faults),
              "faults": faults}
    write_result("faults", result, args.out)
    sys.exit(0 if result["held"] == result["of"] else 1)


if __name__ == "__main__":
    main()
