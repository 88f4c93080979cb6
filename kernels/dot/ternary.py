"""TQ1_0 and TQ2_0 (ternary weights, -1 / 0 / +1 times a fp16 scale) against q8_K activations.

ggml_vec_dot_tq1_0_q8_K and ggml_vec_dot_tq2_0_q8_K (arch/x86/quants.c, AVX2) multiply the
unsigned trits (0, 1, 2) with ``maddubs``, sum in 16-bit lanes, subtract the activations' bsums
(the -1 of every trit) and widen pairs to 32 bits: lane l (0..7) of a super-block is the exact
integer sum of trit * q8 over elements 4l..4l+3 of each 32-value chunk, minus bsums 2l and
2l+1. Then sumf[l] = fma(lane, d_x * d_w, sumf[l]) per super-block (GCC contracts the
mul + add) and hsum_float_8.

Block layouts (ggml-common.h):
  TQ1_0  qs[48]: bytes 0..31 hold five trits each (elements k + 32m, m = 0..4), bytes 32..47
         five each (elements 160 + k + 16m); qh[4]: four each (elements 240 + b + 4m); d:f16.
         Trit m of a byte v is the top two bits of (v * 3^m mod 256) * 3 / 256.
  TQ2_0  qs[64]: two bits an element, element 128h + 32s + m in bits 2s of byte 32h + m; d:f16.
"""

from __future__ import annotations

import numba
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from numba import njit, prange

from ..simd import fma32, hsum8
from .legacy import _h, _lane_count

QK_K = GGML_QUANT_SIZES[T.Q8_K][0]
BS_TQ1_0 = GGML_QUANT_SIZES[T.TQ1_0][1]
BS_TQ2_0 = GGML_QUANT_SIZES[T.TQ2_0][1]
NSUB16 = QK_K // 16
POW3 = np.array([1, 3, 9, 27, 81], np.int32)


@njit(inline="always", cache=True)
def trit(v, m):
    """Trit m (0, 1, 2) of a packed byte v, by the AVX2 kernel's steps: v * 3^m mod 256, then a
    saturating -1 and two rounding averages (about * 3 / 4), then the top two bits."""
    x = (np.int32(v) * POW3[m]) & 255
    x = x - 1 if x > 0 else 0
    a = (x + 1) >> 1
    return ((x + a + 1) >> 1) >> 6


@njit(inline="always", cache=True)
def _tq1_value(w, o, e):
    if e < 160:
        return trit(w[o + (e & 31)], e >> 5)
    if e < 240:
        k = e - 160
        return trit(w[o + 32 + (k & 15)], k >> 4)
    k = e - 240
    return trit(w[o + 48 + (k & 3)], k >> 2)


@njit(inline="always", cache=True)
def _lane_tq1_0(w, o, qt, x0, l):
    s = np.int32(0)
    for c in range(8):
        for k in range(4):
            e = 32 * c + 4 * l + k
            s += _tq1_value(w, o, e) * np.int32(qt[x0 + e])
    return s


@njit(inline="always", cache=True)
def _lane_tq2_0(w, o, qt, x0, l):
    s = np.int32(0)
    for c in range(8):
        h = c >> 2
        sh = 2 * (c & 3)
        for k in range(4):
            m = 4 * l + k
            s += ((np.int32(w[o + 32 * h + m]) >> sh) & 3) * np.int32(qt[x0 + 32 * c + m])
    return s


@njit(inline="always", cache=True)
def _ternary_dot(lane_fn, w, bsize, d_at, qt, dt, bst, nb, nl, acc):
    for l in range(nl):
        acc[l] = 0.0
    for b in range(nb):
        o = b * bsize
        dd = dt[b] * _h(w, o + d_at)
        for l in range(nl):
            lane = lane_fn(w, o, qt, b * QK_K, l) - bst[b * NSUB16 + 2 * l] - bst[b * NSUB16 + 2 * l + 1]
            acc[l] = fma32(np.float32(lane), dd, acc[l])
    return hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])


@njit(parallel=True, cache=True)
def matmul_tq1_0(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_tq1_0_q8_K (AVX2)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_TQ1_0
    nl = _lane_count(d, nb)
    for r in prange(R):
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            out[t, r] = _ternary_dot(_lane_tq1_0, W[r], BS_TQ1_0, BS_TQ1_0 - 2, q[t], d[t], bsums[t], nb, nl, acc)


@njit(parallel=True, cache=True)
def matmul_tq2_0(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_tq2_0_q8_K (AVX2)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_TQ2_0
    nl = _lane_count(d, nb)
    for r in prange(R):
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            out[t, r] = _ternary_dot(_lane_tq2_0, W[r], BS_TQ2_0, BS_TQ2_0 - 2, q[t], d[t], bsums[t], nb, nl, acc)
