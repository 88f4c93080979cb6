"""Activation quantizers: ggml turns the activations into the weight type's dot partner.

Before an integer dot product ggml quantizes each activation row (``vec_dot_type``):
* q8_0 (Q4_0, Q5_0, Q8_0 weights): 32 values share ``d = amax/127`` stored as fp16;
* q8_1 (Q4_1, Q5_1 weights): as q8_0 plus ``s = d * sum(q)`` as fp16, for the weight's min;
* q8_K (all k-quants): 256 values share a float32 ``d``, with the sums of each 16 (bsums).

Each quantizer fills preallocated arrays (the per-token path allocates nothing); one token runs
on the calling thread, as waking the pool costs more than quantizing it, and the rows of a
prompt batch run in parallel:
``q`` int8[T, n]; ``d`` float32[T, n/32 or n/256]; ``s`` float32[T, n/32] (q8_1);
``bsums`` int32[T, n/16] (q8_K). Stored scales are the float32 value of their fp16 form,
which is what ggml's dot products read back.
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from numba import njit, prange

from .fp16 import f16_round as _as_f16

QK8_0 = GGML_QUANT_SIZES[GGMLQuantizationType.Q8_0][0]  # 32
QK8_1 = GGML_QUANT_SIZES[GGMLQuantizationType.Q8_1][0]  # 32
QK_K = GGML_QUANT_SIZES[GGMLQuantizationType.Q8_K][0]  # 256


@njit(inline="always", cache=True)
def _q8_block(x, base, qk, q, sumq_only):
    """Quantize x[base:base+qk] like ggml's AVX quantize_row_q8_0/q8_1: d = amax/127,
    multiplier 127/amax, round to nearest even. Returns (d as float32, sum of the quants)."""
    amax = np.float32(0.0)
    for j in range(qk):
        a = abs(x[base + j])
        if a > amax:
            amax = a
    d = np.float32(amax / np.float32(127.0))
    idd = np.float32(np.float32(127.0) / amax) if amax != 0 else np.float32(0.0)
    s = 0
    for j in range(qk):
        v = np.int32(np.rint(x[base + j] * idd))
        q[base + j] = v
        s += v
    return d, s


@njit(inline="always", cache=True)
def _q8_0_row(xt, qt, dt):
    for b in range(xt.shape[0] // QK8_0):
        db, _ = _q8_block(xt, b * QK8_0, QK8_0, qt, True)
        dt[b] = _as_f16(db)


@njit(inline="always", cache=True)
def _q8_1_row(xt, qt, dt, st):
    for b in range(xt.shape[0] // QK8_1):
        db, sb = _q8_block(xt, b * QK8_1, QK8_1, qt, False)
        dt[b] = _as_f16(db)
        st[b] = _as_f16(np.float32(db * np.float32(sb)))


@njit(inline="always", cache=True)
def _q8_K_row(xt, qt, dt, bt):
    """quantize_row_q8_K_ref: the scale comes from the signed value of largest magnitude,
    iscale = -127/max, nearest_int (ties to even), clamp at 127, d = 1/iscale."""
    for b in range(xt.shape[0] // QK_K):
        base = b * QK_K
        amax = np.float32(0.0)
        mx = np.float32(0.0)
        for j in range(QK_K):
            a = abs(xt[base + j])
            if a > amax:
                amax = a
                mx = xt[base + j]
        if amax == 0:
            dt[b] = 0.0
            for j in range(QK_K):
                qt[base + j] = 0
            for j in range(QK_K // 16):
                bt[b * (QK_K // 16) + j] = 0
            continue
        iscale = np.float32(np.float32(-127.0) / mx)
        for j in range(QK_K):
            v = np.int32(np.rint(np.float32(iscale * xt[base + j])))
            qt[base + j] = min(127, v)
        for j in range(QK_K // 16):
            acc = 0
            for i in range(16):
                acc += qt[base + j * 16 + i]
            bt[b * (QK_K // 16) + j] = acc
        dt[b] = np.float32(np.float32(1.0) / iscale)


# One token is quantized on the calling thread; the rows of a prompt batch in parallel.

@njit(parallel=True, cache=True)
def quantize_q8_0(x, q, d):
    """x float32[T, n] -> q int8[T, n], d float32[T, n/32] (fp16-rounded)."""
    if x.shape[0] == 1:
        _q8_0_row(x[0], q[0], d[0])
        return
    for t in prange(x.shape[0]):
        _q8_0_row(x[t], q[t], d[t])


@njit(parallel=True, cache=True)
def quantize_q8_1(x, q, d, s):
    """x float32[T, n] -> q int8[T, n], d and s float32[T, n/32] (both fp16-rounded)."""
    if x.shape[0] == 1:
        _q8_1_row(x[0], q[0], d[0], s[0])
        return
    for t in prange(x.shape[0]):
        _q8_1_row(x[t], q[t], d[t], s[t])


@njit(parallel=True, cache=True)
def quantize_q8_K(x, q, d, bsums):
    """x float32[T, n] -> q int8[T, n], d float32[T, n/256], bsums int32[T, n/16]."""
    if x.shape[0] == 1:
        _q8_K_row(x[0], q[0], d[0], bsums[0])
        return
    for t in prange(x.shape[0]):
        _q8_K_row(x[t], q[t], d[t], bsums[t])
