"""Golden dot products of the i-quants, ternary, NVFP4 and Q1_0 weights, from ggml itself.

For each type, random weight rows (tests/iquant_blocks.py: every byte random, scales finite)
and random activations quantized by llamacli's q8_0 / q8_K quantizers (bit-exact with ggml's),
the script calls the built llama.cpp's ``ggml_vec_dot_<type>_<act>`` through ctypes
(scripts/peer_ggml.py) and records the float32 bits of every output. It runs the AVX2, AVX-512
and native (AMX) builds' libggml-cpu.so and checks that they agree: none of them has a wider
path for these dots. Run with llamacli's interpreter:

    .venv/bin/python scripts/make_iquant_dot_reference.py

Writes tests/golden/iquant_dots.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]
BUILDS = ("avx2", "avx512", "native")
OUT = ROOT / "tests" / "golden" / "iquant_dots.json"


def cases():
    from iquant_blocks import TYPES
    from gguf import GGMLQuantizationType as T
    for qt in TYPES:
        n = {T.IQ4_NL: 224, T.NVFP4: 512, T.Q1_0: 768}.get(qt, 768)
        yield qt, dict(seed=1000 + int(qt), rows=13, n=n, tokens=3)


def one_build() -> None:
    """Child process: this build's outputs, as JSON on stdout."""
    import peer_ggml as P
    from iquant_blocks import make_case
    res = {}
    for qt, c in cases():
        W, acts = make_case(qt, **c)[:2]
        out = np.array([[P.vec_dot(qt, W[r], P.act_bytes(qt, *a), c["n"]) for r in range(c["rows"])] for a in acts],
                       np.float32)
        res[qt.name] = out.view(np.uint32).tolist()
    print(json.dumps(res))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        one_build()
        return
    per_build = {}
    for b in BUILDS:
        env = dict(os.environ, GGML_CPU_LIB=f"/work/peer/{b}/bin/libggml-cpu.so")
        r = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True, check=True)
        per_build[b] = json.loads(r.stdout)
    ref = per_build[BUILDS[0]]
    agree = {b: [k for k in ref if per_build[b][k] == ref[k]] for b in BUILDS[1:]}
    golden = {"builds_agree": agree, "cases": {qt.name: dict(c, out_bits=ref[qt.name]) for qt, c in cases()}}
    OUT.write_text(json.dumps(golden, indent=1) + "\n")
    for b, ks in agree.items():
        print(f"{b}: agrees with avx2 on {len(ks)}/{len(ref)} types")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
