"""Dot products of float weights: F32 against float32, F16 and BF16 against activations
converted to the weight's own type first, as ggml does (``vec_dot_type`` of F16 is F16,
of BF16 is BF16), with float32 accumulation.

Weights arrive as raw rows: F32 as float32[R, n], F16 and BF16 as uint16[R, n] bit patterns.
The activation ``x`` float32[T, n] is already rounded to the weight's type by the caller
(``prepare_activation``), so every kernel is a plain float32 dot.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .fp16 import F16_TO_F32
from .legacy import FASTMATH

BF16_TO_F32 = (np.arange(65536, dtype=np.uint32) << 16).view(np.float32)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_f32(W, x, out):
    """ggml_vec_dot_f32."""
    R, n = W.shape
    for r in prange(R):
        w = W[r]
        for t in range(x.shape[0]):
            xt = x[t]
            acc = np.float32(0.0)
            for j in range(n):
                acc += w[j] * xt[j]
            out[t, r] = acc


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_f16(W, x, out):
    """ggml_vec_dot_f16: W uint16[R, n] fp16 bits, x float32 values already fp16-rounded."""
    R, n = W.shape
    for r in prange(R):
        w = W[r]
        for t in range(x.shape[0]):
            xt = x[t]
            acc = np.float32(0.0)
            for j in range(n):
                acc += F16_TO_F32[w[j]] * xt[j]
            out[t, r] = acc


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def matmul_bf16(W, x, out):
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
