"""MXFP4 and NVFP4 weights against q8_0 activations, in ggml's AVX2 float order (MXFP4: gpt-oss's experts).

Two paths, as ggml chooses them at load: a tensor whose row count is a multiple of 8 is repacked
(mxfp4_8x8) and multiplied by ggml_gemv_mxfp4_8x8_q8_0 (gemv_q4_b32_8x8_q8_0_lut_avx, the
template Q4_0 uses): one float accumulator per output, acc = fma(isum, e8m0_half(e) * d_x, acc)
per block, isum the block's exact integer dot product. Other tensors go through
ggml_vec_dot_mxfp4_q8_0: eight lanes of four products, even blocks into one accumulator and odd
blocks into another, fma(d_x * e8m0_half(e), lane, acc); hsum_float_8 of their sum; an odd last
block added as sumf += d * isum (fused by GCC).

The portable kernel is also the slow twin: there is no hand-written vector version yet.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from ..codec.mxfp4 import BS, KVALUES, QK, e8m0_half
from ..grids import UE4M3_TO_F32
from ..simd import fma32, hsum8


@njit(inline="always", cache=True)
def _lane(w, o, qt, qo, l):
    """The exact integer sum of lane l: weights 4l..4l+3 of the block (low nibbles, l < 4) or
    16 + 4(l-4).. (high nibbles, l >= 4) times the activations."""
    s = np.int32(0)
    for i in range(4):
        if l < 4:
            j = 4 * l + i
            s += np.int32(KVALUES[w[o + 1 + j] & 15]) * np.int32(qt[qo + j])
        else:
            j = 4 * (l - 4) + i
            s += np.int32(KVALUES[w[o + 1 + j] >> 4]) * np.int32(qt[qo + QK // 2 + j])
    return s


@njit(parallel=True, cache=True)
def matmul_mxfp4(W, q, d, aux, out, scratch):
    """out[t, r] = row r of W (MXFP4 blocks) . activation t (q8_0: q int8, d float32 scales)."""
    R = W.shape[0]
    nb = W.shape[1] // BS
    repacked = R % 8 == 0  # ggml_repack_get_optimal_repack_type: mxfp4_8x8 when ne[1] % 8 == 0 (AVX2)
    for r in prange(R):
        w = W[r]
        acc = scratch[numba.get_thread_id()]  # 16 floats: accum1 lanes, then accum2 lanes
        for t in range(q.shape[0]):
            qt = q[t]
            if repacked:
                a = np.float32(0.0)
                for b in range(nb):
                    isum = np.int32(0)
                    for l in range(8):
                        isum += _lane(w, b * BS, qt, b * QK, l)
                    a = fma32(np.float32(isum), np.float32(e8m0_half(w[b * BS]) * d[t, b]), a)
                out[t, r] = a
                continue
            for l in range(16):
                acc[l] = 0.0
            b = 0
            while b + 1 < nb:
                for k in range(2):
                    sc = np.float32(d[t, b + k] * e8m0_half(w[(b + k) * BS]))
                    for l in range(8):
                        acc[8 * k + l] = fma32(sc, np.float32(_lane(w, (b + k) * BS, qt, (b + k) * QK, l)), acc[8 * k + l])
                b += 2
            s = hsum8(acc[0] + acc[8], acc[1] + acc[9], acc[2] + acc[10], acc[3] + acc[11],
                      acc[4] + acc[12], acc[5] + acc[13], acc[6] + acc[14], acc[7] + acc[15])
            if b < nb:
                isum = np.int32(0)
                for l in range(8):
                    isum += _lane(w, b * BS, qt, b * QK, l)
                s = fma32(np.float32(d[t, b] * e8m0_half(w[b * BS])), np.float32(isum), s)
            out[t, r] = s


# NVFP4 (ggml-common.h block_nvfp4): four unsigned E4M3 scales d[4], one per 16 values, then
# qs[32]: sub-block s holds values 16s + j in the low nibbles of qs[8s + j] and 16s + 8 + j in
# the high ones, E2M1 codes of kvalues_mxfp4. 64 values a block, dotted against two q8_0 blocks.
QK_NVFP4, BS_NVFP4 = GGML_QUANT_SIZES[T.NVFP4]
QK_NVFP4_SUB = 16


@njit(inline="always", cache=True)
def _lane_nvfp4(w, o, qt, x0, l):
    """Lane l of the 32 values x0.. of a block (sub-blocks 2h, 2h + 1): values 4l..4l+3."""
    s = np.int32(0)
    for i in range(4):
        j = 4 * l + i  # value within the 32
        sub = j >> 4
        k = j & 15
        b = np.int32(w[o + 4 + 8 * sub + (k & 7)])
        s += np.int32(KVALUES[(b >> (4 * (k >> 3))) & 15]) * np.int32(qt[x0 + j])
    return s


@njit(parallel=True, cache=True)
def matmul_nvfp4(W, q, d, aux, out, scratch):
    """ggml_vec_dot_nvfp4_q8_0 (AVX2): per block, lanes of four products over each half (32
    values, one q8_0 block); lanes 0..3 take the first sub-block's scale, 4..7 the second's,
    acc[l] = fma(ue4m3(d_s) * d_x, lane, acc[l]), first half then second; hsum_float_8."""
    R = W.shape[0]
    nb = W.shape[1] // BS_NVFP4
    for r in prange(R):
        w = W[r]
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            qt = q[t]
            for l in range(8):
                acc[l] = 0.0
            for b in range(nb):
                o = b * BS_NVFP4
                for h in range(2):
                    dy = d[t, 2 * b + h]
                    s0 = np.float32(UE4M3_TO_F32[w[o + 2 * h]] * dy)
                    s1 = np.float32(UE4M3_TO_F32[w[o + 2 * h + 1]] * dy)
                    for l in range(8):
                        lane = _lane_nvfp4(w, o + 16 * h, qt, b * QK_NVFP4 + 32 * h, l)
                        acc[l] = fma32(s0 if l < 4 else s1, np.float32(lane), acc[l])
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])
