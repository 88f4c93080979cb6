"""IQ4_NL and IQ4_XS: 4-bit indices into the non-linear table kvalues_iq4nl (ggml-quants.c).

Both run ggml's ``quantize_row_iq4_nl_impl`` with ``ntry = 7``, which is what
``ggml_quantize_chunk`` (and so llama-quantize) calls with or without an importance matrix;
without one the weight of x is x^2, with one it is qw * sqrt(sigma2 + x^2), sigma2 being twice
the super-block's mean square.

Per block of 32, the scale starts at max/127 (max: the value of largest magnitude, so the
-127 end of the table lands on it), then 15 candidate scales (itry + kvalues[0]) / max are
tried; the one with the largest sumqx^2/sumq2 wins, d = sumqx/sumq2.

Block layouts (ggml-common.h):

    IQ4_NL: d (fp16) | qs[16]                      one block of 32: d = the block's scale
    IQ4_XS: d (fp16) | scales_h (u16) | scales_l[4] | qs[128]
            eight blocks of 32 with 6-bit scales l - 32 of d = -max_scale/32:
            the low 4 bits of l in a nibble of scales_l, the top 2 at bits 2*ib of scales_h.

In both, qs[16*i + j] holds weight j of block i in its low nibble and weight j + 16 in its high.
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, QK_K
from gguf import GGMLQuantizationType as T
from numba import njit, prange

from ..grids import KVALUES_IQ4NL
from . import Codec, register
from ._bits import fp16_validator, load_fp16, nearest_int, store_fp16
from .kquants import GROUP_MAX_EPS

QK4_NL, TS_NL = GGML_QUANT_SIZES[T.IQ4_NL]
TS_XS = GGML_QUANT_SIZES[T.IQ4_XS][1]
NTRY = 7
NO_WEIGHTS = np.zeros(0, np.float32)


def best_index_int8_slow(values, x):
    """best_index_int8 (ggml-quants.c) as written there: bisect to the bracketing pair, then the
    nearer of the two (the upper on a tie); the slow twin of `best_index_int8`."""
    n = len(values)
    if x <= values[0]:
        return 0
    if x >= values[n - 1]:
        return n - 1
    ml, mu = 0, n - 1
    while mu - ml > 1:
        mav = (ml + mu) // 2
        if x < values[mav]:
            mu = mav
        else:
            ml = mav
    return mu - 1 if np.float32(x - np.float32(values[mu - 1])) < np.float32(np.float32(values[mu]) - x) else mu


def _upper_index(values) -> np.ndarray:
    """For every integer k in [-128, 127]: the first i with values[i] > k. Because the table is
    integers, values[i] > x exactly when values[i] > floor(x), so this is where the bisection of
    best_index_int8 ends."""
    k = np.arange(-128, 128)
    return np.searchsorted(values.astype(np.int64), k, side="right").astype(np.int64)


UPPER_IQ4NL = _upper_index(KVALUES_IQ4NL)


@njit(inline="always", cache=True)
def best_index_int8(values, upper, x):
    """best_index_int8 without the bisection: the bracketing pair from `upper` (floor(x) indexes
    it), then the same float32 comparison."""
    n = values.shape[0]
    if x <= values[0]:
        return 0
    if x >= values[n - 1]:
        return n - 1
    mu = upper[np.int64(np.floor(x)) + 128]
    return mu - 1 if x - np.float32(values[mu - 1]) < np.float32(values[mu]) - x else mu


@njit(cache=True)
def _superblock(x, qw, values, upper, row, o, sbs, scales, weight, L):
    """quantize_row_iq4_nl_impl(sbs, 32, ...) for the `sbs` weights x (one super-block) into
    row[o:]: an IQ4_NL block when sbs == 32, an IQ4_XS block when sbs == QK_K. `qw` holds the
    super-block's importance weights or nothing."""
    f = np.float32
    nb = sbs // 32
    sigma2 = f(0.0)
    for j in range(sbs):
        sigma2 += x[j] * x[j]
    sigma2 *= f(2.0) / f(sbs)
    q_off = o + (2 if nb == 1 else 8)
    for j in range(sbs // 2):
        row[q_off + j] = 0
    store_fp16(row, o, f(0.0))
    max_scale, amax_scale = f(0.0), f(0.0)
    v0 = f(values[0])
    for ib in range(nb):
        xo = ib * 32
        for j in range(32):
            xj = x[xo + j]
            if qw.shape[0]:
                weight[j] = qw[xo + j] * np.sqrt(sigma2 + xj * xj)
            else:
                weight[j] = xj * xj
        amax, mx = f(0.0), f(0.0)
        for j in range(32):
            ax = abs(x[xo + j])
            if ax > amax:
                amax, mx = ax, x[xo + j]
        if amax < GROUP_MAX_EPS:
            scales[ib] = 0
            continue
        d = -mx / v0  # ntry > 0
        inv = f(1.0) / d
        sumqx, sumq2 = f(0.0), f(0.0)
        for j in range(32):
            l = best_index_int8(values, upper, inv * x[xo + j])
            L[xo + j] = l
            q = f(values[l])
            w = weight[j]
            sumqx += w * q * x[xo + j]
            sumq2 += w * q * q
        d = sumqx / sumq2 if sumq2 > 0 else f(0.0)
        best = d * sumqx
        for itry in range(-NTRY, NTRY + 1):
            inv = f(itry + values[0]) / mx
            sumqx, sumq2 = f(0.0), f(0.0)
            for j in range(32):
                q = f(values[best_index_int8(values, upper, inv * x[xo + j])])
                w = weight[j]
                sumqx += w * q * x[xo + j]
                sumq2 += w * q * q
            if sumq2 > 0 and sumqx * sumqx > best * sumq2:
                d = sumqx / sumq2
                best = d * sumqx
        scales[ib] = d
        if abs(d) > amax_scale:
            amax_scale, max_scale = abs(d), d
    if nb > 1:
        d = -max_scale / f(32.0)
        store_fp16(row, o, d)
        inv = f(1.0) / d if d != 0 else f(0.0)
        scales_h = 0
        for ib in range(nb):
            l = max(-32, min(31, nearest_int(inv * scales[ib])))
            dl = d * f(l)
            idl = f(1.0) / dl if dl != 0 else f(0.0)
            for j in range(32):
                L[ib * 32 + j] = best_index_int8(values, upper, idl * x[ib * 32 + j])
            l += 32
            if ib % 2 == 0:
                row[o + 4 + ib // 2] = l & 0xF
            else:
                row[o + 4 + ib // 2] |= (l & 0xF) << 4
            scales_h |= (l >> 4) << (2 * (ib % 8))
        row[o + 2] = scales_h & 0xFF
        row[o + 3] = scales_h >> 8
    else:
        store_fp16(row, o, scales[0])
        inv = f(1.0) / scales[0] if scales[0] != 0 else f(0.0)
        for j in range(sbs):
            L[j] = best_index_int8(values, upper, inv * x[j])
    for i in range(sbs // 32):
        for j in range(16):
            row[q_off + 16 * i + j] = L[32 * i + j] | (L[32 * i + 16 + j] << 4)


@njit(cache=True, parallel=True)
def _quantize_rows(x, qw, out, sbs, type_size, values, upper):
    """quantize_iq4_nl / quantize_iq4_xs: every super-block of every row."""
    n, ne0 = x.shape
    for r in prange(n):
        scales = np.empty(sbs // 32, np.float32)
        weight = np.empty(32, np.float32)
        L = np.empty(sbs, np.int64)
        for b in range(ne0 // sbs):
            w = qw[b * sbs:(b + 1) * sbs] if qw.shape[0] else qw
            _superblock(x[r, b * sbs:(b + 1) * sbs], w, values, upper, out[r], b * type_size, sbs, scales, weight, L)


@njit(cache=True, parallel=True)
def _dequantize_rows(q, out, sbs, type_size, values):
    """dequantize_row_iq4_nl / dequantize_row_iq4_xs."""
    n, rb = q.shape
    nb = sbs // 32
    q_off = 2 if nb == 1 else 8
    for r in prange(n):
        row = q[r]
        for b in range(rb // type_size):
            o, xo = b * type_size, b * sbs
            d = load_fp16(row, o)
            scales_h = np.int64(row[o + 2]) | (np.int64(row[o + 3]) << 8)
            for ib in range(nb):
                if nb == 1:
                    dl = d
                else:
                    ls = ((row[o + 4 + ib // 2] >> (4 * (ib % 2))) & 0xF) | (((scales_h >> (2 * ib)) & 3) << 4)
                    dl = d * np.float32(np.int64(ls) - 32)
                for j in range(16):
                    v = row[o + q_off + 16 * ib + j]
                    out[r, xo + 32 * ib + j] = dl * np.float32(values[v & 15])
                    out[r, xo + 32 * ib + 16 + j] = dl * np.float32(values[v >> 4])


def _codec(qt: T, sbs: int, type_size: int) -> Codec:
    return Codec(
        qt,
        lambda x, out: _quantize_rows(x, NO_WEIGHTS, out, sbs, type_size, KVALUES_IQ4NL, UPPER_IQ4NL),
        lambda q, out: _dequantize_rows(q, out, sbs, type_size, KVALUES_IQ4NL),
        fp16_validator(type_size, 0),
        _quantize_weighted=lambda x, w, out: _quantize_rows(x, w, out, sbs, type_size, KVALUES_IQ4NL, UPPER_IQ4NL))


register(_codec(T.IQ4_NL, QK4_NL, TS_NL))
register(_codec(T.IQ4_XS, QK_K, TS_XS))
