"""MXFP4 (OCP microscaling FP4, gpt-oss's expert weights) and NVFP4, as ggml-quants.c has them.

Block layout (ggml-common.h, block_mxfp4): e (one E8M0 byte: a power of two), qs[QK/2] of
4-bit E2M1 codes, weight j < QK/2 in the low nibble of qs[j] and weight j + QK/2 in its high
nibble. A code names one of `KVALUES` (the E2M1 values doubled, as int8), so w = kvalues[code] *
e8m0_half(e), where e8m0_half is half the power of two the exponent byte names.

NVFP4 (block_nvfp4): 64 weights as four sub-blocks of 16, each with its own unsigned E4M3
scale byte d[s] (UE4M3_TO_F32, halved like e8m0_half) and the same E2M1 codes: sub-block s
holds weight j < 8 in the low nibble of qs[8s + j] and weight j + 8 in its high nibble. The
scale is amax / 6 rounded to E4M3 (ggml_fp32_to_ue4m3), so the largest code lands on amax.
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T
from gguf.quants import MXFP4 as _GGUF_MXFP4
from numba import njit, prange

from ..grids import UE4M3_TO_F32
from ..simd import f32_as_i32, i32_as_f32, libm_log2f
from . import Codec, register

QK = GGML_QUANT_SIZES[T.MXFP4][0]
BS = GGML_QUANT_SIZES[T.MXFP4][1]  # 1 exponent byte + QK/2 bytes of codes
KVALUES = np.array(_GGUF_MXFP4.kvalues, np.int8)  # kvalues_mxfp4 of ggml-common.h (gguf-py's copy)


@njit(inline="always", cache=True)
def e8m0_half(e):
    """ggml_e8m0_to_fp32_half: 2^(e - 128) as a float32, subnormal for e < 2."""
    e = np.int32(e)
    bits = np.int32(0x00200000) << e if e < 2 else (e - 1) << 23
    return i32_as_f32(np.int32(bits))


@njit(inline="always", cache=True)
def _best_index(x, d):
    """best_index_mxfp4: the first code whose value is nearest to x (strictly better wins)."""
    best, err = 0, abs(np.float32(KVALUES[0] * d) - x)
    for i in range(1, 16):
        e = abs(np.float32(KVALUES[i] * d) - x)
        if e < err:
            best, err = i, e
    return best


@njit(cache=True, parallel=True)
def _quantize(x, out):
    """quantize_row_mxfp4_ref: e = floorf(log2f(amax)) - 2 + 127 (0 for an all-zero block)."""
    n, ne0 = x.shape
    for r in prange(n):
        for b in range(ne0 // QK):
            xo, o = b * QK, b * BS
            amax = np.float32(0.0)
            for j in range(QK):
                a = abs(x[r, xo + j])
                if amax < a:
                    amax = a
            e = np.uint8(np.int32(np.floor(libm_log2f(amax))) - 2 + 127) if amax > 0 else np.uint8(0)
            d = e8m0_half(e)
            out[r, o] = e
            for j in range(QK // 2):
                lo = _best_index(x[r, xo + j], d)
                hi = _best_index(x[r, xo + QK // 2 + j], d)
                out[r, o + 1 + j] = np.uint8(lo | (hi << 4))


@njit(cache=True, parallel=True)
def _dequantize(q, out):
    n, rb = q.shape
    for r in prange(n):
        for b in range(rb // BS):
            o, xo = b * BS, b * QK
            d = e8m0_half(q[r, o])
            for j in range(QK // 2):
                v = q[r, o + 1 + j]
                out[r, xo + j] = np.float32(KVALUES[v & 15]) * d
                out[r, xo + QK // 2 + j] = np.float32(KVALUES[v >> 4]) * d


def _validate(q) -> int:
    return -1  # an E8M0 exponent and E2M1 codes have no NaN or infinity to check


QK_NV, BS_NV = GGML_QUANT_SIZES[T.NVFP4]
QK_NV_SUB = 16


@njit(inline="always", cache=True)
def fp32_to_ue4m3(x):
    """ggml_fp32_to_ue4m3: round to nearest (ties up) into E4M3 without sign, clamped to 448;
    0x7E for what overflows, subnormals below 2^-6."""
    if not (x > 0):
        return 0
    x = min(x, np.float32(448.0))
    bits = np.int64(f32_as_i32(x))
    exp = ((bits >> 23) & 0xFF) - 127 + 7
    if exp <= 0:  # subnormal: man * 2^-9, man = (int)(x * 512 + 0.5)
        man = np.int64(x * np.float32(512.0) + np.float32(0.5))
        return 0 if man < 1 else min(man, 7)
    if exp >= 15:
        return 0x7E
    man = ((bits >> 20) & 7) + ((bits >> 19) & 1)
    if man > 7:
        man = 0
        exp += 1
        if exp >= 15:
            return 0x7E
    return (exp << 3) | man


@njit(cache=True, parallel=True)
def _quantize_nvfp4(x, out):
    """quantize_row_nvfp4_ref (quantize_nvfp4 ignores quant_weights)."""
    n, ne0 = x.shape
    for r in prange(n):
        for b in range(ne0 // QK_NV):
            for s in range(QK_NV // QK_NV_SUB):
                xo, o = b * QK_NV + s * QK_NV_SUB, b * BS_NV
                amax = np.float32(0.0)
                for j in range(QK_NV_SUB):
                    a = abs(x[r, xo + j])
                    if amax < a:
                        amax = a
                ue = fp32_to_ue4m3(amax / np.float32(6.0))
                out[r, o + s] = ue
                d = UE4M3_TO_F32[ue]
                for j in range(QK_NV_SUB // 2):
                    lo = _best_index(x[r, xo + j], d)
                    hi = _best_index(x[r, xo + QK_NV_SUB // 2 + j], d)
                    out[r, o + 4 + s * (QK_NV_SUB // 2) + j] = np.uint8(lo | (hi << 4))


@njit(cache=True, parallel=True)
def _dequantize_nvfp4(q, out):
    """dequantize_row_nvfp4."""
    n, rb = q.shape
    for r in prange(n):
        for b in range(rb // BS_NV):
            for s in range(QK_NV // QK_NV_SUB):
                o, xo = b * BS_NV, b * QK_NV + s * QK_NV_SUB
                d = UE4M3_TO_F32[q[r, o + s]]
                for j in range(QK_NV_SUB // 2):
                    v = q[r, o + 4 + s * (QK_NV_SUB // 2) + j]
                    out[r, xo + j] = np.float32(KVALUES[v & 15]) * d
                    out[r, xo + QK_NV_SUB // 2 + j] = np.float32(KVALUES[v >> 4]) * d


register(Codec(T.MXFP4, _quantize, _dequantize, _validate))
register(Codec(T.NVFP4, _quantize_nvfp4, _dequantize_nvfp4, _validate))  # every UE4M3 byte is valid
