"""Dot products of the legacy block types (32 weights a block) against q8_0 / q8_1 activations.

Each kernel computes ``out[t, r] = dot(W[r], x[t])`` for weight rows ``W`` uint8[R, row_bytes]
(views into the GGUF file) and quantized activations ``q`` int8[T, n], ``d`` float32[T, n/32]
and ``aux`` (``s`` float32[T, n/32] for q8_1; unused for q8_0), parallel over rows. The arithmetic mirrors ggml's ``ggml_vec_dot_*``:
integer dot per block, scaled by ``d_w * d_x`` in float32; Q4_1/Q5_1 add ``m_w * s_x``.

Block layouts (bytes), from ggml-common.h:
  Q4_0  d:f16 | qs[16]            w = d * (nibble - 8)       nibble j: qs[j] & 15, j+16: qs[j] >> 4
  Q4_1  d:f16 m:f16 | qs[16]      w = d * nibble + m
  Q5_0  d:f16 | qh:u32 | qs[16]   w = d * ((nibble | bit << 4) - 16), bit j of qh for value j
  Q5_1  d:f16 m:f16 | qh | qs     w = d * (nibble | bit << 4) + m
  Q8_0  d:f16 | qs:i8[32]         w = d * q
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from numba import njit, prange

from ..simd import fma32, hsum8
from .fp16 import F16_TO_F32

QK = GGML_QUANT_SIZES[T.Q8_0][0]  # 32 weights a block for every legacy type
HALF = QK // 2
BS_Q4_0 = GGML_QUANT_SIZES[T.Q4_0][1]
BS_Q4_1 = GGML_QUANT_SIZES[T.Q4_1][1]
BS_Q5_0 = GGML_QUANT_SIZES[T.Q5_0][1]
BS_Q5_1 = GGML_QUANT_SIZES[T.Q5_1][1]
BS_Q8_0 = GGML_QUANT_SIZES[T.Q8_0][1]

FASTMATH = {"contract", "reassoc", "nsz", "arcp"}  # no nnan/ninf: NaN must propagate

# The float arithmetic follows ggml's AVX2 kernels exactly (see kernels/simd.py): each block's
# integer products are summed in eight lanes of four consecutive weights (maddubs + madd),
# each lane accumulates fma(d_w * d_x, lane, acc) across blocks, and the lanes are reduced
# by hsum_float_8 at the end. Integer sums are exact in any order; float order is not.


@njit(inline="always", cache=True)
def _h(w, o):
    return F16_TO_F32[np.int64(w[o]) | (np.int64(w[o + 1]) << 8)]


@njit(inline="always", cache=True)
def _u32(w, o):
    return (np.int64(w[o]) | (np.int64(w[o + 1]) << 8) | (np.int64(w[o + 2]) << 16)
            | (np.int64(w[o + 3]) << 24))


@njit(inline="always", cache=True)
def _lanes_q4(w, o, qt, qo, offset):
    """The 8 lane sums of (nibble - offset) * q for one 16-byte block of nibbles at w[o]:
    lane l covers values 4l..4l+3 (low nibbles are values 0..15, high nibbles 16..31)."""
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = 0
    for k in range(4):
        l0 += ((np.int32(w[o + k]) & 15) - offset) * qt[qo + k]
        l1 += ((np.int32(w[o + 4 + k]) & 15) - offset) * qt[qo + 4 + k]
        l2 += ((np.int32(w[o + 8 + k]) & 15) - offset) * qt[qo + 8 + k]
        l3 += ((np.int32(w[o + 12 + k]) & 15) - offset) * qt[qo + 12 + k]
        l4 += ((np.int32(w[o + k]) >> 4) - offset) * qt[qo + 16 + k]
        l5 += ((np.int32(w[o + 4 + k]) >> 4) - offset) * qt[qo + 20 + k]
        l6 += ((np.int32(w[o + 8 + k]) >> 4) - offset) * qt[qo + 24 + k]
        l7 += ((np.int32(w[o + 12 + k]) >> 4) - offset) * qt[qo + 28 + k]
    return l0, l1, l2, l3, l4, l5, l6, l7


@njit(inline="always", cache=True)
def _v5(w, o, qh, j, offset):
    """Value j (0..31) of a Q5 block: nibble | bit j of qh << 4, minus offset."""
    nib = (np.int32(w[o + j]) & 15) if j < 16 else (np.int32(w[o + j - 16]) >> 4)
    return (nib | np.int32(((qh >> j) & 1) << 4)) - offset


@njit(inline="always", cache=True)
def _lanes_q5(w, o, qh, qt, qo, offset):
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = 0
    for k in range(4):
        l0 += _v5(w, o, qh, k, offset) * qt[qo + k]
        l1 += _v5(w, o, qh, 4 + k, offset) * qt[qo + 4 + k]
        l2 += _v5(w, o, qh, 8 + k, offset) * qt[qo + 8 + k]
        l3 += _v5(w, o, qh, 12 + k, offset) * qt[qo + 12 + k]
        l4 += _v5(w, o, qh, 16 + k, offset) * qt[qo + 16 + k]
        l5 += _v5(w, o, qh, 20 + k, offset) * qt[qo + 20 + k]
        l6 += _v5(w, o, qh, 24 + k, offset) * qt[qo + 24 + k]
        l7 += _v5(w, o, qh, 28 + k, offset) * qt[qo + 28 + k]
    return l0, l1, l2, l3, l4, l5, l6, l7


@njit(inline="always", cache=True)
def _lanes_q8(w, o, qt, qo):
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = 0
    for k in range(4):
        l0 += np.int32(w[o + k]) * qt[qo + k]
        l1 += np.int32(w[o + 4 + k]) * qt[qo + 4 + k]
        l2 += np.int32(w[o + 8 + k]) * qt[qo + 8 + k]
        l3 += np.int32(w[o + 12 + k]) * qt[qo + 12 + k]
        l4 += np.int32(w[o + 16 + k]) * qt[qo + 16 + k]
        l5 += np.int32(w[o + 20 + k]) * qt[qo + 20 + k]
        l6 += np.int32(w[o + 24 + k]) * qt[qo + 24 + k]
        l7 += np.int32(w[o + 28 + k]) * qt[qo + 28 + k]
    return l0, l1, l2, l3, l4, l5, l6, l7


@njit(inline="always", cache=True)
def _acc8(dd, L, a0, a1, a2, a3, a4, a5, a6, a7):
    """acc = _mm256_fmadd_ps(d, lanes, acc)."""
    f = np.float32
    return (fma32(dd, f(L[0]), a0), fma32(dd, f(L[1]), a1), fma32(dd, f(L[2]), a2), fma32(dd, f(L[3]), a3),
            fma32(dd, f(L[4]), a4), fma32(dd, f(L[5]), a5), fma32(dd, f(L[6]), a6), fma32(dd, f(L[7]), a7))


@njit(parallel=True, cache=True)
def matmul_q4_0(W, q, d, aux, out):
    """ggml_vec_dot_q4_0_q8_0 (AVX2)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q4_0
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q4_0
                L = _lanes_q4(w, o + 2, qt, b * QK, 8)
                a0, a1, a2, a3, a4, a5, a6, a7 = _acc8(_h(w, o) * d[t, b], L, a0, a1, a2, a3, a4, a5, a6, a7)
            out[t, r] = hsum8(a0, a1, a2, a3, a4, a5, a6, a7)


@njit(parallel=True, cache=True)
def matmul_q4_1(W, q, d, s, out):
    """ggml_vec_dot_q4_1_q8_1 (AVX2): lanes as above, plus summs += m_w * s_x (fused)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q4_1
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
            summs = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q4_1
                summs = fma32(_h(w, o + 2), s[t, b], summs)
                L = _lanes_q4(w, o + 4, qt, b * QK, 0)
                a0, a1, a2, a3, a4, a5, a6, a7 = _acc8(_h(w, o) * d[t, b], L, a0, a1, a2, a3, a4, a5, a6, a7)
            out[t, r] = hsum8(a0, a1, a2, a3, a4, a5, a6, a7) + summs


@njit(parallel=True, cache=True)
def matmul_q5_0(W, q, d, aux, out):
    """ggml_vec_dot_q5_0_q8_0 (AVX2)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q5_0
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q5_0
                L = _lanes_q5(w, o + 6, _u32(w, o + 2), qt, b * QK, 16)
                a0, a1, a2, a3, a4, a5, a6, a7 = _acc8(_h(w, o) * d[t, b], L, a0, a1, a2, a3, a4, a5, a6, a7)
            out[t, r] = hsum8(a0, a1, a2, a3, a4, a5, a6, a7)


@njit(parallel=True, cache=True)
def matmul_q5_1(W, q, d, s, out):
    """ggml_vec_dot_q5_1_q8_1 (AVX2)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q5_1
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
            summs = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q5_1
                summs = fma32(_h(w, o + 2), s[t, b], summs)
                L = _lanes_q5(w, o + 8, _u32(w, o + 4), qt, b * QK, 0)
                a0, a1, a2, a3, a4, a5, a6, a7 = _acc8(_h(w, o) * d[t, b], L, a0, a1, a2, a3, a4, a5, a6, a7)
            out[t, r] = hsum8(a0, a1, a2, a3, a4, a5, a6, a7) + summs


@njit(parallel=True, cache=True)
def matmul_q8_0(W, q, d, aux, out):
    """ggml_vec_dot_q8_0_q8_0 (AVX2)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q8_0
    for r in prange(R):
        w = W[r]
        wq = w.view(np.int8)
        for t in range(q.shape[0]):
            qt = q[t]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q8_0
                L = _lanes_q8(wq, o + 2, qt, b * QK)
                a0, a1, a2, a3, a4, a5, a6, a7 = _acc8(_h(w, o) * d[t, b], L, a0, a1, a2, a3, a4, a5, a6, a7)
            out[t, r] = hsum8(a0, a1, a2, a3, a4, a5, a6, a7)
