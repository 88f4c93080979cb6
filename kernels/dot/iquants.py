"""Dot products of the i-quants against their activation partners, in ggml's AVX2 float order.

Same contract as ``kquants.py``: ``out[t, r] = dot(W[r], x[t])``. IQ2_XXS, IQ2_XS, IQ2_S,
IQ3_XXS, IQ3_S, IQ1_S, IQ1_M and IQ4_XS take q8_K activations (``q`` int8[T, n], ``d``
float32[T, n/256], ``bsums`` int32[T, n/16]); IQ4_NL takes q8_0 (``d`` float32[T, n/32]).

Every ``ggml_vec_dot_iq*_q8_K`` of ggml-cpu/arch/x86/quants.c (AVX2) has one shape: the
weights of a 32-value chunk, grid value times sign, are multiplied with the activations by
``maddubs`` and ``madd`` with the chunk's integer scale, so that lane l (0..7) of a super-block
holds the exact integer sum over the eight chunks of elements 4l..4l+3; then one float step
per super-block, ``acc[l] = fma(d_w * d_x, lane, acc[l])``, and ``hsum_float_8`` at the end,
times the type's constant (1/8 for IQ2, 1/4 for IQ3_XXS). Integer sums are exact in any order,
so only the lane membership and the float steps are spelled out. ``_lanes_<type>`` returns
the eight integer lanes of one super-block, decoding each 32-value chunk's header (grid
indices, signs, scale) once; signs are +-1 rows (``KEVEN_SIGNS`` for a 7-bit ksigns index,
``BYTE_SIGNS`` for a raw sign byte) rather than branches. The grids and sign tables come from
``kernels.grids``.

Block layouts (bytes), from ggml-common.h:
  IQ2_XXS  d:f16 | qs: 8 x (4 grid bytes, u32 of 4 x 7 sign bits + 4-bit scale)
  IQ2_XS   d:f16 | qs: 32 x u16 (9-bit grid index, 7 sign bits) | scales[8] (2 x 4 bits)
  IQ2_S    d:f16 | qs[32] grid low bits | signs[32] | qh[8] (4 x 2 high bits) | scales[8]
  IQ3_XXS  d:f16 | qs[64] grid bytes | 8 x u32 (4 x 7 sign bits + 4-bit scale)
  IQ3_S    d:f16 | qs[64] | qh[8] (bit 8 of each index) | signs[32] | scales[4] (2 x 4 bits)
  IQ1_S    d:f16 | qs[32] | qh: 8 x u16 (4 x 3 high bits, 3-bit scale, delta sign)
  IQ1_M    qs[32] | qh[16] (2 x (3 high bits, delta sign)) | scales: 4 x u16 (3-bit scales
           and, in their top nibbles, the fp16 super-block scale)
  IQ4_XS   d:f16 | scales_h:u16 | scales_l[4] | qs[128] (nibbles, kvalues_iq4nl)
  IQ4_NL   d:f16 | qs[16] (32 nibbles, kvalues_iq4nl), blocks of 32
"""

from __future__ import annotations

import numba
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from numba import njit, prange

from ..grids import (IQ1S_DELTA, IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KEVEN_SIGNS,
                     KVALUES_IQ4NL)
from ..simd import block_iq4nl, fma32, hsum8, isum_iq4nl, lanes_iq4nl_scaled
from .fp16 import F16_TO_F32
from .legacy import _h, _lane_count, _u32

QK_K = GGML_QUANT_SIZES[T.Q8_K][0]  # 256
QK4_NL = GGML_QUANT_SIZES[T.IQ4_NL][0]  # 32
BS_IQ2_XXS = GGML_QUANT_SIZES[T.IQ2_XXS][1]
BS_IQ2_XS = GGML_QUANT_SIZES[T.IQ2_XS][1]
BS_IQ2_S = GGML_QUANT_SIZES[T.IQ2_S][1]
BS_IQ3_XXS = GGML_QUANT_SIZES[T.IQ3_XXS][1]
BS_IQ3_S = GGML_QUANT_SIZES[T.IQ3_S][1]
BS_IQ1_S = GGML_QUANT_SIZES[T.IQ1_S][1]
BS_IQ1_M = GGML_QUANT_SIZES[T.IQ1_M][1]
BS_IQ4_XS = GGML_QUANT_SIZES[T.IQ4_XS][1]
BS_IQ4_NL = GGML_QUANT_SIZES[T.IQ4_NL][1]
NSUB16 = QK_K // 16  # bsums per super-block
IQ2_SCALE = np.float32(0.125)
IQ3XXS_SCALE = np.float32(0.25)
# +-1 for bit j of a raw sign byte (IQ2_S, IQ3_S), as KEVEN_SIGNS is for a 7-bit ksigns index
BYTE_SIGNS = np.where((np.arange(256)[:, None] >> np.arange(8)) & 1, -1, 1).astype(np.int8)


@njit(inline="always", cache=True)
def _u16(w, o):
    return np.int32(w[o]) | (np.int32(w[o + 1]) << 8)


# ---------------------------------------------------------------------------------------------
# integer lanes: the eight lanes of the super-block at byte o, activations qt[x0 : x0 + 256],
# each chunk's header decoded once
# ---------------------------------------------------------------------------------------------

@njit(inline="always", cache=True)
def _delta_iq1_s(w, o, bsums, bs):
    """The scalar sum of ggml's IQ1_S kernel: per chunk, (bsum of its two halves) * delta sign
    * scale, exactly."""
    s = np.int32(0)
    for ib in range(QK_K // 32):
        qh = _u16(w, o + 2 + 32 + 2 * ib)
        v = (bsums[bs + 2 * ib] + bsums[bs + 2 * ib + 1]) * (2 * ((qh >> 12) & 7) + 1)
        s += -v if qh & 0x8000 else v
    return s


@njit(inline="always", cache=True)
def _iq1m_scale(w, o):
    """The fp16 super-block scale of IQ1_M, gathered from the top nibbles of its four u16 scales."""
    sc = o + 48
    u = ((_u16(w, sc) >> 12) | ((_u16(w, sc + 2) >> 8) & 0x00F0) | ((_u16(w, sc + 4) >> 4) & 0x0F00)
         | (_u16(w, sc + 6) & 0xF000))
    return F16_TO_F32[u]


@njit(inline="always", cache=True)
def _oct(grow, srow, qt, x):
    """Lanes 2g and 2g+1 of one group of eight: the exact sums over its elements 0..3 and 4..7
    of grid value * sign (grow, srow: the group's grid and +-1 rows) * q8[x:x+8]."""
    p0 = np.int32(0)
    p1 = np.int32(0)
    for k in range(4):
        p0 += np.int32(grow[k]) * np.int32(srow[k]) * np.int32(qt[x + k])
        p1 += np.int32(grow[4 + k]) * np.int32(srow[4 + k]) * np.int32(qt[x + 4 + k])
    return p0, p1


@njit(inline="always", cache=True)
def _quad(grow, srow, sc, qt, x):
    """One lane of a 4-wide grid (IQ3): sum over k < 4 of grow[k] * srow[sc + k] * q8[x + k]."""
    p = np.int32(0)
    for k in range(4):
        p += np.int32(grow[k]) * np.int32(srow[sc + k]) * np.int32(qt[x + k])
    return p


@njit(inline="always", cache=True)
def _lanes_iq2_xxs(w, o, qt, x0):
    """The eight integer lanes of an IQ2_XXS super-block, each chunk's u32 of signs and scale
    decoded once."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.int32(0)
    for ib in range(QK_K // 32):
        a = o + 2 + 8 * ib
        aux = _u32(w, a + 4)
        ls = 2 * np.int32(aux >> 28) + 1
        x = x0 + 32 * ib
        p0, p1 = _oct(IQ2XXS_GRID[w[a]], KEVEN_SIGNS[aux & 127], qt, x)
        p2, p3 = _oct(IQ2XXS_GRID[w[a + 1]], KEVEN_SIGNS[(aux >> 7) & 127], qt, x + 8)
        p4, p5 = _oct(IQ2XXS_GRID[w[a + 2]], KEVEN_SIGNS[(aux >> 14) & 127], qt, x + 16)
        p6, p7 = _oct(IQ2XXS_GRID[w[a + 3]], KEVEN_SIGNS[(aux >> 21) & 127], qt, x + 24)
        s0 += ls * p0
        s1 += ls * p1
        s2 += ls * p2
        s3 += ls * p3
        s4 += ls * p4
        s5 += ls * p5
        s6 += ls * p6
        s7 += ls * p7
    return s0, s1, s2, s3, s4, s5, s6, s7


@njit(inline="always", cache=True)
def _lanes_iq2_xs(w, o, qt, x0):
    """IQ2_XS: four u16 (9-bit grid index, 7 sign bits) a chunk; the low scale nibble for
    elements 0..15 (lanes 0..3), the high one for 16..31."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.int32(0)
    for ib in range(QK_K // 32):
        a = o + 2 + 8 * ib
        x = x0 + 32 * ib
        v0 = _u16(w, a)
        v1 = _u16(w, a + 2)
        v2 = _u16(w, a + 4)
        v3 = _u16(w, a + 6)
        p0, p1 = _oct(IQ2XS_GRID[v0 & 511], KEVEN_SIGNS[v0 >> 9], qt, x)
        p2, p3 = _oct(IQ2XS_GRID[v1 & 511], KEVEN_SIGNS[v1 >> 9], qt, x + 8)
        p4, p5 = _oct(IQ2XS_GRID[v2 & 511], KEVEN_SIGNS[v2 >> 9], qt, x + 16)
        p6, p7 = _oct(IQ2XS_GRID[v3 & 511], KEVEN_SIGNS[v3 >> 9], qt, x + 24)
        sb = np.int32(w[o + 2 + 64 + ib])
        lo = 2 * (sb & 15) + 1
        hi = 2 * (sb >> 4) + 1
        s0 += lo * p0
        s1 += lo * p1
        s2 += lo * p2
        s3 += lo * p3
        s4 += hi * p4
        s5 += hi * p5
        s6 += hi * p6
        s7 += hi * p7
    return s0, s1, s2, s3, s4, s5, s6, s7


@njit(inline="always", cache=True)
def _lanes_iq2_s(w, o, qt, x0):
    """IQ2_S: grid index = qs byte | 2 high bits from qh, a raw sign byte a group, scales as
    IQ2_XS."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.int32(0)
    for ib in range(QK_K // 32):
        a = o + 2 + 4 * ib
        x = x0 + 32 * ib
        qh = np.int32(w[o + 2 + 64 + ib])
        z = o + 2 + 32 + 4 * ib
        p0, p1 = _oct(IQ2S_GRID[np.int32(w[a]) | ((qh << 8) & 0x300)], BYTE_SIGNS[w[z]], qt, x)
        p2, p3 = _oct(IQ2S_GRID[np.int32(w[a + 1]) | ((qh << 6) & 0x300)], BYTE_SIGNS[w[z + 1]], qt, x + 8)
        p4, p5 = _oct(IQ2S_GRID[np.int32(w[a + 2]) | ((qh << 4) & 0x300)], BYTE_SIGNS[w[z + 2]], qt, x + 16)
        p6, p7 = _oct(IQ2S_GRID[np.int32(w[a + 3]) | ((qh << 2) & 0x300)], BYTE_SIGNS[w[z + 3]], qt, x + 24)
        sb = np.int32(w[o + 2 + 72 + ib])
        lo = 2 * (sb & 15) + 1
        hi = 2 * (sb >> 4) + 1
        s0 += lo * p0
        s1 += lo * p1
        s2 += lo * p2
        s3 += lo * p3
        s4 += hi * p4
        s5 += hi * p5
        s6 += hi * p6
        s7 += hi * p7
    return s0, s1, s2, s3, s4, s5, s6, s7


@njit(inline="always", cache=True)
def _lanes_iq3_xxs(w, o, qt, x0):
    """IQ3_XXS: one grid byte a lane (four values), the chunk's u32 of four 7-bit sign indices
    and the scale decoded once."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.int32(0)
    for ib in range(QK_K // 32):
        a = o + 2 + 8 * ib
        x = x0 + 32 * ib
        aux = _u32(w, o + 2 + 64 + 4 * ib)
        ls = 2 * np.int32(aux >> 28) + 1
        z0 = KEVEN_SIGNS[aux & 127]
        z1 = KEVEN_SIGNS[(aux >> 7) & 127]
        z2 = KEVEN_SIGNS[(aux >> 14) & 127]
        z3 = KEVEN_SIGNS[(aux >> 21) & 127]
        s0 += ls * _quad(IQ3XXS_GRID[w[a]], z0, 0, qt, x)
        s1 += ls * _quad(IQ3XXS_GRID[w[a + 1]], z0, 4, qt, x + 4)
        s2 += ls * _quad(IQ3XXS_GRID[w[a + 2]], z1, 0, qt, x + 8)
        s3 += ls * _quad(IQ3XXS_GRID[w[a + 3]], z1, 4, qt, x + 12)
        s4 += ls * _quad(IQ3XXS_GRID[w[a + 4]], z2, 0, qt, x + 16)
        s5 += ls * _quad(IQ3XXS_GRID[w[a + 5]], z2, 4, qt, x + 20)
        s6 += ls * _quad(IQ3XXS_GRID[w[a + 6]], z3, 0, qt, x + 24)
        s7 += ls * _quad(IQ3XXS_GRID[w[a + 7]], z3, 4, qt, x + 28)
    return s0, s1, s2, s3, s4, s5, s6, s7


@njit(inline="always", cache=True)
def _lanes_iq3_s(w, o, qt, x0):
    """IQ3_S: grid index = qs byte | bit l of qh, a raw sign byte a group of eight, one 4-bit
    scale a chunk."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.int32(0)
    for ib in range(QK_K // 32):
        a = o + 2 + 8 * ib
        x = x0 + 32 * ib
        qh = np.int32(w[o + 2 + 64 + ib])
        ls = 2 * ((np.int32(w[o + 2 + 104 + ib // 2]) >> (4 * (ib & 1))) & 15) + 1
        z = o + 2 + 72 + 4 * ib
        z0 = BYTE_SIGNS[w[z]]
        z1 = BYTE_SIGNS[w[z + 1]]
        z2 = BYTE_SIGNS[w[z + 2]]
        z3 = BYTE_SIGNS[w[z + 3]]
        s0 += ls * _quad(IQ3S_GRID[np.int32(w[a]) | ((qh << 8) & 256)], z0, 0, qt, x)
        s1 += ls * _quad(IQ3S_GRID[np.int32(w[a + 1]) | ((qh << 7) & 256)], z0, 4, qt, x + 4)
        s2 += ls * _quad(IQ3S_GRID[np.int32(w[a + 2]) | ((qh << 6) & 256)], z1, 0, qt, x + 8)
        s3 += ls * _quad(IQ3S_GRID[np.int32(w[a + 3]) | ((qh << 5) & 256)], z1, 4, qt, x + 12)
        s4 += ls * _quad(IQ3S_GRID[np.int32(w[a + 4]) | ((qh << 4) & 256)], z2, 0, qt, x + 16)
        s5 += ls * _quad(IQ3S_GRID[np.int32(w[a + 5]) | ((qh << 3) & 256)], z2, 4, qt, x + 20)
        s6 += ls * _quad(IQ3S_GRID[np.int32(w[a + 6]) | ((qh << 2) & 256)], z3, 0, qt, x + 24)
        s7 += ls * _quad(IQ3S_GRID[np.int32(w[a + 7]) | ((qh << 1) & 256)], z3, 4, qt, x + 28)
    return s0, s1, s2, s3, s4, s5, s6, s7


@njit(inline="always", cache=True)
def _oct_ternary(grow, qt, x):
    """_oct for IQ1's unsigned -1/0/+1 grid: sums over elements 0..3 and 4..7 of grow * q8,
    and the plain sums of q8 over each half (for IQ1_M's delta lanes)."""
    p0 = np.int32(0)
    p1 = np.int32(0)
    q0 = np.int32(0)
    q1 = np.int32(0)
    for k in range(4):
        u = np.int32(qt[x + k])
        v = np.int32(qt[x + 4 + k])
        p0 += np.int32(grow[k]) * u
        p1 += np.int32(grow[4 + k]) * v
        q0 += u
        q1 += v
    return p0, p1, q0, q1


@njit(inline="always", cache=True)
def _lanes_iq1_s(w, o, qt, x0):
    """IQ1_S: grid index = qs byte | 3 high bits of the chunk's u16 qh, scale in bits 12..14."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.int32(0)
    for ib in range(QK_K // 32):
        a = o + 2 + 4 * ib
        x = x0 + 32 * ib
        qh = _u16(w, o + 2 + 32 + 2 * ib)
        ls = 2 * ((qh >> 12) & 7) + 1
        p0, p1, _, _ = _oct_ternary(IQ1S_GRID[np.int32(w[a]) | ((qh << 8) & 0x700)], qt, x)
        p2, p3, _, _ = _oct_ternary(IQ1S_GRID[np.int32(w[a + 1]) | ((qh << 5) & 0x700)], qt, x + 8)
        p4, p5, _, _ = _oct_ternary(IQ1S_GRID[np.int32(w[a + 2]) | ((qh << 2) & 0x700)], qt, x + 16)
        p6, p7, _, _ = _oct_ternary(IQ1S_GRID[np.int32(w[a + 3]) | ((qh >> 1) & 0x700)], qt, x + 24)
        s0 += ls * p0
        s1 += ls * p1
        s2 += ls * p2
        s3 += ls * p3
        s4 += ls * p4
        s5 += ls * p5
        s6 += ls * p6
        s7 += ls * p7
    return s0, s1, s2, s3, s4, s5, s6, s7


@njit(inline="always", cache=True)
def _group_iq1_m(w, o, ib, g):
    """(grid index, delta sign +-1) of group g of chunk ib of IQ1_M: qs byte | 3 bits of the
    group's qh nibble, whose bit 3 is the delta's sign."""
    qh = np.int32(w[o + 32 + 2 * ib + (g >> 1)]) >> (4 * (g & 1))
    return np.int32(w[o + 4 * ib + g]) | ((qh & 7) << 8), np.int32(1) - ((qh >> 2) & 2)


@njit(inline="always", cache=True)
def _lanes_iq1_m(w, o, qt, x0):
    """The grid lanes then the delta lanes of an IQ1_M super-block, eight each; the delta lane sums
    scale * (+-1) * q8. Lanes 0..3 (elements 0..15) take the chunk's low 3-bit scale, 4..7 the
    next."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.int32(0)
    e0 = e1 = e2 = e3 = e4 = e5 = e6 = e7 = np.int32(0)
    for ib in range(QK_K // 32):
        x = x0 + 32 * ib
        sc = _u16(w, o + 48 + 2 * (ib >> 1)) >> (6 * (ib & 1))
        lo = 2 * (sc & 7) + 1
        hi = 2 * ((sc >> 3) & 7) + 1
        i0, m0 = _group_iq1_m(w, o, ib, 0)
        i1, m1 = _group_iq1_m(w, o, ib, 1)
        i2, m2 = _group_iq1_m(w, o, ib, 2)
        i3, m3 = _group_iq1_m(w, o, ib, 3)
        p0, p1, q0, q1 = _oct_ternary(IQ1S_GRID[i0], qt, x)
        p2, p3, q2, q3 = _oct_ternary(IQ1S_GRID[i1], qt, x + 8)
        p4, p5, q4, q5 = _oct_ternary(IQ1S_GRID[i2], qt, x + 16)
        p6, p7, q6, q7 = _oct_ternary(IQ1S_GRID[i3], qt, x + 24)
        s0 += lo * p0
        s1 += lo * p1
        s2 += lo * p2
        s3 += lo * p3
        s4 += hi * p4
        s5 += hi * p5
        s6 += hi * p6
        s7 += hi * p7
        e0 += lo * m0 * q0
        e1 += lo * m0 * q1
        e2 += lo * m1 * q2
        e3 += lo * m1 * q3
        e4 += hi * m2 * q4
        e5 += hi * m2 * q5
        e6 += hi * m3 * q6
        e7 += hi * m3 * q7
    return s0, s1, s2, s3, s4, s5, s6, s7, e0, e1, e2, e3, e4, e5, e6, e7


@njit(inline="always", cache=True)
def _lanes_iq4_xs(w, o, qt, x0):
    """The eight integer lanes of an IQ4_XS super-block, each chunk's scale decoded once and its
    kvalues looked up by pshufb (`lanes_iq4nl_scaled`); the float64 dequantized rows of
    tests/test_dot_iquants.py are its slow twin."""
    sh = _u16(w, o + 2)
    z = np.int32(0)
    lanes = (z, z, z, z, z, z, z, z)
    for ib in range(QK_K // 32):
        ls = (((np.int32(w[o + 4 + ib // 2]) >> (4 * (ib & 1))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4)) - 32
        lanes = lanes_iq4nl_scaled(lanes, w, o + 8 + 16 * ib, qt, x0 + 32 * ib, np.int32(ls))
    return lanes


# ---------------------------------------------------------------------------------------------
# matrix products
# ---------------------------------------------------------------------------------------------

@njit(inline="always", cache=True)
def _fma8(acc, a0, dd, s):
    """acc[a0 + l] = fma(dd, float(s[l]), acc[a0 + l]) for the eight integer lanes s, in lane order."""
    acc[a0] = fma32(dd, np.float32(s[0]), acc[a0])
    acc[a0 + 1] = fma32(dd, np.float32(s[1]), acc[a0 + 1])
    acc[a0 + 2] = fma32(dd, np.float32(s[2]), acc[a0 + 2])
    acc[a0 + 3] = fma32(dd, np.float32(s[3]), acc[a0 + 3])
    acc[a0 + 4] = fma32(dd, np.float32(s[4]), acc[a0 + 4])
    acc[a0 + 5] = fma32(dd, np.float32(s[5]), acc[a0 + 5])
    acc[a0 + 6] = fma32(dd, np.float32(s[6]), acc[a0 + 6])
    acc[a0 + 7] = fma32(dd, np.float32(s[7]), acc[a0 + 7])


@njit(inline="always", cache=True)
def _q8k_fma8(lanes_fn, w, bsize, qt, dt, nb, acc):
    """acc[l] = fma(d_w * d_x, lane l, acc[l]) over the super-blocks, the eight lanes of each
    super-block from one decode (lanes_fn); returns hsum_float_8(acc)."""
    for l in range(8):
        acc[l] = 0.0
    for b in range(nb):
        o = b * bsize
        _fma8(acc, 0, _h(w, o) * dt[b], lanes_fn(w, o, qt, b * QK_K))
    return hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])


@njit(parallel=True, cache=True)
def matmul_iq2_xxs(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_iq2_xxs_q8_K (AVX2): 0.125 * hsum_float_8 of the fma lanes."""
    R = W.shape[0]
    nb = W.shape[1] // BS_IQ2_XXS
    for r in prange(R):
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            out[t, r] = IQ2_SCALE * _q8k_fma8(_lanes_iq2_xxs, W[r], BS_IQ2_XXS, q[t], d[t], nb, acc)


@njit(parallel=True, cache=True)
def matmul_iq2_xs(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_iq2_xs_q8_K (AVX2): 0.125 * hsum_float_8 of the fma lanes."""
    R = W.shape[0]
    nb = W.shape[1] // BS_IQ2_XS
    for r in prange(R):
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            out[t, r] = IQ2_SCALE * _q8k_fma8(_lanes_iq2_xs, W[r], BS_IQ2_XS, q[t], d[t], nb, acc)


@njit(parallel=True, cache=True)
def matmul_iq2_s(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_iq2_s_q8_K (AVX2): 0.125 * hsum_float_8 of the fma lanes."""
    R = W.shape[0]
    nb = W.shape[1] // BS_IQ2_S
    for r in prange(R):
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            out[t, r] = IQ2_SCALE * _q8k_fma8(_lanes_iq2_s, W[r], BS_IQ2_S, q[t], d[t], nb, acc)


@njit(parallel=True, cache=True)
def matmul_iq3_xxs(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_iq3_xxs_q8_K (AVX2): 0.25 * hsum_float_8 of the fma lanes."""
    R = W.shape[0]
    nb = W.shape[1] // BS_IQ3_XXS
    for r in prange(R):
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            out[t, r] = IQ3XXS_SCALE * _q8k_fma8(_lanes_iq3_xxs, W[r], BS_IQ3_XXS, q[t], d[t], nb, acc)


@njit(parallel=True, cache=True)
def matmul_iq3_s(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_iq3_s_q8_K (AVX2): hsum_float_8 of the fma lanes."""
    R = W.shape[0]
    nb = W.shape[1] // BS_IQ3_S
    for r in prange(R):
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            out[t, r] = _q8k_fma8(_lanes_iq3_s, W[r], BS_IQ3_S, q[t], d[t], nb, acc)


@njit(parallel=True, cache=True)
def matmul_iq4_xs(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_iq4_xs_q8_K (AVX2): hsum_float_8 of the fma lanes (signed 6-bit scales, kvalues_iq4nl)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_IQ4_XS
    for r in prange(R):
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            out[t, r] = _q8k_fma8(_lanes_iq4_xs, W[r], BS_IQ4_XS, q[t], d[t], nb, acc)


@njit(parallel=True, cache=True)
def matmul_iq1_s(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_iq1_s_q8_K (AVX2): the grid lanes as the other i-quants, plus one scalar,
    acc1 = fma(d_x * d_w, sum over chunks of bsum * delta sign * scale, acc1) per super-block;
    hsum_float_8(acc) + IQ1S_DELTA * acc1 (contracted to an fma)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_IQ1_S
    nl = _lane_count(d, nb)
    for r in prange(R):
        w = W[r]
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            qt = q[t]
            for l in range(nl):
                acc[l] = 0.0
            acc1 = np.float32(0.0)
            for b in range(nb):
                o = b * BS_IQ1_S
                dd = d[t, b] * _h(w, o)
                _fma8(acc, 0, dd, _lanes_iq1_s(w, o, qt, b * QK_K))
                acc1 = fma32(dd, np.float32(_delta_iq1_s(w, o, bsums[t], b * NSUB16)), acc1)
            out[t, r] = fma32(IQ1S_DELTA, acc1, hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7]))


@njit(parallel=True, cache=True)
def matmul_iq1_m(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_iq1_m_q8_K (AVX2): two sets of lanes, the grid's and the deltas', each
    acc = fma(d_x * d_w, lane, acc) per super-block (d_w gathered from the scales' top
    nibbles); hsum_float_8(acc1) + IQ1M_DELTA * hsum_float_8(acc2) (contracted to an fma)."""
    R = W.shape[0]
    nb = W.shape[1] // BS_IQ1_M
    nl = _lane_count(d, nb)
    for r in prange(R):
        w = W[r]
        acc = scratch[numba.get_thread_id()]
        for t in range(q.shape[0]):
            qt = q[t]
            for l in range(2 * nl):
                acc[l] = 0.0
            for b in range(nb):
                o = b * BS_IQ1_M
                dd = d[t, b] * _iq1m_scale(w, o)
                s = _lanes_iq1_m(w, o, qt, b * QK_K)
                _fma8(acc, 0, dd, s[:8])
                _fma8(acc, 8, dd, s[8:])  # the delta lanes
            h1 = hsum8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])
            h2 = hsum8(acc[8], acc[9], acc[10], acc[11], acc[12], acc[13], acc[14], acc[15])
            out[t, r] = fma32(IQ1S_DELTA, h2, h1)


@njit(parallel=True, cache=True)
def matmul_iq4_nl(W, q, d, aux, out, scratch):
    """IQ4_NL rows against q8_0, as ggml runs them on AVX2.

    A tensor whose row count is a multiple of 8 is repacked at load (iq4_nl_8x8) and goes
    through ggml_gemv_iq4_nl_8x8_q8_0 / ggml_gemm_iq4_nl_8x8_q8_0 (gemv_q4_b32_8x8_q8_0_lut_avx,
    Q4_0's template): one float per output, acc = fma(isum, d_w * d_x, acc) per block.
    Otherwise ggml_vec_dot_iq4_nl_q8_0: lanes of four products, even blocks into one set of
    accumulators and odd blocks into another, fma(d_x * d_w, lane, acc); hsum_float_8 of their
    sum, and an odd last block added as sumf = fma(d, isum, sumf). The blocks go through
    `isum_iq4nl` / `block_iq4nl` (the table lookup by pshufb, as ggml); the float64 dequantized
    rows of tests/test_dot_iquants.py are their slow twin."""
    R = W.shape[0]
    nb = W.shape[1] // BS_IQ4_NL
    repacked = R % 8 == 0  # ggml_repack_get_optimal_repack_type: iq4_nl_8x8 when ne[1] % 8 == 0 (AVX2)
    z = np.float32(0.0)
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            if repacked:
                a = np.float32(0.0)
                for b in range(nb):
                    isum = isum_iq4nl(w, b * BS_IQ4_NL + 2, qt, b * QK4_NL)
                    a = fma32(np.float32(isum), np.float32(_h(w, b * BS_IQ4_NL) * d[t, b]), a)
                out[t, r] = a
                continue
            acc0 = (z, z, z, z, z, z, z, z)
            acc1 = (z, z, z, z, z, z, z, z)
            b = 0
            while b + 1 < nb:
                o = b * BS_IQ4_NL
                acc0 = block_iq4nl(acc0, w, o + 2, qt, b * QK4_NL, np.float32(d[t, b] * _h(w, o)))
                o += BS_IQ4_NL
                acc1 = block_iq4nl(acc1, w, o + 2, qt, (b + 1) * QK4_NL, np.float32(d[t, b + 1] * _h(w, o)))
                b += 2
            s = hsum8(acc0[0] + acc1[0], acc0[1] + acc1[1], acc0[2] + acc1[2], acc0[3] + acc1[3],
                      acc0[4] + acc1[4], acc0[5] + acc1[5], acc0[6] + acc1[6], acc0[7] + acc1[7])
            if b < nb:
                isum = isum_iq4nl(w, b * BS_IQ4_NL + 2, qt, b * QK4_NL)
                s = fma32(np.float32(d[t, b] * _h(w, b * BS_IQ4_NL)), np.float32(isum), s)
            out[t, r] = s


@njit(parallel=True, cache=True)
def matmul_iq4_xs_amx(W, q, d, bsums, out, scratch):
    """IQ4_XS weights in the AMX buffer (tinygemm_kernel_vnni<block_q8_K, block_iq4_xs>): one
    float accumulator a row, acc = fma(isum, d_w * d_x, acc) per super-block, isum the exact
    sum of (6-bit scale - 32) * (kvalues . q8) over its eight chunks."""
    R = W.shape[0]
    nb = W.shape[1] // BS_IQ4_XS
    for r in prange(R):
        w = W[r]
        for t in range(q.shape[0]):
            qt = q[t]
            acc = np.float32(0.0)
            for b in range(nb):
                o = b * BS_IQ4_XS
                s = _lanes_iq4_xs(w, o, qt, b * QK_K)
                isum = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7]
                acc = fma32(np.float32(isum), np.float32(_h(w, o) * d[t, b]), acc)
            out[t, r] = acc
