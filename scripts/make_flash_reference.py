"""Golden data for flash attention (kernels/flash.py): both real models through llama.cpp with
flash attention on, from two builds of the same sdist, so that CI on any machine checks the path
its CPU level takes.

    python scripts/make_flash_reference.py avx2=/work/peer/avx2/bin avx512=/work/peer/native/bin \
        [--peer PYTHON] [--pythonpath DIRS]

Each build is a folder holding libllama.so, loaded by llama-cpp-python 0.3.36's `llama_cpp`
package (LLAMA_CPP_LIB_PATH) in a subprocess of the peer interpreter (llamacli never imports it):
  avx2    -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
  avx512  -DGGML_NATIVE=ON on an AVX-512 machine without AMX (F, BW, DQ, VL, VNNI, VBMI here)

Writes tests/golden/flash.json: per model, build and run, the sha256 (its first 16 hex digits) of each float32 logits row
of the first tokens of the reference text (those of tests/golden/<model>/logits.npz), with
n_ctx 4096, n_batch = n_ubatch = 512 and flash_attn_type ENABLED:
  decode_t2 / decode_t1  one token per llama_decode with 2 / 1 threads. Past position 255 the
                         graph shows 512 cells and ggml splits the keys by thread (SmolLM2's
                         runs go there; Gemma-3's 48 stay short, to keep CI short).
  batch_N                the first N tokens in one llama_decode, every row's logits: 64 and
                         more take the tiled kernel, fewer the row-at-a-time one.
smollm2_f16 is SmolLM2 requantized to F16 by llama-quantize (--allow-requantize), whose batches
go through llamafile's tinyBLAS; file_sha256 names the file each model's rows come from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
CACHE = Path.home() / ".cache" / "llamacli"
MODELS = {"smollm2": CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": CACHE / "gemma-3-270m-q4_k_m.gguf",
          # llama-quantize --allow-requantize of the Q4_1 to F16 (the test makes the same file):
          # its batches go through llamafile's tinyBLAS
          "smollm2_f16": CACHE / "SmolLM2-135M-Instruct.F16.gguf"}
TOKENS = {"smollm2_f16": "smollm2"}  # whose reference text tokens a model takes
# (run, threads, tokens); Gemma-3's batches also exercise ggml's repacked Q4_K gemm (4+ rows) and
# tiled Q6_K matmul (8+ rows)
RUNS = {
    "smollm2": [("decode_t2", 2, 300), ("decode_t1", 1, 272), ("batch_100", 2, 100), ("batch_40", 2, 40)],
    "gemma3": [("decode_t2", 2, 48), ("batch_100", 2, 100), ("batch_40", 2, 40), ("batch_6", 2, 6)],
    "smollm2_f16": [("batch_40", 2, 40), ("batch_6", 2, 6)],
}

PEER = r"""
import sys, numpy as np, llama_cpp as L
path, toks, out, mode, nth = sys.argv[1], [int(t) for t in sys.argv[2].split(",")], sys.argv[3], sys.argv[4], int(sys.argv[5])
L.llama_backend_init()
model = L.llama_model_load_from_file(path.encode(), L.llama_model_default_params())
assert model, "llama.cpp could not load " + path
cp = L.llama_context_default_params()
cp.n_ctx = 4096; cp.n_batch = 512; cp.n_ubatch = 512; cp.n_threads = nth; cp.n_threads_batch = nth
cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_ENABLED
ctx = L.llama_init_from_model(model, cp)
n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
rows = []
if mode == "decode":
    for t in toks:
        assert L.llama_decode(ctx, L.llama_batch_get_one((L.llama_token * 1)(t), 1)) == 0
        rows.append(np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy())
else:
    b = L.llama_batch_init(len(toks), 0, 1)
    for i, t in enumerate(toks):
        b.token[i] = t; b.pos[i] = i; b.n_seq_id[i] = 1; b.seq_id[i][0] = 0; b.logits[i] = 1
    b.n_tokens = len(toks)
    assert L.llama_decode(ctx, b) == 0
    rows = [np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,)).copy() for i in range(len(toks))]
np.save(out, np.stack(rows).astype(np.float32))
print(L.llama_print_system_info().decode())
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs="+", help="LEVEL=DIR, e.g. avx2=/work/peer/avx2/bin")
    ap.add_argument("--peer", default=sys.executable, help="interpreter that imports llama_cpp 0.3.36")
    ap.add_argument("--pythonpath", default="/work/peer/llama_cpp_python-0.3.36:/work/peer/pydeps",
                    help="PYTHONPATH for it (the sdist's llama_cpp package)")
    args = ap.parse_args()
    out = GOLDEN / "flash.json"
    data = json.loads(out.read_text()) if out.exists() else {}
    for spec in args.builds:
        level, lib = spec.split("=", 1)
        env = dict(os.environ, LLAMA_CPP_LIB_PATH=lib, PYTHONPATH=args.pythonpath)
        for name, path in MODELS.items():
            tokens = np.load(GOLDEN / TOKENS.get(name, name) / "logits.npz")["tokens"].tolist()
            data.setdefault(name, {})["file_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            rec = data[name].setdefault(level, {})
            for run, nth, n in RUNS[name]:
                with tempfile.TemporaryDirectory() as tmp:
                    npy = Path(tmp) / "rows.npy"
                    p = subprocess.run([args.peer, "-c", PEER, str(path), ",".join(map(str, tokens[:n])), str(npy),
                                        run.split("_")[0], str(nth)], env=env, capture_output=True, text=True)
                    if p.returncode != 0:
                        sys.exit(f"{level} {name} {run}: {p.stderr[-2000:]}")
                    rows = np.load(npy)
                rec[run] = {"threads": nth, "tokens": n,
                            "row_sha256": [hashlib.sha256(r.tobytes()).hexdigest()[:16] for r in rows],
                            "argmax": [int(r.argmax()) for r in rows]}
                print(f"{level} {name} {run}: {len(rows)} rows; {p.stdout.strip().splitlines()[-1][:100]}",
                      file=sys.stderr)
    data["_about"] = ("llama.cpp 0.3.36 sdist (llama-cpp-python), flash_attn_type ENABLED, n_ctx 4096, "
                      "n_batch = n_ubatch = 512; scripts/make_flash_reference.py")
    out.write_text(json.dumps(data, indent=0))
    print(f"{out}: {out.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
