"""The per-tensor type plan of llama-quantize (src/llama-quant.cpp), rule for rule.

`make_plan` walks the tensors in llama.cpp's order (layer number, then name: the
``weight_name_comparer`` of ``llama_model_loader::weights_map``) and decides, for each, the
type it is written in:

* ``tensor_allows_quantization``: only 2-D+ tensors named ``*weight``, never norms, the
  expert router, positional embeddings, ... and not ``output.weight`` with
  ``--leave-output-tensor``;
* ``llama_tensor_get_type``: ``--token-embedding-type`` / ``--output-tensor-type`` first, then
  for a quantized mixture ``--tensor-type`` patterns, or else the mixture's rules
  (``llama_tensor_get_type_impl``: more bits for the output head, attn_v, ffn_down in the
  layers ``use_more_bits`` picks ...), and finally ``tensor_type_fallback`` when a row is not a
  multiple of the type's block.

The warnings llama.cpp prints while planning are collected in `Plan.messages`, in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum, auto

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

from ..errors import LlamacliError
from ..kernels.registry import FALLBACK

T = GGMLQuantizationType
F = LlamaFileType


# -- the mixtures (tools/quantize/quantize.cpp QUANT_OPTIONS, the ones this tool writes) -------

# name on the command line -> file type; aliases resolve to the same file type
QUANT_OPTIONS: dict[str, F] = {
    "Q4_0": F.MOSTLY_Q4_0,
    "Q4_1": F.MOSTLY_Q4_1,
    "Q5_0": F.MOSTLY_Q5_0,
    "Q5_1": F.MOSTLY_Q5_1,
    "IQ2_XXS": F.MOSTLY_IQ2_XXS,
    "IQ2_XS": F.MOSTLY_IQ2_XS,
    "IQ2_S": F.MOSTLY_IQ2_S,
    "IQ2_M": F.MOSTLY_IQ2_M,
    "IQ1_S": F.MOSTLY_IQ1_S,
    "IQ1_M": F.MOSTLY_IQ1_M,
    "TQ1_0": F.MOSTLY_TQ1_0,
    "TQ2_0": F.MOSTLY_TQ2_0,
    "Q2_K": F.MOSTLY_Q2_K,
    "Q2_K_S": F.MOSTLY_Q2_K_S,
    "IQ3_XXS": F.MOSTLY_IQ3_XXS,
    "IQ3_S": F.MOSTLY_IQ3_S,
    "IQ3_M": F.MOSTLY_IQ3_M,
    "Q3_K": F.MOSTLY_Q3_K_M,  # alias for Q3_K_M
    "IQ3_XS": F.MOSTLY_IQ3_XS,
    "Q3_K_S": F.MOSTLY_Q3_K_S,
    "Q3_K_M": F.MOSTLY_Q3_K_M,
    "Q3_K_L": F.MOSTLY_Q3_K_L,
    "IQ4_NL": F.MOSTLY_IQ4_NL,
    "IQ4_XS": F.MOSTLY_IQ4_XS,
    "Q4_K": F.MOSTLY_Q4_K_M,  # alias for Q4_K_M
    "Q4_K_S": F.MOSTLY_Q4_K_S,
    "Q4_K_M": F.MOSTLY_Q4_K_M,
    "Q5_K": F.MOSTLY_Q5_K_M,  # alias for Q5_K_M
    "Q5_K_S": F.MOSTLY_Q5_K_S,
    "Q5_K_M": F.MOSTLY_Q5_K_M,
    "Q6_K": F.MOSTLY_Q6_K,
    "Q8_0": F.MOSTLY_Q8_0,
    "MXFP4_MOE": F.MOSTLY_MXFP4_MOE,  # expert tensors MXFP4, the rest Q8_0
    "F16": F.MOSTLY_F16,
    "BF16": F.MOSTLY_BF16,
    "F32": F.ALL_F32,
}

# llama_ftype_get_default_type
DEFAULT_TYPE: dict[F, T] = {
    F.MOSTLY_Q4_0: T.Q4_0, F.MOSTLY_Q4_1: T.Q4_1, F.MOSTLY_Q5_0: T.Q5_0, F.MOSTLY_Q5_1: T.Q5_1,
    F.MOSTLY_Q8_0: T.Q8_0, F.MOSTLY_F16: T.F16, F.MOSTLY_BF16: T.BF16, F.ALL_F32: T.F32,
    F.MOSTLY_Q2_K_S: T.Q2_K, F.MOSTLY_Q2_K: T.Q2_K,
    F.MOSTLY_Q3_K_S: T.Q3_K, F.MOSTLY_Q3_K_M: T.Q3_K, F.MOSTLY_Q3_K_L: T.Q3_K,
    F.MOSTLY_Q4_K_S: T.Q4_K, F.MOSTLY_Q4_K_M: T.Q4_K,
    F.MOSTLY_Q5_K_S: T.Q5_K, F.MOSTLY_Q5_K_M: T.Q5_K,
    F.MOSTLY_Q6_K: T.Q6_K, F.MOSTLY_MXFP4_MOE: T.MXFP4,
    F.MOSTLY_IQ3_XS: T.IQ3_S, F.MOSTLY_TQ1_0: T.TQ1_0, F.MOSTLY_TQ2_0: T.TQ2_0,
    F.MOSTLY_IQ2_XXS: T.IQ2_XXS, F.MOSTLY_IQ2_XS: T.IQ2_XS, F.MOSTLY_IQ2_S: T.IQ2_XS, F.MOSTLY_IQ2_M: T.IQ2_S,
    F.MOSTLY_IQ3_XXS: T.IQ3_XXS, F.MOSTLY_IQ1_S: T.IQ1_S, F.MOSTLY_IQ1_M: T.IQ1_M,
    F.MOSTLY_IQ4_NL: T.IQ4_NL, F.MOSTLY_IQ4_XS: T.IQ4_XS, F.MOSTLY_IQ3_S: T.IQ3_S, F.MOSTLY_IQ3_M: T.IQ3_S,
}

FLOAT_TYPES = (T.F32, T.F16, T.BF16)


def ggml_type_name(t: T) -> str:
    """ggml_type_name: "q4_0", "q4_K", "f16", "bf16" ..."""
    return t.name.lower().replace("_k", "_K")


def is_quantized(t: T) -> bool:
    """ggml_is_quantized: block types, not the float types."""
    return t not in FLOAT_TYPES


def parse_ftype(text: str) -> tuple[F, str]:
    """try_parse_ftype: a name (any case) or the file-type number -> (file type, canonical name)."""
    up = text.upper()
    if up in QUANT_OPTIONS:
        return QUANT_OPTIONS[up], up
    try:
        num = int(text)
    except ValueError:
        num = None
    if num is not None:
        for name, ft in QUANT_OPTIONS.items():
            if int(ft) == num:
                return ft, name
    raise LlamacliError(f"invalid ftype '{text}' (one of: {', '.join(QUANT_OPTIONS)})")


def parse_ggml_type(text: str) -> T:
    """parse_ggml_type: a ggml type name, any case (only the types this tool can write)."""
    from ..kernels.codec import CODECS

    for t in CODECS:
        if t.name.lower() == text.lower():
            return t
    raise LlamacliError(f"invalid ggml_type '{text}' (one of: {', '.join(t.name.lower() for t in CODECS)})")


# -- options -----------------------------------------------------------------------------------


@dataclass
class PlanOptions:
    """The llama_model_quantize_params fields that shape the plan."""

    ftype: F
    allow_requantize: bool = False
    quantize_output_tensor: bool = True  # False with --leave-output-tensor
    pure: bool = False
    output_tensor_type: T | None = None
    token_embedding_type: T | None = None
    tensor_types: list[tuple[str, T]] = field(default_factory=list)  # (regex, type), in order
    has_imatrix: bool = False  # quantize_state_impl::has_imatrix: some mixtures differ with one


# -- tensor categories (tensor_get_category) ---------------------------------------------------


class Cat(Enum):
    TOKEN_EMBD = auto()
    ATTENTION_Q = auto()
    ATTENTION_V = auto()
    ATTENTION_K = auto()
    ATTENTION_QKV = auto()
    ATTENTION_KV_B = auto()
    ATTENTION_OUTPUT = auto()
    FFN_UP = auto()
    FFN_GATE = auto()
    FFN_DOWN = auto()
    OUTPUT = auto()
    OTHER = auto()


def _is_token_embd(name: str) -> bool:
    return name in ("token_embd.weight", "per_layer_token_embd.weight")


def category(name: str) -> Cat:
    if name == "output.weight":
        return Cat.OUTPUT
    if _is_token_embd(name):
        return Cat.TOKEN_EMBD
    for needle, cat in (
        ("attn_qkv.weight", Cat.ATTENTION_QKV),
        ("attn_kv_b.weight", Cat.ATTENTION_KV_B),
        ("attn_v.weight", Cat.ATTENTION_V),
        ("attn_k.weight", Cat.ATTENTION_K),
        ("attn_q.weight", Cat.ATTENTION_Q),
        ("attn_output.weight", Cat.ATTENTION_OUTPUT),
        ("ffn_up", Cat.FFN_UP),
        ("ffn_gate", Cat.FFN_GATE),
        ("ffn_down", Cat.FFN_DOWN),
    ):
        if needle in name:
            return cat
    return Cat.OTHER


def _is_attn_v(cat: Cat) -> bool:
    return cat in (Cat.ATTENTION_V, Cat.ATTENTION_QKV, Cat.ATTENTION_KV_B)


# substrings that keep a tensor out of quantization (tensor_allows_quantization)
_NEVER = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
    "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
    "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
    "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
    "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd",
    "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook",
    "mm.a.code_embd",
)
_NEVER_GLM5_NEXT = (
    "hc_", "indexer.attn_q_b", "indexer.attn_k", "indexer.proj", "indexer_compressor_gate",
    "indexer_compressor_ape", "ssm_f_a.weight", "ssm_f_b.weight", "ssm_g_a.weight", "ssm_g_b.weight",
    "ssm_beta.weight", "attn_kv_a_mqa.weight", "attn_k_b.weight", "attn_v_b.weight",
)


def n_dims(ne: tuple[int, ...]) -> int:
    """ggml_n_dims: trailing dimensions of size 1 do not count."""
    n = len(ne)
    while n > 1 and ne[n - 1] == 1:
        n -= 1
    return max(n, 1)


def allows_quantization(name: str, ne: tuple[int, ...], arch: str, opts: PlanOptions) -> bool:
    """tensor_allows_quantization"""
    if n_dims(ne) < 2:
        return False
    if not name.endswith("weight"):
        return False
    if not opts.quantize_output_tensor and name == "output.weight":
        return False
    if name in ("position_embd.weight", "token_types.weight"):
        return False
    if any(s in name for s in _NEVER):
        return False
    if arch == "glm5-next" and any(s in name for s in _NEVER_GLM5_NEXT):
        return False
    return True


# -- hyper-parameters the rules look at ----------------------------------------------------------


@dataclass(frozen=True)
class Hparams:
    arch: str
    n_layer: int
    n_head: int
    n_head_kv: int
    n_expert: int

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0

    @property
    def is_70b(self) -> bool:
        # load_hparams: a llama with 80 layers and grouped-query attention is LLM_TYPE_70B
        return self.arch == "llama" and self.n_layer == 80 and self.n_head != self.n_head_kv


def _first(v, default: int) -> int:
    if v is None:
        return default
    if isinstance(v, (list, tuple)):
        return int(v[0]) if v else default
    return int(v)


def hparams_of(gf) -> Hparams:
    arch = gf.architecture
    n_head = _first(gf.get(f"{arch}.attention.head_count"), 0)
    return Hparams(
        arch=arch,
        n_layer=_first(gf.get(f"{arch}.block_count"), 0),
        n_head=n_head,
        n_head_kv=_first(gf.get(f"{arch}.attention.head_count_kv"), n_head),
        n_expert=_first(gf.get(f"{arch}.expert_count"), 0),
    )


# -- the plan ----------------------------------------------------------------------------------


@dataclass
class TensorPlan:
    name: str
    ne: tuple[int, ...]
    src_type: T
    dst_type: T
    allows_quantization: bool
    requires_imatrix: bool

    @property
    def converts(self) -> bool:
        return self.src_type != self.dst_type


@dataclass
class Plan:
    ftype: F
    tensors: list[TensorPlan]  # in llama.cpp's write order
    n_fallback: int
    messages: list[str]  # warnings printed while planning, in order


def _layer_of(name: str) -> int:
    m = re.match(r"blk\.(-?\d+)", name)
    return int(m.group(1)) if m else -1


def llama_order(names) -> list[str]:
    """weight_name_comparer: by the layer number of ``blk.N.`` (-1 for none), then bytewise."""
    return sorted(names, key=lambda n: (_layer_of(n), n.encode()))


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


class _State:
    """quantize_state_impl: counters the rules advance tensor by tensor."""

    def __init__(self, hp: Hparams, opts: PlanOptions, names: list[str]):
        self.hp = hp
        self.opts = opts
        self.patterns = [(re.compile(p), t) for p, t in opts.tensor_types]
        cats = [category(n) for n in names]
        self.n_attention_wv = sum(_is_attn_v(c) for c in cats)
        self.has_tied_embeddings = Cat.OUTPUT not in cats
        self.n_ffn_down = self.n_ffn_gate = self.n_ffn_up = hp.n_layer
        self.i_attention_wv = self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0
        self.n_fallback = 0
        self.messages: list[str] = []

    def layer_info(self, i_layer: int, n_layer: int, name: str) -> tuple[int, int]:
        if max(1, self.hp.n_expert) > 1:
            m = re.match(r"blk\.(-?\d+)\.", name)
            if not m:
                raise LlamacliError(f"Failed to determine layer for tensor {name}")
            i_layer = int(m.group(1))
            if i_layer < 0 or i_layer >= n_layer:
                raise LlamacliError(f"Bad layer {i_layer} for tensor {name}. Must be in [0, {n_layer})")
        return i_layer, n_layer


# the mixtures llama_tensor_get_type_impl treats together
_IQ2_LIKE = (F.MOSTLY_IQ2_XXS, F.MOSTLY_IQ2_XS, F.MOSTLY_IQ1_S, F.MOSTLY_IQ2_S, F.MOSTLY_IQ2_M, F.MOSTLY_IQ1_M)
_OUTPUT_Q5_K = (F.MOSTLY_IQ2_XXS, F.MOSTLY_IQ2_XS, F.MOSTLY_IQ3_XXS, F.MOSTLY_IQ1_S, F.MOSTLY_IQ2_S,
                F.MOSTLY_IQ2_M, F.MOSTLY_IQ1_M)
_ATTN_OUT_MOE_Q5_K = (F.MOSTLY_Q2_K, F.MOSTLY_IQ3_XS, F.MOSTLY_IQ3_XXS, F.MOSTLY_Q3_K_S, F.MOSTLY_Q3_K_M,
                      F.MOSTLY_IQ4_NL, F.MOSTLY_Q4_K_S, F.MOSTLY_Q4_K_M, F.MOSTLY_IQ3_S, F.MOSTLY_IQ3_M,
                      F.MOSTLY_IQ4_XS)


def _get_type_impl(qs: _State, new_type: T, name: str, ne: tuple[int, ...], ftype: F, cat: Cat) -> T:
    """llama_tensor_get_type_impl, branch for branch."""
    hp = qs.hp
    arch = hp.arch
    opts = qs.opts
    has_imatrix = opts.has_imatrix
    is_iq2s = ftype in (F.MOSTLY_IQ2_S, F.MOSTLY_IQ2_M)

    if arch == "glm5-next" and any(s in name for s in ("attn_q_a", "attn_q_b", "nextn.eh_proj")):
        if new_type not in FLOAT_TYPES:
            return T.Q8_0

    if cat == Cat.OUTPUT or (qs.has_tied_embeddings and cat == Cat.TOKEN_EMBD):
        if opts.output_tensor_type is not None:
            new_type = opts.output_tensor_type
        else:
            nx = ne[0]
            qk_k = GGML_QUANT_SIZES[new_type][0]
            if ftype == F.MOSTLY_MXFP4_MOE or arch == "falcon" or nx % qk_k != 0:
                new_type = T.Q8_0
            elif ftype in _OUTPUT_Q5_K:
                new_type = T.Q5_K
            elif new_type != T.Q8_0:
                new_type = T.Q6_K
    elif ftype == F.MOSTLY_MXFP4_MOE:
        # expert tensors (3-D) MXFP4, every other tensor Q8_0; bailingmoe3's 3-D MLA projections
        # are not experts
        expert = arch != "bailingmoe3" or cat in (Cat.FFN_UP, Cat.FFN_GATE, Cat.FFN_DOWN)
        new_type = T.MXFP4 if len(ne) > 2 and ne[2] > 1 and expert else T.Q8_0
    elif cat == Cat.TOKEN_EMBD:
        if opts.token_embedding_type is not None:
            new_type = opts.token_embedding_type
        elif ftype in (F.MOSTLY_IQ2_XXS, F.MOSTLY_IQ2_XS, F.MOSTLY_IQ1_S, F.MOSTLY_IQ1_M):
            new_type = T.Q2_K
        elif is_iq2s or ftype == F.MOSTLY_IQ3_XXS:
            new_type = T.IQ3_S
        elif ftype in (F.MOSTLY_TQ1_0, F.MOSTLY_TQ2_0):  # (and Q2_0, which gguf-py does not know)
            new_type = T.Q4_K
    elif ftype in _IQ2_LIKE:
        if _is_attn_v(cat):
            if hp.n_gqa >= 4 or hp.n_expert >= 4:
                new_type = T.Q4_K
            else:
                new_type = T.IQ3_S if is_iq2s else T.Q2_K
            qs.i_attention_wv += 1
        elif hp.n_expert == 8 and cat == Cat.ATTENTION_K:
            new_type = T.Q4_K
        elif cat == Cat.FFN_DOWN:
            if qs.i_ffn_down < qs.n_ffn_down // 8:
                new_type = T.IQ3_S if is_iq2s else T.Q2_K
            qs.i_ffn_down += 1
        elif cat == Cat.ATTENTION_OUTPUT:
            if hp.n_expert == 8:
                new_type = T.Q5_K
            elif ftype in (F.MOSTLY_IQ1_S, F.MOSTLY_IQ1_M):
                new_type = T.IQ2_XXS
            elif is_iq2s:
                new_type = T.IQ3_S
    elif _is_attn_v(cat):
        if ftype == F.MOSTLY_Q2_K:
            new_type = T.Q4_K if hp.n_gqa >= 4 else T.Q3_K
        elif ftype == F.MOSTLY_Q2_K_S and hp.n_gqa >= 4:
            new_type = T.Q4_K
        elif ftype == F.MOSTLY_IQ3_XXS:
            new_type = T.Q4_K if hp.n_gqa >= 4 else (T.IQ3_S if not has_imatrix else T.IQ3_XXS)
        elif ftype in (F.MOSTLY_IQ3_XS, F.MOSTLY_IQ3_S) and hp.n_gqa >= 4:
            new_type = T.Q4_K
        elif ftype == F.MOSTLY_IQ3_M:
            new_type = T.Q4_K
        elif ftype == F.MOSTLY_Q3_K_M:
            new_type = T.Q5_K if qs.i_attention_wv < 2 else T.Q4_K
        elif ftype == F.MOSTLY_Q3_K_L:
            new_type = T.Q5_K
        elif ftype in (F.MOSTLY_IQ4_NL, F.MOSTLY_IQ4_XS) and hp.n_gqa >= 4:
            new_type = T.Q5_K
        elif ftype in (F.MOSTLY_Q4_K_M, F.MOSTLY_Q5_K_M) and _use_more_bits(qs.i_attention_wv, qs.n_attention_wv):
            new_type = T.Q6_K
        elif ftype == F.MOSTLY_Q4_K_S and qs.i_attention_wv < 4:
            new_type = T.Q5_K
        if hp.is_70b and new_type in (T.Q3_K, T.Q4_K):
            # 8 heads share attn_v in the 70B model: more bits cost little
            new_type = T.Q5_K
        if hp.n_expert == 8:
            new_type = T.Q8_0
        qs.i_attention_wv += 1
    elif cat == Cat.ATTENTION_K:
        if hp.n_expert == 8:
            new_type = T.Q8_0
        elif ftype == F.MOSTLY_IQ3_XS:
            new_type = T.IQ3_XXS
        elif ftype == F.MOSTLY_IQ3_XXS:
            new_type = T.IQ2_S
    elif cat == Cat.ATTENTION_Q:
        if ftype == F.MOSTLY_IQ3_XS:
            new_type = T.IQ3_XXS
        elif ftype == F.MOSTLY_IQ3_XXS:
            new_type = T.IQ2_S
    elif cat == Cat.FFN_DOWN:
        i_layer, n_layer = qs.layer_info(qs.i_ffn_down, qs.n_ffn_down, name)
        if ftype == F.MOSTLY_Q2_K:
            new_type = T.Q3_K
        elif ftype == F.MOSTLY_Q2_K_S:
            if i_layer < n_layer // 8:
                new_type = T.Q4_K
        elif ftype == F.MOSTLY_IQ3_XXS and not has_imatrix:
            new_type = T.Q4_K if i_layer < n_layer // 8 else T.Q3_K
        elif ftype == F.MOSTLY_Q3_K_M:
            if i_layer < n_layer // 16:
                new_type = T.Q5_K
            elif arch != "falcon" or _use_more_bits(i_layer, n_layer):
                new_type = T.Q4_K
            else:
                new_type = T.Q3_K
        elif ftype == F.MOSTLY_IQ3_M and (i_layer < n_layer // 8
                                          or (hp.n_expert == 8 and _use_more_bits(i_layer, n_layer))):
            new_type = T.Q4_K
        elif ftype == F.MOSTLY_Q3_K_L:
            new_type = T.Q4_K if arch == "falcon" else T.Q5_K
        elif ftype == F.MOSTLY_Q4_K_M:
            if arch == "falcon":
                new_type = (T.Q6_K if i_layer < n_layer // 16
                            else T.Q5_K if _use_more_bits(i_layer, n_layer) else T.Q4_K)
            elif _use_more_bits(i_layer, n_layer):
                new_type = T.Q6_K
        elif i_layer < n_layer // 8 and ftype in (F.MOSTLY_IQ4_NL, F.MOSTLY_IQ4_XS) and not has_imatrix:
            new_type = T.Q5_K
        elif ftype == F.MOSTLY_Q5_K_M and _use_more_bits(i_layer, n_layer):
            new_type = T.Q6_K
        elif ftype == F.MOSTLY_Q4_K_S and arch != "falcon" and i_layer < n_layer // 8:
            new_type = T.Q5_K
        elif ftype in (F.MOSTLY_Q4_0, F.MOSTLY_Q5_0) and has_imatrix and i_layer < n_layer // 8:
            # only with an imatrix: without one, the files stay as they were before imatrices
            new_type = T.Q4_1 if ftype == F.MOSTLY_Q4_0 else T.Q5_1
        qs.i_ffn_down += 1
    elif cat == Cat.ATTENTION_OUTPUT:
        if arch != "falcon":
            if hp.n_expert == 8:
                if ftype in _ATTN_OUT_MOE_Q5_K:
                    new_type = T.Q5_K
            else:
                if ftype == F.MOSTLY_Q2_K:
                    new_type = T.Q3_K
                elif ftype == F.MOSTLY_IQ3_XXS:
                    new_type = T.IQ3_S
                elif ftype == F.MOSTLY_Q3_K_M:
                    new_type = T.Q4_K
                elif ftype == F.MOSTLY_Q3_K_L:
                    new_type = T.Q5_K
                elif ftype == F.MOSTLY_IQ3_M:
                    new_type = T.Q4_K
        else:
            if ftype == F.MOSTLY_Q3_K_L:
                new_type = T.Q4_K
    elif cat == Cat.ATTENTION_QKV:
        if ftype in (F.MOSTLY_Q3_K_M, F.MOSTLY_Q3_K_L, F.MOSTLY_IQ3_M):
            new_type = T.Q4_K
        elif ftype == F.MOSTLY_Q4_K_M:
            new_type = T.Q5_K
        elif ftype == F.MOSTLY_Q5_K_M:
            new_type = T.Q6_K
    elif cat == Cat.FFN_GATE:
        i_layer, n_layer = qs.layer_info(qs.i_ffn_gate, qs.n_ffn_gate, name)
        if ftype == F.MOSTLY_IQ3_XS and n_layer // 8 <= i_layer < 7 * n_layer // 8:
            new_type = T.IQ3_XXS
        qs.i_ffn_gate += 1
    elif cat == Cat.FFN_UP:
        i_layer, n_layer = qs.layer_info(qs.i_ffn_up, qs.n_ffn_up, name)
        if ftype == F.MOSTLY_IQ3_XS and n_layer // 8 <= i_layer < 7 * n_layer // 8:
            new_type = T.IQ3_XXS
        qs.i_ffn_up += 1
    return new_type


def _fallback(qs: _State, name: str, ne: tuple[int, ...], target: T) -> T:
    """tensor_type_fallback"""
    ncols = ne[0]
    qk = GGML_QUANT_SIZES[target][0]
    if ncols % qk == 0:
        return target
    msg = f"warning: {name:<36} - ncols {ncols:6d} not divisible by {qk:3d} (required for type {ggml_type_name(target):>7}) "
    qs.n_fallback += 1
    if target in FALLBACK:
        ret = FALLBACK[target]
    elif qk <= 32:
        ret = target  # already a 32-block type: the check below makes it F16
    else:
        raise LlamacliError(f"no tensor type fallback is defined for type {ggml_type_name(target)}")
    if ncols % GGML_QUANT_SIZES[ret][0] != 0:
        msg += "(WARNING: must use F16 due to unusual shape) "
        ret = T.F16
    qs.messages.append(msg + f"-> falling back to {ggml_type_name(ret):>7}")
    return ret


def _get_type(qs: _State, name: str, ne: tuple[int, ...], src: T, default_type: T, cat: Cat) -> T:
    """llama_tensor_get_type (called only for tensors that allow quantization)."""
    opts = qs.opts
    if opts.token_embedding_type is not None and cat == Cat.TOKEN_EMBD:
        named = name == "per_layer_token_embd.weight" and any(p.search(name) for p, _ in qs.patterns)
        if not named:
            return opts.token_embedding_type
    if opts.output_tensor_type is not None and cat == Cat.OUTPUT:
        return opts.output_tensor_type
    new_type = default_type
    if is_quantized(default_type):
        manual = False
        for pattern, qtype in qs.patterns:
            if pattern.search(name):
                if qtype != new_type:
                    qs.messages.append(f"llama_tensor_get_type: {name:<36} - applying manual override: "
                                       f"{ggml_type_name(new_type)} -> {ggml_type_name(qtype)}")
                    new_type = qtype
                manual = True
                break
        if not manual and not opts.pure:
            new_type = _get_type_impl(qs, new_type, name, ne, opts.ftype, cat)
        new_type = _fallback(qs, name, ne, new_type)
    return new_type


# the types whose quantizers need an importance matrix (tensor_requires_imatrix)
_NEEDS_IMATRIX = (T.IQ3_XXS, T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ1_M, T.IQ1_S)


def _requires_imatrix(name: str, dst: T, ftype: F) -> bool:
    """tensor_requires_imatrix: the very low-bit i-quants, and Q2_K inside a Q2_K_S file."""
    if _is_token_embd(name) or name == "output.weight":
        return False
    return dst in _NEEDS_IMATRIX or (dst == T.Q2_K and ftype == F.MOSTLY_Q2_K_S)


def make_plan(tensors: list[tuple[str, tuple[int, ...], T]], hp: Hparams, opts: PlanOptions) -> Plan:
    """The write order and target type of every tensor, as llama_model_quantize_impl decides.

    tensors: (name, ne, type) in any order.
    """
    if opts.ftype not in DEFAULT_TYPE:
        raise LlamacliError(f"invalid output file type {int(opts.ftype)}")
    default_type = DEFAULT_TYPE[opts.ftype]
    by_name = {name: (ne, t) for name, ne, t in tensors}
    names = llama_order(by_name)
    qs = _State(hp, opts, names)
    out = []
    for name in names:
        ne, src = by_name[name]
        allowed = allows_quantization(name, ne, hp.arch, opts)
        dst = _get_type(qs, name, ne, src, default_type, category(name)) if allowed else src
        out.append(TensorPlan(name, ne, src, dst, allowed, _requires_imatrix(name, dst, opts.ftype)))
    return Plan(opts.ftype, out, qs.n_fallback, qs.messages)
