"""The legacy dot kernels with ggml's own AVX2 instruction sequence (kernels/simd.py row_dot_*).

Bit-identical to the portable kernels in legacy.py (tests/test_dot_kernels.py checks it), and
several times faster: the integer products of a block take maddubs + madd instead of dozens of
shuffles, and the eight float lanes stay in one register across the row (the whole row loop is
written in LLVM IR). Chosen by ``matmul.DOTS`` when the CPU has AVX2 and FMA.

Each type has two drivers. `_few_*` (decode, and batches under four tokens) takes two tokens a
pass, then one. `_many_*` (prompt batches) takes four tokens a pass, then two, then one: each
block's weights are unpacked once for all of them, and their independent fma chains overlap.
Every token keeps its own accumulators, so each result has the bits of a one-token call. They
are separate functions because LLVM compiled the one-token loop about 40% slower when it
shared a function with the four-token kernel. The drivers differ only in the row kernels they
call (Numba cannot pass an intrinsic as an argument).
"""

from __future__ import annotations

from numba import njit, prange

from .. import simd as S
from .legacy import BS_Q4_0, BS_Q4_1, BS_Q5_0, BS_Q5_1, BS_Q8_0


@njit(parallel=True, cache=True)
def _few_q4_0(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q4_0
    for r in prange(W.shape[0]):
        T = q.shape[0]
        for t in range(0, T - 1, 2):
            out[t, r], out[t + 1, r] = S.row_dot2_q4_0(W[r], q[t], q[t + 1], d[t], d[t + 1], d[t], d[t + 1], nb, BS_Q4_0)
        if T % 2:
            out[T - 1, r] = S.row_dot_q4_0(W[r], q[T - 1], d[T - 1], d[T - 1], nb, BS_Q4_0)


@njit(parallel=True, cache=True)
def _many_q4_0(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q4_0
    for r in prange(W.shape[0]):
        w, T = W[r], q.shape[0]
        T4, T2 = T // 4 * 4, T // 2 * 2
        for t in range(0, T4, 4):
            out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = S.row_dot4_q4_0(
                w, q[t], q[t + 1], q[t + 2], q[t + 3], d[t], d[t + 1], d[t + 2], d[t + 3],
                d[t], d[t + 1], d[t + 2], d[t + 3], nb, BS_Q4_0)
        for t in range(T4, T2, 2):
            out[t, r], out[t + 1, r] = S.row_dot2_q4_0(w, q[t], q[t + 1], d[t], d[t + 1], d[t], d[t + 1], nb, BS_Q4_0)
        if T2 < T:
            out[T2, r] = S.row_dot_q4_0(w, q[T2], d[T2], d[T2], nb, BS_Q4_0)


@njit(parallel=True, cache=True)
def _few_q4_0_repacked(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q4_0
    for r in prange(W.shape[0]):
        T = q.shape[0]
        for t in range(0, T - 1, 2):
            out[t, r], out[t + 1, r] = S.row_dot2_q4_0_repacked(W[r], q[t], q[t + 1], d[t], d[t + 1], d[t], d[t + 1], nb, BS_Q4_0)
        if T % 2:
            out[T - 1, r] = S.row_dot_q4_0_repacked(W[r], q[T - 1], d[T - 1], d[T - 1], nb, BS_Q4_0)


@njit(parallel=True, cache=True)
def _many_q4_0_repacked(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q4_0
    for r in prange(W.shape[0]):
        w, T = W[r], q.shape[0]
        T4, T2 = T // 4 * 4, T // 2 * 2
        for t in range(0, T4, 4):
            out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = S.row_dot4_q4_0_repacked(
                w, q[t], q[t + 1], q[t + 2], q[t + 3], d[t], d[t + 1], d[t + 2], d[t + 3],
                d[t], d[t + 1], d[t + 2], d[t + 3], nb, BS_Q4_0)
        for t in range(T4, T2, 2):
            out[t, r], out[t + 1, r] = S.row_dot2_q4_0_repacked(w, q[t], q[t + 1], d[t], d[t + 1], d[t], d[t + 1], nb, BS_Q4_0)
        if T2 < T:
            out[T2, r] = S.row_dot_q4_0_repacked(w, q[T2], d[T2], d[T2], nb, BS_Q4_0)


@njit(parallel=True, cache=True)
def _few_q4_1(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q4_1
    for r in prange(W.shape[0]):
        T = q.shape[0]
        for t in range(0, T - 1, 2):
            out[t, r], out[t + 1, r] = S.row_dot2_q4_1(W[r], q[t], q[t + 1], d[t], d[t + 1], s[t], s[t + 1], nb, BS_Q4_1)
        if T % 2:
            out[T - 1, r] = S.row_dot_q4_1(W[r], q[T - 1], d[T - 1], s[T - 1], nb, BS_Q4_1)


@njit(parallel=True, cache=True)
def _many_q4_1(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q4_1
    for r in prange(W.shape[0]):
        w, T = W[r], q.shape[0]
        T4, T2 = T // 4 * 4, T // 2 * 2
        for t in range(0, T4, 4):
            out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = S.row_dot4_q4_1(
                w, q[t], q[t + 1], q[t + 2], q[t + 3], d[t], d[t + 1], d[t + 2], d[t + 3],
                s[t], s[t + 1], s[t + 2], s[t + 3], nb, BS_Q4_1)
        for t in range(T4, T2, 2):
            out[t, r], out[t + 1, r] = S.row_dot2_q4_1(w, q[t], q[t + 1], d[t], d[t + 1], s[t], s[t + 1], nb, BS_Q4_1)
        if T2 < T:
            out[T2, r] = S.row_dot_q4_1(w, q[T2], d[T2], s[T2], nb, BS_Q4_1)


@njit(parallel=True, cache=True)
def _few_q5_0(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q5_0
    for r in prange(W.shape[0]):
        T = q.shape[0]
        for t in range(0, T - 1, 2):
            out[t, r], out[t + 1, r] = S.row_dot2_q5_0(W[r], q[t], q[t + 1], d[t], d[t + 1], d[t], d[t + 1], nb, BS_Q5_0)
        if T % 2:
            out[T - 1, r] = S.row_dot_q5_0(W[r], q[T - 1], d[T - 1], d[T - 1], nb, BS_Q5_0)


@njit(parallel=True, cache=True)
def _many_q5_0(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q5_0
    for r in prange(W.shape[0]):
        w, T = W[r], q.shape[0]
        T4, T2 = T // 4 * 4, T // 2 * 2
        for t in range(0, T4, 4):
            out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = S.row_dot4_q5_0(
                w, q[t], q[t + 1], q[t + 2], q[t + 3], d[t], d[t + 1], d[t + 2], d[t + 3],
                d[t], d[t + 1], d[t + 2], d[t + 3], nb, BS_Q5_0)
        for t in range(T4, T2, 2):
            out[t, r], out[t + 1, r] = S.row_dot2_q5_0(w, q[t], q[t + 1], d[t], d[t + 1], d[t], d[t + 1], nb, BS_Q5_0)
        if T2 < T:
            out[T2, r] = S.row_dot_q5_0(w, q[T2], d[T2], d[T2], nb, BS_Q5_0)


@njit(parallel=True, cache=True)
def _few_q5_1(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q5_1
    for r in prange(W.shape[0]):
        T = q.shape[0]
        for t in range(0, T - 1, 2):
            out[t, r], out[t + 1, r] = S.row_dot2_q5_1(W[r], q[t], q[t + 1], d[t], d[t + 1], s[t], s[t + 1], nb, BS_Q5_1)
        if T % 2:
            out[T - 1, r] = S.row_dot_q5_1(W[r], q[T - 1], d[T - 1], s[T - 1], nb, BS_Q5_1)


@njit(parallel=True, cache=True)
def _many_q5_1(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q5_1
    for r in prange(W.shape[0]):
        w, T = W[r], q.shape[0]
        T4, T2 = T // 4 * 4, T // 2 * 2
        for t in range(0, T4, 4):
            out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = S.row_dot4_q5_1(
                w, q[t], q[t + 1], q[t + 2], q[t + 3], d[t], d[t + 1], d[t + 2], d[t + 3],
                s[t], s[t + 1], s[t + 2], s[t + 3], nb, BS_Q5_1)
        for t in range(T4, T2, 2):
            out[t, r], out[t + 1, r] = S.row_dot2_q5_1(w, q[t], q[t + 1], d[t], d[t + 1], s[t], s[t + 1], nb, BS_Q5_1)
        if T2 < T:
            out[T2, r] = S.row_dot_q5_1(w, q[T2], d[T2], s[T2], nb, BS_Q5_1)


@njit(parallel=True, cache=True)
def _few_q8_0(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q8_0
    for r in prange(W.shape[0]):
        T = q.shape[0]
        for t in range(0, T - 1, 2):
            out[t, r], out[t + 1, r] = S.row_dot2_q8_0(W[r], q[t], q[t + 1], d[t], d[t + 1], d[t], d[t + 1], nb, BS_Q8_0)
        if T % 2:
            out[T - 1, r] = S.row_dot_q8_0(W[r], q[T - 1], d[T - 1], d[T - 1], nb, BS_Q8_0)


@njit(parallel=True, cache=True)
def _many_q8_0(W, q, d, s, out, scratch):
    nb = W.shape[1] // BS_Q8_0
    for r in prange(W.shape[0]):
        w, T = W[r], q.shape[0]
        T4, T2 = T // 4 * 4, T // 2 * 2
        for t in range(0, T4, 4):
            out[t, r], out[t + 1, r], out[t + 2, r], out[t + 3, r] = S.row_dot4_q8_0(
                w, q[t], q[t + 1], q[t + 2], q[t + 3], d[t], d[t + 1], d[t + 2], d[t + 3],
                d[t], d[t + 1], d[t + 2], d[t + 3], nb, BS_Q8_0)
        for t in range(T4, T2, 2):
            out[t, r], out[t + 1, r] = S.row_dot2_q8_0(w, q[t], q[t + 1], d[t], d[t + 1], d[t], d[t + 1], nb, BS_Q8_0)
        if T2 < T:
            out[T2, r] = S.row_dot_q8_0(w, q[T2], d[T2], d[T2], nb, BS_Q8_0)


def _pick(few, many):
    def matmul(W, q, d, s, out, scratch):
        return (many if q.shape[0] >= 4 else few)(W, q, d, s, out, scratch)
    return matmul


matmul_q4_1 = _pick(_few_q4_1, _many_q4_1)
matmul_q4_1.__doc__ = "ggml_vec_dot_q4_1_q8_1 (AVX2)."
matmul_q5_0 = _pick(_few_q5_0, _many_q5_0)
matmul_q5_0.__doc__ = "ggml_vec_dot_q5_0_q8_0 (AVX2)."
matmul_q5_1 = _pick(_few_q5_1, _many_q5_1)
matmul_q5_1.__doc__ = "ggml_vec_dot_q5_1_q8_1 (AVX2)."
matmul_q8_0 = _pick(_few_q8_0, _many_q8_0)
matmul_q8_0.__doc__ = "ggml_vec_dot_q8_0_q8_0 (AVX2)."


def matmul_q4_0(W, q, d, aux, out, scratch):
    """Q4_0: ggml_gemv_q4_0_8x8_q8_0's order for weights with a row count divisible by 8 (ggml
    repacks those on AVX2), ggml_vec_dot_q4_0_q8_0 (AVX2) for the others."""
    many = q.shape[0] >= 4
    if W.shape[0] % 8:
        return (_many_q4_0 if many else _few_q4_0)(W, q, d, aux, out, scratch)
    return (_many_q4_0_repacked if many else _few_q4_0_repacked)(W, q, d, aux, out, scratch)
