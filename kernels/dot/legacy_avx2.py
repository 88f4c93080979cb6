"""The legacy dot kernels with ggml's own AVX2 instruction sequence (kernels/simd.py block_*).

Bit-identical to the portable kernels in legacy.py (tests/test_dot_kernels.py checks it), and
about 3-4x faster: the integer products of a block take maddubs + madd instead of dozens of
shuffles, and the eight float lanes stay in one register across the row. Chosen by
``matmul.DOTS`` when the CPU has AVX2 and FMA.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..simd import block_q4, block_q5, block_q8, fma32, hsum8
from .legacy import BS_Q4_0, BS_Q4_1, BS_Q5_0, BS_Q5_1, BS_Q8_0, QK, _h, _u32

Z = np.float32(0.0)


@njit(parallel=True, cache=True)
def matmul_q4_0(W, q, d, aux, out, scratch):
    """ggml_vec_dot_q4_0_q8_0 (AVX2)."""
    nb = W.shape[1] // BS_Q4_0
    for r in prange(W.shape[0]):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            acc = (Z, Z, Z, Z, Z, Z, Z, Z)
            for b in range(nb):
                o = b * BS_Q4_0
                acc = block_q4(acc, w, o + 2, qt, b * QK, _h(w, o) * d[t, b], True)
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])


@njit(parallel=True, cache=True)
def matmul_q4_1(W, q, d, s, out, scratch):
    """ggml_vec_dot_q4_1_q8_1 (AVX2)."""
    nb = W.shape[1] // BS_Q4_1
    for r in prange(W.shape[0]):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            acc = (Z, Z, Z, Z, Z, Z, Z, Z)
            summs = Z
            for b in range(nb):
                o = b * BS_Q4_1
                summs = fma32(_h(w, o + 2), s[t, b], summs)
                acc = block_q4(acc, w, o + 4, qt, b * QK, _h(w, o) * d[t, b], False)
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7]) + summs


@njit(parallel=True, cache=True)
def matmul_q5_0(W, q, d, aux, out, scratch):
    """ggml_vec_dot_q5_0_q8_0 (AVX2)."""
    nb = W.shape[1] // BS_Q5_0
    for r in prange(W.shape[0]):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            acc = (Z, Z, Z, Z, Z, Z, Z, Z)
            for b in range(nb):
                o = b * BS_Q5_0
                acc = block_q5(acc, w, o + 6, np.uint32(_u32(w, o + 2)), qt, b * QK, _h(w, o) * d[t, b], True)
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])


@njit(parallel=True, cache=True)
def matmul_q5_1(W, q, d, s, out, scratch):
    """ggml_vec_dot_q5_1_q8_1 (AVX2)."""
    nb = W.shape[1] // BS_Q5_1
    for r in prange(W.shape[0]):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            acc = (Z, Z, Z, Z, Z, Z, Z, Z)
            summs = Z
            for b in range(nb):
                o = b * BS_Q5_1
                summs = fma32(_h(w, o + 2), s[t, b], summs)
                acc = block_q5(acc, w, o + 8, np.uint32(_u32(w, o + 4)), qt, b * QK, _h(w, o) * d[t, b], False)
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7]) + summs


@njit(parallel=True, cache=True)
def matmul_q8_0(W, q, d, aux, out, scratch):
    """ggml_vec_dot_q8_0_q8_0 (AVX2)."""
    nb = W.shape[1] // BS_Q8_0
    for r in prange(W.shape[0]):
        w = W[r]
        wq = w.view(np.int8)
        for t in range(q.shape[0]):
            qt = q[t]
            acc = (Z, Z, Z, Z, Z, Z, Z, Z)
            for b in range(nb):
                o = b * BS_Q8_0
                acc = block_q8(acc, wq, o + 2, qt, b * QK, _h(w, o) * d[t, b])
            out[t, r] = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])
