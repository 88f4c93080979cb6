#!/usr/bin/env python3
"""Golden data for `llamacli quantize`, made by llama.cpp itself (llama-cpp-python's library).

Run it with the peer's interpreter (it needs ``llama_cpp`` and ``gguf``; of llamacli only the stdlib-only fetch module):

    /work/peer-venv/bin/python scripts/make_quant_reference.py [smollm2] [gemma3]

For each real model in the cache it

1. requantizes the cached file to F16 with ``llama_model_quantize`` (default params,
   ``allow_requantize``) into the cache (`F16_FILES`; tests make the same file with
   ``llamacli.quantize.make_f16`` and check it against these hashes);
2. quantizes that F16 file to every mixture of `TARGETS` (default params) in a temporary
   folder, and
3. writes ``tests/golden/quant/<model>.json``: the tensor names in file order, then for the F16
   file and for every target the whole-file sha256 and one "type:sha256[:16]" per tensor.

Q2_K_S is recorded as refused: without an importance matrix llama.cpp will not write it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import llama_cpp
from gguf import GGUFReader, LlamaFileType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from llamacli.fetch import sha256_of  # noqa: E402  (stdlib only: runs under the peer's interpreter too)

CACHE = Path(os.environ.get("LLAMACLI_CACHE", Path.home() / ".cache" / "llamacli"))
GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "quant"

SOURCES = {  # model -> (cached source file, F16 file made from it)
    "smollm2": ("SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct.F16.gguf"),
    "gemma3": ("gemma-3-270m-q4_k_m.gguf", "gemma-3-270m.F16.gguf"),
}
F = LlamaFileType
TARGETS = {
    "Q4_0": F.MOSTLY_Q4_0, "Q4_1": F.MOSTLY_Q4_1, "Q5_0": F.MOSTLY_Q5_0, "Q5_1": F.MOSTLY_Q5_1,
    "Q8_0": F.MOSTLY_Q8_0, "Q2_K": F.MOSTLY_Q2_K, "Q2_K_S": F.MOSTLY_Q2_K_S,
    "Q3_K_S": F.MOSTLY_Q3_K_S, "Q3_K_M": F.MOSTLY_Q3_K_M, "Q3_K_L": F.MOSTLY_Q3_K_L,
    "Q4_K_S": F.MOSTLY_Q4_K_S, "Q4_K_M": F.MOSTLY_Q4_K_M, "Q5_K_S": F.MOSTLY_Q5_K_S,
    "Q5_K_M": F.MOSTLY_Q5_K_M, "Q6_K": F.MOSTLY_Q6_K, "F16": F.MOSTLY_F16, "BF16": F.MOSTLY_BF16,
    "F32": F.ALL_F32, "MXFP4_MOE": F.MOSTLY_MXFP4_MOE,
}
GGML_NAMES = {  # ggml_type_name
    0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0",
    10: "q2_K", 11: "q3_K", 12: "q4_K", 13: "q5_K", 14: "q6_K", 30: "bf16",
}


def llama_quantize(inp: Path, out: Path, ftype: int, allow_requantize: bool = False) -> bool:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(ftype)
    params.allow_requantize = allow_requantize
    # llama.cpp logs every tensor on stderr: silence fd 2 for the call
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        rc = llama_cpp.llama_model_quantize(str(inp).encode(), str(out).encode(), params)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return rc == 0


def tensor_hashes(path: Path) -> tuple[list[str], list[str]]:
    """(names in file order, "type:sha256[:16]" of each tensor's data)."""
    r = GGUFReader(path)
    names, hashes = [], []
    for t in r.tensors:
        names.append(t.name)
        hashes.append(f"{GGML_NAMES[int(t.tensor_type)]}:{hashlib.sha256(t.data.tobytes()).hexdigest()[:16]}")
    return names, hashes


def record(path: Path, names: list[str]) -> dict:
    n, h = tensor_hashes(path)
    if n != names:
        raise SystemExit(f"{path}: tensor order differs from the F16 file's")
    return {"file_sha256": sha256_of(path), "tensors": h}


def main(models: list[str]) -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for model in models:
        src_name, f16_name = SOURCES[model]
        src, f16 = CACHE / src_name, CACHE / f16_name
        print(f"{model}: {src} -> {f16}", flush=True)
        if not llama_quantize(src, f16, F.MOSTLY_F16, allow_requantize=True):
            raise SystemExit(f"llama.cpp failed to make {f16}")
        names, hashes = tensor_hashes(f16)
        doc = {
            "model": model,
            "source": src_name,
            "source_sha256": sha256_of(src),
            "f16_file": f16_name,
            "made_by": f"llama-cpp-python {llama_cpp.__version__} (llama_model_quantize, default params)",
            "names": names,
            "f16": {"file_sha256": sha256_of(f16), "tensors": hashes},
            "targets": {},
        }
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            for name, ft in TARGETS.items():
                out = Path(tmp) / f"{name}.gguf"
                ok = llama_quantize(f16, out, ft)
                doc["targets"][name] = record(out, names) if ok else {"refused": True}
                print(f"  {name:7s} {'ok' if ok else 'refused'}", flush=True)
                out.unlink(missing_ok=True)
        dst = GOLDEN / f"{model}.json"
        dst.write_text(json.dumps(doc, indent=0, separators=(",", ":")) + "\n")
        print(f"  wrote {dst} ({dst.stat().st_size} bytes)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(SOURCES))
