"""IEEE half precision inside Numba, which has no float16 type on the CPU.

ggml stores block scales, the KV cache and F16 weights as fp16 and converts with F16C
(round to nearest even). Here fp16 values travel as their uint16 bit patterns:
``F16_TO_F32`` is a 65536-entry table (ggml keeps the same table, ``ggml_table_f32_f16``)
and ``f32_to_f16_bits`` rounds to nearest even exactly as ``_cvtss_sh(x, 0)`` does.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..simd import row_dot_f16
from ..simd512 import row_dot_f16_512

F16_TO_F32 = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


@njit(inline="always", cache=True)
def f16(lo, hi):
    """The float32 value of the little-endian fp16 stored in bytes (lo, hi)."""
    return F16_TO_F32[np.int64(lo) | (np.int64(hi) << 8)]


@njit(inline="always", cache=True)
def f16_round(v):
    """float32(fp16(v)) for a scalar, by arithmetic (no bit access): round the 11-bit
    significand to nearest even, subnormals on the 2**-24 grid, overflow to inf."""
    a = abs(np.float64(v))
    if not a < np.inf:
        return np.float32(v)
    if a < 6.103515625e-05:  # 2**-14: fp16 subnormal range
        r = np.rint(a * 16777216.0) / 16777216.0
    else:
        m, e = math.frexp(a)
        r = math.ldexp(np.rint(m * 2048.0), e - 11)
        if r >= 65520.0:
            r = np.inf
    return np.float32(-r if v < 0 else r)


@njit(inline="always", cache=True)
def f32_to_f16_bits(bits, value):
    """fp16 bit pattern of a float32 given as its uint32 ``bits`` (and its ``value``), RNE."""
    sign = (bits >> 16) & 0x8000
    a = bits & 0x7FFFFFFF
    if a >= 0x7F800000:  # inf or nan (nan stays quiet nan)
        return np.uint16(sign | 0x7C00 | (0x200 if a > 0x7F800000 else 0))
    if a >= 0x477FF000:  # rounds to >= 65520: overflow to inf
        return np.uint16(sign | 0x7C00)
    if a < 0x38800000:  # below 2**-14: fp16 subnormal (or zero), a multiple of 2**-24
        m = np.int64(np.rint(abs(value) * 16777216.0))
        return np.uint16(sign | m)
    a = a + 0xFFF + ((a >> 13) & 1)  # round to nearest, ties to even, on the 13 dropped bits
    return np.uint16(sign | ((a - 0x38000000) >> 13))


@njit(cache=True)
def round_to_f16(x, out):
    """out[i] = float32(fp16(x[i])): the value ggml sees after an fp32 -> fp16 conversion."""
    bits = x.view(np.uint32)
    for i in range(x.shape[0]):
        out[i] = F16_TO_F32[f32_to_f16_bits(bits[i], x[i])]


@njit(cache=True)
def to_f16_bits(x, out):
    """out[i] = fp16 bits of x[i] (uint16), for storing into an F16 KV cache."""
    bits = x.view(np.uint32)
    for i in range(x.shape[0]):
        out[i] = f32_to_f16_bits(bits[i], x[i])


@njit(inline="always", cache=True)
def dot_f16_fast(x, xo, y, yo, n):
    """dot_f16 over x[xo:xo+n] and y[yo:yo+n] (flat offsets into C-contiguous arrays) with the
    instructions ggml uses: the first n & ~31 elements as one IR loop (simd.row_dot_f16), the
    leftovers added in double as ggml does. Same bits as dot_f16."""
    n32 = n & ~31
    v = row_dot_f16(x, xo, y, yo, n32)
    if n32 == n:
        return v
    xf, yf = x.reshape(-1), y.reshape(-1)
    s = np.float64(v)
    for i in range(n32, n):
        s += np.float64(np.float32(xf[xo + i] * F16_TO_F32[yf[yo + i]]))
    return np.float32(s)


@njit(inline="always", cache=True)
def dot_f16_512(x, xo, y, yo, n):
    """ggml_vec_dot_f16 on an AVX-512 build: the first n & ~63 elements in four accumulators of
    sixteen lanes (simd512.row_dot_f16_512), the leftovers added in double. Twin: dot_f16_ref."""
    n64 = n & ~63
    v = row_dot_f16_512(x, xo, y, yo, n64)
    if n64 == n:
        return v
    xf, yf = x.reshape(-1), y.reshape(-1)
    s = np.float64(v)
    for i in range(n64, n):
        s += np.float64(np.float32(xf[xo + i] * F16_TO_F32[yf[yo + i]]))
    return np.float32(s)
