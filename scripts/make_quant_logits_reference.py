"""Golden logits of SmolLM2 (and Gemma-3) quantized to each weight type, from llama.cpp: every dot kernel on
real weights (its AVX2 backend repacks Q4_0 and Q4_K tensors and multiplies them in another
float order than vec_dot, which the kernels follow too).

llama-quantize turns llama.cpp's F16 requantization of SmolLM2 into each mixture of TYPES, and
into each of IMATRIX_TYPES with the synthetic imatrix of tests/imatrix_synthetic.py (``--imatrix
smollm2.imatrix.gguf``, run from its folder: the path is part of the file's metadata); the
peer then feeds the first N_TOKENS tokens of tests/golden/reference.txt one per llama_decode
(flash attention off, the decode path) and records, per position, the top-64 ids and logits,
the logsumexp and the sha256 of the full float32 row. Run with the llama_cpp package of the
llama-cpp-python sdist on the path, its library built with cmake (the AVX2 build) and
diskcache (which it imports) installed somewhere on the path:

    PYTHONPATH=/work/peer/llama_cpp_python-0.3.36:/work/peer/pydeps LLAMA_CPP_LIB_PATH=/work/peer/avx2/bin \
        .venv/bin/python scripts/make_quant_logits_reference.py [--model gemma3] [TYPE ...]

Writes tests/golden/<model>/quant_logits/<TYPE>.npz, each with the quantized file's sha256: the
test quantizes its own and checks that it is the same file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import llama_cpp as L
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
CACHE = Path.home() / ".cache" / "llamacli"
# model -> (the F16 file llama-quantize makes, the cached real model it is made from)
MODELS = {"smollm2": ("SmolLM2-135M-Instruct.F16.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"),
          "gemma3": ("gemma-3-270m.F16.gguf", "gemma-3-270m-q4_k_m.gguf")}
QUANTIZE = Path(os.environ.get("LLAMA_QUANTIZE", "/work/peer/avx2/bin/llama-quantize"))
TYPES = ("Q4_0", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K")
IMATRIX_TYPES = ("IQ4_NL", "IQ4_XS", "IQ3_S", "IQ3_M", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS",
                 "IQ1_M", "IQ1_S", "TQ1_0", "TQ2_0")  # SmolLM2 (tests use all but IQ3_M, IQ2_M); Gemma-3: IQ4_XS IQ3_M IQ2_M
N_TOKENS = 32
TOP_K = 64


def main() -> None:
    L.llama_backend_init()
    env = dict(os.environ, LD_LIBRARY_PATH=str(QUANTIZE.parent))
    args = sys.argv[1:]
    model = "smollm2"
    if args[:1] == ["--model"]:
        model, args = args[1], args[2:]
    f16_name, source = MODELS[model]
    f16 = CACHE / f16_name
    if not f16.exists():
        subprocess.run([str(QUANTIZE), "--allow-requantize", str(CACHE / source), str(f16), "F16"],
                       check=True, capture_output=True, env=env)
    for qtype in args or TYPES + IMATRIX_TYPES:
        make(model, f16, qtype, env)


def make(model_name: str, f16: Path, qtype: str, env: dict) -> None:
    from imatrix_synthetic import write_model_imatrix
    from llamacli.quantize.scan import ScannedGGUF

    with tempfile.TemporaryDirectory() as tmp:
        qf = Path(tmp) / f"{model_name}.{qtype}.gguf"
        args = [str(QUANTIZE), str(f16), qf.name, qtype, "2"]
        if qtype in IMATRIX_TYPES:
            imx = f"{model_name}.imatrix.gguf"
            write_model_imatrix(Path(tmp) / imx, [(v.name, v.ne) for v in ScannedGGUF(f16).tensors.values()])
            args[1:1] = ["--imatrix", imx]
        subprocess.run(args, check=True, capture_output=True, env=env, cwd=tmp)
        sha = hashlib.sha256(qf.read_bytes()).hexdigest()
        model = L.llama_model_load_from_file(str(qf).encode(), L.llama_model_default_params())
        vocab = L.llama_model_get_vocab(model)
        text = (ROOT / "tests" / "golden" / "reference.txt").read_bytes()
        buf = (L.llama_token * (len(text) + 8))()
        n = L.llama_tokenize(vocab, text, len(text), buf, len(buf), True, True)
        toks = list(buf[:n])[:N_TOKENS]
        cp = L.llama_context_default_params()
        cp.n_ctx = cp.n_batch = cp.n_ubatch = 512
        cp.n_threads = cp.n_threads_batch = 2
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        ctx = L.llama_init_from_model(model, cp)
        n_vocab = L.llama_vocab_n_tokens(vocab)
        rows = []
        for t in toks:
            assert L.llama_decode(ctx, L.llama_batch_get_one((L.llama_token * 1)(t), 1)) == 0
            rows.append(np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy())
        L.llama_free(ctx)
        L.llama_model_free(model)
    logits = np.stack(rows).astype(np.float32)
    top = np.argsort(-logits, axis=1, kind="stable")[:, :TOP_K]
    lg = logits.astype(np.float64)
    lse = lg.max(axis=1) + np.log(np.exp(lg - lg.max(axis=1, keepdims=True)).sum(axis=1))
    out = ROOT / "tests" / "golden" / model_name / "quant_logits" / f"{qtype}.npz"
    out.parent.mkdir(exist_ok=True)
    np.savez_compressed(out, file_sha256=sha, tokens=np.array(toks, np.int32), topk_ids=top.astype(np.int32),
                        topk_logits=np.take_along_axis(logits, top, axis=1), logsumexp=lse,
                        row_sha256=np.array([hashlib.sha256(r.tobytes()).hexdigest() for r in logits]))
    print(f"wrote {out}: {len(toks)} positions, {qtype} file {sha[:16]}")


if __name__ == "__main__":
    main()
