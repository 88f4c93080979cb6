"""K-quant dot kernels with ggml's own AVX2 instruction sequence (kernels/simd.py row_dot_*).

Bit-identical to the portable kernels in kquants.py (tests/test_dot_kernels.py checks it) and
much faster; chosen by ``matmul.DOTS`` when the CPU has AVX2 and FMA.
"""

from __future__ import annotations

from numba import njit, prange

from ..simd import (row_dot2_q4_K, row_dot4_q4_K, row_dot4_q4_K_gemm, row_dot4_q4_K_tiled, row_dot4_q6_K,
                    row_dot4_q6_K_tiled, row_dot_q4_K, row_dot_q4_K_tiled, row_dot_q6_K, row_dot_q6_K_tiled)
from . import kquants
from .kquants import BS_Q4_K, BS_Q6_K, TILED_MIN


@njit(parallel=True, cache=True)
def _few_q6_K(W, q, d, bsums, out, scratch):
    nb = W.shape[1] // BS_Q6_K
    for r in prange(W.shape[0]):
        for t in range(q.shape[0]):
            out[t, r] = row_dot_q6_K(W[r], q[t], d[t], bsums[t], nb, BS_Q6_K)


@njit(parallel=True, cache=True)
def _many_q6_K(W, q, d, bsums, out, scratch):
    nb = W.shape[1] // BS_Q6_K
    for r in prange(W.shape[0]):
        T = q.shape[0]
        T4 = T // 4 * 4
        for t in range(0, T4, 4):
            out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = row_dot4_q6_K(
                W[r], q[t], q[t + 1], q[t + 2], q[t + 3], d[t], d[t + 1], d[t + 2], d[t + 3],
                bsums[t], bsums[t + 1], bsums[t + 2], bsums[t + 3], nb, BS_Q6_K)
        for t in range(T4, T):
            out[t, r] = row_dot_q6_K(W[r], q[t], d[t], bsums[t], nb, BS_Q6_K)


def matmul_q6_K(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_q6_K_q8_K (AVX2); prompt batches of four or more take four tokens a pass
    (a separate function: see legacy_avx2 on why the one-token loop stays on its own).
    Batches of TILED_MIN or more rows take ggml's tiled K-quant matmul (its float order)."""
    if q.shape[0] >= TILED_MIN:
        return _tiled_q6_K(W, q, d, bsums, out, scratch)
    return (_many_q6_K if q.shape[0] >= 4 else _few_q6_K)(W, q, d, bsums, out, scratch)


@njit(parallel=True, cache=True)
def _tiled_q6_K(W, q, d, bsums, out, scratch):
    nb = W.shape[1] // BS_Q6_K
    for r in prange(W.shape[0]):
        T = q.shape[0]
        T4 = T // 4 * 4
        for t in range(0, T4, 4):
            out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = row_dot4_q6_K_tiled(
                W[r], q[t], q[t + 1], q[t + 2], q[t + 3], d[t], d[t + 1], d[t + 2], d[t + 3],
                bsums[t], bsums[t + 1], bsums[t + 2], bsums[t + 3], nb, BS_Q6_K)
        for t in range(T4, T):
            out[t, r] = row_dot_q6_K_tiled(W[r], q[t], d[t], bsums[t], nb, BS_Q6_K)


@njit(parallel=True, cache=True)
def _gemm_q4_K(W, q, d, bsums, out, scratch):
    """ggml's repacked Q4_K for a batch of four or more: ggml_gemm_q4_K_8x8_q8_K over the first
    T - T % 4 rows, ggml_gemv_q4_K_8x8_q8_K over the rest."""
    nb = W.shape[1] // BS_Q4_K
    for r in prange(W.shape[0]):
        T = q.shape[0]
        T4 = T // 4 * 4
        for t in range(0, T4, 4):
            out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = row_dot4_q4_K_gemm(
                W[r], q[t], q[t + 1], q[t + 2], q[t + 3], d[t], d[t + 1], d[t + 2], d[t + 3],
                bsums[t], bsums[t + 1], bsums[t + 2], bsums[t + 3], nb, BS_Q4_K)
        for t in range(T4, T):
            out[t, r] = row_dot_q4_K(W[r], q[t], d[t], bsums[t], nb, BS_Q4_K)


@njit(parallel=True, cache=True)
def _tiled_q4_K(W, q, d, bsums, out, scratch):
    nb = W.shape[1] // BS_Q4_K
    for r in prange(W.shape[0]):
        T = q.shape[0]
        T4 = T // 4 * 4
        for t in range(0, T4, 4):
            out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = row_dot4_q4_K_tiled(
                W[r], q[t], q[t + 1], q[t + 2], q[t + 3], d[t], d[t + 1], d[t + 2], d[t + 3],
                bsums[t], bsums[t + 1], bsums[t + 2], bsums[t + 3], nb, BS_Q4_K)
        for t in range(T4, T):
            out[t, r] = row_dot_q4_K_tiled(W[r], q[t], d[t], bsums[t], nb, BS_Q4_K)


@njit(parallel=True, cache=True)
def _few_q4_K(W, q, d, bsums, out, scratch):
    nb = W.shape[1] // BS_Q4_K
    for r in prange(W.shape[0]):
        T = q.shape[0]
        for t in range(0, T - 1, 2):  # two tokens a pass share the unpacked weights
            out[t, r], out[t + 1, r] = row_dot2_q4_K(W[r], q[t], q[t + 1], d[t], d[t + 1], bsums[t], bsums[t + 1],
                                                        nb, BS_Q4_K)
        if T % 2:
            out[T - 1, r] = row_dot_q4_K(W[r], q[T - 1], d[T - 1], bsums[T - 1], nb, BS_Q4_K)


def matmul_q4_K(W, q, d, bsums, out, scratch):
    """Q4_K: ggml repacks weights with a row count divisible by 8 (q4_K_8x8) and multiplies them
    with ggml_gemv_q4_K_8x8_q8_K, whose float steps this kernel follows; other shapes take
    ggml_vec_dot_q4_K_q8_K's order in the portable kernel (kquants.matmul_q4_K)."""
    if W.shape[0] % 8:
        if q.shape[0] >= TILED_MIN:
            return _tiled_q4_K(W, q, d, bsums, out, scratch)
        return kquants.matmul_q4_K(W, q, d, bsums, out, scratch)
    return (_gemm_q4_K if q.shape[0] >= 4 else _few_q4_K)(W, q, d, bsums, out, scratch)
