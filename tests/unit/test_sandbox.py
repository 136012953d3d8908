"""The code-execution sandbox, with real processes: what model-written code can and cannot do.

Each escape attempt must fail with the right outcome, leave the test process unharmed, and leave
the sandbox usable for the next run.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.support.require import require

from openlive.engines.code import sandbox as sandbox_module
from openlive.engines.code.sandbox import (
    CODE_PATH,
    OUTCOME_DEADLINE_EXCEEDED,
    OUTCOME_FAILED,
    OUTCOME_OK,
    CodeResult,
    Sandbox,
    SandboxLimits,
)

REPO = Path(__file__).resolve().parents[2]
FAST = SandboxLimits(wall_s=2.0, cpu_s=2.0, memory_mb=256, max_processes=16,
                     max_output_bytes=64_000, max_file_mb=8)
FIB = "a, b = 0, 1\nfor _ in range(15):\n    a, b = b, a + b\nprint(a)\n"
BOMB_MARK = "300.0417"  # a distinctive argument, to find stray processes by



@pytest.fixture
def sb() -> Sandbox:
    box = Sandbox(FAST)
    ok, why = box.available()
    require(ok, f"code sandbox unavailable: {why} (install the bubblewrap package)")
    return box


async def still_works(box: Sandbox) -> None:
    result = await box.run(FIB)
    assert result == CodeResult(OUTCOME_OK, "610\n")


def sandbox_processes() -> list[str]:
    """Live processes that belong to a sandbox: bwrap and the code's Python (their command lines
    name the code file), the bomb tests' children, and anything running as a sandbox uid."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").strip().startswith("Z"):
            continue
        uid = int(fields["Uid"].split()[0])
        in_uid_range = sandbox_module._UID_BASE <= uid < sandbox_module._UID_BASE + sandbox_module._UID_SLOTS
        if CODE_PATH in cmdline or BOMB_MARK in cmdline or in_uid_range:
            found.append(f"{entry.name} uid={uid} {cmdline[:120]}")
    return found


async def wait_no_sandbox_processes(timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := sandbox_processes()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not left, left


# ------------------------------------------------------------------------------ basics


async def test_prints_result(sb: Sandbox) -> None:
    result = await sb.run(FIB)
    assert result.outcome == OUTCOME_OK
    assert result.output == "610\n"


async def test_exception_gives_failure_with_traceback(sb: Sandbox) -> None:
    result = await sb.run("print('before')\nx = {}\nx['missing']\n")
    assert result.outcome == OUTCOME_FAILED
    assert result.output.startswith("before\n")
    assert "Traceback (most recent call last)" in result.output
    assert result.output.rstrip().splitlines()[-1] == "KeyError: 'missing'"
    await still_works(sb)


async def test_syntax_error_and_exit_codes(sb: Sandbox) -> None:
    result = await sb.run("def broken(:\n")
    assert result.outcome == OUTCOME_FAILED and "SyntaxError" in result.output
    assert (await sb.run("import sys; print('bye'); sys.exit(3)")).outcome == OUTCOME_FAILED
    assert (await sb.run("import sys; print('bye'); sys.exit(0)")) == CodeResult(OUTCOME_OK, "bye\n")


async def test_runs_as_unprivileged_user_with_limits(sb: Sandbox) -> None:
    code = textwrap.dedent("""
        import os, resource
        print("uid", os.getuid(), os.geteuid())
        for name in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_FSIZE"):
            print(name, *resource.getrlimit(getattr(resource, name)))
        status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
        print("CapEff", status["CapEff"].strip(), "CapBnd", status["CapBnd"].strip())
        print("NoNewPrivs", status["NoNewPrivs"].strip())
    """)
    result = await sb.run(code)
    assert result.outcome == OUTCOME_OK, result.output
    lines = dict(line.split(" ", 1) for line in result.output.splitlines())
    assert "0" not in lines["uid"].split()
    assert lines["RLIMIT_CPU"] == "2 3"
    assert lines["RLIMIT_AS"] == f"{256 << 20} {256 << 20}"
    assert lines["RLIMIT_NPROC"] == "16 16"
    assert lines["RLIMIT_FSIZE"] == f"{8 << 20} {8 << 20}"
    assert lines["CapEff"] == "0000000000000000 CapBnd 0000000000000000"
    assert lines["NoNewPrivs"] == "1"


# ------------------------------------------------------------------------------ no network


async def test_no_network(sb: Sandbox) -> None:
    connections: list[object] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    port = server.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, addr = server.accept()
            except (TimeoutError, OSError):
                continue
            connections.append(addr)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        # The server is reachable from here, so a refusal below is the sandbox's doing.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        for _ in range(50):
            if connections:
                break
            await asyncio.sleep(0.02)
        assert len(connections) == 1
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')\n"
        result = await sb.run(code)
        assert result.outcome == OUTCOME_FAILED
        assert "connected" not in result.output
        assert "ConnectionRefusedError" in result.output or "OSError" in result.output
        await asyncio.sleep(0.3)
        assert len(connections) == 1  # nothing arrived from the sandbox
    finally:
        stop.set()
        thread.join(2)
        server.close()

    result = await sb.run("import socket\nprint(socket.getaddrinfo('pypi.org', 443))\n")
    assert result.outcome == OUTCOME_FAILED
    assert "gaierror" in result.output
    result = await sb.run("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                          "s.sendto(b'x', ('8.8.8.8', 53))\n")
    assert result.outcome == OUTCOME_FAILED
    assert "Network is unreachable" in result.output
    await still_works(sb)


# ------------------------------------------------------------------------------ no server files


async def test_server_files_and_secrets_are_not_visible(
    sb: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-" + os.urandom(8).hex()
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(secret)
    secret_file.chmod(0o644)
    monkeypatch.setenv("OPENLIVE_API_KEYS", secret)
    monkeypatch.setenv("OPENLIVE_TEST_SECRET", secret)
    targets = [str(secret_file), str(REPO / "pyproject.toml"), str(REPO / "openlive" / "config.py"),
               "/etc/passwd", "/etc/hostname", "/root", str(Path.home()), "/proc/1/environ",
               "/proc/1/cmdline", "/proc/self/environ"]
    code = textwrap.dedent(f"""
        import os
        print("ENV", dict(os.environ))
        print("SECRET_ENV", "OPENLIVE_API_KEYS" in os.environ, "OPENLIVE_TEST_SECRET" in os.environ)
        for path in {targets!r}:
            try:
                if os.path.isdir(path):
                    print("LISTED", path, os.listdir(path))
                else:
                    print("READ", path, open(path, "rb").read()[:2000])
            except OSError as e:
                print("DENIED", path, type(e).__name__)
        print("ROOT", sorted(os.listdir("/")))
        # Every file the sandbox can see outside /usr, /proc, /dev and the standard library.
        stdlib = os.path.dirname(os.__file__)
        for top, dirs, files in os.walk("/"):
            if top in ("/usr", "/proc", "/dev", stdlib):
                dirs[:] = []
                continue
            for name in files:
                print("FILE", os.path.join(top, name))
    """)
    result = await sb.run(code)
    assert result.outcome == OUTCOME_OK, result.output
    assert secret not in result.output
    assert "SECRET_ENV False False" in result.output
    for path in (secret_file, REPO / "pyproject.toml", REPO / "openlive" / "config.py", "/etc/passwd"):
        assert f"DENIED {path} FileNotFoundError" in result.output
    root_line = next(line for line in result.output.splitlines() if line.startswith("ROOT "))
    allowed = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "proc", "dev", "tmp",
               "sandbox", Path(sys.base_prefix).parts[1]}
    assert set(ast.literal_eval(root_line[5:])) <= allowed, root_line
    files = [line[5:] for line in result.output.splitlines() if line.startswith("FILE ")]
    interpreter = os.path.realpath(sys.executable)
    for path in files:
        assert (path == CODE_PATH or path == interpreter
                or Path(path).name.startswith("libpython")), f"{path} is visible in the sandbox"
    await still_works(sb)


async def test_writing_outside_fails(sb: Sandbox, tmp_path: Path) -> None:
    tmp_path.chmod(0o777)  # even a directory anyone may write to on the host is out of reach
    targets = [tmp_path / "escaped.txt", REPO / "escaped-from-sandbox.txt", Path("/usr/escaped.txt")]
    for target in targets:
        code = f"open({str(target)!r}, 'w').write('escaped')\nprint('written')\n"
        result = await sb.run(code)
        assert result.outcome == OUTCOME_FAILED, (target, result.output)
        assert "written" not in result.output
        assert not target.exists()
    # Its own working directory is writable, within the file-size limit.
    result = await sb.run("open('scratch.txt', 'w').write('ok')\nprint(open('scratch.txt').read())\n")
    assert result == CodeResult(OUTCOME_OK, "ok\n")
    result = await sb.run("open('big.bin', 'wb').write(b'x' * (9 << 20))\n")
    assert result.outcome == OUTCOME_FAILED
    assert "File too large" in result.output or "No space left" in result.output
    # Nothing is kept between runs.
    result = await sb.run("import os\nprint(os.listdir('.'))\n")
    assert result == CodeResult(OUTCOME_OK, "[]\n")
    await still_works(sb)


# ------------------------------------------------------------------------------ processes


async def test_fork_bomb_is_contained(sb: Sandbox) -> None:
    await wait_no_sandbox_processes()
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    started = time.monotonic()
    result = await sb.run(code)
    assert result.outcome in (OUTCOME_DEADLINE_EXCEEDED, OUTCOME_FAILED)
    assert time.monotonic() - started < FAST.wall_s + 1.5
    await wait_no_sandbox_processes()
    await still_works(sb)


async def test_subprocess_bomb_is_contained(sb: Sandbox) -> None:
    await wait_no_sandbox_processes()
    code = textwrap.dedent(f"""
        import subprocess
        spawned = []
        while True:
            try:
                spawned.append(subprocess.Popen(["sleep", "{BOMB_MARK}"]))
            except OSError:
                pass
    """)
    result = await sb.run(code)
    assert result.outcome in (OUTCOME_DEADLINE_EXCEEDED, OUTCOME_FAILED)
    await wait_no_sandbox_processes()
    await still_works(sb)


async def test_process_limit_holds() -> None:
    box = Sandbox(SandboxLimits(wall_s=5.0, cpu_s=2.0, max_processes=6))
    ok, why = box.available()
    require(ok, why)
    code = textwrap.dedent("""
        import os, time
        n = 0
        try:
            while n < 200:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                n += 1
        except OSError as e:
            print("stopped after", n, type(e).__name__)
    """)
    result = await box.run(code)
    assert result.outcome == OUTCOME_OK, result.output
    stopped = int(result.output.split()[2])
    assert 1 <= stopped < 6, result.output
    await wait_no_sandbox_processes()  # the sleeping children went with the sandbox


async def test_main_exit_ends_background_processes(sb: Sandbox) -> None:
    code = f"import subprocess\nsubprocess.Popen(['sleep', '{BOMB_MARK}'])\nprint('left it running')\n"
    result = await sb.run(code)
    assert result == CodeResult(OUTCOME_OK, "left it running\n")
    await wait_no_sandbox_processes()


async def test_cancelled_run_leaves_nothing_behind(sb: Sandbox) -> None:
    code = f"import subprocess, time\nsubprocess.Popen(['sleep', '{BOMB_MARK}'])\ntime.sleep(60)\n"
    task = asyncio.create_task(sb.run(code))
    await asyncio.sleep(0.5)
    assert sandbox_processes()  # it is running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_no_sandbox_processes()
    await still_works(sb)


# ------------------------------------------------------------------------------ time and memory


async def test_endless_loop_hits_the_deadline() -> None:
    box = Sandbox(SandboxLimits(wall_s=2.0, cpu_s=30.0))  # wall time, not CPU, stops it
    ok, why = box.available()
    require(ok, why)
    started = time.monotonic()
    result = await box.run("print('spinning', flush=True)\nwhile True:\n    pass\n")
    elapsed = time.monotonic() - started
    assert result.outcome == OUTCOME_DEADLINE_EXCEEDED
    assert result.output.startswith("spinning\n")
    assert "time limit" in result.output
    assert 1.9 <= elapsed < 3.0
    await wait_no_sandbox_processes()
    await still_works(box)


async def test_sleeping_hits_the_deadline(sb: Sandbox) -> None:
    started = time.monotonic()
    result = await sb.run("import time\ntime.sleep(60)\n")
    assert result.outcome == OUTCOME_DEADLINE_EXCEEDED
    assert time.monotonic() - started < FAST.wall_s + 1.0
    await still_works(sb)


async def test_cpu_limit_hits_the_deadline() -> None:
    box = Sandbox(SandboxLimits(wall_s=10.0, cpu_s=1.0))
    ok, why = box.available()
    require(ok, why)
    started = time.monotonic()
    result = await box.run("while True:\n    pass\n")
    assert result.outcome == OUTCOME_DEADLINE_EXCEEDED
    assert "CPU time limit" in result.output
    assert time.monotonic() - started < 4.0


async def test_memory_hog_fails_without_harm(sb: Sandbox) -> None:
    result = await sb.run("data = bytearray(2 * 1024 ** 3)\nprint('allocated')\n")
    assert result.outcome == OUTCOME_FAILED
    assert "allocated" not in result.output
    assert result.output.rstrip().splitlines()[-1] == "MemoryError"
    result = await sb.run("chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n")
    assert result.outcome == OUTCOME_FAILED
    assert "MemoryError" in result.output
    await still_works(sb)


# ------------------------------------------------------------------------------ output


async def test_huge_output_is_cut() -> None:
    box = Sandbox(SandboxLimits(wall_s=2.0, cpu_s=2.0, max_output_bytes=1000))
    ok, why = box.available()
    require(ok, why)
    result = await box.run("print('x' * 100_000)\n")
    assert result.outcome == OUTCOME_OK
    assert result.output.startswith("x" * 1000)
    assert "x" * 1001 not in result.output
    assert "[output truncated: 99001 of 100001 bytes not shown]" in result.output
    assert len(result.output.encode()) < 1000 + 100
    # Endless output: cut, and stopped at the deadline.
    result = await box.run("while True:\n    print('y' * 1000)\n")
    assert result.outcome == OUTCOME_DEADLINE_EXCEEDED
    assert len(result.output.encode()) < 1000 + 200
    assert "output truncated" in result.output
    # Multi-byte characters are not split into garbage at the cut.
    result = await box.run("print('é' * 5000)\n")
    assert result.output.startswith("é" * 500)
    assert "\ufffd" not in result.output


async def test_stdout_and_stderr_both_reported(sb: Sandbox) -> None:
    result = await sb.run("import sys\nprint('out')\nprint('err', file=sys.stderr)\n")
    assert result.outcome == OUTCOME_OK
    assert "out" in result.output and "err" in result.output


# ------------------------------------------------------------------------------ concurrency


async def test_three_concurrent_runs(sb: Sandbox) -> None:
    started = time.monotonic()
    codes = [f"import time\ntime.sleep(0.8)\nprint({i} * 7)\n" for i in range(3)]
    results = await asyncio.gather(*(sb.run(code) for code in codes))
    assert [r.outcome for r in results] == [OUTCOME_OK] * 3
    assert [r.output for r in results] == ["0\n", "7\n", "14\n"]
    assert time.monotonic() - started < 2.0  # they ran side by side


async def test_concurrent_runs_do_not_share_files_or_process_budgets(sb: Sandbox) -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    writer = "open('mine.txt', 'w').write('A')\nimport time\ntime.sleep(0.5)\nimport os\nprint(os.listdir('.'))\n"
    spawner = "import subprocess\nprint(sum(subprocess.run(['true']).returncode == 0 for _ in range(20)))\n"

    async def later(code: str) -> CodeResult:
        await asyncio.sleep(0.3)  # while the bomb is at its limit
        return await sb.run(code)

    results = await asyncio.gather(sb.run(bomb), later(writer), later(writer), later(spawner))
    assert results[0].outcome in (OUTCOME_DEADLINE_EXCEEDED, OUTCOME_FAILED)
    assert results[1] == CodeResult(OUTCOME_OK, "['mine.txt']\n")
    assert results[2] == CodeResult(OUTCOME_OK, "['mine.txt']\n")
    assert results[3] == CodeResult(OUTCOME_OK, "20\n")
    await wait_no_sandbox_processes()


# ------------------------------------------------------------------------------ no sandbox, no run


async def test_unavailable_never_runs_unconfined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_module, "_which", lambda name: None)
    box = Sandbox(FAST)
    ok, why = box.available()
    assert not ok and "bwrap" in why
    marker = tmp_path / "ran.txt"
    result = await box.run(f"open({str(marker)!r}, 'w').write('ran')\n")
    assert result.outcome == OUTCOME_FAILED
    assert result.output.startswith("Code execution is unavailable")
    assert not marker.exists()


async def test_bad_interpreter_is_unavailable(tmp_path: Path) -> None:
    box = Sandbox(FAST, python=str(tmp_path / "no-such-python"))
    ok, why = box.available()
    assert not ok and "no-such-python" in why
    result = await box.run(FIB)
    assert result.outcome == OUTCOME_FAILED and "unavailable" in result.output


# ------------------------------------------------------------------------------ as a non-root server


def test_unprivileged_server_mode() -> None:
    """A server not running as root uses bwrap's user namespace instead of dropping to a uid of
    its own. Run the same checks from a process that runs as nobody."""
    system_python = "/usr/bin/python3"
    if os.geteuid() != 0 or not os.access(system_python, os.X_OK) or not shutil.which("setpriv"):
        pytest.skip("needs root (to become nobody), setpriv and the system Python")
    # nobody may not be able to read the checkout (a clone in a private temp dir): give it a copy
    # in a folder of its own under /tmp, which everyone can reach.
    with tempfile.TemporaryDirectory(prefix="openlive-nobody-", dir="/tmp") as folder:
        os.chmod(folder, 0o755)
        module = Path(folder) / "sandbox.py"
        shutil.copy(REPO / "openlive/engines/code/sandbox.py", module)
        module.chmod(0o644)
        _run_as_nobody(system_python, module)


def _run_as_nobody(system_python: str, module: Path) -> None:
    script = textwrap.dedent(f"""
        import asyncio, importlib.util, json, os, sys
        spec = importlib.util.spec_from_file_location("sandbox", {str(module)!r})
        m = importlib.util.module_from_spec(spec)
        sys.modules["sandbox"] = m
        spec.loader.exec_module(m)

        async def main():
            box = m.Sandbox(m.SandboxLimits(wall_s=2, cpu_s=2, max_processes=6), python=sys.executable)
            report = {{"euid": os.geteuid(), "available": box.available()}}
            codes = {{
                "fib": {FIB!r},
                "net": "import socket\\nsocket.create_connection(('127.0.0.1', 9), timeout=1)",
                "file": "print(open('/etc/passwd').read())",
                "env": "import os\\nprint(sorted(os.environ))",
                "bomb": "import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass",
                "nproc": "import resource\\nprint(resource.getrlimit(resource.RLIMIT_NPROC))",
                "memory": "bytearray(2 * 1024 ** 3)",
                "write": "open('/dev/x', 'w')",
            }}
            for name, code in codes.items():
                r = await box.run(code)
                report[name] = [r.outcome, r.output]
            print(json.dumps(report))

        asyncio.run(main())
    """)
    env = {"PATH": "/usr/bin:/bin", "OPENLIVE_API_KEYS": "nobody-secret"}
    done = subprocess.run(
        ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
         system_python, "-I", "-c", script],
        capture_output=True, text=True, timeout=60, env=env, cwd="/",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["euid"] == 65534
    ok, why = report["available"]
    require(ok, f"unprivileged bwrap (user namespaces) unavailable: {why}")
    assert report["fib"] == [OUTCOME_OK, "610\n"]
    assert report["net"][0] == OUTCOME_FAILED and "ConnectionRefused" in report["net"][1]
    assert report["file"][0] == OUTCOME_FAILED and "FileNotFoundError" in report["file"][1]
    assert report["env"] == [OUTCOME_OK, "['HOME', 'LANG', 'PATH', 'PWD']\n"]
    assert report["bomb"][0] in (OUTCOME_DEADLINE_EXCEEDED, OUTCOME_FAILED)
    assert report["nproc"] == [OUTCOME_OK, "(6, 6)\n"]
    assert report["memory"][0] == OUTCOME_FAILED and "MemoryError" in report["memory"][1]
    assert report["write"][0] == OUTCOME_FAILED and "Read-only file system" in report["write"][1]
