"""F32, F16 and BF16: the float "codecs" (ggml_fp32_to_fp16_row, ggml_fp32_to_bf16_row_ref).

F16 uses ggml's software conversion (round to nearest even, exact on subnormals), BF16 ggml's
``ggml_compute_fp32_to_bf16`` (round to nearest even, NaN made quiet, subnormals kept).
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as T
from numba import njit, prange

from . import Codec, register
from ._bits import first_nonfinite_row, fp16_to_fp32, fp32_to_bf16, fp32_to_fp16

# -- F16 ---------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _quantize_f16(x, out):
    """x: float32[n, ne0] -> out: uint16[n, ne0]  (ggml_fp32_to_fp16_row)"""
    n, m = x.shape
    for r in prange(n):
        for j in range(m):
            out[r, j] = fp32_to_fp16(x[r, j])


@njit(cache=True, parallel=True)
def _dequantize_f16(q, out):
    """q: uint16[n, ne0] -> out: float32[n, ne0]  (ggml_fp16_to_fp32_row)"""
    n, m = q.shape
    for r in prange(n):
        for j in range(m):
            out[r, j] = fp16_to_fp32(q[r, j])


@njit(cache=True)
def _first_bad_f16(q):
    """q: uint16[n, ne0]; ggml_validate_row_data(F16): no Inf, no NaN. Serial (see _bits)."""
    n, m = q.shape
    for r in range(n):
        e = np.uint16(0)  # the largest exponent field of the row (a max reduction vectorises)
        for j in range(m):
            e = max(e, q[r, j] & np.uint16(0x7C00))
        if e == 0x7C00:
            return r
    return -1


# -- BF16 --------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _quantize_bf16(x, out):
    """x: float32[n, ne0] -> out: uint16[n, ne0]  (ggml_fp32_to_bf16_row_ref)"""
    n, m = x.shape
    for r in prange(n):
        for j in range(m):
            out[r, j] = fp32_to_bf16(x[r, j])


@njit(cache=True, parallel=True)
def _dequantize_bf16(q, out):
    """q: uint16[n, ne0] -> out: uint32[n, ne0] (float32 bits; ggml_bf16_to_fp32_row: a shift)"""
    n, m = q.shape
    for r in prange(n):
        for j in range(m):
            out[r, j] = np.uint32(q[r, j]) << 16


@njit(cache=True)
def _first_bad_bf16(q):
    n, m = q.shape
    for r in range(n):
        a = np.uint16(0)
        for j in range(m):
            a = max(a, q[r, j] & np.uint16(0x7FFF))
        if a >= 0x7F80:
            return r
    return -1


# -- F32 ---------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _copy_f32(x, out):
    n, m = x.shape
    for r in prange(n):
        for j in range(m):
            out[r, j] = x[r, j]


def _u16(a):
    return a.view(np.uint16)


register(Codec(
    T.F16,
    _quantize=lambda x, out: _quantize_f16(x, _u16(out)),
    _dequantize=lambda q, out: _dequantize_f16(_u16(q), out),
    _validate=lambda q: _first_bad_f16(_u16(q)),
))

register(Codec(
    T.BF16,
    _quantize=lambda x, out: _quantize_bf16(x, _u16(out)),
    _dequantize=lambda q, out: _dequantize_bf16(_u16(q), out.view(np.uint32)),
    _validate=lambda q: _first_bad_bf16(_u16(q)),
))

register(Codec(
    T.F32,
    _quantize=lambda x, out: _copy_f32(x, out.view(np.float32)),
    _dequantize=lambda q, out: _copy_f32(q.view(np.float32), out),
    _validate=lambda q: first_nonfinite_row(q.view(np.uint32)),
))
