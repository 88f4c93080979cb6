"""Hyper-parameters from GGUF metadata, frozen. One place knows each architecture's keys."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import LlamacliError
from ..gguf_io import GGUFFile

SUPPORTED_ARCHS = ("llama", "qwen2", "gemma3")


@dataclass(frozen=True)
class Config:
    arch: str
    n_vocab: int
    n_ctx_train: int
    n_embd: int  # width of the residual stream
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int  # key/query width per head
    head_dim_v: int
    n_ff: int
    rms_eps: float
    rope_base: float
    rope_base_local: float  # gemma3's sliding-window layers use their own base
    rope_dims: int
    rope_neox: bool  # NeoX rotation (i, i + d/2) instead of adjacent pairs
    rope_freq_scale: float
    rope_freq_scale_local: float  # of the sliding-window layers (llama.cpp: always 1)
    attn_scale: float  # float32; multiplies q.k (gemma3: multiplies q before attention)
    sliding_window: int  # 0: every layer attends to the whole context
    swa_layers: tuple[bool, ...]  # per layer: does it attend through the sliding window?
    embed_scale: float  # float32; token embeddings are multiplied by this (gemma: sqrtf(n_embd))
    final_softcap: float  # 0: none
    attn_softcap: float  # 0: none (no supported architecture uses it)

    @property
    def n_embd_k(self) -> int:  # keys of all kv heads, per token
        return self.n_head_kv * self.head_dim

    @property
    def n_embd_v(self) -> int:
        return self.n_head_kv * self.head_dim_v

    def is_swa_layer(self, il: int) -> bool:
        return self.sliding_window > 0 and self.swa_layers[il]


def _f32_inv_sqrt(x: float) -> float:
    """1.0f / sqrtf(x) in float32, as llama.cpp writes its attention scales."""
    return float(np.float32(1.0) / np.float32(math.sqrt(np.float32(x))))


def _swa_layers(pattern, n_layer: int) -> tuple[bool, ...]:
    """llama_hparams::set_swa_pattern (dense_first = false): with a pattern of n, layers
    il % n < n - 1 use the window, every n-th layer is global; n = 0 makes all of them SWA.
    An array-valued pattern lists the layers directly (load_swa_pattern)."""
    if isinstance(pattern, (list, tuple, np.ndarray)):
        if len(pattern) < n_layer:
            raise LlamacliError(f"sliding_window_pattern has {len(pattern)} entries for {n_layer} layers")
        return tuple(bool(v) for v in pattern[:n_layer])
    n = int(pattern)
    return tuple(n == 0 or il % n < n - 1 for il in range(n_layer))


def config_from_gguf(gf: GGUFFile) -> Config:
    arch = gf.architecture
    if arch not in SUPPORTED_ARCHS:
        raise LlamacliError(f"unsupported architecture '{arch}' (supported: {', '.join(SUPPORTED_ARCHS)})")

    def key(name, default=None, required=False):
        v = gf.get(f"{arch}.{name}")
        if v is None:
            if required:
                raise LlamacliError(f"{gf.path}: metadata key '{arch}.{name}' is missing")
            return default
        return v

    n_embd = int(key("embedding_length", required=True))
    n_head = int(key("attention.head_count", required=True))
    if n_head <= 0 or n_embd <= 0:
        raise LlamacliError(f"{gf.path}: bad head count {n_head} or embedding length {n_embd}")
    n_head_kv = int(key("attention.head_count_kv", n_head))
    if n_head_kv <= 0 or n_head % n_head_kv:
        raise LlamacliError(f"{gf.path}: {n_head} heads cannot be grouped over {n_head_kv} kv heads")
    head_dim = int(key("attention.key_length", n_embd // n_head))
    head_dim_v = int(key("attention.value_length", head_dim))
    n_vocab = int(key("vocab_size", gf.array_len("tokenizer.ggml.tokens") or 0))
    if n_vocab <= 0:
        raise LlamacliError(f"{gf.path}: vocabulary size unknown")

    # llama_model::load_hparams: the factor applies whatever rope.scaling.type says (linear
    # by default); YaRN-style types also change the rotation itself, which we do not implement
    scaling = key("rope.scaling.type")
    if scaling not in (None, "none", "linear"):
        raise LlamacliError(f"{gf.path}: rope scaling '{scaling}' is not supported (only linear)")
    factor = float(key("rope.scaling.factor", 0.0) or key("rope.scale_linear", 0.0) or 0.0)
    freq_scale = 1.0 / factor if factor else 1.0

    n_layer = int(key("block_count", required=True))
    gemma3 = arch == "gemma3"
    rope_base = float(key("rope.freq_base", 10000.0))
    # gemma3 (llama_model_gemma3::load_arch_hparams): a positive sliding_window turns on
    # SWA with a pattern of 6 unless sliding_window_pattern says otherwise, and those layers
    # take rope.freq_base_swa (default 10000) with freq_scale 1
    window = int(key("attention.sliding_window", 0) or 0) if gemma3 else 0
    swa = _swa_layers(key("attention.sliding_window_pattern", 6), n_layer) if window > 0 else (False,) * n_layer
    if gemma3:
        # 27B scales by n_embd / n_head, the others by the head width (gemma_pytorch config)
        attn_scale = _f32_inv_sqrt(n_embd // n_head if n_layer == 62 else head_dim)
    else:
        attn_scale = float(key("attention.scale", 0.0) or 0.0) or _f32_inv_sqrt(head_dim)
    return Config(
        arch=arch,
        n_vocab=n_vocab,
        n_ctx_train=int(key("context_length", 2048)),
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        head_dim_v=head_dim_v,
        n_ff=int(key("feed_forward_length", required=True)),
        rms_eps=float(np.float32(key("attention.layer_norm_rms_epsilon", 1e-5))),
        rope_base=rope_base,
        rope_base_local=float(key("rope.freq_base_swa", 10000.0)) if window > 0 else rope_base,
        rope_dims=int(key("rope.dimension_count", head_dim)),
        rope_neox=arch in ("qwen2", "gemma3"),
        rope_freq_scale=freq_scale,
        rope_freq_scale_local=1.0 if window > 0 else freq_scale,
        attn_scale=attn_scale,
        sliding_window=window,
        swa_layers=swa,
        embed_scale=float(np.float32(math.sqrt(n_embd))) if gemma3 else 1.0,
        final_softcap=float(key("final_logit_softcapping", 0.0) or 0.0) if gemma3 else 0.0,
        attn_softcap=0.0,
    )
