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

from .fp16 import F16_TO_F32

QK = GGML_QUANT_SIZES[T.Q8_0][0]  # 32 weights a block for every legacy type
HALF = QK // 2
BS_Q4_0 = GGML_QUANT_SIZES[T.Q4_0][1]
BS_Q4_1 = GGML_QUANT_SIZES[T.Q4_1][1]
BS_Q5_0 = GGML_QUANT_SIZES[T.Q5_0][1]
BS_Q5_1 = GGML_QUANT_SIZES[T.Q5_1][1]
BS_Q8_0 = GGML_QUANT_SIZES[T.Q8_0][1]

FASTMATH = {"contract", "reassoc", "nsz", "arcp"}  # no nnan/ninf: NaN must propagate


@njit(inline="always", cache=True)
def _h(w, o):
    return F16_TO_F32[np.int64(w[o]) | (np.int64(w[o + 1]) << 8)]


@njit(inline="always", cache=True)
def _u32(w, o):
    return (np.int64(w[o]) | (np.int64(w[o + 1]) << 8) | (np.int64(w[o + 2]) << 16)
            | (np.int64(w[o + 3]) << 24))


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_q4_0(W, q, d, aux, out):
    """ggml_vec_dot_q4_0_q8_0."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q4_0
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            acc = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q4_0
                isum = np.int32(0)
                for j in range(HALF):
                    v = np.int32(w[o + 2 + j])
                    isum += ((v & 15) - 8) * np.int32(qt[b * QK + j]) + ((v >> 4) - 8) * np.int32(qt[b * QK + HALF + j])
                acc += (_h(w, o) * d[t, b]) * np.float32(isum)
            out[t, r] = acc


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_q4_1(W, q, d, s, out):
    """ggml_vec_dot_q4_1_q8_1."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q4_1
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            acc = np.float32(0.0)
            summs = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q4_1
                isum = np.int32(0)
                for j in range(HALF):
                    v = np.int32(w[o + 4 + j])
                    isum += (v & 15) * np.int32(qt[b * QK + j]) + (v >> 4) * np.int32(qt[b * QK + HALF + j])
                acc += (_h(w, o) * d[t, b]) * np.float32(isum)
                summs += _h(w, o + 2) * s[t, b]
            out[t, r] = acc + summs


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_q5_0(W, q, d, aux, out):
    """ggml_vec_dot_q5_0_q8_0."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q5_0
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            acc = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q5_0
                qh = _u32(w, o + 2)
                isum = np.int32(0)
                for j in range(HALF):
                    v = np.int32(w[o + 6 + j])
                    lo = (v & 15) | np.int32(((qh >> j) & 1) << 4)
                    hi = (v >> 4) | np.int32(((qh >> (j + HALF)) & 1) << 4)
                    isum += (lo - 16) * np.int32(qt[b * QK + j]) + (hi - 16) * np.int32(qt[b * QK + HALF + j])
                acc += (_h(w, o) * d[t, b]) * np.float32(isum)
            out[t, r] = acc


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_q5_1(W, q, d, s, out):
    """ggml_vec_dot_q5_1_q8_1."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q5_1
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            acc = np.float32(0.0)
            summs = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q5_1
                qh = _u32(w, o + 4)
                isum = np.int32(0)
                for j in range(HALF):
                    v = np.int32(w[o + 8 + j])
                    lo = (v & 15) | np.int32(((qh >> j) & 1) << 4)
                    hi = (v >> 4) | np.int32(((qh >> (j + HALF)) & 1) << 4)
                    isum += lo * np.int32(qt[b * QK + j]) + hi * np.int32(qt[b * QK + HALF + j])
                acc += (_h(w, o) * d[t, b]) * np.float32(isum)
                summs += _h(w, o + 2) * s[t, b]
            out[t, r] = acc + summs


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_q8_0(W, q, d, aux, out):
    """ggml_vec_dot_q8_0_q8_0."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q8_0
    for r in prange(R):
        w = W[r]
        wq = w.view(np.int8)
        for t in range(q.shape[0]):
            qt = q[t]
            acc = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q8_0
                isum = np.int32(0)
                for j in range(QK):
                    isum += np.int32(wq[o + 2 + j]) * np.int32(qt[b * QK + j])
                acc += (_h(w, o) * d[t, b]) * np.float32(isum)
            out[t, r] = acc
