"""The matrix products of ggml's AMX buffer type (ggml-cpu/amx/mmq.cpp), for builds whose
compiler saw ``__AMX_INT8__`` and ``__AVX512VNNI__`` (GGML_NATIVE on a Sapphire Rapids or later
Xeon).

On such a build llama.cpp places every weight of an AMX type into the AMX buffer when the op
that uses it is a plain MUL_MAT (not GET_ROWS: a tied token_embd stays on the CPU path; not
MUL_MAT_ID: experts stay too), its row count is a multiple of 32 and its row length a multiple
of the type's tile (32, or 256 for the K-quants): ``ggml_backend_amx_device_supports_op``.
Those weights are repacked at load, and a one-token product runs ``tinygemm_kernel_vnni``:
sixteen rows a vector, and for each block one integer dot (``_mm512_dpbusd_epi32``, exact)
folded into the row's single float accumulator with fused multiply-adds, block after block.
That is one accumulator a row where ggml_vec_dot_* keeps eight lanes, so the sums round
differently. The integer sums are order-free; only the float chain is mirrored here.

Prompt batches (M > 1) run AMX tiles there (``tinygemm_kernel_amx``); here every token takes
the one-token order, which those tiles share for the legacy types (see ``AMX_BATCH_EXACT``).
"""

from __future__ import annotations

import numba
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from numba import njit, prange

from ..simd import fma32
from ..simd512 import reduce16_ref
from .fp16 import F16_TO_F32
from .kquants import BS_Q4_K, BS_Q5_K, BS_Q6_K, QK_K, _q4k_sums, scale_min_k4

BS_Q4_0 = GGML_QUANT_SIZES[T.Q4_0][1]
BS_Q4_1 = GGML_QUANT_SIZES[T.Q4_1][1]
BS_Q8_0 = GGML_QUANT_SIZES[T.Q8_0][1]

# qtype_has_amx_kernels (amx/common.h) and the row-length alignment supports_op asks of each
AMX_TYPES = {T.Q4_0: 32, T.Q4_1: 32, T.Q8_0: 32, T.Q4_K: 256, T.Q5_K: 256, T.Q6_K: 256, T.IQ4_XS: 256, T.F16: 16}
TILE_ROWS = 32  # op->ne[0] % (TILE_N * 2)


def eligible(qtype, n_in: int, n_out: int) -> bool:
    """Whether llama.cpp puts a MUL_MAT weight of this type and shape into the AMX buffer."""
    align = AMX_TYPES.get(qtype)
    return align is not None and n_out % TILE_ROWS == 0 and n_in % align == 0


@njit(inline="always", cache=True)
def _isum_q4_1(w, o, q, qo):
    """The block's integer dot: nibbles (unsigned) against the q8_1 values, exact."""
    s = np.int32(0)
    for j in range(16):
        b = np.int32(w[o + j])
        s += (b & 15) * np.int32(q[qo + j]) + (b >> 4) * np.int32(q[qo + 16 + j])
    return s


@njit(cache=True)
def row_q4_1_ref(w, q, d, s, nb):
    """One row of tinygemm_kernel_vnni<block_q8_1, block_q4_1>: per block
    acc = fma(float(isum), d_w * d_x, acc), then acc = fma(m_w, s_x, acc)."""
    acc = np.float32(0.0)
    for b in range(nb):
        o = b * BS_Q4_1
        isum = np.int32(0)
        for j in range(16):
            isum += np.int32(w[o + 4 + j] & 15) * np.int32(q[b * 32 + j])
            isum += np.int32(w[o + 4 + j] >> 4) * np.int32(q[b * 32 + 16 + j])
        dw = F16_TO_F32[np.int64(w[o]) | (np.int64(w[o + 1]) << 8)]
        mw = F16_TO_F32[np.int64(w[o + 2]) | (np.int64(w[o + 3]) << 8)]
        acc = fma32(np.float32(isum), np.float32(dw * d[b]), acc)
        acc = fma32(mw, s[b], acc)
    return acc


@njit(parallel=True, cache=True)
def matmul_q4_1(W, q, d, s, out, scratch):
    """Q4_1 weights in the AMX buffer against q8_1 activations (twin: row_q4_1_ref)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q4_1
    Tn = q.shape[0]
    for r in prange(R):
        w = W[r]
        for t in range(Tn):
            qt, dt, st = q[t], d[t], s[t]
            acc = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q4_1
                isum = _isum_q4_1(w, o + 4, qt, b * 32)
                dw = F16_TO_F32[np.int64(w[o]) | (np.int64(w[o + 1]) << 8)]
                mw = F16_TO_F32[np.int64(w[o + 2]) | (np.int64(w[o + 3]) << 8)]
                acc = fma32(np.float32(isum), np.float32(dw * dt[b]), acc)
                acc = fma32(mw, st[b], acc)
            out[t, r] = acc


@njit(inline="always", cache=True)
def _isum_q8_0(w, o, q, qo):
    s = np.int32(0)
    for j in range(32):
        s += np.int32(np.int8(w[o + j])) * np.int32(q[qo + j])
    return s


@njit(inline="always", cache=True)
def _isum_q4_0(w, o, q, qo):
    """(nibble - 8) against q8_0 values; ggml sums nibble * q and subtracts 8 * sum(q), the same."""
    s = np.int32(0)
    for j in range(16):
        b = np.int32(w[o + j])
        s += ((b & 15) - 8) * np.int32(q[qo + j]) + ((b >> 4) - 8) * np.int32(q[qo + 16 + j])
    return s


@njit(cache=True)
def row_scaled_ref(w, q, d, nb, bs, signed4):
    """One row of tinygemm_kernel_vnni<block_q8_0, block_q8_0 / block_q4_0>: per block
    acc = fma(float(isum), d_w * d_x, acc). signed4: Q4_0 (nibble - 8), else Q8_0."""
    acc = np.float32(0.0)
    for b in range(nb):
        o = b * bs
        isum = np.int32(0)
        for j in range(32 if not signed4 else 16):
            if signed4:
                isum += (np.int32(w[o + 2 + j] & 15) - 8) * np.int32(q[b * 32 + j])
                isum += (np.int32(w[o + 2 + j] >> 4) - 8) * np.int32(q[b * 32 + 16 + j])
            else:
                isum += np.int32(np.int8(w[o + 2 + j])) * np.int32(q[b * 32 + j])
        dw = F16_TO_F32[np.int64(w[o]) | (np.int64(w[o + 1]) << 8)]
        acc = fma32(np.float32(isum), np.float32(dw * d[b]), acc)
    return acc


@njit(parallel=True, cache=True)
def _matmul_scaled(W, q, d, out, bs, signed4):
    """Q8_0 or Q4_0 (signed4) rows in the AMX buffer against q8_0 activations: per block
    acc = fma(float(isum), d_w * d_x, acc) (twin: row_scaled_ref)."""
    R = W.shape[0]
    nb = W.shape[1] // bs
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt, dt = q[t], d[t]
            acc = np.float32(0.0)
            for b in range(nb):
                o = b * bs
                dw = F16_TO_F32[np.int64(w[o]) | (np.int64(w[o + 1]) << 8)]
                isum = _isum_q4_0(w, o + 2, qt, b * 32) if signed4 else _isum_q8_0(w, o + 2, qt, b * 32)
                acc = fma32(np.float32(isum), np.float32(dw * dt[b]), acc)
            out[t, r] = acc


def matmul_q8_0(W, q, d, aux, out, scratch):
    """Q8_0 weights in the AMX buffer against q8_0 activations."""
    _matmul_scaled(W, q, d, out, BS_Q8_0, False)


def matmul_q4_0(W, q, d, aux, out, scratch):
    """Q4_0 weights in the AMX buffer against q8_0 activations."""
    _matmul_scaled(W, q, d, out, BS_Q4_0, True)


@njit(inline="always", cache=True)
def _q4k_mins(w, o, bt, b):
    """sum over the eight 32-value groups of min_g * (bsum[2g] + bsum[2g+1]), exact."""
    m = np.int32(0)
    for g in range(8):
        _, mn = scale_min_k4(g, w, o + 4)
        m += mn * (bt[16 * b + 2 * g] + bt[16 * b + 2 * g + 1])
    return m


@njit(inline="always", cache=True)
def _q6k_sums(w, o, qt, x0):
    """sum over the sixteen 16-value groups of scale_g * ((q6 - 32) . q8), exact. Value v of the
    super-block: 128-value half n, 32-value quarter k, position l (see dequantize_row_q6_K)."""
    ws = w.view(np.int8)
    isum = np.int32(0)
    for n in range(2):
        for k in range(4):
            for h in range(2):  # the two 16-value groups of the quarter
                part = np.int32(0)
                for i in range(16):
                    l = 16 * h + i
                    lo = np.int32(w[o + 64 * n + 32 * (k & 1) + l]) >> (4 * (k >> 1)) & 15
                    hi = (np.int32(w[o + 128 + 32 * n + l]) >> (2 * k)) & 3
                    part += ((lo | (hi << 4)) - 32) * np.int32(qt[x0 + 128 * n + 32 * k + l])
                isum += np.int32(ws[o + 192 + 8 * n + 2 * k + h]) * part
    return isum


@njit(cache=True)
def row_q4_K_ref(w, q, d, bsums, nb):
    """One row of tinygemm_kernel_vnni<block_q8_K, block_q4_K>: per super-block
    acc = fma(float(sum_g sc_g * q4 . q8), d_w * d_x, acc), then
    acc = fnmadd(float(sum_g min_g * bsums of g), dmin_w * d_x, acc)."""
    acc = np.float32(0.0)
    for b in range(nb):
        o = b * BS_Q4_K
        isum = np.int32(0)
        msum = np.int32(0)
        for g in range(8):
            sc, mn = scale_min_k4(g, w, o + 4)
            p = np.int32(0)
            for l in range(32):
                v = b * QK_K + 32 * g + l
                byte = np.int32(w[o + 16 + 32 * (g // 2) + l])
                p += ((byte >> 4) if g % 2 else (byte & 15)) * np.int32(q[v])
            isum += sc * p
            msum += mn * (bsums[16 * b + 2 * g] + bsums[16 * b + 2 * g + 1])
        dw = F16_TO_F32[np.int64(w[o]) | (np.int64(w[o + 1]) << 8)]
        dmin = F16_TO_F32[np.int64(w[o + 2]) | (np.int64(w[o + 3]) << 8)]
        acc = fma32(np.float32(isum), np.float32(dw * d[b]), acc)
        acc = fma32(-np.float32(msum), np.float32(dmin * d[b]), acc)
    return acc


@njit(cache=True)
def row_q6_K_ref(w, q, d, nb):
    """One row of tinygemm_kernel_vnni<block_q8_K, block_q6_K>: per super-block
    acc = fma(float(sum_g scale_g * (q6 - 32) . q8), d_w * d_x, acc)."""
    ws = w.view(np.int8)
    acc = np.float32(0.0)
    for b in range(nb):
        o = b * BS_Q6_K
        isum = np.int32(0)
        for v in range(QK_K):
            n, k, l = v // 128, (v % 128) // 32, v % 32
            lo = (np.int32(w[o + 64 * n + 32 * (k % 2) + l]) >> (4 * (k // 2))) & 15
            hi = (np.int32(w[o + 128 + 32 * n + l]) >> (2 * k)) & 3
            isum += np.int32(ws[o + 192 + v // 16]) * ((lo | (hi << 4)) - 32) * np.int32(q[b * QK_K + v])
        dw = F16_TO_F32[np.int64(w[o + 208]) | (np.int64(w[o + 209]) << 8)]
        acc = fma32(np.float32(isum), np.float32(dw * d[b]), acc)
    return acc


@njit(parallel=True, cache=True)
def matmul_q4_K(W, q, d, bsums, out, scratch):
    """Q4_K weights in the AMX buffer against q8_K activations (twin: row_q4_K_ref)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q4_K
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt, dt, bt = q[t], d[t], bsums[t]
            acc = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q4_K
                dw = F16_TO_F32[np.int64(w[o]) | (np.int64(w[o + 1]) << 8)]
                dmin = F16_TO_F32[np.int64(w[o + 2]) | (np.int64(w[o + 3]) << 8)]
                acc = fma32(np.float32(_q4k_sums(w, o, qt, b * QK_K)), np.float32(dw * dt[b]), acc)
                acc = fma32(-np.float32(_q4k_mins(w, o, bt, b)), np.float32(dmin * dt[b]), acc)
            out[t, r] = acc


@njit(inline="always", cache=True)
def _q5k_sums(w, o, qt, x0):
    """Exact integer sum of a Q5_K super-block against qt[x0:x0+256]: scale_j * (5-bit values .
    q8) over its eight 32-value groups (qh bit 2j / 2j+1 on top of the nibbles)."""
    isum = np.int32(0)
    for j in range(4):
        sc1, _ = scale_min_k4(2 * j, w, o + 4)
        sc2, _ = scale_min_k4(2 * j + 1, w, o + 4)
        lo = np.int32(0)
        hi = np.int32(0)
        for i in range(32):
            v = np.int32(w[o + 48 + 32 * j + i])
            h = np.int32(w[o + 16 + i])
            lo += ((v & 15) | (((h >> (2 * j)) & 1) << 4)) * np.int32(qt[x0 + 64 * j + i])
            hi += ((v >> 4) | (((h >> (2 * j + 1)) & 1) << 4)) * np.int32(qt[x0 + 64 * j + 32 + i])
        isum += sc1 * lo + sc2 * hi
    return isum


@njit(parallel=True, cache=True)
def matmul_q5_K(W, q, d, bsums, out, scratch):
    """Q5_K weights in the AMX buffer (tinygemm_kernel_vnni<block_q8_K, block_q5_K>): Q4_K's
    chain with 5-bit values, acc = fma(isum, d_w * d_x, acc), then acc = fma(-mins, dmin_w *
    d_x, acc) per super-block (_mm512_fnmadd_ps)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q5_K
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt, dt, bt = q[t], d[t], bsums[t]
            acc = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q5_K
                dw = F16_TO_F32[np.int64(w[o]) | (np.int64(w[o + 1]) << 8)]
                dmin = F16_TO_F32[np.int64(w[o + 2]) | (np.int64(w[o + 3]) << 8)]
                acc = fma32(np.float32(_q5k_sums(w, o, qt, b * QK_K)), np.float32(dw * dt[b]), acc)
                acc = fma32(-np.float32(_q4k_mins(w, o, bt, b)), np.float32(dmin * dt[b]), acc)
            out[t, r] = acc


@njit(parallel=True, cache=True)
def matmul_q6_K(W, q, d, bsums, out, scratch):
    """Q6_K weights in the AMX buffer against q8_K activations (twin: row_q6_K_ref)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_Q6_K
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt, dt = q[t], d[t]
            acc = np.float32(0.0)
            for b in range(nb):
                o = b * BS_Q6_K
                dw = F16_TO_F32[np.int64(w[o + 208]) | (np.int64(w[o + 209]) << 8)]
                acc = fma32(np.float32(_q6k_sums(w, o, qt, b * QK_K)), np.float32(dw * dt[b]), acc)
            out[t, r] = acc


@njit(parallel=True, cache=True)
def matmul_f16(W, x, out, scratch):
    """F16 weights in the AMX buffer: tinygemm_kernel_avx<float, ggml_fp16_t>, whose activations
    stay float32 (no fp16 rounding, unlike vec_dot_f16): one accumulator of sixteen lanes over
    the row in steps of sixteen, then _mm512_reduce_add_ps. W uint16[R, n] fp16 bits."""
    R, n = W.shape
    for r in prange(R):
        acc = scratch[numba.get_thread_id()]
        w = W[r]
        for t in range(x.shape[0]):
            xt = x[t]
            for l in range(16):
                acc[l] = 0.0
            for k in range(0, n, 16):
                for l in range(16):
                    acc[l] = fma32(xt[k + l], F16_TO_F32[w[k + l]], acc[l])
            out[t, r] = reduce16_ref(acc, 0)
