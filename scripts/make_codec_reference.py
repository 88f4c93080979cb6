"""Golden data for the codecs: what llama.cpp's ggml_quantize_chunk writes for the rows and
importance weights of tests/codec_cases.py, per type, as the first 16 hex digits of each row's
sha256 (tests/golden/codec_chunks.json).

Usage: GGML_CPU_LIB=/work/peer/avx2/bin/libggml-cpu.so .venv/bin/python scripts/make_codec_reference.py
(libggml-base.so beside it is used; quantizing is portable C, the same in every build).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from gguf import GGMLQuantizationType as T

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests")]

import codec_cases  # noqa: E402
import peer_ggml  # noqa: E402

TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K,
         T.MXFP4, T.NVFP4, T.Q1_0, T.TQ1_0, T.TQ2_0, T.IQ4_NL, T.IQ4_XS, T.IQ3_S, T.IQ3_XXS,
         T.IQ2_S, T.IQ2_XS, T.IQ2_XXS, T.IQ1_M, T.IQ1_S]
REQUIRES_IMATRIX = {T.IQ2_XXS, T.IQ2_XS, T.IQ1_S}


def row_hashes(q) -> list[str]:
    return [hashlib.sha256(r.tobytes()).hexdigest()[:16] for r in q]


def main() -> None:
    out = {"n_per_row": codec_cases.N_PER_ROW, "binary": str(peer_ggml.LIB), "types": {}}
    for t in TYPES:
        entry = {}
        for case in codec_cases.CASES:
            x = codec_cases.rows(case)
            for kind in codec_cases.WEIGHTS:
                w = codec_cases.weights(kind)
                if w is None and t in REQUIRES_IMATRIX:
                    continue
                entry[f"{case}/{kind}"] = row_hashes(peer_ggml.quantize_chunk(t, x, w))
        out["types"][t.name] = entry
        print(t.name, file=sys.stderr)
    path = ROOT / "tests/golden/codec_chunks.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(path)


if __name__ == "__main__":
    main()
