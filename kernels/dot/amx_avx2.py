"""The AMX buffer's kernels (dot/amx.py) with the AVX2 instruction sequences of kernels/simd.py
(row_dot_*_amx): integer block sums by maddubs + madd, exact, then the one float accumulator a
row that tinygemm_kernel_vnni keeps. Bit-identical to the portable kernels of amx.py
(tests/test_cpu_levels.py checks it); chosen by ``matmul.AMX_DOTS`` when the CPU has AVX2.

As in legacy_avx2, `_few_*` serves decode and `_many_*` prompt batches (four tokens a pass
share the unpacked weights; each token keeps its own accumulator). Q4_0 needs no kernel of its
own for prompts: the AMX order is the repacked gemv's (legacy_avx2's q4_0 repacked driver).
Decode takes eight rows a call (simd.rows8_*_amx), a row a lane, as ggml runs sixteen: one
accumulator a row is a chain of dependent fmas, and side by side they keep the core busy.
"""

from __future__ import annotations

from numba import njit, prange

from .. import simd as S
from .kquants import BS_Q4_K, BS_Q6_K
from .legacy import BS_Q4_1, BS_Q8_0
from .legacy import BS_Q4_0
from .legacy_avx2 import _many_q4_0_repacked


@njit(inline="always", cache=True)
def _store8(out, t, r, v):
    for k in range(S.AMX_ROWS):
        out[t, r + k] = v[k]


@njit(parallel=True, cache=True)
def _few_q4_1(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q4_1
    for g in prange(W.shape[0] // S.AMX_ROWS):  # eligible weights have a multiple of 32 rows
        r = g * S.AMX_ROWS
        for t in range(q.shape[0]):
            _store8(out, t, r, S.rows8_q4_1_amx(W, r, q[t], d[t], s[t], nb, BS_Q4_1))


@njit(parallel=True, cache=True)
def _many_q4_1(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q4_1
    for r in prange(W.shape[0]):
        w, T = W[r], q.shape[0]
        T4 = T // 4 * 4
        for t in range(0, T4, 4):
            out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = S.row_dot4_q4_1_amx(
                w, q[t], q[t + 1], q[t + 2], q[t + 3], d[t], d[t + 1], d[t + 2], d[t + 3],
                s[t], s[t + 1], s[t + 2], s[t + 3], nb, BS_Q4_1)
        for t in range(T4, T):
            out[t, r] = S.row_dot_q4_1_amx(w, q[t], d[t], s[t], nb, BS_Q4_1)


@njit(parallel=True, cache=True)
def _few_q4_0(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q4_0
    for g in prange(W.shape[0] // S.AMX_ROWS):
        r = g * S.AMX_ROWS
        for t in range(q.shape[0]):
            _store8(out, t, r, S.rows8_q4_0_amx(W, r, q[t], d[t], d[t], nb, BS_Q4_0))


@njit(parallel=True, cache=True)
def _few_q8_0(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q8_0
    for g in prange(W.shape[0] // S.AMX_ROWS):  # eligible weights have a multiple of 32 rows
        r = g * S.AMX_ROWS
        for t in range(q.shape[0]):
            _store8(out, t, r, S.rows8_q8_0_amx(W, r, q[t], d[t], d[t], nb, BS_Q8_0))


@njit(parallel=True, cache=True)
def _many_q8_0(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q8_0
    for r in prange(W.shape[0]):
        w, T = W[r], q.shape[0]
        T4 = T // 4 * 4
        for t in range(0, T4, 4):
            out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = S.row_dot4_q8_0_amx(
                w, q[t], q[t + 1], q[t + 2], q[t + 3], d[t], d[t + 1], d[t + 2], d[t + 3],
                d[t], d[t + 1], d[t + 2], d[t + 3], nb, BS_Q8_0)
        for t in range(T4, T):
            out[t, r] = S.row_dot_q8_0_amx(w, q[t], d[t], d[t], nb, BS_Q8_0)


@njit(parallel=True, cache=True)
def _few_q4_K(W, q, d, bsums, out, scratch):
    nb = W.shape[1] // BS_Q4_K
    for r in prange(W.shape[0]):
        for t in range(q.shape[0]):
            out[t, r] = S.row_dot_q4_K_amx(W[r], q[t], d[t], bsums[t], nb, BS_Q4_K)


@njit(parallel=True, cache=True)
def _many_q4_K(W, q, d, bsums, out, scratch):
    nb = W.shape[1] // BS_Q4_K
    for r in prange(W.shape[0]):
        T = q.shape[0]
        T4 = T // 4 * 4
        for t in range(0, T4, 4):
            out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = S.row_dot4_q4_K_amx(
                W[r], q[t], q[t + 1], q[t + 2], q[t + 3], d[t], d[t + 1], d[t + 2], d[t + 3],
                bsums[t], bsums[t + 1], bsums[t + 2], bsums[t + 3], nb, BS_Q4_K)
        for t in range(T4, T):
            out[t, r] = S.row_dot_q4_K_amx(W[r], q[t], d[t], bsums[t], nb, BS_Q4_K)


@njit(parallel=True, cache=True)
def _few_q6_K(W, q, d, bsums, out, scratch):
    nb = W.shape[1] // BS_Q6_K
    for r in prange(W.shape[0]):
        for t in range(q.shape[0]):
            out[t, r] = S.row_dot_q6_K_amx(W[r], q[t], d[t], bsums[t], nb, BS_Q6_K)


@njit(parallel=True, cache=True)
def _many_q6_K(W, q, d, bsums, out, scratch):
    nb = W.shape[1] // BS_Q6_K
    for r in prange(W.shape[0]):
        T = q.shape[0]
        T4 = T // 4 * 4
        for t in range(0, T4, 4):
            out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = S.row_dot4_q6_K_amx(
                W[r], q[t], q[t + 1], q[t + 2], q[t + 3], d[t], d[t + 1], d[t + 2], d[t + 3],
                bsums[t], bsums[t + 1], bsums[t + 2], bsums[t + 3], nb, BS_Q6_K)
        for t in range(T4, T):
            out[t, r] = S.row_dot_q6_K_amx(W[r], q[t], d[t], bsums[t], nb, BS_Q6_K)


def _pick(few, many, doc):
    def matmul(W, q, d, aux, out, scratch):
        return (many if q.shape[0] >= 4 else few)(W, q, d, aux, out, scratch)
    matmul.__doc__ = doc
    return matmul


matmul_q4_0 = _pick(_few_q4_0, _many_q4_0_repacked, "Q4_0 in the AMX buffer (prompts: the repacked gemv's order, the same).")
matmul_q4_1 = _pick(_few_q4_1, _many_q4_1, "Q4_1 in the AMX buffer.")
matmul_q8_0 = _pick(_few_q8_0, _many_q8_0, "Q8_0 in the AMX buffer.")
matmul_q4_K = _pick(_few_q4_K, _many_q4_K, "Q4_K in the AMX buffer.")
matmul_q6_K = _pick(_few_q6_K, _many_q6_K, "Q6_K in the AMX buffer.")
