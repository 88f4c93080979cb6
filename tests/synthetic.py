"""Tiny random-weight GGUF models written with gguf.GGUFWriter, for fast tests and for
architectures that have no real file here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter, TokenType
from gguf.quants import quantize

from llamacli.tokenizer.unicode import byte_to_char


def _bpe_vocab():
    chars = list(byte_to_char())
    tokens = chars + ["Ġt", "he", "Ġthe", "<|endoftext|>"]
    types = [TokenType.NORMAL] * (len(tokens) - 1) + [TokenType.CONTROL]
    merges = ["Ġ t", "h e", "Ġt he"]
    return tokens, types, merges


def add_tiny_bpe(w: GGUFWriter) -> int:
    """The tiny byte-level BPE vocabulary's metadata (its last token is BOS and EOS); returns
    the vocabulary size."""
    tokens, types, merges = _bpe_vocab()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(len(tokens) - 1)
    w.add_eos_token_id(len(tokens) - 1)
    w.add_add_bos_token(False)
    return len(tokens)


K_QUANTS = (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K)


def _quantize(x: np.ndarray, t: T) -> np.ndarray:
    """gguf.quants where it can; the k-quants through llamacli's codec (ggml's quantize_row_*_ref)."""
    if t in K_QUANTS:
        from llamacli.kernels.codec import CODECS
        return CODECS[t].quantize(x, nthreads=1)
    return quantize(x, t)


def write_tiny_llama(path: Path, arch: str = "llama", n_embd: int = 64, n_layer: int = 2, n_head: int = 4,
                     n_head_kv: int = 2, n_ff: int = 128, qtype: T = T.Q8_0, tied: bool = True,
                     seed: int = 0, tensor_types: dict[str, T] | None = None) -> Path:
    """A random llama or qwen2 model. ``tensor_types`` overrides ``qtype`` per tensor kind, keyed by
    the name without layer and suffix ("attn_q", "ffn_down", "output", "token_embd")."""
    rng = np.random.default_rng(seed)
    tensor_types = tensor_types or {}
    n_vocab = len(_bpe_vocab()[0])
    w = GGUFWriter(str(path), arch)
    w.add_block_count(n_layer)
    w.add_context_length(256)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    add_tiny_bpe(w)

    def mat(name, n_in, n_out, t=None):
        t = t or tensor_types.get(name.split(".")[-2], qtype)
        x = (rng.standard_normal((n_out, n_in)) * 0.5 / np.sqrt(n_in)).astype(np.float32)
        if t == T.F32:
            w.add_tensor(name, x)
        else:
            w.add_tensor(name, _quantize(x, t), raw_dtype=t)

    def vec(name, n, scale=1.0):
        w.add_tensor(name, (1.0 + scale * 0.1 * rng.standard_normal(n)).astype(np.float32))

    hd = n_embd // n_head
    mat("token_embd.weight", n_embd, n_vocab, tensor_types.get("token_embd", T.Q8_0))
    vec("output_norm.weight", n_embd)
    if not tied:
        mat("output.weight", n_embd, n_vocab)
    for i in range(n_layer):
        p = f"blk.{i}."
        vec(p + "attn_norm.weight", n_embd)
        mat(p + "attn_q.weight", n_embd, n_head * hd)
        mat(p + "attn_k.weight", n_embd, n_head_kv * hd)
        mat(p + "attn_v.weight", n_embd, n_head_kv * hd)
        mat(p + "attn_output.weight", n_head * hd, n_embd)
        vec(p + "ffn_norm.weight", n_embd)
        mat(p + "ffn_gate.weight", n_embd, n_ff)
        mat(p + "ffn_up.weight", n_embd, n_ff)
        mat(p + "ffn_down.weight", n_ff, n_embd)
        if arch == "qwen2":
            for nm, n in (("attn_q.bias", n_head * hd), ("attn_k.bias", n_head_kv * hd), ("attn_v.bias", n_head_kv * hd)):
                w.add_tensor(p + nm, (0.1 * rng.standard_normal(n)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# -- models checked against llama.cpp's logits (scripts/make_synthetic_reference.py) -----------

# K-quant rows are 256 wide, so these models are wider than the default tiny one. Q4_K tensors
# with a row count divisible by 8 go through ggml's repacked q4_K_8x8 gemv, the untied output
# (260 rows) through vec_dot_q4_K_q8_K.
SYNTHETIC_MODELS = {
    "qwen2": dict(arch="qwen2", n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=512, seed=1,
                  tensor_types={"attn_q": T.Q4_K, "attn_k": T.Q5_0, "attn_v": T.Q8_0, "attn_output": T.Q6_K,
                         "ffn_gate": T.Q4_K, "ffn_up": T.Q5_0, "ffn_down": T.Q6_K}),
    "llama_untied_kquants": dict(arch="llama", n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=512,
                                 seed=2, tied=False,
                                 tensor_types={"attn_q": T.Q4_K, "attn_k": T.Q6_K, "attn_v": T.Q6_K,
                                        "attn_output": T.Q4_K, "ffn_gate": T.Q4_K, "ffn_up": T.Q4_K,
                                        "ffn_down": T.Q6_K, "output": T.Q4_K}),
    "llama_q2_q3_q5_K": dict(arch="llama", n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=512, seed=3,
                             tied=False,
                             tensor_types={"attn_q": T.Q2_K, "attn_k": T.Q3_K, "attn_v": T.Q5_K,
                                           "attn_output": T.Q5_K, "ffn_gate": T.Q3_K, "ffn_up": T.Q2_K,
                                           "ffn_down": T.Q5_K, "output": T.Q3_K}),
    # Q4_0 with a row count divisible by 8 goes through ggml's repacked q4_0_8x8 gemv on AVX2,
    # the untied output (260 rows) through vec_dot_q4_0_q8_0. A model this small rarely shows
    # the float order in its logits (fp16 scales absorb the last bits); the real Q4_0 SmolLM2
    # in test_quantize_golden does.
    "llama_q4_0": dict(arch="llama", n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=512, seed=4,
                       tied=False, qtype=T.Q4_0),
}
SYNTHETIC_POSITIONS = 64


def write_synthetic(name: str, path: Path) -> Path:
    return write_tiny_llama(path, **SYNTHETIC_MODELS[name])


def synthetic_tokens(name: str) -> list[int]:
    """Random ids over the whole vocabulary of the tiny BPE (the model never tokenizes text)."""
    n_vocab = len(_bpe_vocab()[0])
    rng = np.random.default_rng(100 + list(SYNTHETIC_MODELS).index(name))
    return [int(t) for t in rng.integers(0, n_vocab, SYNTHETIC_POSITIONS)]
