"""The decode loop the golden-data scripts run under llama-cpp-python 0.3.36 (the peer's
interpreter, in a subprocess: llamacli never imports llama_cpp): one token per llama_decode,
flash attention off, n_ctx = n_batch = n_ubatch = 256, 2 threads; saves the float32 logits of
every position and prints llama_model_desc.

    python -c "$PEER" MODEL.gguf 1,2,3 out.npy
"""

PEER = r"""
import sys, numpy as np, llama_cpp as L
path, toks, out = sys.argv[1], [int(t) for t in sys.argv[2].split(",")], sys.argv[3]
L.llama_backend_init()
model = L.llama_model_load_from_file(path.encode(), L.llama_model_default_params())
assert model, "llama.cpp could not load " + path
cp = L.llama_context_default_params()
cp.n_ctx = 256; cp.n_batch = 256; cp.n_ubatch = 256; cp.n_threads = 2; cp.n_threads_batch = 2
cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
ctx = L.llama_init_from_model(model, cp)
n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
rows = []
for t in toks:
    assert L.llama_decode(ctx, L.llama_batch_get_one((L.llama_token * 1)(t), 1)) == 0
    rows.append(np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy())
buf = (L.ctypes.c_char * 256)()
L.llama_model_desc(model, buf, 256)
np.save(out, np.stack(rows).astype(np.float32))
print(buf.value.decode())
"""
