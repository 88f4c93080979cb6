"""Matrix products against weight rows of any registered type.

``DOTS[qtype]`` is a ``DotKernel``: the activation kind ggml pairs with the weight type
(its ``vec_dot_type``) and the Numba kernel. ``Activation`` holds the preallocated buffers of
one activation kind for rows of length ``n`` and up to ``t_max`` tokens; ``load`` quantizes
(or rounds) float32 activations into them once, and any number of weights sharing that input
(q, k and v; gate and up) are then multiplied without quantizing again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from llvmlite import binding as _llvm

from . import activations as A
from . import amx, floats, iquants, kquants, legacy, mxfp4, ternary
from .. import cpu
from .fp16 import round_to_f16

# ggml's AVX2 instruction sequence where the CPU has it; the portable kernels (same bits) elsewhere
_features = _llvm.get_host_cpu_features()
HAS_AVX2 = bool(_features.get("avx2") and _features.get("fma"))
if HAS_AVX2:
    from . import kquants_avx2 as fast_kquants
    from . import legacy_avx2 as fast_legacy
else:
    fast_legacy, fast_kquants = legacy, kquants

QUANT_KINDS = ("q8_0", "q8_1", "q8_K")


@dataclass(frozen=True)
class DotKernel:
    act: str  # "q8_0" | "q8_1" | "q8_K" | "f32" | "f16" | "bf16"
    matmul: Callable  # quantized: (W, q, d, aux, out, scratch); float: (W, x, out, scratch)
    row_dtype: type = np.uint8  # how the weight rows are viewed


DOTS: dict[T, DotKernel] = {
    T.F32: DotKernel("f32", floats.mul_mat_f32, np.float32),  # tinyBLAS for batches it takes
    T.F16: DotKernel("f16", floats.mul_mat_f16, np.uint16),
    T.BF16: DotKernel("bf16", floats.matmul_bf16, np.uint16),
    T.Q4_0: DotKernel("q8_0", fast_legacy.matmul_q4_0),
    T.Q4_1: DotKernel("q8_1", fast_legacy.matmul_q4_1),
    T.Q5_0: DotKernel("q8_0", fast_legacy.matmul_q5_0),
    T.Q5_1: DotKernel("q8_1", fast_legacy.matmul_q5_1),
    T.Q8_0: DotKernel("q8_0", fast_legacy.matmul_q8_0),
    T.Q2_K: DotKernel("q8_K", kquants.matmul_q2_K),
    T.Q3_K: DotKernel("q8_K", kquants.matmul_q3_K),
    T.Q4_K: DotKernel("q8_K", fast_kquants.matmul_q4_K),
    T.Q5_K: DotKernel("q8_K", kquants.matmul_q5_K),
    T.Q6_K: DotKernel("q8_K", fast_kquants.matmul_q6_K),
    T.MXFP4: DotKernel("q8_0", mxfp4.matmul_mxfp4),
    T.NVFP4: DotKernel("q8_0", mxfp4.matmul_nvfp4),
    T.Q1_0: DotKernel("q8_0", legacy.matmul_q1_0),
    T.IQ4_NL: DotKernel("q8_0", iquants.matmul_iq4_nl),
    T.IQ4_XS: DotKernel("q8_K", iquants.matmul_iq4_xs),
    T.IQ3_S: DotKernel("q8_K", iquants.matmul_iq3_s),
    T.IQ3_XXS: DotKernel("q8_K", iquants.matmul_iq3_xxs),
    T.IQ2_S: DotKernel("q8_K", iquants.matmul_iq2_s),
    T.IQ2_XS: DotKernel("q8_K", iquants.matmul_iq2_xs),
    T.IQ2_XXS: DotKernel("q8_K", iquants.matmul_iq2_xxs),
    T.IQ1_M: DotKernel("q8_K", iquants.matmul_iq1_m),
    T.IQ1_S: DotKernel("q8_K", iquants.matmul_iq1_s),
    T.TQ2_0: DotKernel("q8_K", ternary.matmul_tq2_0),
    T.TQ1_0: DotKernel("q8_K", ternary.matmul_tq1_0),
}


class Activation:
    """Buffers for one activation kind, rows of length n, up to t_max tokens."""

    def __init__(self, kind: str, n: int, t_max: int):
        self.kind, self.n, self.t_max = kind, n, t_max
        if kind in QUANT_KINDS:
            block = GGML_QUANT_SIZES[T.Q8_K if kind == "q8_K" else T.Q8_0][0]
            if n % block:
                raise ValueError(f"activation rows of {n} do not split into {kind} blocks of {block}")
            self.q = np.zeros((t_max, n), np.int8)  # (T, n)
            self.d = np.zeros((t_max, n // block), np.float32)  # (T, n/block)
            if kind == "q8_1":
                self.aux = np.zeros((t_max, n // block), np.float32)  # s = d * sum(q)
            elif kind == "q8_K":
                self.aux = np.zeros((t_max, n // 16), np.int32)  # bsums
            else:
                self.aux = self.d  # unused by q8_0 kernels
        else:
            self.x = np.zeros((t_max, n), np.float32)  # (T, n) rounded to the weight's type
        self.scratch = np.zeros((numba.config.NUMBA_NUM_THREADS, 64), np.float32)  # lane accumulators per thread
        self.t = 0
        self._views: dict[int, tuple] = {}  # t -> the buffers' first t rows, made once (no per-call slicing)

    def _rows(self, t: int) -> tuple:
        v = self._views.get(t)
        if v is None:
            v = (self.q[:t], self.d[:t], self.aux[:t]) if self.kind in QUANT_KINDS else (self.x[:t],)
            self._views[t] = v
        return v

    def load(self, x: np.ndarray) -> None:
        """Quantize / round x float32[T, n] into the buffers."""
        t = x.shape[0]
        self.t = t
        k = self.kind
        if k == "q8_0":
            q, d, _ = self._rows(t)
            A.quantize_q8_0(x, q, d)
        elif k == "q8_1":
            A.quantize_q8_1(x, *self._rows(t))
        elif k == "q8_K":
            A.quantize_q8_K(x, *self._rows(t))
        elif k == "f32":
            self.x[:t] = x
        elif k == "f16":
            round_to_f16(x.reshape(-1), self.x[:t].reshape(-1))
        elif k == "bf16":
            floats.round_to_bf16(x.reshape(-1), self.x[:t].reshape(-1))

    def matmul(self, dot: DotKernel, rows: np.ndarray, out: np.ndarray) -> None:
        """out[:T, :R] = x @ rows.T for the T rows last loaded."""
        t = self.t
        if out.shape[0] != t:
            out = out[:t]
        if self.kind in QUANT_KINDS:
            q, d, aux = self._rows(t)
            dot.matmul(rows, q, d, aux, out, self.scratch)
        else:
            dot.matmul(rows, self._rows(t)[0], out, self.scratch)


# the AMX buffer's kernels (dot/amx), for the weights llama.cpp places there at the amx level
# (their AVX2 instruction sequences where the CPU has AVX2, the portable twins elsewhere)
if HAS_AVX2:
    from . import amx_avx2 as fast_amx
else:
    fast_amx = amx
AMX_DOTS: dict[T, DotKernel] = {
    T.Q4_0: DotKernel("q8_0", fast_amx.matmul_q4_0),
    T.Q4_1: DotKernel("q8_1", fast_amx.matmul_q4_1),
    T.Q8_0: DotKernel("q8_0", fast_amx.matmul_q8_0),
    T.Q4_K: DotKernel("q8_K", fast_amx.matmul_q4_K),
    T.Q6_K: DotKernel("q8_K", fast_amx.matmul_q6_K),
    T.Q5_K: DotKernel("q8_K", amx.matmul_q5_K),
    T.IQ4_XS: DotKernel("q8_K", iquants.matmul_iq4_xs_amx),
    T.F16: DotKernel("f32", amx.matmul_f16, np.uint16),
}


# the float dots of an AVX-512 build (sixteen lanes), at the avx512 and amx levels
WIDE_DOTS: dict[T, DotKernel] = {
    T.F32: DotKernel("f32", floats.mul_mat_f32_512, np.float32),
    T.F16: DotKernel("f16", floats.mul_mat_f16_512, np.uint16),
}

# ggml_compute_forward_mul_mat_id (experts) has no tinyBLAS path: the vector dots alone
ID_DOTS = {T.F32: DotKernel("f32", floats.matmul_f32, np.float32),
           T.F16: DotKernel("f16", floats.matmul_f16, np.uint16)}
WIDE_ID_DOTS = {T.F32: DotKernel("f32", floats.matmul_f32_512, np.float32),
                T.F16: DotKernel("f16", floats.matmul_f16_512, np.uint16)}


def placed(qtype: T, n_in: int, n_out: int, level: str, op: str = "mul_mat") -> DotKernel:
    """The kernel a weight of this type and shape runs at a CPU level (kernels.cpu), as
    llama.cpp's buffer-type choice places it: the AMX buffer for a plain matmul of an AMX type
    and shape, the CPU backend's kernels otherwise. op is "mul_mat" or "mul_mat_id" (experts:
    never AMX). A tied head is a mul_mat: llama.cpp loads token_embd a second time for it
    (TENSOR_DUPLICATED), and that copy goes to the AMX buffer."""
    if level == "amx" and op == "mul_mat" and amx.eligible(qtype, n_in, n_out):
        k = AMX_DOTS.get(qtype)
        if k is not None:
            return k
    if op == "mul_mat_id":
        if cpu.wide(level) and qtype in WIDE_ID_DOTS:
            return WIDE_ID_DOTS[qtype]
        return ID_DOTS.get(qtype, DOTS[qtype])
    if cpu.wide(level) and qtype in WIDE_DOTS:
        return WIDE_DOTS[qtype]
    return DOTS[qtype]
