"""Dot products of the k-quants (256 weights a super-block) against q8_K activations.

Same contract as ``legacy.py``: ``out[t, r] = dot(W[r], x[t])`` with ``q`` int8[T, n],
``d`` float32[T, n/256], ``bsums`` int32[T, n/16]. The arithmetic follows
``ggml_vec_dot_q*_K_q8_K``: exact integer sums per sub-block times the integer scale, then
float32 ``d_w * d_x`` per super-block, minus ``dmin_w * d_x * sum(min * bsum)`` where the type
has minimums.

Super-block layouts (bytes), from ggml-common.h:
  Q2_K  scales[16] (4-bit scale | 4-bit min) | qs[64] (2-bit) | d:f16 | dmin:f16
  Q3_K  hmask[32] | qs[64] (2-bit) | scales[12] (16 x 6-bit, signed by -32) | d:f16
  Q4_K  d:f16 | dmin:f16 | scales[12] (8 x 6-bit scale, 8 x 6-bit min) | qs[128] (4-bit)
  Q5_K  d:f16 | dmin:f16 | scales[12] | qh[32] | qs[128]
  Q6_K  ql[128] | qh[64] | scales:i8[16] | d:f16
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from numba import njit, prange

from .fp16 import F16_TO_F32
from .legacy import FASTMATH

QK_K = GGML_QUANT_SIZES[T.Q8_K][0]  # 256
BS_Q2_K = GGML_QUANT_SIZES[T.Q2_K][1]
BS_Q3_K = GGML_QUANT_SIZES[T.Q3_K][1]
BS_Q4_K = GGML_QUANT_SIZES[T.Q4_K][1]
BS_Q5_K = GGML_QUANT_SIZES[T.Q5_K][1]
BS_Q6_K = GGML_QUANT_SIZES[T.Q6_K][1]
NSUB16 = QK_K // 16  # bsums per super-block


@njit(inline="always", cache=True)
def _h(w, o):
    return F16_TO_F32[np.int64(w[o]) | (np.int64(w[o + 1]) << 8)]


@njit(inline="always", cache=True)
def scale_min_k4(j, w, o):
    """get_scale_min_k4: the j-th 6-bit (scale, min) pair of Q4_K/Q5_K's 12 scale bytes at o."""
    if j < 4:
        sc = np.int32(w[o + j]) & 63
        m = np.int32(w[o + j + 4]) & 63
    else:
        sc = (np.int32(w[o + j + 4]) & 0xF) | ((np.int32(w[o + j - 4]) >> 6) << 4)
        m = (np.int32(w[o + j + 4]) >> 4) | ((np.int32(w[o + j]) >> 6) << 4)
    return sc, m


@njit(inline="always", cache=True)
def q3k_scale(j, w, o):
    """The j-th signed 6-bit scale of Q3_K (12 bytes at o): low 4 bits from bytes 0..7,
    high 2 bits from bytes 8..11, minus 32."""
    if j < 8:
        lo = np.int32(w[o + j]) & 0xF
    else:
        lo = np.int32(w[o + j - 8]) >> 4
    hi = (np.int32(w[o + 8 + (j & 3)]) >> (2 * (j >> 2))) & 3
    return (lo | (hi << 4)) - 32


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_q2_K(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_q2_K_q8_K."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q2_K
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            acc = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q2_K
                dy = d[t, b]
                summ = np.int32(0)
                for k in range(NSUB16):
                    summ += np.int32(bsums[t, b * NSUB16 + k]) * (np.int32(w[o + k]) >> 4)
                isum = np.int32(0)
                for n in range(2):  # two halves of 128 values
                    for j in range(4):  # 2-bit planes
                        for half in range(2):  # 16 values share a scale
                            sc = np.int32(w[o + 8 * n + 2 * j + half]) & 0xF
                            part = np.int32(0)
                            for l in range(16 * half, 16 * half + 16):
                                v = (np.int32(w[o + 16 + 32 * n + l]) >> (2 * j)) & 3
                                part += v * np.int32(qt[b * QK_K + 128 * n + 32 * j + l])
                            isum += sc * part
                acc += (dy * _h(w, o + 80)) * np.float32(isum) - (dy * _h(w, o + 82)) * np.float32(summ)
            out[t, r] = acc


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_q3_K(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_q3_K_q8_K."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q3_K
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            acc = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q3_K
                isum = np.int32(0)
                for n in range(2):
                    for j in range(4):
                        m = 1 << (4 * n + j)  # hmask bit for this plane
                        for half in range(2):
                            sc = q3k_scale(8 * n + 2 * j + half, w, o + 96)
                            part = np.int32(0)
                            for l in range(16 * half, 16 * half + 16):
                                v = (np.int32(w[o + 32 + 32 * n + l]) >> (2 * j)) & 3
                                if (np.int32(w[o + l]) & m) == 0:
                                    v -= 4
                                part += v * np.int32(qt[b * QK_K + 128 * n + 32 * j + l])
                            isum += sc * part
                acc += (d[t, b] * _h(w, o + 108)) * np.float32(isum)
            out[t, r] = acc


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_q4_K(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_q4_K_q8_K."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q4_K
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            acc = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q4_K
                isum = np.int32(0)
                summ = np.int32(0)
                for j in range(4):  # 64 values: 32 low nibbles, 32 high nibbles
                    sc1, m1 = scale_min_k4(2 * j, w, o + 4)
                    sc2, m2 = scale_min_k4(2 * j + 1, w, o + 4)
                    p1 = np.int32(0)
                    p2 = np.int32(0)
                    for l in range(32):
                        v = np.int32(w[o + 16 + 32 * j + l])
                        p1 += (v & 15) * np.int32(qt[b * QK_K + 64 * j + l])
                        p2 += (v >> 4) * np.int32(qt[b * QK_K + 64 * j + 32 + l])
                    isum += sc1 * p1 + sc2 * p2
                    bs = b * NSUB16 + 4 * j
                    summ += m1 * (bsums[t, bs] + bsums[t, bs + 1]) + m2 * (bsums[t, bs + 2] + bsums[t, bs + 3])
                dy = d[t, b]
                acc += (_h(w, o) * dy) * np.float32(isum) - (_h(w, o + 2) * dy) * np.float32(summ)
            out[t, r] = acc


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_q5_K(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_q5_K_q8_K."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q5_K
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            acc = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q5_K
                isum = np.int32(0)
                summ = np.int32(0)
                for j in range(4):
                    sc1, m1 = scale_min_k4(2 * j, w, o + 4)
                    sc2, m2 = scale_min_k4(2 * j + 1, w, o + 4)
                    p1 = np.int32(0)
                    p2 = np.int32(0)
                    for l in range(32):
                        v = np.int32(w[o + 48 + 32 * j + l])
                        h = np.int32(w[o + 16 + l])
                        p1 += ((v & 15) | (((h >> (2 * j)) & 1) << 4)) * np.int32(qt[b * QK_K + 64 * j + l])
                        p2 += ((v >> 4) | (((h >> (2 * j + 1)) & 1) << 4)) * np.int32(qt[b * QK_K + 64 * j + 32 + l])
                    isum += sc1 * p1 + sc2 * p2
                    bs = b * NSUB16 + 4 * j
                    summ += m1 * (bsums[t, bs] + bsums[t, bs + 1]) + m2 * (bsums[t, bs + 2] + bsums[t, bs + 3])
                dy = d[t, b]
                acc += (_h(w, o) * dy) * np.float32(isum) - (_h(w, o + 2) * dy) * np.float32(summ)
            out[t, r] = acc


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_q6_K(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_q6_K_q8_K."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q6_K
    for r in prange(R):
        w = W[r]
        ws = w.view(np.int8)
        for t in range(q.shape[0]):
            qt = q[t]
            acc = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q6_K
                isum = np.int32(0)
                for n in range(2):  # two halves of 128 values
                    ql = o + 64 * n
                    qh = o + 128 + 32 * n
                    for k in range(4):  # quarter k holds values 32k .. 32k+31 of the half
                        for half in range(2):
                            sc = np.int32(ws[o + 192 + 8 * n + 2 * k + half])
                            part = np.int32(0)
                            for l in range(16 * half, 16 * half + 16):
                                lo = np.int32(w[ql + l + 32 * (k & 1)])
                                lo = (lo & 15) if k < 2 else (lo >> 4)
                                hb = (np.int32(w[qh + l]) >> (2 * k)) & 3
                                part += ((lo | (hb << 4)) - 32) * np.int32(qt[b * QK_K + 128 * n + 32 * k + l])
                            isum += sc * part
                acc += (d[t, b] * _h(w, o + 208)) * np.float32(isum)
            out[t, r] = acc
