"""Dot products of float weights: F32 against float32, F16 and BF16 against activations
converted to the weight's own type first, as ggml does (``vec_dot_type`` of F16 is F16,
of BF16 is BF16). F32 and F16 follow ggml's AVX2 order (ggml_vec_dot_f32, ggml_vec_dot_f16)
bit for bit; BF16 is still a plain float32 dot (ggml_vec_dot_bf16's order is not reproduced).

Weights arrive as raw rows: F32 as float32[R, n], F16 and BF16 as uint16[R, n] bit patterns.
The activation ``x`` float32[T, n] is already rounded to the weight's type by the caller
(``prepare_activation``), so every kernel is a plain float32 dot.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

import numba

from ..simd import fma32, hsum8, reduce8_hadd
from ..simd512 import reduce16_ref
from .fp16 import F16_TO_F32, dot_f16_512, dot_f16_fast
from .legacy import FASTMATH

BF16_TO_F32 = (np.arange(65536, dtype=np.uint32) << 16).view(np.float32)


@njit(inline="always", cache=True)
def dot_f32(w, x, n, acc):
    """ggml_vec_dot_f32 (AVX2 + FMA): four accumulators of eight lanes (acc, 32 floats of scratch)
    take fused multiply-adds over the first n & ~31 elements, GGML_F32x8_REDUCE sums them
    ((0 + 2) + (1 + 3), then the two halves and two hadds), and the leftovers are added one by
    one into the float result (sumf += x*y, contracted by GCC)."""
    np_ = n & ~31
    for i in range(32):
        acc[i] = 0.0
    for i in range(0, np_, 32):
        for j in range(32):
            acc[j] = fma32(w[i + j], x[i + j], acc[j])
    for l in range(8):
        acc[l] = (acc[l] + acc[16 + l]) + (acc[8 + l] + acc[24 + l])
    s = reduce8_hadd(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])
    for i in range(np_, n):
        s = fma32(w[i], x[i], s)
    return s


@njit(parallel=True, cache=True)
def matmul_f32(W, x, out, scratch):
    """F32 weights against float32 activations (vec_dot_type F32), ggml_vec_dot_f32 per output
    (a plain matmul's batches go through tinyBLAS instead: mul_mat_f32)."""
    R, n = W.shape
    for r in prange(R):
        acc = scratch[numba.get_thread_id()]
        for t in range(x.shape[0]):
            out[t, r] = dot_f32(W[r], x[t], n, acc)


@njit(inline="always", cache=True)
def dot_f32_512(w, x, n, acc):
    """ggml_vec_dot_f32 on an AVX-512 build: four accumulators of sixteen lanes (acc, 64 floats
    of scratch) over the first n & ~63 elements, GGML_F32x16_REDUCE ((0 + 2), (1 + 3), their
    sum, then _mm512_reduce_add_ps), the leftovers fused into the float result."""
    np_ = n & ~63
    for i in range(64):
        acc[i] = 0.0
    for i in range(0, np_, 64):
        for j in range(64):
            acc[j] = fma32(w[i + j], x[i + j], acc[j])
    for l in range(16):
        acc[l] = (acc[l] + acc[32 + l]) + (acc[16 + l] + acc[48 + l])
    s = reduce16_ref(acc, 0)
    for i in range(np_, n):
        s = fma32(w[i], x[i], s)
    return s


@njit(parallel=True, cache=True)
def matmul_f32_512(W, x, out, scratch):
    """F32 weights, ggml_vec_dot_f32 of an AVX-512 build per output (dot_f32_512)."""
    R, n = W.shape
    for r in prange(R):
        acc = scratch[numba.get_thread_id()]
        for t in range(x.shape[0]):
            out[t, r] = dot_f32_512(W[r], x[t], n, acc)


@njit(parallel=True, cache=True)
def matmul_f16_512(W, x, out, scratch):
    """F16 weights, ggml_vec_dot_f16 of an AVX-512 build per output (dot_f16_512)."""
    R, n = W.shape
    for r in prange(R):
        for t in range(x.shape[0]):
            out[t, r] = dot_f16_512(x, t * n, W, r * n, n)


@njit(parallel=True, cache=True)
def matmul_f16(W, x, out, scratch):
    """F16 weights against activations rounded to fp16 (vec_dot_type F16): ggml_vec_dot_f16
    (dot_f16_fast, the order the attention's K and V dots use)."""
    R, n = W.shape
    for r in prange(R):
        for t in range(x.shape[0]):
            out[t, r] = dot_f16_fast(x, t * n, W, r * n, n)


# -- prompt batches: llamafile's tinyBLAS -------------------------------------------------------
# ggml_compute_forward_mul_mat hands a plain matmul to llamafile_sgemm first; for F32 and F16
# weights it takes the product when the activations have two rows or more (n >= 2), k is a
# multiple of the vector width KN (8 floats on AVX2, 16 on AVX-512) and the weight has a multiple
# of 4 rows (tinyBLAS::matmul); F16 after the activations are rounded to fp16, as vec_dot_type F16
# has them anyway. Every output is then one vector of KN lanes (tinyBLAS::gemm_bloc: Cv = madd(A, B,
# Cv) over k in steps of KN) reduced by hsum. ggml_mul_mat_id (experts) never goes there.

@njit(inline="always", cache=True)
def tinyblas_takes(T, R, n, lanes):
    """llamafile_sgemm's conditions for an F32 / F16 matmul of T activation rows."""
    return T >= 2 and R % 4 == 0 and n % lanes == 0


@njit(inline="always", cache=True)
def _tinyblas_hsum(acc, lanes):
    """tinyBLAS's hsum: hsum(__m256) is hsum_float_8's order; hsum(__m512) is
    _mm512_reduce_add_ps, which adds the two halves first."""
    if lanes == 16:
        return reduce16_ref(acc, 0)
    return hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])


@njit(inline="always", cache=True)
def dot_tinyblas_f32(w, x, n, lanes, acc):
    """One output of tinyBLAS<KN, ..., float, float, float>::gemm_bloc: lane j sums
    fma(w[l + j], x[l + j]) for l = 0, KN, 2 KN, ... (acc: lanes floats of scratch)."""
    for j in range(lanes):
        acc[j] = 0.0
    for l in range(0, n, lanes):
        for j in range(lanes):
            acc[j] = fma32(w[l + j], x[l + j], acc[j])
    return _tinyblas_hsum(acc, lanes)


@njit(inline="always", cache=True)
def dot_tinyblas_f16(w, x, n, lanes, acc):
    """tinyBLAS<KN, ..., ggml_fp16_t, ggml_fp16_t, float>: as dot_tinyblas_f32, both operands
    fp16 widened to float32 by load (w: the weight's fp16 bits, x: values already on fp16)."""
    for j in range(lanes):
        acc[j] = 0.0
    for l in range(0, n, lanes):
        for j in range(lanes):
            acc[j] = fma32(F16_TO_F32[w[l + j]], x[l + j], acc[j])
    return _tinyblas_hsum(acc, lanes)


@njit(parallel=True, cache=True)
def _matmul_tinyblas_f32(W, x, out, scratch, lanes):
    R, n = W.shape
    for r in prange(R):
        acc = scratch[numba.get_thread_id()]
        for t in range(x.shape[0]):
            out[t, r] = dot_tinyblas_f32(W[r], x[t], n, lanes, acc)


@njit(parallel=True, cache=True)
def _matmul_tinyblas_f16(W, x, out, scratch, lanes):
    R, n = W.shape
    for r in prange(R):
        acc = scratch[numba.get_thread_id()]
        for t in range(x.shape[0]):
            out[t, r] = dot_tinyblas_f16(W[r], x[t], n, lanes, acc)


@njit(cache=True)
def mul_mat_f32(W, x, out, scratch):
    """An F32 weight in a plain matmul on AVX2: tinyBLAS (8 lanes) where it takes the batch,
    ggml_vec_dot_f32 (matmul_f32) otherwise."""
    if tinyblas_takes(x.shape[0], W.shape[0], W.shape[1], 8):
        _matmul_tinyblas_f32(W, x, out, scratch, 8)
    else:
        matmul_f32(W, x, out, scratch)


@njit(cache=True)
def mul_mat_f32_512(W, x, out, scratch):
    """As mul_mat_f32 on an AVX-512 build: tinyBLAS of 16 lanes, else matmul_f32_512."""
    if tinyblas_takes(x.shape[0], W.shape[0], W.shape[1], 16):
        _matmul_tinyblas_f32(W, x, out, scratch, 16)
    else:
        matmul_f32_512(W, x, out, scratch)


@njit(cache=True)
def mul_mat_f16(W, x, out, scratch):
    """An F16 weight in a plain matmul on AVX2: tinyBLAS (8 lanes) where it takes the batch,
    ggml_vec_dot_f16 (matmul_f16) otherwise."""
    if tinyblas_takes(x.shape[0], W.shape[0], W.shape[1], 8):
        _matmul_tinyblas_f16(W, x, out, scratch, 8)
    else:
        matmul_f16(W, x, out, scratch)


@njit(cache=True)
def mul_mat_f16_512(W, x, out, scratch):
    """As mul_mat_f16 on an AVX-512 build: tinyBLAS of 16 lanes, else matmul_f16_512."""
    if tinyblas_takes(x.shape[0], W.shape[0], W.shape[1], 16):
        _matmul_tinyblas_f16(W, x, out, scratch, 16)
    else:
        matmul_f16_512(W, x, out, scratch)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_bf16(W, x, out, scratch):
    """ggml_vec_dot_bf16: W uint16[R, n] bf16 bits, x float32 values already bf16-rounded."""
    R, n = W.shape
    for r in prange(R):
        w = W[r]
        for t in range(x.shape[0]):
            xt = x[t]
            acc = np.float32(0.0)
            for j in range(n):
                acc += BF16_TO_F32[w[j]] * xt[j]
            out[t, r] = acc


@njit(cache=True)
def round_to_bf16(x, out):
    """out = float32(bf16(x)) for 1-D arrays, rounding to nearest even as
    ggml_compute_fp32_to_bf16."""
    bits = x.view(np.uint32)
    ob = out.view(np.uint32)
    for i in range(x.shape[0]):
        u = bits[i]
        if (u & 0x7FFFFFFF) > 0x7F800000:  # nan: keep it quiet
            ob[i] = (u | 0x00400000) & 0xFFFF0000
        else:
            ob[i] = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16) << 16
