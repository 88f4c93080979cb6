"""Greedy continuations from llama.cpp's decode path: the prompts of tests/golden/<model>/greedy.json
fed one token per llama_decode (no batched prompt), flash attention off, then 32 argmax picks.

llama.cpp's batched prompt path (greedy.json, from Llama.generate) uses other kernels and
rounds differently; on Gemma-3 it already changes two of the seven continuations against
llama.cpp's own decode path. Run with the peer's interpreter:

    /work/peer-venv/bin/python scripts/make_greedy_decode_reference.py gemma3

Writes tests/golden/<model>/greedy_decode.json: {prompt: ids}.
"""

import json
import sys
from pathlib import Path

import llama_cpp as L
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}


def main(name: str) -> None:
    golden = ROOT / "tests" / "golden" / name
    data = json.loads((golden / "greedy.json").read_text())
    L.llama_backend_init()
    model = L.llama_model_load_from_file(str(Path.home() / ".cache" / "llamacli" / MODELS[name]).encode(),
                                         L.llama_model_default_params())
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    out = {}
    for run in data["runs"]:
        cp = L.llama_context_default_params()
        cp.n_ctx = cp.n_batch = cp.n_ubatch = 512
        cp.n_threads = cp.n_threads_batch = 2
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        ctx = L.llama_init_from_model(model, cp)
        ids = []
        for t in run["prompt_ids"]:
            assert L.llama_decode(ctx, L.llama_batch_get_one((L.llama_token * 1)(t), 1)) == 0
        for _ in range(len(run["ids"])):
            t = int(np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).argmax())
            ids.append(t)
            assert L.llama_decode(ctx, L.llama_batch_get_one((L.llama_token * 1)(t), 1)) == 0
        out[run["prompt"]] = ids
        L.llama_free(ctx)
    (golden / "greedy_decode.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "gemma3")
