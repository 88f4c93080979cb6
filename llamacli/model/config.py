"""Hyper-parameters from GGUF metadata, frozen. One place knows each architecture's keys."""

from __future__ import annotations

from dataclasses import dataclass

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
    attn_scale: float  # multiplies q.k
    sliding_window: int  # 0: every layer attends to the whole context
    swa_pattern: int  # every swa_pattern-th layer is global (gemma3: 6)
    embed_scale: float  # token embeddings are multiplied by this (gemma: sqrt(n_embd))
    final_softcap: float  # 0: none
    attn_softcap: float  # 0: none
    qkv_bias: bool  # qwen2

    @property
    def n_embd_k(self) -> int:  # keys of all kv heads, per token
        return self.n_head_kv * self.head_dim

    @property
    def n_embd_v(self) -> int:
        return self.n_head_kv * self.head_dim_v

    def is_swa_layer(self, il: int) -> bool:
        """Gemma-3: five sliding-window layers, then one global (llama.cpp's set_swa_pattern)."""
        return self.sliding_window > 0 and self.swa_pattern > 0 and (il + 1) % self.swa_pattern != 0


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

    freq_scale = 1.0
    if key("rope.scaling.type") == "linear" and key("rope.scaling.factor"):
        freq_scale = 1.0 / float(key("rope.scaling.factor"))

    gemma3 = arch == "gemma3"
    rope_base = float(key("rope.freq_base", 10000.0))
    return Config(
        arch=arch,
        n_vocab=n_vocab,
        n_ctx_train=int(key("context_length", 2048)),
        n_embd=n_embd,
        n_layer=int(key("block_count", required=True)),
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        head_dim_v=head_dim_v,
        n_ff=int(key("feed_forward_length", required=True)),
        rms_eps=float(key("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_base=rope_base,
        rope_base_local=10000.0 if gemma3 else rope_base,
        rope_dims=int(key("rope.dimension_count", head_dim)),
        rope_neox=arch in ("qwen2", "gemma3"),
        rope_freq_scale=freq_scale,
        attn_scale=float(key("attention.scale", 0.0)) or head_dim ** -0.5,
        sliding_window=int(key("attention.sliding_window", 0)) if gemma3 else 0,
        swa_pattern=6 if gemma3 else 0,
        embed_scale=float(n_embd) ** 0.5 if gemma3 else 1.0,
        final_softcap=float(key("final_logit_softcapping", 0.0) or 0.0),
        attn_softcap=float(key("attn_logit_softcapping", 0.0) or 0.0),
        qkv_bias=arch == "qwen2",
    )
