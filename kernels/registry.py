"""The one table of GGML weight types this project knows.

Geometry (block size, bytes per block) always comes from ``gguf.constants.GGML_QUANT_SIZES``.
Each type's *codec* (reference quantize / dequantize, bit-exact with ggml) is registered by
``codec/``; its *dot* kernels (the activation type it is dotted against and the
matrix-vector / matrix-matrix products) by ``dot/``; its *fallback* (the type llama-quant writes
instead when the block does not divide a row) is `FALLBACK`. An unknown type is an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from .codec import CODECS
from .dot import DOTS


class UnsupportedType(ValueError):
    pass


T = GGMLQuantizationType
# llama-quant's tensor_type_fallback: the 32-block type a 256-block type falls back to
FALLBACK = {
    T.IQ1_S: T.IQ4_NL, T.IQ1_M: T.IQ4_NL, T.IQ2_XXS: T.IQ4_NL, T.IQ2_XS: T.IQ4_NL, T.IQ2_S: T.IQ4_NL,
    T.IQ3_XXS: T.IQ4_NL, T.IQ3_S: T.IQ4_NL, T.IQ4_XS: T.IQ4_NL,
    T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0, T.TQ1_0: T.Q4_0, T.TQ2_0: T.Q4_0,
    T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0,
}


@dataclass(frozen=True)
class WeightType:
    qtype: GGMLQuantizationType
    block_size: int  # weights per block
    type_size: int  # bytes per block

    @property
    def name(self) -> str:
        return self.qtype.name

    def row_bytes(self, n: int) -> int:
        if n % self.block_size:
            raise UnsupportedType(f"{self.name}: row length {n} is not a multiple of {self.block_size}")
        return n // self.block_size * self.type_size

    @property
    def codec(self):
        c = CODECS.get(self.qtype)
        if c is None:
            raise UnsupportedType(f"no quantize/dequantize for weight type {self.name}")
        return c

    @property
    def fallback(self) -> GGMLQuantizationType | None:
        return FALLBACK.get(self.qtype)

    @property
    def act(self) -> str:
        """The activation type ggml dots this weight type against (vec_dot_type on x86)."""
        return self.dot.act

    @property
    def dot(self):
        d = DOTS.get(self.qtype)
        if d is None:
            raise UnsupportedType(f"no dot-product kernel for weight type {self.name}")
        return d


def weight_type(qtype: GGMLQuantizationType | int | str) -> WeightType:
    """Look a type up by enum, number or (case-insensitive) name."""
    try:
        if isinstance(qtype, str):
            qt = GGMLQuantizationType[qtype.upper()]
        else:
            qt = GGMLQuantizationType(int(qtype))
    except (KeyError, ValueError):
        raise UnsupportedType(f"unknown GGML type {qtype!r}") from None
    block, size = GGML_QUANT_SIZES[qt]
    return WeightType(qt, block, size)
