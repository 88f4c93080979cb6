"""Golden data for the differential test (tests/test_differential.py): every tiny family model of
tests/families.py through llama.cpp with flash attention on, decoded one token at a time and fed
as prompt batches of two sizes, from two builds of the same sdist.

    python scripts/make_differential_reference.py avx2=/work/peer/avx2/bin avx512=/work/peer/native/bin

Writes tests/golden/differential.json: per model, build and run, the first 16 hex digits of the
sha256 of each float32 logits row (n_ctx 4096, n_batch = n_ubatch = 512, 2 threads):
  decode    the 64 family tokens, one per llama_decode
  batch_64  all 64 in one llama_decode (the tiled attention kernel; 8+ rows: the batched matmuls)
  batch_6   the first 6 (attention a row at a time; Q4_K's repacked gemm over 4 rows, gemv for 2)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))
from families import FAMILY_MODELS, family_tokens, write_family  # noqa: E402
from make_flash_reference import PEER  # noqa: E402

OUT = ROOT / "tests" / "golden" / "differential.json"
RUNS = [("decode", 64), ("batch_64", 64), ("batch_6", 6)]


def main() -> int:
    pythonpath = "/work/peer/llama_cpp_python-0.3.36:/work/peer/pydeps"
    data = {"runs": dict(RUNS), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in FAMILY_MODELS:
            path = write_family(name, Path(tmp) / f"{name}.gguf")
            toks = family_tokens(name)
            rec = data["models"].setdefault(name, {"gguf_sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
            for spec in sys.argv[1:]:
                level, lib = spec.split("=", 1)
                env = dict(os.environ, LLAMA_CPP_LIB_PATH=lib, PYTHONPATH=pythonpath)
                for run, n in RUNS:
                    npy = Path(tmp) / "rows.npy"
                    p = subprocess.run([sys.executable, "-c", PEER, str(path), ",".join(map(str, toks[:n])), str(npy),
                                        run.split("_")[0], "2"], env=env, capture_output=True, text=True)
                    if p.returncode:
                        sys.exit(f"{name} {level} {run}: {p.stderr[-2000:]}")
                    rows = np.load(npy)
                    rec.setdefault(level, {})[run] = [hashlib.sha256(r.tobytes()).hexdigest()[:16] for r in rows]
            print(f"{name}: done", file=sys.stderr)
    OUT.write_text(json.dumps(data, indent=0))
    print(f"{OUT}: {OUT.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
