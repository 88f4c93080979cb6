"""Weights as read-only views into the memory-mapped GGUF, checked against the config.

Nothing here copies quantized data: a `Linear` holds the tensor's rows exactly as stored,
and the kernel registry says how to multiply them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType

from ..errors import LlamacliError
from ..gguf_io import GGUFFile, TensorView
from ..kernels.registry import UnsupportedType, weight_type
from .config import Config


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
class Layer:
    attn_norm: np.ndarray  # (n_embd,)
    wq: Linear  # (n_embd -> n_head * head_dim)
    wk: Linear  # (n_embd -> n_head_kv * head_dim)
    wv: Linear  # (n_embd -> n_head_kv * head_dim_v)
    wo: Linear  # (n_head * head_dim_v -> n_embd)
    ffn_norm: np.ndarray  # (n_embd,)
    w_gate: Linear  # (n_embd -> n_ff)
    w_up: Linear  # (n_embd -> n_ff)
    w_down: Linear  # (n_ff -> n_embd)
    bq: np.ndarray | None = None  # optional biases (qwen2 has them), (n_head * head_dim,) ...
    bk: np.ndarray | None = None
    bv: np.ndarray | None = None
    q_norm: np.ndarray | None = None  # gemma3: RMSNorm of each q / k head, (head_dim,)
    k_norm: np.ndarray | None = None
    post_attn_norm: np.ndarray | None = None  # gemma3: norms after attention and FFN
    post_ffn_norm: np.ndarray | None = None


@dataclass(frozen=True)
class Weights:
    token_embd: TensorView  # (n_vocab, n_embd) rows, any type
    output_norm: np.ndarray  # (n_embd,)
    output: Linear  # (n_embd -> n_vocab); token_embd itself when the head is tied
    tied: bool
    layers: tuple[Layer, ...]
    output_bias: np.ndarray | None = None  # (n_vocab,), optional (qwen2)


def _check(t: TensorView, ne: tuple[int, ...]) -> None:
    if tuple(t.ne) != tuple(ne):
        raise LlamacliError(f"tensor '{t.name}' has shape {list(t.ne)}, expected {list(ne)}")


def _vector(gf: GGUFFile, name: str, n: int, required: bool = True) -> np.ndarray | None:
    t = gf.tensors.get(name)
    if t is None:
        if required:
            raise LlamacliError(f"{gf.path}: tensor '{name}' is missing")
        return None
    _check(t, (n,))
    if t.qtype != GGMLQuantizationType.F32:
        raise LlamacliError(f"tensor '{name}' is {t.qtype.name}; norms and biases must be F32")
    return t.data.reshape(n)


def linear_from(t: TensorView, n_in: int, n_out: int) -> Linear:
    _check(t, (n_in, n_out))
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


def _linear(gf: GGUFFile, name: str, n_in: int, n_out: int) -> Linear:
    return linear_from(gf.tensor(name), n_in, n_out)


def load_weights(gf: GGUFFile, cfg: Config) -> Weights:
    E, F = cfg.n_embd, cfg.n_ff
    emb = gf.tensor("token_embd.weight")
    _check(emb, (E, cfg.n_vocab))
    tied = "output.weight" not in gf.tensors
    output = linear_from(emb if tied else gf.tensor("output.weight"), E, cfg.n_vocab)
    layers = []
    qd = cfg.n_head * cfg.head_dim
    gemma = cfg.arch == "gemma3"
    for i in range(cfg.n_layer):
        p = f"blk.{i}."
        layers.append(Layer(
            attn_norm=_vector(gf, p + "attn_norm.weight", E),
            wq=_linear(gf, p + "attn_q.weight", E, qd),
            wk=_linear(gf, p + "attn_k.weight", E, cfg.n_embd_k),
            wv=_linear(gf, p + "attn_v.weight", E, cfg.n_embd_v),
            wo=_linear(gf, p + "attn_output.weight", cfg.n_head * cfg.head_dim_v, E),
            ffn_norm=_vector(gf, p + "ffn_norm.weight", E),
            w_gate=_linear(gf, p + "ffn_gate.weight", E, F),
            w_up=_linear(gf, p + "ffn_up.weight", E, F),
            w_down=_linear(gf, p + "ffn_down.weight", F, E),
            bq=_vector(gf, p + "attn_q.bias", qd, required=False),
            bk=_vector(gf, p + "attn_k.bias", cfg.n_embd_k, required=False),
            bv=_vector(gf, p + "attn_v.bias", cfg.n_embd_v, required=False),
            q_norm=_vector(gf, p + "attn_q_norm.weight", cfg.head_dim, required=gemma),
            k_norm=_vector(gf, p + "attn_k_norm.weight", cfg.head_dim, required=gemma),
            post_attn_norm=_vector(gf, p + "post_attention_norm.weight", E, required=gemma),
            post_ffn_norm=_vector(gf, p + "post_ffw_norm.weight", E, required=gemma),
        ))
    return Weights(emb, _vector(gf, "output_norm.weight", E), output, tied, tuple(layers),
                   _vector(gf, "output.bias", cfg.n_vocab, required=False))
