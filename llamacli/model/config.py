"""Hyper-parameters from GGUF metadata, frozen.

The keys every family shares are read here, as `llama_model_base::load_hparams` reads them; each
family's own keys and defaults are read by its spec in `model/arch/` (`load_arch_hparams` in
llama.cpp's `src/models/<arch>.cpp`). Keys that would change the arithmetic and that llamacli does
not implement are refused by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from gguf.constants import Keys

from ..errors import LlamacliError
from ..gguf_io import GGUFFile

F32 = np.float32


@dataclass(frozen=True)
class Rope:
    """The arguments of one ggml_rope_ext call (llama.cpp passes the same ones to every layer of a
    kind): rotated dims, base, interpolation factor, and YaRN's extrapolation mix and magnitude
    with its correction dims (ggml_rope_yarn_corr_dims, which depend on the base)."""

    n_dims: int
    base: float
    freq_scale: float = 1.0
    ext_factor: float = 0.0
    attn_factor: float = 1.0
    corr_lo: float = 0.0
    corr_hi: float = 0.0


def make_rope(n_dims: int, base: float, freq_scale: float, ext_factor: float = 0.0, attn_factor: float = 1.0,
              n_ctx_orig: int = 0, beta_fast: float = 32.0, beta_slow: float = 1.0) -> Rope:
    """ggml_rope_yarn_corr_dims (ggml.c, plain float arithmetic): the dims where the rotation of
    n_ctx_orig positions makes beta turns, floored/ceiled and clamped to [0, n_dims - 1]."""
    lo = hi = 0.0
    if ext_factor != 0.0:
        def corr_dim(beta):
            r = F32(n_ctx_orig) / (F32(beta) * F32(2) * F32(math.pi))
            return F32(F32(n_dims) * F32(math.log(r))) / (F32(2) * F32(math.log(F32(base))))

        lo = max(0.0, math.floor(corr_dim(beta_fast)))
        hi = min(float(n_dims - 1), math.ceil(corr_dim(beta_slow)))
    return Rope(n_dims, float(F32(base)), float(F32(freq_scale)), float(F32(ext_factor)), float(F32(attn_factor)),
                float(lo), float(hi))


@dataclass(frozen=True)
class Config:
    arch: str
    model_type: str  # llama.cpp's LLM_TYPE name ("135M", "8B", "?B"), for llama_model_desc
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
    rope_neox: bool  # NeoX rotation (i, i + d/2) instead of adjacent pairs (llama_model_rope_type)
    rope: Rope  # of the full-attention layers
    rope_swa: Rope  # of the sliding-window layers (gemma2/3, olmo2); the same as rope elsewhere
    rope_layers: tuple[bool, ...]  # per layer: is q/k rotated at all? (smollm3, granite's switch)
    rope_scaling: str  # none, linear, yarn, longrope
    n_ctx_orig_yarn: int  # LongRoPE takes its long factors for contexts beyond this
    attn_scale: float  # float32: the kq scale, or (scale_q) the factor applied to q after RoPE
    scale_q: bool  # gemma2/3, phi3: q *= attn_scale after RoPE, then attention scales by 1
    sliding_window: int  # 0: every layer attends to the whole context
    swa_layers: tuple[bool, ...]  # per layer: does it attend through the sliding window?
    qk_norm: str = ""  # "head": RMSNorm of each q/k head (qwen3, gemma3); "full": of the whole rows (olmo2)
    ffn_act: str = "silu"  # "silu" (SwiGLU) or "gelu" (GeGLU, gemma)
    embed_scale: float = 1.0  # float32; token embeddings are multiplied by this (gemma, granite)
    residual_scale: float = 0.0  # granite: each block's attention and FFN output times this; 0: none
    logit_scale: float = 0.0  # granite: logits divided by this (times 1.0f/s); 0: none
    final_softcap: float = 0.0  # 0: none
    attn_softcap: float = 0.0  # 0: none
    attn_temp_scale: float = 0.0  # mistral3 / llama4 temperature tuning of q by position; 0: none
    attn_temp_floor: int = 0
    n_expert: int = 0  # mixture of experts: experts per layer (0: a dense FFN)
    n_expert_used: int = 0  # experts each token goes through
    n_ff_exp: int = 0  # width of one expert's FFN
    expert_gating: str = "softmax"  # softmax over all, then top-k; "softmax_weight": top-k of the logits, softmax over those
    expert_norm: bool = False  # renormalise the chosen experts' weights to sum to 1
    expert_weights_scale: float = 0.0  # 0 or 1: none

    @property
    def n_embd_k(self) -> int:  # keys of all kv heads, per token
        return self.n_head_kv * self.head_dim

    @property
    def n_embd_v(self) -> int:
        return self.n_head_kv * self.head_dim_v

    # the names the single-Rope config had
    @property
    def rope_dims(self) -> int:
        return self.rope.n_dims

    @property
    def rope_base(self) -> float:
        return self.rope.base

    @property
    def rope_freq_scale(self) -> float:
        return self.rope.freq_scale

    @property
    def rope_base_local(self) -> float:
        return self.rope_swa.base

    @property
    def rope_freq_scale_local(self) -> float:
        return self.rope_swa.freq_scale

    def is_swa_layer(self, il: int) -> bool:
        return self.sliding_window > 0 and self.swa_layers[il]

    def layer_rope(self, il: int) -> Rope:
        return self.rope_swa if self.is_swa_layer(il) else self.rope


def f32_inv_sqrt(x: float) -> float:
    """1.0f / sqrtf(x) in float32, as llama.cpp writes its attention scales."""
    return float(F32(1.0) / F32(math.sqrt(F32(x))))


def swa_pattern(pattern, n_layer: int, dense_first: bool = False) -> tuple[bool, ...]:
    """llama_hparams::set_swa_pattern: with a pattern of n, layers il % n < n - 1 use the window
    (dense_first: every layer but il % n == 0), n = 0 makes all of them SWA. An array-valued
    pattern lists the layers directly (load_swa_pattern)."""
    if isinstance(pattern, (list, tuple, np.ndarray)):
        if len(pattern) < n_layer:
            raise LlamacliError(f"sliding_window_pattern has {len(pattern)} entries for {n_layer} layers")
        return tuple(bool(v) for v in pattern[:n_layer])
    n = int(pattern)
    if dense_first:
        return tuple(n == 0 or il % n != 0 for il in range(n_layer))
    return tuple(n == 0 or il % n < n - 1 for il in range(n_layer))


class HParams:
    """The metadata of one file, read through its architecture's key names (`Keys.*` templates
    of gguf.constants, `{arch}` filled in)."""

    def __init__(self, gf: GGUFFile):
        self.gf, self.arch, self.path = gf, gf.architecture, gf.path

    def key(self, template: str) -> str:
        return template.format(arch=self.arch)

    def get(self, template: str, default=None):
        v = self.gf.get(self.key(template))
        return default if v is None else v

    def require(self, template: str):
        v = self.gf.get(self.key(template))
        if v is None:
            raise LlamacliError(f"{self.path}: metadata key '{self.key(template)}' is missing")
        return v

    def scalar(self, template: str, default=None, kind=float, required: bool = False):
        """A number; an array-valued key (per-layer head counts, n_ff) must hold one value."""
        v = self.require(template) if required else self.get(template, default)
        if isinstance(v, (list, tuple, np.ndarray)):
            vals = set(np.asarray(v).tolist())
            if len(vals) != 1:
                raise LlamacliError(f"{self.path}: '{self.key(template)}' varies by layer ({sorted(vals)[:4]}...), "
                                    "which is not supported")
            v = vals.pop()
        return None if v is None else kind(v)

    def refuse(self, template: str, why: str, unless=lambda v: False) -> None:
        v = self.get(template)
        if v is not None and not unless(v):
            raise LlamacliError(f"{self.path}: metadata key '{self.key(template)}' = {v!r}: {why}")


ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")


def common_hparams(h: HParams) -> dict:
    """llama_model_base::load_hparams, the part every family shares, plus llama_context's
    derivation of the RoPE arguments (llama_context::llama_context, plain float arithmetic)."""
    n_embd = h.scalar(Keys.LLM.EMBEDDING_LENGTH, kind=int, required=True)
    n_layer = h.scalar(Keys.LLM.BLOCK_COUNT, kind=int, required=True)
    n_head = h.scalar(Keys.Attention.HEAD_COUNT, kind=int, required=True)
    if n_head <= 0 or n_embd <= 0 or n_layer <= 0:
        raise LlamacliError(f"{h.path}: bad head count {n_head}, embedding length {n_embd} or block count {n_layer}")
    n_head_kv = h.scalar(Keys.Attention.HEAD_COUNT_KV, n_head, kind=int)
    if n_head_kv <= 0 or n_head % n_head_kv:
        raise LlamacliError(f"{h.path}: {n_head} heads cannot be grouped over {n_head_kv} kv heads")
    head_dim = h.scalar(Keys.Attention.KEY_LENGTH, n_embd // n_head, kind=int)
    head_dim_v = h.scalar(Keys.Attention.VALUE_LENGTH, n_embd // n_head, kind=int)
    n_vocab = h.scalar(Keys.LLM.VOCAB_SIZE, h.gf.array_len("tokenizer.ggml.tokens") or 0, kind=int)
    if n_vocab <= 0:
        raise LlamacliError(f"{h.path}: vocabulary size unknown")
    n_ctx_train = h.scalar(Keys.LLM.CONTEXT_LENGTH, 2048, kind=int)

    # what llamacli does not compute is refused by name
    n_expert = h.scalar(Keys.LLM.EXPERT_COUNT, 0, kind=int)
    n_expert_used = h.scalar(Keys.LLM.EXPERT_USED_COUNT, 0, kind=int)
    if n_expert_used > n_expert or (n_expert > 0) != (n_expert_used > 0):
        raise LlamacliError(f"{h.path}: {n_expert_used} experts used of {n_expert}")
    h.refuse(Keys.LLM.EXPERT_GROUP_COUNT, "grouped expert selection is not supported", unless=lambda v: int(v) <= 1)
    h.refuse(Keys.Attention.CAUSAL, "non-causal attention (an embedding model) is not supported", unless=bool)
    h.refuse(Keys.Rope.DIMENSION_SECTIONS, "multi-section RoPE (M-RoPE) is not supported")
    for k in (Keys.Attention.KEY_LENGTH_SWA, Keys.Attention.VALUE_LENGTH_SWA, Keys.Rope.DIMENSION_COUNT_SWA):
        h.refuse(k, "sliding-window layers of another width are not supported")

    scaling = str(h.get(Keys.Rope.SCALING_TYPE, "linear"))
    if scaling not in ROPE_SCALING_TYPES:
        raise LlamacliError(f"{h.path}: unknown rope scaling type '{scaling}' (llama.cpp knows: "
                            f"{', '.join(ROPE_SCALING_TYPES)})")
    factor = float(h.get(Keys.Rope.SCALING_FACTOR, 0.0) or h.get("{arch}.rope.scale_linear", 0.0) or 0.0)
    freq_scale = float(F32(1.0) / F32(factor)) if factor else 1.0
    if scaling == "none":
        freq_scale = 1.0  # "never scale if scaling type is none"
    n_ctx_orig = h.scalar(Keys.Rope.SCALING_ORIG_CTX_LEN, n_ctx_train, kind=int) or n_ctx_train
    n_rot = h.scalar(Keys.Rope.DIMENSION_COUNT, head_dim, kind=int)
    return dict(
        n_vocab=n_vocab, n_ctx_train=n_ctx_train, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        n_head_kv=n_head_kv, head_dim=head_dim, head_dim_v=head_dim_v,
        n_ff=h.scalar(Keys.LLM.FEED_FORWARD_LENGTH, kind=int, required=True),
        rms_eps=float(F32(h.scalar(Keys.Attention.LAYERNORM_RMS_EPS, required=True))),
        rope_scaling=scaling, n_ctx_orig_yarn=n_ctx_orig, n_expert=n_expert, n_expert_used=n_expert_used,
        _n_rot=n_rot, _base=float(h.get(Keys.Rope.FREQ_BASE, 10000.0)), _freq_scale=freq_scale,
        _rope_attn_factor=float(h.get(Keys.Rope.SCALING_ATTN_FACTOR, 1.0)),
    )


def yarn_args(scaling: str, freq_scale: float, rope_attn_factor: float, yarn_log_mul: float = 0.0,
              ext_factor: float = -1.0, attn_factor: float = 1.0) -> tuple[float, float]:
    """(ext_factor, attn_factor) as llama_context derives them: YaRN extrapolates fully unless the
    file says otherwise, and its magnitude correction get_mscale(1/freq_scale) (relative to the
    log multiplier's, where a model has one) is divided by the one ggml's rope_yarn applies."""
    if ext_factor < 0:
        ext_factor = 1.0 if scaling == "yarn" else 0.0
    attn = F32(attn_factor)
    if ext_factor != 0:
        factor = F32(F32(1.0) / F32(freq_scale))

        def mscale(scale, m):
            return F32(1.0) if scale <= 1 else F32(F32(F32(F32(0.1) * F32(m)) * F32(math.log(scale))) + F32(1.0))

        attn = mscale(factor, 1.0) / mscale(factor, yarn_log_mul) if yarn_log_mul != 0 else mscale(factor, 1.0)
        attn = F32(attn * F32(F32(1.0) / F32(F32(1.0) + F32(F32(0.1) * F32(math.log(factor))))))
    attn = F32(attn * F32(rope_attn_factor))
    return float(ext_factor), float(attn)


def config_from_gguf(gf: GGUFFile) -> Config:
    from .arch import spec_for

    return spec_for(gf.architecture, gf.path).config(HParams(gf))
