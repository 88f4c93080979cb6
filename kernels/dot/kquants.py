"""Dot products of the k-quants (256 weights a super-block) against q8_K activations.

Same contract as ``legacy.py``: ``out[t, r] = dot(W[r], x[t])`` with ``q`` int8[T, n],
``d`` float32[T, n/256], ``bsums`` int32[T, n/16]. The float arithmetic is that of the kernel
llama.cpp runs on an AVX2 machine, bit for bit: ``ggml_vec_dot_q*_K_q8_K``'s AVX2 path (exact
integer sums in eight lanes of four consecutive elements per 32-value chunk, one fma per lane
and super-block, ``hsum_float_8``), except Q4_K with a row count divisible by 8, which ggml
repacks at load time and multiplies with ``ggml_gemv_q4_K_8x8_q8_K``. Integer sums are exact
in any order; only the float steps are spelled out. Lane accumulators live in a per-thread
``scratch`` row and lane loops run to a bound known only at run time (see legacy.py).

Super-block layouts (bytes), from ggml-common.h:
  Q2_K  scales[16] (4-bit scale | 4-bit min) | qs[64] (2-bit) | d:f16 | dmin:f16
  Q3_K  hmask[32] | qs[64] (2-bit) | scales[12] (16 x 6-bit, signed by -32) | d:f16
  Q4_K  d:f16 | dmin:f16 | scales[12] (8 x 6-bit scale, 8 x 6-bit min) | qs[128] (4-bit)
  Q5_K  d:f16 | dmin:f16 | scales[12] | qh[32] | qs[128]
  Q6_K  ql[128] | qh[64] | scales:i8[16] | d:f16
"""

from __future__ import annotations

import numba
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from numba import njit, prange

from ..simd import fma32, hsum8
from .fp16 import F16_TO_F32
from .legacy import _lane_count

QK_K = GGML_QUANT_SIZES[T.Q8_K][0]  # 256
BS_Q2_K = GGML_QUANT_SIZES[T.Q2_K][1]
BS_Q3_K = GGML_QUANT_SIZES[T.Q3_K][1]
BS_Q4_K = GGML_QUANT_SIZES[T.Q4_K][1]
BS_Q5_K = GGML_QUANT_SIZES[T.Q5_K][1]
BS_Q6_K = GGML_QUANT_SIZES[T.Q6_K][1]
NSUB16 = QK_K // 16  # bsums per super-block


# ggml_tiled_min_batch: ggml-cpu's tiled K-quant matmul (tiled/tiled.cpp) takes a MUL_MAT whose
# activation has this many rows or more, when it did not repack the weights
TILED_MIN = 8


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


@njit(parallel=True, cache=True)
def matmul_q2_K(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_q2_K_q8_K (AVX2). Per super-block, each lane l (0..7) first takes the
    minimums, acc[l] = fma(-d_x * dmin_w, min[2l] * bsum[2l] + min[2l+1] * bsum[2l+1], acc[l]),
    then the quants: lane l sums exactly the products of elements 4l..4l+3 of each of the
    eight 32-value chunks (chunk c: 2-bit plane c % 4 of half c // 4) times their 4-bit scale
    (elements 0..15 of chunk c use scale 2c, 16..31 scale 2c+1), acc[l] = fma(d_x * d_w, lane,
    acc[l]); hsum_float_8 at the end."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q2_K
    nl = _lane_count(d, nb)  # 8
    half = nl // 2
    for r in prange(R):
        w = W[r]
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            qt = q[t]
            for l in range(nl):
                acc[l] = 0.0
            for b in range(nb):
                o = b * BS_Q2_K
                dy = d[t, b]
                dd = dy * _h(w, o + 80)
                dmin = -dy * _h(w, o + 82)
                bs = b * NSUB16
                for l in range(nl):
                    prod = ((np.int32(w[o + 2 * l]) >> 4) * bsums[t, bs + 2 * l]
                            + (np.int32(w[o + 2 * l + 1]) >> 4) * bsums[t, bs + 2 * l + 1])
                    acc[l] = fma32(dmin, np.float32(prod), acc[l])
                for l in range(nl):
                    lane = np.int32(0)
                    hs = 1 if l >= half else 0
                    for c in range(8):
                        n = c >> 2
                        sh = 2 * (c & 3)
                        e = o + 16 + 32 * n + 4 * l
                        x = b * QK_K + 32 * c + 4 * l
                        part = np.int32(0)
                        for i in range(4):
                            part += ((np.int32(w[e + i]) >> sh) & 3) * np.int32(qt[x + i])
                        lane += (np.int32(w[o + 2 * c + hs]) & 0xF) * part
                    acc[l] = fma32(dd, np.float32(lane), acc[l])
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])


@njit(parallel=True, cache=True)
def matmul_q3_K(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_q3_K_q8_K (AVX2): Q2_K's lane layout without minimums; a value is its two
    low bits minus 4 where its hmask bit is clear, scales are signed 6-bit; acc[l] =
    fma(d_x * d_w, lane, acc[l]) per super-block, hsum_float_8 at the end."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q3_K
    nl = _lane_count(d, nb)  # 8
    half = nl // 2
    for r in prange(R):
        w = W[r]
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            qt = q[t]
            for l in range(nl):
                acc[l] = 0.0
            for b in range(nb):
                o = b * BS_Q3_K
                dd = d[t, b] * _h(w, o + 108)
                for l in range(nl):
                    lane = np.int32(0)
                    hs = 1 if l >= half else 0
                    for c in range(8):
                        n = c >> 2
                        p = c & 3
                        m = 1 << (4 * n + p)  # hmask bit of this plane
                        e = o + 32 + 32 * n + 4 * l
                        x = b * QK_K + 32 * c + 4 * l
                        part = np.int32(0)
                        for i in range(4):
                            v = (np.int32(w[e + i]) >> (2 * p)) & 3
                            if (np.int32(w[o + 4 * l + i]) & m) == 0:
                                v -= 4
                            part += v * np.int32(qt[x + i])
                        lane += q3k_scale(2 * c + hs, w, o + 96) * part
                    acc[l] = fma32(dd, np.float32(lane), acc[l])
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])


@njit(inline="always", cache=True)
def _q4k_quarter(w, o, qt, x0, j):
    """Exact integer sum of quarter j (64 values: 32 low nibbles, then 32 high nibbles) of the
    Q4_K super-block at byte o against q8 values qt[x0:x0+256], each half times its scale."""
    sc1, _ = scale_min_k4(2 * j, w, o + 4)
    sc2, _ = scale_min_k4(2 * j + 1, w, o + 4)
    p1 = np.int32(0)
    p2 = np.int32(0)
    for l in range(32):
        v = np.int32(w[o + 16 + 32 * j + l])
        p1 += (v & 15) * np.int32(qt[x0 + 64 * j + l])
        p2 += (v >> 4) * np.int32(qt[x0 + 64 * j + 32 + l])
    return sc1 * p1 + sc2 * p2


@njit(inline="always", cache=True)
def _q4k_sums(w, o, qt, x0):
    """Exact integer sums of a Q4_K super-block at byte o against q8 values qt[x0:x0+256]:
    (sum of scale_j * quants . q8 over the 8 sub-blocks, and the pairs of bsums are left to the
    caller). Integer arithmetic, so any order gives the same result."""
    isum = np.int32(0)
    for j in range(4):
        isum += _q4k_quarter(w, o, qt, x0, j)
    return isum


@njit(parallel=True, cache=True)
def matmul_q4_K(W, q, d, bsums, out, scratch):
    """Q4_K rows against q8_K, in the float order of the kernel llama.cpp runs on AVX2.

    Prompt batches: repacked weights take ggml_gemm_q4_K_8x8_q8_K for the first T - T % 4 rows
    of a batch of four or more (the two accumulators updated for each 64-value quarter);
    others, in batches of TILED_MIN rows or more, ggml's tiled K-quant matmul
    (res = fnmadd(dmin_w, summ, d_w * isum), acc = fma(res, d_x, acc) per super-block).

    When the number of rows is a multiple of 8, ggml's CPU backend repacks Q4_K weights into
    block_q4_Kx8 at load time and a single activation row goes through
    ggml_gemv_q4_K_8x8_q8_K: each output keeps one float accumulator per super-block sum,
    acc = fma(isum, d_w * d_x, acc) and acc_min = fma(sum(min * bsum32), dmin_w * d_x, acc_min),
    and the result is acc - acc_min.

    Otherwise it is ggml_vec_dot_q4_K_q8_K (AVX2): lane l (0..7) of a super-block sums,
    exactly, the products of elements 4l..4l+3 of each 32-value quarter times that quarter's
    scale, acc[l] = fma(d_x * d_w, lane, acc[l]); the minimums take four more lanes,
    acc_m[l] = fma(-d_x * dmin_w, m[2l] * bsum32[2l] + m[2l+1] * bsum32[2l+1], acc_m[l]); the
    result is hsum_float_8(acc) + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3])). The lanes
    live in scratch[thread, 0:12] with run-time bounds so that LLVM vectorises them."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q4_K
    nl = _lane_count(d, nb)  # 8
    nm = nl // 2  # 4
    repacked = R % 8 == 0  # ggml_repack_get_optimal_repack_type: q4_K_8x8 when ne[1] % 8 == 0
    T = q.shape[0]
    T4 = T // 4 * 4 if T >= 4 else 0  # the rows ggml_gemm_q4_K_8x8_q8_K takes
    tiled = not repacked and T >= TILED_MIN
    for r in prange(R):
        w = W[r]
        acc = scratch[numba.get_thread_id()]
        for t in range(T):
            qt = q[t]
            if repacked or tiled:
                a = np.float32(0.0)
                am = np.float32(0.0)
                for b in range(nb):
                    o = b * BS_Q4_K
                    dy = d[t, b]
                    bs = b * NSUB16
                    if repacked and t < T4:  # gemm: both accumulators updated per 64 values
                        for j in range(4):
                            _, m1 = scale_min_k4(2 * j, w, o + 4)
                            _, m2 = scale_min_k4(2 * j + 1, w, o + 4)
                            mn = (m1 * (bsums[t, bs + 4 * j] + bsums[t, bs + 4 * j + 1])
                                  + m2 * (bsums[t, bs + 4 * j + 2] + bsums[t, bs + 4 * j + 3]))
                            a = fma32(np.float32(_q4k_quarter(w, o, qt, b * QK_K, j)), _h(w, o) * dy, a)
                            am = fma32(np.float32(mn), _h(w, o + 2) * dy, am)
                        continue
                    summ = np.int32(0)
                    for k in range(8):
                        _, m = scale_min_k4(k, w, o + 4)
                        summ += m * (bsums[t, bs + 2 * k] + bsums[t, bs + 2 * k + 1])
                    isum = _q4k_sums(w, o, qt, b * QK_K)
                    if tiled:  # res = fnmadd(dmin_w, summ, d_w * isum); acc = fma(res, d_x, acc)
                        res = fma32(-_h(w, o + 2), np.float32(summ), _h(w, o) * np.float32(isum))
                        a = fma32(res, dy, a)
                    else:
                        a = fma32(np.float32(isum), _h(w, o) * dy, a)
                        am = fma32(np.float32(summ), _h(w, o + 2) * dy, am)
                out[t, r] = a if tiled else a - am
                continue
            for l in range(nl + nm):
                acc[l] = 0.0
            for b in range(nb):
                o = b * BS_Q4_K
                dy = d[t, b]
                dd = dy * _h(w, o)
                dmin = -dy * _h(w, o + 2)
                bs = b * NSUB16
                for l in range(nm):
                    _, m1 = scale_min_k4(2 * l, w, o + 4)
                    _, m2 = scale_min_k4(2 * l + 1, w, o + 4)
                    prod = (m1 * (bsums[t, bs + 4 * l] + bsums[t, bs + 4 * l + 1])
                            + m2 * (bsums[t, bs + 4 * l + 2] + bsums[t, bs + 4 * l + 3]))
                    acc[nl + l] = fma32(dmin, np.float32(np.int32(prod)), acc[nl + l])
                for l in range(nl):
                    lane = np.int32(0)
                    for j in range(4):  # 64 values: 32 low nibbles, then 32 high nibbles
                        sc1, _ = scale_min_k4(2 * j, w, o + 4)
                        sc2, _ = scale_min_k4(2 * j + 1, w, o + 4)
                        e = o + 16 + 32 * j + 4 * l
                        x = b * QK_K + 64 * j + 4 * l
                        v0, v1, v2, v3 = np.int32(w[e]), np.int32(w[e + 1]), np.int32(w[e + 2]), np.int32(w[e + 3])
                        lo = ((v0 & 15) * qt[x] + (v1 & 15) * qt[x + 1] + (v2 & 15) * qt[x + 2] + (v3 & 15) * qt[x + 3])
                        hi = ((v0 >> 4) * qt[x + 32] + (v1 >> 4) * qt[x + 33] + (v2 >> 4) * qt[x + 34]
                              + (v3 >> 4) * qt[x + 35])
                        lane += sc1 * lo + sc2 * hi
                    acc[l] = fma32(dd, np.float32(lane), acc[l])
            mins = (acc[nl] + acc[nl + 2]) + (acc[nl + 1] + acc[nl + 3])
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7]) + mins


@njit(parallel=True, cache=True)
def matmul_q5_K(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_q5_K_q8_K (AVX2): the lanes of Q4_K's vec_dot with 5-bit values (bit 2j or
    2j+1 of qh[l] on top of the nibble); the minimums are one exact integer per super-block,
    summs = fma(-d_x * dmin_w, sum(min * bsum32), summs) (GCC fuses summs += dmin * sum), and
    the result is hsum_float_8(acc) + summs."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q5_K
    nl = _lane_count(d, nb)  # 8
    for r in prange(R):
        w = W[r]
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            qt = q[t]
            for l in range(nl):
                acc[l] = 0.0
            summs = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q5_K
                dy = d[t, b]
                dd = dy * _h(w, o)
                dmin = -dy * _h(w, o + 2)
                bs = b * NSUB16
                summ = np.int32(0)
                for k in range(8):
                    _, m = scale_min_k4(k, w, o + 4)
                    summ += m * (bsums[t, bs + 2 * k] + bsums[t, bs + 2 * k + 1])
                summs = fma32(dmin, np.float32(summ), summs)
                for l in range(nl):
                    lane = np.int32(0)
                    for j in range(4):  # 64 values: 32 low nibbles, then 32 high nibbles
                        sc1, _ = scale_min_k4(2 * j, w, o + 4)
                        sc2, _ = scale_min_k4(2 * j + 1, w, o + 4)
                        x = b * QK_K + 64 * j + 4 * l
                        lo = np.int32(0)
                        hi = np.int32(0)
                        for i in range(4):
                            v = np.int32(w[o + 48 + 32 * j + 4 * l + i])
                            h = np.int32(w[o + 16 + 4 * l + i])
                            lo += ((v & 15) | (((h >> (2 * j)) & 1) << 4)) * np.int32(qt[x + i])
                            hi += ((v >> 4) | (((h >> (2 * j + 1)) & 1) << 4)) * np.int32(qt[x + 32 + i])
                        lane += sc1 * lo + sc2 * hi
                    acc[l] = fma32(dd, np.float32(lane), acc[l])
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7]) + summs


@njit(parallel=True, cache=True)
def matmul_q6_K(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_q6_K_q8_K (AVX2); for batches of TILED_MIN rows or more, ggml's tiled
    K-quant matmul: per super-block the exact sum of the lanes below, isum, and
    acc = fma(d_w * isum, d_x, acc).

    The 6-bit values are taken unsigned (0..63) and the offset of 32 comes back through the
    bsums: lane l (0..7) sums, exactly in int32, the products of elements 4l..4l+3 of each of
    the eight 32-value chunks times their scale (elements 0..15 of chunk c use scale 2c,
    16..31 scale 2c+1), minus 32 * (bsum[2l] * scale[2l] + bsum[2l+1] * scale[2l+1]); then
    acc[l] = fma(d_x * d_w, lane, acc[l]) and hsum_float_8 at the end."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q6_K
    nl = _lane_count(d, nb)  # 8
    half = nl // 2
    tiled = q.shape[0] >= TILED_MIN
    for r in prange(R):
        w = W[r]
        ws = w.view(np.int8)
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            qt = q[t]
            for l in range(nl):
                acc[l] = 0.0
            a = np.float32(0.0)  # the tiled kernel's accumulator
            for b in range(nb):
                o = b * BS_Q6_K
                sco = o + 192
                dd = d[t, b] * _h(w, o + 208)
                isum = np.int32(0)
                bs = b * NSUB16
                for l in range(nl):
                    lane = np.int32(0)
                    hs = 1 if l >= half else 0  # which 16 of the chunk, so which scale
                    for c in range(8):  # chunk c: values 32c .. 32c+31 of the super-block
                        n = c >> 2  # half of 128 values
                        k = c & 3  # quarter of the half
                        e = o + 64 * n + 32 * (k & 1) + 4 * l  # ql bytes
                        h = o + 128 + 32 * n + 4 * l  # qh bytes
                        sh = 4 * (k >> 1)
                        hb = 2 * k
                        x = b * QK_K + 32 * c + 4 * l
                        part = np.int32(0)
                        for i in range(4):
                            v = ((np.int32(w[e + i]) >> sh) & 15) | (((np.int32(w[h + i]) >> hb) & 3) << 4)
                            part += v * np.int32(qt[x + i])
                        lane += np.int32(ws[sco + 2 * c + hs]) * part
                    lane -= 32 * (bsums[t, bs + 2 * l] * np.int32(ws[sco + 2 * l])
                                  + bsums[t, bs + 2 * l + 1] * np.int32(ws[sco + 2 * l + 1]))
                    acc[l] = fma32(dd, np.float32(lane), acc[l])
                    isum += lane
                a = fma32(_h(w, o + 208) * np.float32(isum), d[t, b], a)
            out[t, r] = a if tiled else hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])
