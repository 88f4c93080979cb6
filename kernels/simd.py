"""Scalar building blocks for reproducing ggml's AVX2 arithmetic bit for bit inside Numba.

llama.cpp's CPU kernels accumulate in eight float32 lanes with fused multiply-adds and reduce
the lanes in a fixed order at the end (``hsum_float_8``). The model is sensitive to the last
bit: an activation that lands on the other side of a q8 rounding boundary changes the next
layer, so we mirror that order instead of letting LLVM reassociate. These intrinsics give
Numba the exact operations it lacks: a single-rounding ``fma`` and float/int bit casts.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils  # noqa: F401 -- keeps numba.extending importable in old numbas
from numba.extending import intrinsic


@intrinsic
def fma32(typingctx, a, b, c):
    """float32 a * b + c with one rounding (llvm.fma.f32, vfmadd on x86)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f], fnty=ir.FunctionType(f, [f, f, f]))
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def f32_as_i32(typingctx, x):
    """The bit pattern of a float32 as int32."""
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def i32_as_f32(typingctx, x):
    """The float32 whose bit pattern is the int32 x."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@njit(inline="always", cache=True)
def hsum8(a0, a1, a2, a3, a4, a5, a6, a7):
    """hsum_float_8: (lanes 0..3 + lanes 4..7), then pairs (0+2, 1+3), then the two."""
    r0 = a4 + a0
    r1 = a5 + a1
    r2 = a6 + a2
    r3 = a7 + a3
    return (r0 + r2) + (r1 + r3)


@njit(inline="always", cache=True)
def reduce8_hadd(a0, a1, a2, a3, a4, a5, a6, a7):
    """The tail of GGML_F32x8_REDUCE: low + high halves, then two _mm_hadd_ps."""
    t0 = a0 + a4
    t1 = a1 + a5
    t2 = a2 + a6
    t3 = a3 + a7
    return (t0 + t1) + (t2 + t3)


def _hexf(s: str) -> np.float32:
    return np.float32(float.fromhex(s))


# ggml_v_expf's constants, exactly as written in ggml-cpu/vec.h
EXP_R = _hexf("0x1.8p23")
EXP_LOG2E = _hexf("0x1.715476p+0")
EXP_LN2_HI = _hexf("0x1.62e4p-1")
EXP_LN2_LO = _hexf("0x1.7f7d1cp-20")
EXP_P0 = _hexf("0x1.0e4020p-7")
EXP_P1 = _hexf("0x1.573e2ep-5")
EXP_P2 = _hexf("0x1.555e66p-3")
EXP_P3 = _hexf("0x1.fffdb6p-2")
EXP_P4 = _hexf("0x1.ffffecp-1")
ONE_BITS = np.int32(np.float32(1.0).view(np.int32))
SLOW_G = np.int32(np.uint32(0x82000000).view(np.int32))


@njit(inline="always", cache=True)
def v_expf(x):
    """One lane of ggml_v_expf (AVX2 + FMA), ggml's polynomial exp used by softmax and SiLU.

    Valid when every lane of the vector takes the fast path (|n| <= 126), or for any lane
    when the vector took the slow path: the slow path gives the fast path's value whenever
    |n| <= 126, so a lane's result never depends on its neighbours."""
    z = fma32(x, EXP_LOG2E, EXP_R)
    n = z - EXP_R
    b = fma32(-n, EXP_LN2_LO, fma32(-n, EXP_LN2_HI, x))  # fnmadd(a, b, c) = c - a * b, fused
    e = np.int32(f32_as_i32(z) << 23)
    k = i32_as_f32(np.int32(e + ONE_BITS))
    u = b * b
    j = fma32(fma32(fma32(EXP_P0, b, EXP_P1), u, fma32(EXP_P2, b, EXP_P3)), u, EXP_P4 * b)
    an = abs(n)
    if not an > np.float32(126.0):
        return fma32(j, k, k)
    g = SLOW_G if n <= 0 else np.int32(0)
    s1 = i32_as_f32(np.int32(g + np.int32(0x7F000000)))
    s2 = i32_as_f32(np.int32(e - g))
    if an > np.float32(192.0):
        return s1 * s1
    return fma32(s2, j, s2) * s1


