"""Tiny random-weight models of each family with no real file here, written with gguf.GGUFWriter
and checked against llama.cpp loading the very same file (scripts/make_family_reference.py).

Each carries every tensor its family needs (gguf's MODEL_TENSORS names) and the hyper-parameters
that family's files carry, with windows and scalings small enough to change the logits within 64
positions: 16-token sliding windows, YaRN and LongRoPE with an original context of 32 or 64,
soft-caps of a few units, Llama 3 frequency factors from 1 to 32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter

from synthetic import _bpe_vocab, _quantize, add_tiny_bpe

# the shapes every family model shares: 4 blocks (smollm3's NoPE layer is the fourth, OLMo 3's
# global layer too), 4 heads of 64 over 2 kv heads, K-quant-wide rows
BASE = dict(n_embd=256, n_layer=4, n_head=4, n_head_kv=2, n_ff=512, ctx=256)

# name -> (arch, extra metadata, tensor options, seed). Metadata keys are written as
# "{arch}.<key>"; the tensor options say which optional or family tensors the file holds.
FAMILY_MODELS = {
    # Llama 3.x: rope_freqs.weight with factors 1..32 over the pairs, an untied Q4_K head
    "llama3_rope_freqs": ("llama", {"rope.freq_base": 500000.0}, dict(rope_freqs=True, tied=False), 11),
    # llama with YaRN (factor 4 over an original context of 32) and every optional bias
    "llama_yarn_biases": ("llama", {"rope.scaling.type": "yarn", "rope.scaling.factor": 4.0,
                                    "rope.scaling.original_context_length": 32},
                          dict(biases=True), 12),
    "qwen3": ("qwen3", {"rope.freq_base": 1000000.0}, dict(qk_norm="head"), 13),
    "gemma2": ("gemma2", {"attention.sliding_window": 16, "attn_logit_softcapping": 5.0,
                          "final_logit_softcapping": 3.0}, dict(post_norms=True, tied=True, embd=T.Q8_0), 14),
    # Phi-3 128k style: fused qkv and gate/up, LongRoPE factors, original context 64
    "phi3_longrope": ("phi3", {"rope.scaling.type": "longrope", "rope.scaling.original_context_length": 64,
                               "rope.scaling.attn_factor": 1.1902380714238083},
                      dict(fused=True, longrope=True, tied=False), 15),
    # OLMo 3 style: post-norms only, full-width q/k norms, a 16-token window on 3 layers of 4
    "olmo2_swa": ("olmo2", {"attention.sliding_window": 16, "rope.freq_base": 500000.0},
                  dict(olmo=True, tied=False), 16),
    "granite": ("granite", {"embedding_scale": 12.0, "residual_scale": 0.22, "attention.scale": 0.0078125,
                            "logit_scale": 8.0}, dict(), 17),
    "smollm3": ("smollm3", {"rope.freq_base": 5000000.0}, dict(), 18),
    # Ministral 3 style: YaRN with the log multiplier, and q's temperature by position
    "mistral3": ("mistral3", {"rope.scaling.type": "yarn", "rope.scaling.factor": 4.0,
                              "rope.scaling.original_context_length": 32, "rope.scaling.yarn_beta_fast": 32.0,
                              "rope.scaling.yarn_beta_slow": 1.0, "rope.scaling.yarn_log_multiplier": 1.0,
                              "attention.temperature_scale": 0.1, "rope.freq_base": 1000000.0}, dict(), 19),
}
# mixture-of-experts families: 8 experts, a few used per token, experts 256 wide; routers F32 as
# converted files keep them (llama-quantize never quantizes ffn_gate_inp)
MOE = dict(n_expert=8, n_used=2, n_ff_exp=256)
FAMILY_MODELS.update({
    "qwen3moe": ("qwen3moe", {"rope.freq_base": 1000000.0, "expert_count": 8, "expert_used_count": 2,
                              "expert_feed_forward_length": 256}, dict(qk_norm="head", moe=MOE), 21),
    # OLMoE: full-width q/k norms (its k norm is n_embd wide: as many kv heads as heads)
    "olmoe": ("olmoe", {"expert_count": 8, "expert_used_count": 2}, dict(olmoe=True, moe=dict(MOE, n_ff_exp=512), tied=False, n_head_kv=4), 22),
    # Mixtral's llama: experts as wide as n_ff, renormalised weights
    "llama_moe": ("llama", {"expert_count": 8, "expert_used_count": 2}, dict(moe=dict(MOE, n_ff_exp=512)), 23),
    # gpt-oss: MXFP4 experts with biases, sinks, SWA on alternate layers, YaRN, 4 of 8 experts
    "gpt_oss": ("gpt-oss", {"expert_count": 8, "expert_used_count": 4, "expert_feed_forward_length": 256,
                            "attention.sliding_window": 16, "rope.scaling.type": "yarn", "rope.scaling.factor": 4.0,
                            "rope.scaling.original_context_length": 32, "rope.freq_base": 150000.0},
                dict(gpt_oss=True, moe=dict(MOE, n_used=4), tied=False, exp_type=T.MXFP4), 24),
})
FAMILY_POSITIONS = 64

# weight types by tensor kind: kernels whose ggml order is already checked bit for bit
TYPES = {"attn_q": T.Q4_K, "attn_k": T.Q8_0, "attn_v": T.Q6_K, "attn_qkv": T.Q8_0, "attn_output": T.Q4_K,
         "ffn_gate": T.Q4_K, "ffn_up": T.Q8_0, "ffn_down": T.Q6_K, "output": T.Q4_K}


def _add_kv(w: GGUFWriter, arch: str, key: str, value) -> None:
    k = f"{arch}.{key}"
    if value is None:  # a key the bad-input tests leave out
        return
    if isinstance(value, str):
        w.add_string(k, value)
    elif isinstance(value, bool):
        w.add_bool(k, value)
    elif isinstance(value, float):
        w.add_float32(k, value)
    else:
        w.add_uint32(k, int(value))


def write_family(name: str, path: Path, arch: str | None = None, meta: dict | None = None, drop: tuple = (),
                 extra: dict | None = None, base: dict | None = None, opt: dict | None = None) -> Path:
    """The model `name` of FAMILY_MODELS; for the bad-input tests, under another architecture
    name, with metadata added or changed, tensors dropped, or extra tensors; for benchmarks,
    with other shapes (base: BASE's keys) and options (opt: the entry's tensor options)."""
    arch0, meta0, opt0, seed = FAMILY_MODELS[name]
    arch = arch or arch0
    meta = {**meta0, **(meta or {})}
    opt = {**opt0, **(opt or {})}
    E, L, H, HKV, F, ctx = ({**BASE, **(base or {})}[k] for k in ("n_embd", "n_layer", "n_head", "n_head_kv", "n_ff", "ctx"))
    HKV = opt.get("n_head_kv", HKV)
    D = E // H
    rng = np.random.default_rng(seed)
    V = len(_bpe_vocab()[0])
    w = GGUFWriter(str(path), arch)
    w.add_block_count(L)
    w.add_context_length(ctx)
    w.add_embedding_length(E)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(HKV)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(D)
    for k, v in meta.items():
        _add_kv(w, arch, k, v)
    add_tiny_bpe(w)

    def mat(name, n_in, n_out, t=None):
        if name in drop:
            return
        t = t or TYPES.get(name.split(".")[-2], T.Q8_0)
        x = (rng.standard_normal((n_out, n_in)) * 0.5 / np.sqrt(n_in)).astype(np.float32)
        w.add_tensor(name, x if t == T.F32 else _quantize(x, t), raw_dtype=None if t == T.F32 else t)

    def vec(name, n, center=1.0, spread=0.1):
        if name in drop:
            return
        w.add_tensor(name, (center + spread * rng.standard_normal(n)).astype(np.float32))

    mat("token_embd.weight", E, V, opt.get("embd", T.Q8_0))
    vec("output_norm.weight", E)
    if not opt.get("tied", True):
        mat("output.weight", E, V)
    if opt.get("rope_freqs"):
        w.add_tensor("rope_freqs.weight", np.geomspace(1.0, 32.0, D // 2).astype(np.float32))
    if opt.get("longrope"):
        w.add_tensor("rope_factors_long.weight", np.geomspace(1.0, 16.0, D // 2).astype(np.float32))
        w.add_tensor("rope_factors_short.weight", np.geomspace(1.0, 2.0, D // 2).astype(np.float32))
    moe = opt.get("moe")
    for i in range(L):
        p = f"blk.{i}."
        if moe:
            _moe_block(w, rng, p, opt, E, H, HKV, D, mat, vec)
            continue
        if not opt.get("olmo"):
            vec(p + "attn_norm.weight", E)
            vec(p + "ffn_norm.weight", E)
        if opt.get("fused"):
            mat(p + "attn_qkv.weight", E, E + 2 * HKV * D)
            mat(p + "ffn_up.weight", E, 2 * F)
        else:
            mat(p + "attn_q.weight", E, H * D)
            mat(p + "attn_k.weight", E, HKV * D)
            mat(p + "attn_v.weight", E, HKV * D)
            mat(p + "ffn_gate.weight", E, F)
            mat(p + "ffn_up.weight", E, F)
        mat(p + "attn_output.weight", H * D, E)
        mat(p + "ffn_down.weight", F, E)
        if opt.get("biases"):
            for nm, n in (("attn_output.bias", E), ("ffn_gate.bias", F), ("ffn_up.bias", F), ("ffn_down.bias", E)):
                vec(p + nm, n, 0.0, 0.05)
        if opt.get("qk_norm") == "head":
            vec(p + "attn_q_norm.weight", D)
            vec(p + "attn_k_norm.weight", D)
        if opt.get("olmo"):
            vec(p + "attn_q_norm.weight", E)
            vec(p + "attn_k_norm.weight", HKV * D)
        if opt.get("post_norms") or opt.get("olmo"):
            vec(p + "post_attention_norm.weight", E)
            vec(p + "post_ffw_norm.weight", E)
    for nm, x in (extra or {}).items():
        w.add_tensor(nm, x)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _moe_block(w, rng, p, opt, E, H, HKV, D, mat, vec) -> None:
    """One mixture-of-experts block: attention as the family has it, the F32 router, and 3-D
    expert tensors (n_expert, n_out, n_in) in NumPy order."""
    X, FX = opt["moe"]["n_expert"], opt["moe"]["n_ff_exp"]
    et = opt.get("exp_type", T.Q8_0)
    vec(p + "attn_norm.weight", E)
    mat(p + "attn_q.weight", E, H * D)
    mat(p + "attn_k.weight", E, HKV * D)
    mat(p + "attn_v.weight", E, HKV * D)
    mat(p + "attn_output.weight", H * D, E)
    if opt.get("qk_norm") == "head":
        vec(p + "attn_q_norm.weight", D)
        vec(p + "attn_k_norm.weight", D)
    if opt.get("olmoe"):
        vec(p + "attn_q_norm.weight", E)
        vec(p + "attn_k_norm.weight", E)
    if opt.get("gpt_oss"):
        for nm, n in (("attn_q.bias", H * D), ("attn_k.bias", HKV * D), ("attn_v.bias", HKV * D),
                      ("attn_output.bias", E)):
            vec(p + nm, n, 0.0, 0.05)
        w.add_tensor(p + "attn_sinks.weight", rng.standard_normal(H).astype(np.float32))
        vec(p + "post_attention_norm.weight", E)
    else:
        vec(p + "ffn_norm.weight", E)
    w.add_tensor(p + "ffn_gate_inp.weight", rng.standard_normal((X, E)).astype(np.float32) / np.float32(4.0))
    for nm, n_in, n_out in (("ffn_gate_exps", E, FX), ("ffn_up_exps", E, FX), ("ffn_down_exps", FX, E)):
        x = (rng.standard_normal((X, n_out, n_in)) * 0.5 / np.sqrt(n_in)).astype(np.float32)
        w.add_tensor(p + nm + ".weight", _quantize(x.reshape(X * n_out, n_in), et).reshape(X, n_out, -1), raw_dtype=et)
    if opt.get("gpt_oss"):
        vec(p + "ffn_gate_inp.bias", X, 0.0, 0.1)
        for nm, n in (("ffn_gate_exps.bias", FX), ("ffn_up_exps.bias", FX), ("ffn_down_exps.bias", E)):
            w.add_tensor(p + nm, (0.05 * rng.standard_normal((X, n))).astype(np.float32))


def family_tokens(name: str) -> list[int]:
    """Random ids over the whole vocabulary of the tiny BPE (the model never tokenizes text)."""
    n_vocab = len(_bpe_vocab()[0])
    rng = np.random.default_rng(200 + list(FAMILY_MODELS).index(name))
    return [int(t) for t in rng.integers(0, n_vocab, FAMILY_POSITIONS)]
