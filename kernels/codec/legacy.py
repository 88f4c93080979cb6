"""The legacy block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (32 weights) and Q1_0 (128) (ggml-quants.c).

Block layouts (ggml-common.h), every scale an fp16:
    Q4_0: d, qs[QK/2]                 q = nibble - 8,        w = q*d
    Q4_1: d, m, qs[QK/2]              q = nibble,            w = q*d + m
    Q5_0: d, qh[4], qs[QK/2]          q = nibble|bit<<4 - 16, w = q*d
    Q5_1: d, m, qh[4], qs[QK/2]       q = nibble|bit<<4,     w = q*d + m
    Q8_0: d, qs[QK] (int8)            w = q*d
    Q1_0: d, qs[QK/8]                 w = +d if bit j of qs is set, else -d
Weight j < QK/2 is in the low nibble of qs[j], weight j + QK/2 in its high nibble; the fifth
bit of weight j is bit j of the little-endian uint32 qh.

Without an importance matrix the quantizers are ``quantize_row_*_ref``; with one (ggml's
quant_weights, one float a column) they are ``quantize_row_q4_0_impl`` .. ``q5_1_impl``: each
block is fitted by make_qx_quants (Q4_0, Q5_0) or make_qkx3_quants (Q4_1, Q5_1) under the
weights qw * sqrt(sigma2 + x^2), sigma2 the row's mean square. Q8_0 and Q1_0 ignore them.
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T
from numba import njit, prange

from . import Codec, register
from ._bits import c_f2i, fp16_validator, load_fp16, roundf, store_fp16, to_i8
from .kquants import importance_weights, make_qkx2_quants, make_qx_quants, sum_squares

QK4_0 = GGML_QUANT_SIZES[T.Q4_0][0]
QK4_1 = GGML_QUANT_SIZES[T.Q4_1][0]
QK5_0 = GGML_QUANT_SIZES[T.Q5_0][0]
QK5_1 = GGML_QUANT_SIZES[T.Q5_1][0]
QK8_0 = GGML_QUANT_SIZES[T.Q8_0][0]
QK1_0 = GGML_QUANT_SIZES[T.Q1_0][0]
FP16 = 2  # bytes of an fp16 scale
QH = 4  # bytes of the fifth-bit word of Q5_0 / Q5_1
FLT_MAX = np.float32(np.finfo(np.float32).max)

# byte offsets inside one block, checked against the type sizes of gguf.constants
TS4_0 = GGML_QUANT_SIZES[T.Q4_0][1]
TS4_1 = GGML_QUANT_SIZES[T.Q4_1][1]
TS5_0 = GGML_QUANT_SIZES[T.Q5_0][1]
TS5_1 = GGML_QUANT_SIZES[T.Q5_1][1]
TS8_0 = GGML_QUANT_SIZES[T.Q8_0][1]
TS1_0 = GGML_QUANT_SIZES[T.Q1_0][1]
assert TS4_0 == FP16 + QK4_0 // 2
assert TS4_1 == 2 * FP16 + QK4_1 // 2
assert TS5_0 == FP16 + QH + QK5_0 // 2
assert TS5_1 == 2 * FP16 + QH + QK5_1 // 2
assert TS8_0 == FP16 + QK8_0
assert TS1_0 == FP16 + QK1_0 // 8
assert QK4_0 == QK4_1 == QK5_0 == QK5_1  # the weighted kernels serve all four


# -- Q4_0 --------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _quantize_q4_0(x, out):
    """quantize_row_q4_0_ref. x: float32[n, ne0] -> out: uint8[n, ne0/QK*TS]"""
    qk = QK4_0
    n, m = x.shape
    for r in prange(n):
        for i in range(m // qk):
            xb = x[r, i * qk:(i + 1) * qk]
            y = out[r, i * TS4_0:(i + 1) * TS4_0]
            amax = np.float32(0.0)
            vmax = np.float32(0.0)
            for j in range(qk):
                if amax < abs(xb[j]):
                    amax = abs(xb[j])
                    vmax = xb[j]
            d = vmax / np.float32(-8.0)
            idv = np.float32(1.0) / d if d != 0 else np.float32(0.0)
            store_fp16(y, 0, d)
            for j in range(qk // 2):
                x0 = xb[j] * idv
                x1 = xb[qk // 2 + j] * idv
                xi0 = min(15, to_i8(c_f2i(x0 + np.float32(8.5))))  # MIN(15, (int8_t)(x0 + 8.5f))
                xi1 = min(15, to_i8(c_f2i(x1 + np.float32(8.5))))
                y[FP16 + j] = ((xi0 & 0xFF) | (xi1 << 4)) & 0xFF


@njit(cache=True, parallel=True)
def _dequantize_q4_0(q, out):
    """dequantize_row_q4_0"""
    qk = QK4_0
    n, rb = q.shape
    for r in prange(n):
        for i in range(rb // TS4_0):
            y = q[r, i * TS4_0:(i + 1) * TS4_0]
            d = load_fp16(y, 0)
            for j in range(qk // 2):
                out[r, i * qk + j] = np.float32((y[FP16 + j] & 0x0F) - 8) * d
                out[r, i * qk + j + qk // 2] = np.float32((y[FP16 + j] >> 4) - 8) * d


# -- Q4_1 --------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _quantize_q4_1(x, out):
    """quantize_row_q4_1_ref"""
    qk = QK4_1
    n, m = x.shape
    for r in prange(n):
        for i in range(m // qk):
            xb = x[r, i * qk:(i + 1) * qk]
            y = out[r, i * TS4_1:(i + 1) * TS4_1]
            vmin = FLT_MAX
            vmax = -vmin
            for j in range(qk):
                v = xb[j]
                if v < vmin:
                    vmin = v
                if v > vmax:
                    vmax = v
            d = (vmax - vmin) / np.float32(15.0)
            idv = np.float32(1.0) / d if d != 0 else np.float32(0.0)
            store_fp16(y, 0, d)
            store_fp16(y, FP16, vmin)
            for j in range(qk // 2):
                x0 = (xb[j] - vmin) * idv
                x1 = (xb[qk // 2 + j] - vmin) * idv
                xi0 = min(15, to_i8(c_f2i(x0 + np.float32(0.5))))
                xi1 = min(15, to_i8(c_f2i(x1 + np.float32(0.5))))
                y[2 * FP16 + j] = ((xi0 & 0xFF) | (xi1 << 4)) & 0xFF


@njit(cache=True, parallel=True)
def _dequantize_q4_1(q, out):
    """dequantize_row_q4_1"""
    qk = QK4_1
    n, rb = q.shape
    for r in prange(n):
        for i in range(rb // TS4_1):
            y = q[r, i * TS4_1:(i + 1) * TS4_1]
            d = load_fp16(y, 0)
            mn = load_fp16(y, FP16)
            for j in range(qk // 2):
                out[r, i * qk + j] = np.float32(y[2 * FP16 + j] & 0x0F) * d + mn
                out[r, i * qk + j + qk // 2] = np.float32(y[2 * FP16 + j] >> 4) * d + mn


# -- Q5_0 --------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _quantize_q5_0(x, out):
    """quantize_row_q5_0_ref"""
    qk = QK5_0
    n, m = x.shape
    for r in prange(n):
        for i in range(m // qk):
            xb = x[r, i * qk:(i + 1) * qk]
            y = out[r, i * TS5_0:(i + 1) * TS5_0]
            amax = np.float32(0.0)
            vmax = np.float32(0.0)
            for j in range(qk):
                if amax < abs(xb[j]):
                    amax = abs(xb[j])
                    vmax = xb[j]
            d = vmax / np.float32(-16.0)
            idv = np.float32(1.0) / d if d != 0 else np.float32(0.0)
            store_fp16(y, 0, d)
            qh = 0
            for j in range(qk // 2):
                x0 = xb[j] * idv
                x1 = xb[qk // 2 + j] * idv
                xi0 = min(31, to_i8(c_f2i(x0 + np.float32(16.5))))
                xi1 = min(31, to_i8(c_f2i(x1 + np.float32(16.5))))
                y[FP16 + QH + j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4)
                qh |= ((xi0 & 0x10) >> 4) << j
                qh |= ((xi1 & 0x10) >> 4) << (j + qk // 2)
            for b in range(QH):
                y[FP16 + b] = (qh >> (8 * b)) & 0xFF


@njit(cache=True, parallel=True)
def _dequantize_q5_0(q, out):
    """dequantize_row_q5_0"""
    qk = QK5_0
    n, rb = q.shape
    for r in prange(n):
        for i in range(rb // TS5_0):
            y = q[r, i * TS5_0:(i + 1) * TS5_0]
            d = load_fp16(y, 0)
            qh = 0
            for b in range(QH):
                qh |= np.int64(y[FP16 + b]) << (8 * b)
            for j in range(qk // 2):
                xh0 = ((qh >> j) << 4) & 0x10
                xh1 = (qh >> (j + 12)) & 0x10
                x0 = ((y[FP16 + QH + j] & 0x0F) | xh0) - 16
                x1 = ((y[FP16 + QH + j] >> 4) | xh1) - 16
                out[r, i * qk + j] = np.float32(x0) * d
                out[r, i * qk + j + qk // 2] = np.float32(x1) * d


# -- Q5_1 --------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _quantize_q5_1(x, out):
    """quantize_row_q5_1_ref"""
    qk = QK5_1
    n, m = x.shape
    for r in prange(n):
        for i in range(m // qk):
            xb = x[r, i * qk:(i + 1) * qk]
            y = out[r, i * TS5_1:(i + 1) * TS5_1]
            vmin = FLT_MAX
            vmax = -vmin
            for j in range(qk):
                v = xb[j]
                if v < vmin:
                    vmin = v
                if v > vmax:
                    vmax = v
            d = (vmax - vmin) / np.float32(31.0)
            idv = np.float32(1.0) / d if d != 0 else np.float32(0.0)
            store_fp16(y, 0, d)
            store_fp16(y, FP16, vmin)
            qh = 0
            for j in range(qk // 2):
                x0 = (xb[j] - vmin) * idv
                x1 = (xb[qk // 2 + j] - vmin) * idv
                xi0 = c_f2i(x0 + np.float32(0.5)) & 0xFF  # (uint8_t)
                xi1 = c_f2i(x1 + np.float32(0.5)) & 0xFF
                y[2 * FP16 + QH + j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4)
                qh |= ((xi0 & 0x10) >> 4) << j
                qh |= ((xi1 & 0x10) >> 4) << (j + qk // 2)
            for b in range(QH):
                y[2 * FP16 + b] = (qh >> (8 * b)) & 0xFF


@njit(cache=True, parallel=True)
def _dequantize_q5_1(q, out):
    """dequantize_row_q5_1"""
    qk = QK5_1
    n, rb = q.shape
    for r in prange(n):
        for i in range(rb // TS5_1):
            y = q[r, i * TS5_1:(i + 1) * TS5_1]
            d = load_fp16(y, 0)
            mn = load_fp16(y, FP16)
            qh = 0
            for b in range(QH):
                qh |= np.int64(y[2 * FP16 + b]) << (8 * b)
            for j in range(qk // 2):
                xh0 = ((qh >> j) << 4) & 0x10
                xh1 = (qh >> (j + 12)) & 0x10
                x0 = (y[2 * FP16 + QH + j] & 0x0F) | xh0
                x1 = (y[2 * FP16 + QH + j] >> 4) | xh1
                out[r, i * qk + j] = np.float32(x0) * d + mn
                out[r, i * qk + j + qk // 2] = np.float32(x1) * d + mn


# -- Q4_0 .. Q5_1 with an importance matrix -----------------------------------------------------


@njit(cache=True)
def _pack_levels(L, y, off_qh, off_qs):
    """qs[j] = L[j] & 0xF | (L[j+16] & 0xF) << 4 and, for the 5-bit types (off_qh >= 0), bit 4
    of L[j] at bit j of qh."""
    half = QK4_0 // 2
    qh = 0
    for j in range(half):
        y[off_qs + j] = (L[j] & 0x0F) | ((L[j + half] & 0x0F) << 4)
        qh |= ((L[j] & 0x10) >> 4) << j
        qh |= ((L[j + half] & 0x10) >> 4) << (j + half)
    if off_qh >= 0:
        for b in range(QH):
            y[off_qh + b] = (qh >> (8 * b)) & 0xFF


@njit(cache=True, parallel=True)
def _quantize_symmetric_weighted(x, qw, out, nmax, type_size, off_qh, off_qs):
    """quantize_row_q4_0_impl (nmax 8) / quantize_row_q5_0_impl (nmax 16): d from
    make_qx_quants(QK, nmax, xb, L, 1, weight), levels 0..2*nmax-1."""
    qk = QK4_0
    n, m = x.shape
    for r in prange(n):
        L = np.zeros(qk, dtype=np.int32)
        w = np.zeros(qk, dtype=np.float32)
        sigma2 = sum_squares(x[r]) / np.float32(m)
        for i in range(m // qk):
            xb = x[r, i * qk:(i + 1) * qk]
            y = out[r, i * type_size:(i + 1) * type_size]
            importance_weights(xb, qw[i * qk:(i + 1) * qk], sigma2, w)
            store_fp16(y, 0, make_qx_quants(qk, nmax, xb, L, w))
            _pack_levels(L, y, off_qh, off_qs)


@njit(cache=True, parallel=True)
def _quantize_affine_weighted(x, qw, out, nmax, type_size, off_qh, off_qs):
    """quantize_row_q4_1_impl (nmax 15) / quantize_row_q5_1_impl (nmax 31): d and m from
    make_qkx3_quants(QK, nmax, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false)."""
    qk = QK4_1
    n, m = x.shape
    for r in prange(n):
        L = np.zeros(qk, dtype=np.int32)
        Laux = np.zeros(qk, dtype=np.int32)
        w = np.zeros(qk, dtype=np.float32)
        sigma2 = sum_squares(x[r]) / np.float32(m)
        for i in range(m // qk):
            xb = x[r, i * qk:(i + 1) * qk]
            y = out[r, i * type_size:(i + 1) * type_size]
            importance_weights(xb, qw[i * qk:(i + 1) * qk], sigma2, w)
            # make_qkx3_quants given weights is make_qkx2_quants line for line
            d, the_min = make_qkx2_quants(qk, nmax, xb, w, L, Laux, -0.9, 0.05, 36, False)
            store_fp16(y, 0, d)
            store_fp16(y, FP16, -the_min)
            _pack_levels(L, y, off_qh, off_qs)


def _quantize_q4_0_weighted(x, qw, out):
    _quantize_symmetric_weighted(x, qw, out, 8, TS4_0, -1, FP16)


def _quantize_q5_0_weighted(x, qw, out):
    _quantize_symmetric_weighted(x, qw, out, 16, TS5_0, FP16, FP16 + QH)


def _quantize_q4_1_weighted(x, qw, out):
    _quantize_affine_weighted(x, qw, out, 15, TS4_1, -1, 2 * FP16)


def _quantize_q5_1_weighted(x, qw, out):
    _quantize_affine_weighted(x, qw, out, 31, TS5_1, 2 * FP16, 2 * FP16 + QH)


# -- Q8_0 --------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _quantize_q8_0(x, out):
    """quantize_row_q8_0_ref"""
    qk = QK8_0
    n, m = x.shape
    for r in prange(n):
        for i in range(m // qk):
            xb = x[r, i * qk:(i + 1) * qk]
            y = out[r, i * TS8_0:(i + 1) * TS8_0]
            amax = np.float32(0.0)
            for j in range(qk):
                a = abs(xb[j])
                amax = amax if amax > a else a  # MAX(amax, fabsf(v))
            d = amax / np.float32(127.0)
            idv = np.float32(1.0) / d if d != 0 else np.float32(0.0)
            store_fp16(y, 0, d)
            for j in range(qk):
                y[FP16 + j] = c_f2i(roundf(xb[j] * idv)) & 0xFF  # (int8_t)roundf(x0)


@njit(cache=True, parallel=True)
def _dequantize_q8_0(q, out):
    """dequantize_row_q8_0"""
    qk = QK8_0
    n, rb = q.shape
    for r in prange(n):
        for i in range(rb // TS8_0):
            y = q[r, i * TS8_0:(i + 1) * TS8_0]
            d = load_fp16(y, 0)
            for j in range(qk):
                out[r, i * qk + j] = np.float32(np.int8(y[FP16 + j])) * d


# -- Q1_0 --------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _quantize_q1_0(x, out):
    """quantize_row_q1_0_ref: d = mean |x| of the block, then one sign bit a weight (x >= 0: set).
    ggml's quantize_q1_0 runs this with or without quant_weights."""
    qk = QK1_0
    n, m = x.shape
    for r in prange(n):
        for i in range(m // qk):
            xb = x[r, i * qk:(i + 1) * qk]
            y = out[r, i * TS1_0:(i + 1) * TS1_0]
            sum_abs = np.float32(0.0)
            for j in range(qk):
                sum_abs += abs(xb[j])
            store_fp16(y, 0, sum_abs / np.float32(qk))
            for b in range(qk // 8):
                y[FP16 + b] = 0
            for j in range(qk):
                if xb[j] >= np.float32(0.0):
                    y[FP16 + j // 8] |= 1 << (j % 8)


@njit(cache=True, parallel=True)
def _dequantize_q1_0(q, out):
    """dequantize_row_q1_0"""
    qk = QK1_0
    n, rb = q.shape
    for r in prange(n):
        for i in range(rb // TS1_0):
            y = q[r, i * TS1_0:(i + 1) * TS1_0]
            d = load_fp16(y, 0)
            for j in range(qk):
                out[r, i * qk + j] = d if (y[FP16 + j // 8] >> (j % 8)) & 1 else -d


register(Codec(T.Q4_0, _quantize_q4_0, _dequantize_q4_0, fp16_validator(TS4_0, 0), _quantize_q4_0_weighted))
register(Codec(T.Q4_1, _quantize_q4_1, _dequantize_q4_1, fp16_validator(TS4_1, 0, FP16), _quantize_q4_1_weighted))
register(Codec(T.Q5_0, _quantize_q5_0, _dequantize_q5_0, fp16_validator(TS5_0, 0), _quantize_q5_0_weighted))
register(Codec(T.Q5_1, _quantize_q5_1, _dequantize_q5_1, fp16_validator(TS5_1, 0, FP16), _quantize_q5_1_weighted))
register(Codec(T.Q8_0, _quantize_q8_0, _dequantize_q8_0, fp16_validator(TS8_0, 0)))
register(Codec(T.Q1_0, _quantize_q1_0, _dequantize_q1_0, fp16_validator(TS1_0, 0)))
