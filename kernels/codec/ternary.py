"""TQ1_0 and TQ2_0: ternary weights {-1, 0, 1} times one fp16 scale per 256 (ggml-quants.c).

The scale is the block's largest magnitude and each weight is lroundf(x / amax), so both
quantizers are ggml's ``quantize_row_tq*_ref``; ``quantize_tq1_0`` / ``quantize_tq2_0`` ignore
quant_weights, and so do these codecs.

Block layouts (ggml-common.h):

    TQ1_0: qs[48] | qh[4] | d (fp16)   five trits a byte in qs (weights m + 32n of each
           160-weight stretch, then m + 16n of the next 80), four in qh (weights j + 4m of
           the last 16); a byte holds its trits as the fixed-point fraction
           ceil(t * 256 / 243) of the base-3 number t they spell, so the n-th trit is
           ((q * 3^n) mod 256) * 3 >> 8.
    TQ2_0: qs[64] | d (fp16)           four 2-bit codes t + 1 a byte: weight m + 32n of each
           128-weight half at bits 2n of byte m.
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, QK_K
from gguf import GGMLQuantizationType as T
from numba import njit, prange

from . import Codec, register
from ._bits import fp16_validator, load_fp16, roundf, store_fp16

TS1 = GGML_QUANT_SIZES[T.TQ1_0][1]
TS2 = GGML_QUANT_SIZES[T.TQ2_0][1]
QS1, QH1 = 48, 4  # (QK_K - 4 * QK_K / 64) / 5 and QK_K / 64
assert QS1 + QH1 + 2 == TS1 and QK_K // 4 + 2 == TS2


@njit(inline="always", cache=True)
def _scale(x, xo):
    """amax of the block and its inverse (0 for an all-zero block)."""
    amax = np.float32(0.0)
    for j in range(QK_K):
        amax = max(amax, abs(x[xo + j]))
    return amax, (np.float32(1.0) / amax if amax != 0 else np.float32(0.0))


@njit(inline="always", cache=True)
def _trit(v, inv):
    """lroundf(v * id) + 1: 0, 1 or 2."""
    return np.int64(roundf(v * inv)) + 1


@njit(cache=True, parallel=True)
def _quantize_tq1_0(x, out):
    """quantize_row_tq1_0_ref."""
    n, ne0 = x.shape
    for r in prange(n):
        row = out[r]
        for b in range(ne0 // QK_K):
            xo, o = b * QK_K, b * TS1
            d, inv = _scale(x[r], xo)
            store_fp16(row, o + QS1 + QH1, d)
            for j, width in ((0, 32), (32, 16)):  # 5 trits a byte along 32, then 16 bytes
                for m in range(width):
                    q = 0
                    for k in range(5):
                        q = q * 3 + _trit(x[r, xo + m + k * width], inv)
                    row[o + j + m] = (q * 256 + 242) // 243
                xo += 5 * width
            for j in range(QH1):  # 4 trits a byte, the first in the most significant place
                q = 0
                for m in range(4):
                    q = q * 3 + _trit(x[r, xo + j + m * QH1], inv)
                row[o + QS1 + j] = (q * 3 * 256 + 242) // 243


@njit(cache=True, parallel=True)
def _dequantize_tq1_0(q, out):
    """dequantize_row_tq1_0."""
    n, rb = q.shape
    for r in prange(n):
        row = q[r]
        for b in range(rb // TS1):
            o, y = b * TS1, b * QK_K
            d = load_fp16(row, o + QS1 + QH1)
            for j, width in ((0, 32), (32, 16)):
                p = 1
                for k in range(5):
                    for m in range(width):
                        t = ((np.int64(row[o + j + m]) * p) & 0xFF) * 3 >> 8
                        out[r, y] = np.float32(t - 1) * d
                        y += 1
                    p *= 3
            p = 1
            for k in range(4):
                for j in range(QH1):
                    t = ((np.int64(row[o + QS1 + j]) * p) & 0xFF) * 3 >> 8
                    out[r, y] = np.float32(t - 1) * d
                    y += 1
                p *= 3


@njit(cache=True, parallel=True)
def _quantize_tq2_0(x, out):
    """quantize_row_tq2_0_ref."""
    n, ne0 = x.shape
    for r in prange(n):
        row = out[r]
        for b in range(ne0 // QK_K):
            xo, o = b * QK_K, b * TS2
            d, inv = _scale(x[r], xo)
            store_fp16(row, o + QK_K // 4, d)
            for j in range(0, QK_K // 4, 32):
                for m in range(32):
                    q = 0
                    for k in range(4):
                        q += (_trit(x[r, xo + m + k * 32], inv) & 3) << (2 * k)
                    row[o + j + m] = q
                xo += 128


@njit(cache=True, parallel=True)
def _dequantize_tq2_0(q, out):
    """dequantize_row_tq2_0."""
    n, rb = q.shape
    for r in prange(n):
        row = q[r]
        for b in range(rb // TS2):
            o, y = b * TS2, b * QK_K
            d = load_fp16(row, o + QK_K // 4)
            for j in range(0, QK_K // 4, 32):
                for k in range(4):
                    for m in range(32):
                        out[r, y] = np.float32(((np.int64(row[o + j + m]) >> (2 * k)) & 3) - 1) * d
                        y += 1


register(Codec(T.TQ1_0, _quantize_tq1_0, _dequantize_tq1_0, fp16_validator(TS1, QS1 + QH1)))
register(Codec(T.TQ2_0, _quantize_tq2_0, _dequantize_tq2_0, fp16_validator(TS2, QK_K // 4)))
