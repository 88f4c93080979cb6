"""Weights as read-only views into the memory-mapped GGUF, checked against the config.

Nothing here copies quantized data: a `Linear` holds the tensor's rows exactly as stored, and the
kernel registry says how to multiply them. A family's spec asks a `TensorLoader` for each tensor
it uses, with its shape (ggml order: ne0 = the row width first), as llama.cpp's `create_tensor`
does; when the spec is done, every tensor of the file must have been asked for, or the load fails
naming the ones nobody used.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
from gguf import GGMLQuantizationType

from ..errors import LlamacliError
from ..gguf_io import GGUFFile, TensorView
from ..kernels.dot.matmul import placed
from ..kernels.registry import UnsupportedType, weight_type


@dataclass(frozen=True)
class Linear:
    """y = W x for W stored as GGUF rows: n_out rows of n_in weights."""

    name: str
    qtype: GGMLQuantizationType
    rows: np.ndarray  # (n_out, row_bytes) uint8, or (n_out, n_in) float32 / uint16 for float types
    n_in: int
    n_out: int
    dot: object  # kernels.dot.DotKernel


@dataclass(frozen=True)
class Experts:
    """A mixture-of-experts FFN: the router and each expert's projections. The expert tensors
    are 3-D in the file (ne = n_in, n_out, n_expert); each expert is a Linear over its own rows,
    a view, so that a token reads only the experts it chose (ggml_mul_mat_id)."""

    gate_inp: Linear  # (n_embd -> n_expert), the router
    up: tuple[Linear, ...]  # n_expert x (n_embd -> n_ff_exp)
    down: tuple[Linear, ...]  # n_expert x (n_ff_exp -> n_embd)
    gate: tuple[Linear, ...] | None = None  # n_expert x (n_embd -> n_ff_exp)
    gate_inp_b: np.ndarray | None = None  # (n_expert,) gpt-oss
    up_b: np.ndarray | None = None  # (n_expert, n_ff_exp) gpt-oss: ggml_add_id by the chosen expert
    gate_b: np.ndarray | None = None  # (n_expert, n_ff_exp)
    down_b: np.ndarray | None = None  # (n_expert, n_embd)

    @property
    def n_expert(self) -> int:
        return len(self.up)


@dataclass(frozen=True)
class Layer:
    """One block's tensors; None where the family (or this file) has no such tensor."""

    wo: Linear  # (n_head * head_dim_v -> n_embd)
    w_up: Linear | None = None  # (n_embd -> n_ff), or (n_embd -> 2 n_ff) gate and up fused (phi3)
    w_down: Linear | None = None  # (n_ff -> n_embd); both None in a mixture-of-experts block
    moe: Experts | None = None  # the mixture-of-experts FFN instead of w_gate / w_up / w_down
    wq: Linear | None = None  # (n_embd -> n_head * head_dim)
    wk: Linear | None = None  # (n_embd -> n_head_kv * head_dim)
    wv: Linear | None = None  # (n_embd -> n_head_kv * head_dim_v)
    wqkv: Linear | None = None  # q, k and v fused in one tensor (phi3), instead of wq, wk, wv
    w_gate: Linear | None = None  # (n_embd -> n_ff); None when fused into w_up
    attn_norm: np.ndarray | None = None  # (n_embd,); olmo2 has none
    ffn_norm: np.ndarray | None = None  # (n_embd,)
    bq: np.ndarray | None = None  # biases, (n_head * head_dim,) ... (qwen2; optional in llama)
    bk: np.ndarray | None = None
    bv: np.ndarray | None = None
    bqkv: np.ndarray | None = None  # (n_q + n_k + n_v,) with wqkv
    bo: np.ndarray | None = None  # (n_embd,)
    b_gate: np.ndarray | None = None  # (n_ff,)
    b_up: np.ndarray | None = None  # (n_ff,)
    b_down: np.ndarray | None = None  # (n_embd,)
    q_norm: np.ndarray | None = None  # (head_dim,) per head, or (n_head * head_dim,) whole rows (olmo2)
    k_norm: np.ndarray | None = None
    post_attn_norm: np.ndarray | None = None  # (n_embd,) norms after attention and FFN (gemma, olmo2)
    post_ffn_norm: np.ndarray | None = None
    sinks: np.ndarray | None = None  # (n_head,) gpt-oss: a logit per head that joins every softmax


@dataclass(frozen=True)
class Weights:
    token_embd: TensorView  # (n_vocab, n_embd) rows, any type
    output_norm: np.ndarray  # (n_embd,)
    output: Linear  # (n_embd -> n_vocab); token_embd itself when the head is tied
    tied: bool
    layers: tuple[Layer, ...]
    output_bias: np.ndarray | None = None  # (n_vocab,), optional (qwen2)
    rope_freqs: np.ndarray | None = None  # (n_rot/2,) Llama 3 frequency factors
    rope_long: np.ndarray | None = None  # (n_rot/2,) LongRoPE factors beyond n_ctx_orig_yarn
    rope_short: np.ndarray | None = None  # (n_rot/2,) LongRoPE factors within it

    def rope_factors(self, n_ctx: int, n_ctx_orig: int) -> np.ndarray | None:
        """llama_model::get_rope_factors: rope_freqs where the file has them, else LongRoPE's long
        factors when the context exceeds the original one, else its short factors."""
        if self.rope_freqs is not None:
            return self.rope_freqs
        return self.rope_long if n_ctx > n_ctx_orig else self.rope_short


def _check(t: TensorView, ne: tuple[int, ...]) -> None:
    if tuple(t.ne) != tuple(ne):
        raise LlamacliError(f"tensor '{t.name}' has shape {list(t.ne)}, expected {list(ne)}")


def linear_from(t: TensorView, n_in: int, n_out: int) -> Linear:
    _check(t, (n_in, n_out))
    return linear_from_rows(t, n_in, n_out)


def linear_from_rows(t: TensorView, n_in: int, n_out: int) -> Linear:
    """The tensor's n_out rows of n_in weights as a Linear (its shape already checked)."""
    try:
        wt = weight_type(t.qtype)
        dot = wt.dot
        wt.row_bytes(n_in)
    except UnsupportedType as e:
        raise LlamacliError(f"tensor '{t.name}': {e}") from None
    rows = t.rows
    if rows.dtype != dot.row_dtype:
        rows = rows.view(dot.row_dtype)
    return Linear(t.name, t.qtype, rows, n_in, n_out, dot)


class TensorLoader:
    """Hands out a file's tensors by name and shape, and remembers which were taken."""

    def __init__(self, gf: GGUFFile, arch: str):
        self.gf, self.arch = gf, arch
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self.gf.tensors

    def _get(self, name: str, required: bool) -> TensorView | None:
        t = self.gf.tensors.get(name)
        if t is None:
            if required:
                raise LlamacliError(f"{self.gf.path}: tensor '{name}' is missing (required by {self.arch})")
            return None
        self.used.add(name)
        return t

    def linear(self, name: str, n_in: int, n_out: int, required: bool = True) -> Linear | None:
        t = self._get(name, required)
        return None if t is None else linear_from(t, n_in, n_out)

    def vector(self, name: str, n: int, required: bool = True) -> np.ndarray | None:
        """An F32 vector: norm weights, biases, RoPE factors."""
        t = self._get(name, required)
        if t is None:
            return None
        _check(t, (n,))
        if t.qtype != GGMLQuantizationType.F32:
            raise LlamacliError(f"tensor '{name}' is {t.qtype.name}; norms, biases and factors must be F32")
        return t.data.reshape(n)

    def experts(self, name: str, n_in: int, n_out: int, n_expert: int, required: bool = True):
        """A 3-D expert tensor (ne = n_in, n_out, n_expert) as one Linear per expert."""
        t = self._get(name, required)
        if t is None:
            return None
        _check(t, (n_in, n_out, n_expert))
        whole = linear_from_rows(t, n_in, n_out * n_expert)
        dot = placed(whole.qtype, n_in, n_out, "avx2", "mul_mat_id")  # no tinyBLAS for experts
        return tuple(Linear(f"{name}[{e}]", whole.qtype, whole.rows[e * n_out:(e + 1) * n_out], n_in, n_out, dot)
                     for e in range(n_expert))

    def matrix(self, name: str, n: int, m: int, required: bool = True) -> np.ndarray | None:
        """An F32 2-D tensor (ne = n, m) as a NumPy (m, n) array: per-expert biases."""
        t = self._get(name, required)
        if t is None:
            return None
        _check(t, (n, m))
        if t.qtype != GGMLQuantizationType.F32:
            raise LlamacliError(f"tensor '{name}' is {t.qtype.name}; expert biases must be F32")
        return t.data.reshape(m, n)

    def rows(self, name: str, n_in: int, n_out: int) -> TensorView:
        """A tensor used by row lookup (the token embedding), any type."""
        t = self._get(name, True)
        _check(t, (n_in, n_out))
        return t

    def finish(self) -> None:
        """Every tensor in the file must have been used by the spec (llama.cpp: 'wrong number of
        tensors'); an unknown one may change the arithmetic, so it is never skipped."""
        unused = [n for n in self.gf.tensors if n not in self.used]
        if unused:
            more = f" and {len(unused) - 3} more" if len(unused) > 3 else ""
            raise LlamacliError(f"{self.gf.path}: tensor '{unused[0]}' is not used by the {self.arch} architecture"
                                + (f" (nor {', '.join(repr(u) for u in unused[1:3])}{more})" if len(unused) > 1 else "")
                                + "; refusing to run a model whose arithmetic would be incomplete")


def load_weights(gf: GGUFFile, cfg) -> Weights:
    from .arch import spec_for

    t = TensorLoader(gf, cfg.arch)
    w = spec_for(cfg.arch, gf.path).tensors(t, cfg)
    t.finish()
    return w


def place_weights(w: Weights, level: str) -> Weights:
    """The weights with each Linear's kernel chosen for a CPU level (kernels.cpu), as llama.cpp
    chooses a buffer type per weight: by its type, its shape and the op that reads it."""
    if level == "avx2":
        return w

    def one(lin: Linear | None, op: str = "mul_mat") -> Linear | None:
        if lin is None:
            return None
        dot = placed(lin.qtype, lin.n_in, lin.n_out, level, op)
        return lin if dot is lin.dot else replace(lin, dot=dot)

    def layer(L: Layer) -> Layer:
        lin = {f.name: one(getattr(L, f.name)) for f in fields(L) if isinstance(getattr(L, f.name), Linear)}
        if L.moe is not None:  # the router is a plain matmul; the experts are MUL_MAT_ID
            M = L.moe
            ids = {f: tuple(one(e, "mul_mat_id") for e in getattr(M, f)) for f in ("up", "down", "gate")
                   if getattr(M, f) is not None}
            lin["moe"] = replace(M, gate_inp=one(M.gate_inp), **ids)
        return replace(L, **lin)

    return replace(w, layers=tuple(layer(L) for L in w.layers), output=one(w.output))
