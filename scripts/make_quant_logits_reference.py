"""Golden logits of SmolLM2 quantized to each weight type, from llama.cpp: every dot kernel on
real weights (its AVX2 backend repacks Q4_0 and Q4_K tensors and multiplies them in another
float order than vec_dot, which the kernels follow too).

llama-quantize turns llama.cpp's F16 requantization of SmolLM2 into each mixture of TYPES; the
peer then feeds the first N_TOKENS tokens of tests/golden/reference.txt one per llama_decode
(flash attention off, the decode path) and records, per position, the top-64 ids and logits,
the logsumexp and the sha256 of the full float32 row. Run with the peer's interpreter:

    /work/peer-venv/bin/python scripts/make_quant_logits_reference.py

Writes tests/golden/smollm2/quant_logits/<TYPE>.npz, each with the quantized file's sha256: the
test quantizes its own and checks that it is the same file.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from pathlib import Path

import llama_cpp as L
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
F16 = Path.home() / ".cache" / "llamacli" / "SmolLM2-135M-Instruct.F16.gguf"
QUANTIZE = Path("/work/peer-build/bin/llama-quantize")
TYPES = ("Q4_0", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K")
N_TOKENS = 32
TOP_K = 64


def main() -> None:
    L.llama_backend_init()
    for qtype in TYPES:
        make(qtype)


def make(qtype: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        qf = Path(tmp) / f"SmolLM2-135M-Instruct.{qtype}.gguf"
        subprocess.run([str(QUANTIZE), str(F16), str(qf), qtype, "2"], check=True, capture_output=True)
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
    out = ROOT / "tests" / "golden" / "smollm2" / "quant_logits" / f"{qtype}.npz"
    out.parent.mkdir(exist_ok=True)
    np.savez_compressed(out, file_sha256=sha, tokens=np.array(toks, np.int32), topk_ids=top.astype(np.int32),
                        topk_logits=np.take_along_axis(logits, top, axis=1), logsumexp=lse,
                        row_sha256=np.array([hashlib.sha256(r.tobytes()).hexdigest() for r in logits]))
    print(f"wrote {out}: {len(toks)} positions, {qtype} file {sha[:16]}")


if __name__ == "__main__":
    main()
