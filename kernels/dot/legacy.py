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

import numba
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
#
# The eight lane accumulators live in a per-thread row of ``scratch`` and the lane loop runs
# to a bound known only at run time (``nl``, always 8 or 4): LLVM then vectorises that loop
# (one 8-wide fma a block) instead of unrolling it into scalar code, twice as fast measured.


@njit(inline="always", cache=True)
def _h(w, o):
    return F16_TO_F32[np.int64(w[o]) | (np.int64(w[o + 1]) << 8)]


@njit(inline="always", cache=True)
def _u32(w, o):
    return (np.int64(w[o]) | (np.int64(w[o + 1]) << 8) | (np.int64(w[o + 2]) << 16)
            | (np.int64(w[o + 3]) << 24))


@njit(inline="always", cache=True)
def _lane_count(d, nb):
    """8, computed from array shapes so that LLVM cannot see it (see above)."""
    return d.shape[1] * 8 // nb


@njit(inline="always", cache=True)
def _v5(w, o, qh, j, offset):
    """Value j (0..31) of a Q5 block: nibble | bit j of qh << 4, minus offset."""
    nib = (np.int32(w[o + j]) & 15) if j < 16 else (np.int32(w[o + j - 16]) >> 4)
    return (nib | np.int32(((qh >> j) & 1) << 4)) - offset


@njit(parallel=True, cache=True)
def matmul_q4_0(W, q, d, aux, out, scratch):
    """ggml_vec_dot_q4_0_q8_0 (AVX2), or, when the row count is a multiple of 8, the order of
    ggml_gemv_q4_0_8x8_q8_0: on AVX2 ggml repacks such weights at load time (q4_0_8x8), and
    each output keeps one float accumulator, acc = fma(isum, d_w * d_x, acc) per block, where
    isum is the block's exact integer dot product."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q4_0
    half = _lane_count(d, nb) // 2
    repacked = R % 8 == 0  # ggml_repack_get_optimal_repack_type: q4_0_8x8 when ne[1] % 8 == 0
    for r in prange(R):
        w = W[r]
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            qt = q[t]
            if repacked:
                a = np.float32(0.0)
                for b in range(nb):
                    o = b * BS_Q4_0 + 2
                    qo = b * QK
                    isum = np.int32(0)
                    for j in range(QK // 2):
                        v = np.int32(w[o + j])
                        isum += ((v & 15) - 8) * np.int32(qt[qo + j]) + ((v >> 4) - 8) * np.int32(qt[qo + QK // 2 + j])
                    a = fma32(np.float32(isum), _h(w, o - 2) * d[t, b], a)
                out[t, r] = a
                continue
            for l in range(8):
                acc[l] = 0.0
            for b in range(nb):
                o = b * BS_Q4_0 + 2
                qo = b * QK
                dd = _h(w, o - 2) * d[t, b]
                for l in range(half):  # lanes l (low nibbles) and l + 4 (high nibbles)
                    v0, v1, v2, v3 = np.int32(w[o + 4 * l]), np.int32(w[o + 4 * l + 1]), np.int32(w[o + 4 * l + 2]), np.int32(w[o + 4 * l + 3])
                    lo = (((v0 & 15) - 8) * qt[qo + 4 * l] + ((v1 & 15) - 8) * qt[qo + 4 * l + 1]
                          + ((v2 & 15) - 8) * qt[qo + 4 * l + 2] + ((v3 & 15) - 8) * qt[qo + 4 * l + 3])
                    hi = (((v0 >> 4) - 8) * qt[qo + 16 + 4 * l] + ((v1 >> 4) - 8) * qt[qo + 17 + 4 * l]
                          + ((v2 >> 4) - 8) * qt[qo + 18 + 4 * l] + ((v3 >> 4) - 8) * qt[qo + 19 + 4 * l])
                    acc[l] = fma32(dd, np.float32(np.int32(lo)), acc[l])
                    acc[4 + l] = fma32(dd, np.float32(np.int32(hi)), acc[4 + l])
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])


@njit(parallel=True, cache=True)
def matmul_q4_1(W, q, d, s, out, scratch):
    """ggml_vec_dot_q4_1_q8_1 (AVX2): lanes as above, plus summs += m_w * s_x (fused)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q4_1
    half = _lane_count(d, nb) // 2
    for r in prange(R):
        w = W[r]
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            qt = q[t]
            for l in range(8):
                acc[l] = 0.0
            summs = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q4_1 + 4
                qo = b * QK
                summs = fma32(_h(w, o - 2), s[t, b], summs)
                dd = _h(w, o - 4) * d[t, b]
                for l in range(half):
                    v0, v1, v2, v3 = np.int32(w[o + 4 * l]), np.int32(w[o + 4 * l + 1]), np.int32(w[o + 4 * l + 2]), np.int32(w[o + 4 * l + 3])
                    lo = ((v0 & 15) * qt[qo + 4 * l] + (v1 & 15) * qt[qo + 4 * l + 1]
                          + (v2 & 15) * qt[qo + 4 * l + 2] + (v3 & 15) * qt[qo + 4 * l + 3])
                    hi = ((v0 >> 4) * qt[qo + 16 + 4 * l] + (v1 >> 4) * qt[qo + 17 + 4 * l]
                          + (v2 >> 4) * qt[qo + 18 + 4 * l] + (v3 >> 4) * qt[qo + 19 + 4 * l])
                    acc[l] = fma32(dd, np.float32(np.int32(lo)), acc[l])
                    acc[4 + l] = fma32(dd, np.float32(np.int32(hi)), acc[4 + l])
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7]) + summs


@njit(parallel=True, cache=True)
def matmul_q5_0(W, q, d, aux, out, scratch):
    """ggml_vec_dot_q5_0_q8_0 (AVX2)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q5_0
    nl = _lane_count(d, nb)
    for r in prange(R):
        w = W[r]
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            qt = q[t]
            for l in range(8):
                acc[l] = 0.0
            for b in range(nb):
                o = b * BS_Q5_0 + 6
                qo = b * QK
                qh = _u32(w, o - 4)
                dd = _h(w, o - 6) * d[t, b]
                for l in range(nl):
                    e = 4 * l
                    lane = (_v5(w, o, qh, e, 16) * qt[qo + e] + _v5(w, o, qh, e + 1, 16) * qt[qo + e + 1]
                            + _v5(w, o, qh, e + 2, 16) * qt[qo + e + 2] + _v5(w, o, qh, e + 3, 16) * qt[qo + e + 3])
                    acc[l] = fma32(dd, np.float32(np.int32(lane)), acc[l])
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])


@njit(parallel=True, cache=True)
def matmul_q5_1(W, q, d, s, out, scratch):
    """ggml_vec_dot_q5_1_q8_1 (AVX2)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q5_1
    nl = _lane_count(d, nb)
    for r in prange(R):
        w = W[r]
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            qt = q[t]
            for l in range(8):
                acc[l] = 0.0
            summs = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q5_1 + 8
                qo = b * QK
                summs = fma32(_h(w, o - 6), s[t, b], summs)
                qh = _u32(w, o - 4)
                dd = _h(w, o - 8) * d[t, b]
                for l in range(nl):
                    e = 4 * l
                    lane = (_v5(w, o, qh, e, 0) * qt[qo + e] + _v5(w, o, qh, e + 1, 0) * qt[qo + e + 1]
                            + _v5(w, o, qh, e + 2, 0) * qt[qo + e + 2] + _v5(w, o, qh, e + 3, 0) * qt[qo + e + 3])
                    acc[l] = fma32(dd, np.float32(np.int32(lane)), acc[l])
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7]) + summs


@njit(parallel=True, cache=True)
def matmul_q8_0(W, q, d, aux, out, scratch):
    """ggml_vec_dot_q8_0_q8_0 (AVX2)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q8_0
    nl = _lane_count(d, nb)
    for r in prange(R):
        w = W[r]
        wq = w.view(np.int8)
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            qt = q[t]
            for l in range(8):
                acc[l] = 0.0
            for b in range(nb):
                o = b * BS_Q8_0 + 2
                qo = b * QK
                dd = _h(w, o - 2) * d[t, b]
                for l in range(nl):
                    e = 4 * l
                    lane = (np.int32(wq[o + e]) * qt[qo + e] + np.int32(wq[o + e + 1]) * qt[qo + e + 1]
                            + np.int32(wq[o + e + 2]) * qt[qo + e + 2] + np.int32(wq[o + e + 3]) * qt[qo + e + 3])
                    acc[l] = fma32(dd, np.float32(np.int32(lane)), acc[l])
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])


# Q1_0 (ggml-common.h block_q1_0): d:f16 | qs[16], one sign bit a weight (set: +d, clear: -d),
# 128 weights a block, dotted against four q8_0 blocks.
QK1_0, BS_Q1_0 = GGML_QUANT_SIZES[T.Q1_0]


@njit(inline="always", cache=True)
def _lane_q1_0(w, o, qt, x0, l):
    """Lane l of the 32 values at x0 (quarter K of the block, bits from byte o): +-q8 summed."""
    s = np.int32(0)
    for i in range(4):
        j = 4 * l + i
        v = np.int32(qt[x0 + j])
        s += v if (np.int32(w[o + (j >> 3)]) >> (j & 7)) & 1 else -v
    return s


@njit(parallel=True, cache=True)
def matmul_q1_0(W, q, d, aux, out, scratch):
    """ggml_vec_dot_q1_0_q8_0 (AVX2): per block, per lane, blk = d_x0 * lane_0, then
    blk = fma(d_xK, lane_K, blk) for the other three quarters, acc = fma(d_w, blk, acc);
    hsum_float_8."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q1_0
    nq = QK1_0 // QK
    for r in prange(R):
        w = W[r]
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            qt = q[t]
            for l in range(8):
                acc[l] = 0.0
            for b in range(nb):
                o = b * BS_Q1_0
                dw = _h(w, o)
                for l in range(8):
                    blk = d[t, nq * b] * np.float32(_lane_q1_0(w, o + 2, qt, b * QK1_0, l))
                    for k in range(1, nq):
                        blk = fma32(d[t, nq * b + k], np.float32(_lane_q1_0(w, o + 2 + 4 * k, qt, b * QK1_0 + QK * k, l)), blk)
                    acc[l] = fma32(dw, blk, acc[l])
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])
