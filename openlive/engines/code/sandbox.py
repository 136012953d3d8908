"""A sandbox for the Live API's `codeExecution` tool: model-written Python run in a separate,
confined process.

The confinement is bubblewrap (`bwrap`, Debian package `bubblewrap`), the namespace sandbox
Flatpak uses, plus kernel resource limits:

* Namespaces: new mount, PID, network, IPC and UTS namespaces (and a user namespace when the
  server is not root). The network namespace holds only a loopback of its own, so nothing on the
  host or beyond can be reached and no name resolves. The file system is a fresh tmpfs root with
  read-only binds of /usr (and the /lib*, /bin symlinks or directories) and of only the parts of
  the Python install the interpreter needs; a small tmpfs is the working directory (/tmp). The
  server's files, /root, /home, /etc and the host's processes are not there; /proc is a new one
  that shows only the sandbox's own processes.
* An unprivileged user: when the server runs as root, bwrap sets up the namespaces and then
  `setpriv` (util-linux) drops to a uid of its own for this run, with no capabilities, no
  supplementary groups and no_new_privs. (Inside a user namespace mapped onto root, RLIMIT_NPROC
  would not be enforced, hence a real uid.) When the server is not root, bwrap's user namespace
  maps its own uid, and `--disable-userns` stops nested ones.
* Limits (`prlimit`, util-linux, applied inside the sandbox before Python starts, soft = hard so
  they cannot be raised): CPU seconds, address space, processes, file size, open files, no core
  dumps. The working tmpfs has a size limit. Wall time is enforced here: at the deadline the whole
  process group is killed, and bwrap's PID-1 (``--die-with-parent``) takes every process in the
  sandbox's PID namespace with it.
* The environment is empty apart from PATH, HOME and LANG, bwrap itself is started with that same
  minimal environment, so no secret (e.g. OPENLIVE_API_KEYS) reaches the sandbox, not even via
  /proc/1/environ. Python runs with ``-I -S`` (isolated, no site).

If bwrap is missing or namespaces are forbidden on this machine, :meth:`Sandbox.available`
says why and :meth:`Sandbox.run` refuses: code is never run unconfined.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

OUTCOME_OK = "OUTCOME_OK"
OUTCOME_FAILED = "OUTCOME_FAILED"
OUTCOME_DEADLINE_EXCEEDED = "OUTCOME_DEADLINE_EXCEEDED"

# The code's file inside the sandbox (shows in tracebacks).
CODE_PATH = "/sandbox/main.py"
WORK_DIR = "/tmp"
_SANDBOX_ENV = {"PATH": "/usr/bin:/bin", "HOME": WORK_DIR, "LANG": "C.UTF-8"}
# Where the tools are looked up on the host (they must lie under /usr, which the sandbox sees).
_TOOL_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin")

# Root mode: each concurrent run gets its own uid (never used by anything else on a normal
# system), so RLIMIT_NPROC counts only that run's processes.
_UID_BASE = 0x70000000
_UID_SLOTS = 4096


@dataclass(frozen=True)
class SandboxLimits:
    wall_s: float = 10.0
    cpu_s: float = 5.0
    memory_mb: int = 256  # address space per process
    max_processes: int = 16
    max_output_bytes: int = 64_000
    max_file_mb: int = 8  # per file, and the working directory's size


@dataclass(frozen=True)
class CodeResult:
    outcome: str  # OUTCOME_OK | OUTCOME_FAILED | OUTCOME_DEADLINE_EXCEEDED
    output: str  # stdout (+ stderr / traceback on failure), cut to max_output_bytes with a note


def _which(name: str) -> str | None:
    """A tool from the system directories (not the caller's PATH), resolved to its real path."""
    found = shutil.which(name, path=os.pathsep.join(_TOOL_DIRS))
    return os.path.realpath(found) if found else None


class _UidPool:
    _lock = threading.Lock()
    _used: set[int] = set()
    _next = 0

    @classmethod
    def take(cls) -> int:
        with cls._lock:
            base = (os.getpid() * 64) % _UID_SLOTS  # spread server processes on one host
            for i in range(_UID_SLOTS):
                slot = (base + cls._next + i) % _UID_SLOTS
                if slot not in cls._used:
                    cls._used.add(slot)
                    cls._next = (cls._next + i + 1) % _UID_SLOTS
                    return _UID_BASE + slot
            return _UID_BASE + base  # all taken: share (only the process budget is shared)

    @classmethod
    def give(cls, uid: int) -> None:
        with cls._lock:
            cls._used.discard(uid - _UID_BASE)


class Sandbox:
    def __init__(self, limits: SandboxLimits = SandboxLimits(), python: str = sys.executable) -> None:
        self.limits = limits
        self.python = python
        self._checked: tuple[bool, str] | None = None
        self._check_lock = threading.Lock()
        self._interp: str = ""  # the real interpreter binary
        self._binds: list[str] = []  # bwrap arguments that bring the interpreter in
        self._tools: dict[str, str] = {}

    # ---------------------------------------------------------------- availability

    def available(self) -> tuple[bool, str]:
        """Whether confined execution works here; if not, why. Probed once, then cached."""
        with self._check_lock:
            if self._checked is None:
                self._checked = self._probe()
            return self._checked

    def _probe(self) -> tuple[bool, str]:
        if not sys.platform.startswith("linux"):
            return False, f"the code sandbox needs Linux namespaces (platform is {sys.platform})"
        for tool in ("bwrap", "prlimit") + (("setpriv",) if os.geteuid() == 0 else ()):
            path = _which(tool)
            if path is None:
                package = "bubblewrap" if tool == "bwrap" else "util-linux"
                return False, f"{tool} was not found (install the {package} package)"
            if tool != "bwrap" and not path.startswith("/usr/"):
                return False, f"{tool} resolves to {path}, outside /usr, which the sandbox sees"
            self._tools[tool] = path
        try:
            self._interp, self._binds = self._python_binds()
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            return False, f"cannot use Python interpreter {self.python!r} in the sandbox: {e}"
        # Prove the whole confinement works (namespaces allowed, binds right, uid drop, limits).
        probe = (
            "import os, socket, sys\n"
            "assert not os.path.exists('/etc/hostname') and not os.path.exists('/work')\n"
            "assert os.getuid() != 0 and os.geteuid() != 0\n"
            "print('sandbox-ok')\n"
        )
        try:
            argv, fds, uid = self._command(probe)
        except OSError as e:
            return False, f"cannot prepare the sandbox: {e}"
        try:
            done = subprocess.run(
                argv, pass_fds=fds, env=_SANDBOX_ENV, stdin=subprocess.DEVNULL,
                capture_output=True, timeout=30, start_new_session=True,
            )
        except (OSError, subprocess.SubprocessError) as e:
            return False, f"bwrap could not start: {e}"
        finally:
            for fd in fds:
                os.close(fd)
            if uid is not None:
                _UidPool.give(uid)
        if done.returncode != 0 or b"sandbox-ok" not in done.stdout:
            why = (done.stderr or done.stdout).decode("utf-8", "replace").strip()
            return False, f"bwrap sandbox does not work here (exit {done.returncode}): {why[-500:]}"
        return True, "bubblewrap sandbox works"

    def _python_binds(self) -> tuple[str, list[str]]:
        """The interpreter's real binary and the bwrap arguments that bind only what it needs:
        the binary, its standard library and libpython (the rest of the install, a venv, the
        server's code are not bound)."""
        interp = os.path.realpath(self.python)
        if not os.access(interp, os.X_OK):
            raise ValueError(f"{interp} is not executable")
        if interp == os.path.realpath(sys.executable):
            base, version = sys.base_prefix, f"{sys.version_info[0]}.{sys.version_info[1]}"
        else:
            out = subprocess.run(
                [interp, "-I", "-S", "-c",
                 "import sys; print(sys.base_prefix); print('%d.%d' % sys.version_info[:2])"],
                capture_output=True, timeout=30, env=_SANDBOX_ENV, check=True, text=True,
            ).stdout.split("\n")
            base, version = out[0], out[1]
        base = os.path.realpath(base)
        if base == "/usr" or base.startswith("/usr/"):
            if not interp.startswith("/usr/"):
                raise ValueError(f"{interp} lies outside its install {base}")
            return interp, []  # /usr is bound whole
        if not interp.startswith(base.rstrip("/") + "/"):
            raise ValueError(f"{interp} lies outside its install {base}")
        stdlib = os.path.join(base, "lib", f"python{version}")
        if not os.path.isfile(os.path.join(stdlib, "os.py")):
            raise ValueError(f"no standard library at {stdlib}")
        paths = [interp, stdlib]
        libdir = Path(base, "lib")
        paths += sorted(str(p) for p in libdir.glob("libpython*.so*"))
        binds: list[str] = []
        made: set[str] = set()
        for path in paths:
            # bwrap makes missing parent directories 0700 (root's); make them traversable.
            parents = list(Path(path).parents)[::-1][1:]  # without "/"
            for parent in parents:
                p = str(parent)
                if p not in made:
                    made.add(p)
                    binds += ["--perms", "0755", "--dir", p]
            binds += ["--ro-bind", path, path]
        return interp, binds

    # ---------------------------------------------------------------- the command

    def _command(self, code: str) -> tuple[list[str], tuple[int, ...], int | None]:
        """bwrap's argv, the fds it must inherit (the caller closes them) and the uid taken."""
        lim = self.limits
        code_fd = os.memfd_create("openlive-code", os.MFD_CLOEXEC)
        try:
            data = code.encode("utf-8", "surrogatepass")
            view = memoryview(data)
            while view:
                view = view[os.write(code_fd, view):]
            os.lseek(code_fd, 0, os.SEEK_SET)
        except BaseException:
            os.close(code_fd)
            raise
        root = os.geteuid() == 0
        argv = [self._tools["bwrap"]]
        if root:
            # Privileged bwrap: no user namespace (one mapped onto root would make RLIMIT_NPROC
            # void); setpriv drops to an unprivileged uid below.
            argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                     "--unshare-cgroup-try",
                     # only what setpriv needs to drop to the run's uid; it then drops these too
                     "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                     "--cap-add", "CAP_SETPCAP"]
        else:
            argv += ["--unshare-all", "--unshare-user", "--disable-userns",
                     "--uid", "65534", "--gid", "65534"]
        argv += ["--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv"]
        for key, value in _SANDBOX_ENV.items():
            argv += ["--setenv", key, value]
        argv += ["--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        argv += self._binds
        argv += ["--proc", "/proc", "--dev", "/dev"]
        size = str(max(1, lim.max_file_mb) << 20)
        argv += ["--size", size, "--perms", "1777", "--tmpfs", WORK_DIR]
        argv += ["--size", size, "--perms", "1777", "--tmpfs", "/dev/shm"]
        argv += ["--perms", "0755", "--dir", os.path.dirname(CODE_PATH)]
        argv += ["--perms", "0444", "--ro-bind-data", str(code_fd), CODE_PATH]
        # Only /tmp and /dev/shm (both size-limited) stay writable.
        argv += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORK_DIR, "--"]
        uid = None
        if root:
            uid = _UidPool.take()
            argv += [self._tools["setpriv"], "--reuid", str(uid), "--regid", str(uid),
                     "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--nnp",
                     "--pdeathsig", "KILL"]
        cpu = max(1, int(lim.cpu_s + 0.999))
        memory = max(1, lim.memory_mb) << 20
        argv += [self._tools["prlimit"],
                 f"--cpu={cpu}:{cpu + 1}",  # SIGXCPU at the soft limit, SIGKILL a second later
                 f"--as={memory}",
                 f"--nproc={max(1, lim.max_processes)}",
                 f"--fsize={max(1, lim.max_file_mb) << 20}",
                 "--nofile=256", "--core=0", "--"]
        argv += [self._interp, "-I", "-S", "-X", "utf8", "-B", CODE_PATH]
        return argv, (code_fd,), uid

    # ---------------------------------------------------------------- running

    async def run(self, code: str) -> CodeResult:
        """Run `code` in the sandbox. Problems of the code (exceptions, limits, timeouts) come
        back as the result's outcome, never as an exception."""
        ok, why = self._checked or await asyncio.to_thread(self.available)
        if not ok:
            return CodeResult(OUTCOME_FAILED, f"Code execution is unavailable: {why}")
        lim = self.limits
        try:
            argv, fds, uid = self._command(code)
        except (OSError, UnicodeError) as e:
            return CodeResult(OUTCOME_FAILED, f"Code execution failed to start: {e}")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, pass_fds=fds, env=_SANDBOX_ENV, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            )
        except OSError as e:
            if uid is not None:
                _UidPool.give(uid)
            return CodeResult(OUTCOME_FAILED, f"Code execution failed to start: {e}")
        finally:
            for fd in fds:
                os.close(fd)
        cap = max(0, lim.max_output_bytes)
        readers = [asyncio.create_task(_drain(s, cap)) for s in (proc.stdout, proc.stderr)]
        timed_out = False
        try:
            try:
                async with asyncio.timeout(lim.wall_s):  # not wait_for: on 3.11 it can lose a cancel
                    await proc.wait()
            except TimeoutError:
                timed_out = True
                # bwrap's PID 1 dies with it (--die-with-parent), and with PID 1 every process
                # in the sandbox's PID namespace.
                _kill_group(proc.pid)
                await proc.wait()
            # The pipes close once the last process of the sandbox is gone.
            _, pending = await asyncio.wait(readers, timeout=2.0)
            if pending:  # pragma: no cover - a process outlived the namespace
                timed_out = True
        finally:
            if proc.returncode is None:  # cancelled, or an unexpected error
                _kill_group(proc.pid)
                try:
                    await asyncio.wait_for(asyncio.shield(proc.wait()), timeout=5)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    pass
            for task in readers:
                if not task.done():
                    task.cancel()
            results = await asyncio.gather(*readers, return_exceptions=True)
            if uid is not None:
                _UidPool.give(uid)
        outs: list[tuple[bytes, int]] = [
            r if isinstance(r, tuple) else (b"", 0) for r in results  # type: ignore[misc]
        ]
        (stdout, out_total), (stderr, err_total) = outs
        rc = proc.returncode
        if timed_out:
            outcome = OUTCOME_DEADLINE_EXCEEDED
            note = f"Execution exceeded the time limit of {lim.wall_s:g} s and was stopped."
        elif rc == 0:
            outcome, note = OUTCOME_OK, ""
        elif rc == 128 + signal.SIGXCPU:
            outcome = OUTCOME_DEADLINE_EXCEEDED
            note = f"Execution exceeded the CPU time limit of {lim.cpu_s:g} s and was stopped."
        else:
            outcome = OUTCOME_FAILED
            note = ""
            if rc is not None and rc > 128 and not stderr.strip():
                try:
                    name = signal.Signals(rc - 128).name
                except ValueError:
                    name = f"signal {rc - 128}"
                note = f"Process was killed by {name}."
        return CodeResult(outcome, _compose(stdout, out_total, stderr, err_total, note, cap))


async def _drain(stream: asyncio.StreamReader | None, cap: int) -> tuple[bytes, int]:
    """Read a pipe to its end, keeping at most `cap` + 1 bytes; also count all bytes."""
    if stream is None:
        return b"", 0
    kept = bytearray()
    total = 0
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return bytes(kept), total
        total += len(chunk)
        if len(kept) <= cap:
            kept += chunk[: cap + 1 - len(kept)]


def _compose(stdout: bytes, out_total: int, stderr: bytes, err_total: int, note: str,
             cap: int) -> str:
    body = stdout
    total = out_total
    if stderr:
        if body and not body.endswith(b"\n"):
            body += b"\n"
        body += stderr
        total += err_total
    text = body[:cap].decode("utf-8", "ignore" if len(body) > cap else "replace")
    if len(body) > cap or total > len(body):
        text = text.rstrip("\ufffd")
        shown = len(text.encode("utf-8", "surrogatepass"))
        text += f"\n[output truncated: {total - shown} of {total} bytes not shown]"
    if note:
        text = text + ("\n" if text and not text.endswith("\n") else "") + note
    return text


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
