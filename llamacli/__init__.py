"""llamacli: run, quantize, inspect and benchmark GGUF models on the CPU, checked against llama.cpp."""

import hashlib as _hashlib
import os as _os
import sys as _sys
from importlib.util import find_spec as _find_spec
from pathlib import Path as _Path

__version__ = "0.1.0"


def _numba_cache_dir() -> _Path:
    """Where compiled kernels are cached: a folder named by a hash of this package's sources.

    Numba checks a cached function against its own file only, not against the files it calls
    into (an intrinsic in kernels/simd.py, an inlined helper), so an edit there would leave
    stale machine code in use. A folder per version of the sources cannot go stale."""
    h = _hashlib.sha256()
    pkg = _Path(__file__).resolve().parent
    spec = _find_spec("llamacli.kernels")  # the repo's kernels/ in an editable install
    roots = {pkg, _Path(spec.origin).resolve().parent} if spec and spec.origin else {pkg}
    for root in sorted(roots):
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    base = _os.environ.get("LLAMACLI_CACHE") or _os.path.join(_os.path.expanduser("~"), ".cache", "llamacli")
    here = _Path(base) / "numba" / h.hexdigest()[:16]
    if not here.exists() and here.parent.is_dir():  # a new version: keep the three latest others
        import shutil

        old = sorted((d for d in here.parent.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
        for d in old[:-3]:
            shutil.rmtree(d, ignore_errors=True)
    return here


if "NUMBA_CACHE_DIR" not in _os.environ:  # the user's choice wins
    _os.environ["NUMBA_CACHE_DIR"] = str(_numba_cache_dir())
    if "numba" in _sys.modules:  # imported before us: its config has already read the environment
        _sys.modules["numba"].config.CACHE_DIR = _os.environ["NUMBA_CACHE_DIR"]
