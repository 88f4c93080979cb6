"""Scalar helpers shared by the codecs: ggml's fp16 / bf16 conversions and rounding, and checks.

Everything here works on float32 scalars with float32 arithmetic, as the C reference does
(x86-64 SSE, no fused multiply-add: ggml-quants.c is built without -march flags). In Numba
an int times a float32 is a float64, so every mixed product below converts the int first.
"""

from __future__ import annotations

import numpy as np
from numba import njit

F32 = np.float32


@njit(cache=True)
def f32_bits(f):
    return np.int64(np.float32(f).view(np.uint32))


@njit(cache=True)
def bits_f32(u):
    return np.uint32(u).view(np.float32)


@njit(cache=True)
def fp32_to_fp16(f):
    """ggml_compute_fp32_to_fp16 (ggml-impl.h, after Maratyszcza's FP16): round to nearest even;
    a NaN becomes 0x7E00 with its sign."""
    base = (abs(np.float32(f)) * np.float32(2.0**112)) * np.float32(2.0**-110)
    w = f32_bits(f)
    shl1_w = (w + w) & 0xFFFFFFFF
    sign = w & 0x80000000
    bias = shl1_w & 0xFF000000
    if bias < 0x71000000:
        bias = 0x71000000
    base = bits_f32((bias >> 1) + 0x07800000) + base
    bits = f32_bits(base)
    exp_bits = (bits >> 13) & 0x00007C00
    mantissa_bits = bits & 0x00000FFF
    nonsign = exp_bits + mantissa_bits
    if shl1_w > 0xFF000000:
        nonsign = 0x7E00
    return ((sign >> 16) | nonsign) & 0xFFFF


@njit(cache=True)
def fp16_to_fp32(h):
    """ggml_compute_fp16_to_fp32 (ggml-impl.h): exact, subnormals and NaN payloads included."""
    w = np.int64(h) << 16
    sign = w & 0x80000000
    two_w = (w + w) & 0xFFFFFFFF
    normalized = bits_f32((two_w >> 4) + (0xE0 << 23)) * np.float32(2.0**-112)
    denormalized = bits_f32((two_w >> 17) | (126 << 23)) - np.float32(0.5)
    if two_w < (1 << 27):
        return bits_f32(sign | f32_bits(denormalized))
    return bits_f32(sign | f32_bits(normalized))


@njit(cache=True)
def load_fp16(row, off):
    """The little-endian fp16 at byte `off` of a uint8 row, as float32."""
    return fp16_to_fp32(np.int64(row[off]) | (np.int64(row[off + 1]) << 8))


@njit(cache=True)
def store_fp16(row, off, f):
    h = fp32_to_fp16(f)
    row[off] = h & 0xFF
    row[off + 1] = h >> 8


@njit(cache=True)
def fp32_to_bf16(f):
    """ggml_compute_fp32_to_bf16: round to nearest even, NaN forced quiet, no flushing."""
    u = f32_bits(f)
    if (u & 0x7FFFFFFF) > 0x7F800000:
        return ((u >> 16) | 64) & 0xFFFF
    return ((u + (0x7FFF + ((u >> 16) & 1))) >> 16) & 0xFFFF


@njit(cache=True)
def nearest_int(fval):
    """ggml's nearest_int (ggml-quants.c): the 1.5*2^23 trick, round half to even, |fval| < 2^22."""
    val = np.float32(fval) + np.float32(12582912.0)
    i = f32_bits(val)
    return (i & 0x007FFFFF) - 0x00400000


@njit(cache=True)
def c_f2i(v):
    """C's float -> int conversion as x86 does it (cvttss2si): truncation toward zero, and the
    "integer indefinite" INT_MIN for a NaN or a value outside int32. ggml hits the latter when a
    block of subnormals gives a scale whose inverse is infinite."""
    if not (v > -2147483649.0 and v < 2147483648.0):
        return -2147483648
    return np.int64(v)


@njit(cache=True)
def to_i8(i):
    """(int8_t) of an int: keep the low byte, signed."""
    return ((i & 0xFF) ^ 0x80) - 0x80


@njit(cache=True)
def roundf(x):
    """C roundf: half away from zero, as a float32 (x - trunc(x) is exact below 2^23)."""
    if not (abs(x) < np.float32(8388608.0)):  # already an integer, an infinity or a NaN
        return x
    t = np.float32(np.int64(x))
    frac = x - t
    if frac >= np.float32(0.5):
        t += np.float32(1.0)
    elif frac <= np.float32(-0.5):
        t -= np.float32(1.0)
    return t


# -- checks ------------------------------------------------------------------------------------


# The checks are serial on purpose: they are memory-bound scans far cheaper than the
# conversions they guard, and every parallel region is a barrier that costs a whole time slice
# when another process holds the second core.


@njit(cache=True)
def first_nonfinite_row(u):
    """u: uint32[n, ne0] (float32 bits). First row with a NaN or Inf, -1 if none."""
    n, m = u.shape
    for r in range(n):
        e = np.uint32(0)  # the largest exponent field of the row (a max reduction vectorises)
        for j in range(m):
            e = max(e, u[r, j] & np.uint32(0x7F800000))
        if e == 0x7F800000:
            return r
    return -1


@njit(cache=True)
def first_bad_fp16_field(q, type_size, off0, off1):
    """ggml_validate_row_data for block types: the fp16 scale at `off0` (and `off1` if >= 0)
    of every block must be finite. q: uint8[n, row_bytes]. First bad row, -1 if none."""
    n, rb = q.shape
    nb = rb // type_size
    for r in range(n):
        e = np.uint8(0)  # the largest exponent field (high byte & 0x7C) of the row's scales
        for b in range(nb):
            e = max(e, q[r, b * type_size + off0 + 1] & np.uint8(0x7C))
            if off1 >= 0:
                e = max(e, q[r, b * type_size + off1 + 1] & np.uint8(0x7C))
        if e == 0x7C:
            return r
    return -1


def fp16_validator(type_size: int, off0: int, off1: int = -1):
    """A Codec's ``_validate`` for blocks of `type_size` bytes whose fp16 scale sits at `off0`
    (and a second at `off1`)."""
    return lambda q: first_bad_fp16_field(q, type_size, off0, off1)
