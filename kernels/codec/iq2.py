"""IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S and IQ1_M: groups of 8 weights on a lattice (ggml-quants.c).

Each group of 8 is one point of a grid whose coordinates take 3 levels l = 0, 1, 2: for the
IQ2 types the magnitudes 8, 25, 43 (the sign of each weight is stored apart), for the IQ1 types
the values -1, 0, 1 shifted by +-IQ1S_DELTA. ``iq2xs_init_impl`` builds, per grid, the map from
a point u = sum l_k << 2k (k = 0..7) to its grid index, and for a point off the grid the list
of its nearest grid points (``Lattice`` below); the quantizers round each group to levels and
look the point up, falling back on the nearest neighbour in weighted squares.

The quantizers are ggml's ``quantize_iq*`` (what ``ggml_quantize_chunk`` runs); IQ2_XXS,
IQ2_XS and IQ1_S assert quant_weights (``ggml_quantize_requires_imatrix``), IQ2_S and IQ1_M
fall back on weights of their own without them. With an imatrix row qw the weight of x is
qw * sqrt(sigma2 + x^2), sigma2 the super-block's mean square (IQ2_XXS, IQ2_XS) or twice it.

Block layouts (ggml-common.h), one super-block of QK_K = 256 weights:

    IQ2_XXS: d (fp16) | qs: 8 x (u32 four grid indices (8 bits) | u32 four 7-bit sign
             patterns (ksigns, even parity) | 4-bit scale << 28)    blocks of 32
    IQ2_XS:  d (fp16) | qs: 32 x u16 (9-bit grid index | 7-bit sign pattern << 9) |
             scales[8] (two 4-bit scales)                            blocks of 16
    IQ2_S:   d (fp16) | qs[32] (grid index low bytes) | signs[32] (8 sign bits) |
             qh[8] (2 high index bits each) | scales[8]              blocks of 16
    IQ1_S:   d (fp16) | qs[32] (index low bytes) | qh: 8 x u16 (4 x 3 high index bits |
             3-bit scale << 12 | delta sign << 15)                   blocks of 32
    IQ1_M:   qs[32] | qh[16] (2 x (3 high index bits | delta sign << 3)) | scales: 4 x u16
             (four 3-bit scales each; the fp16 d in their top nibbles)  blocks of 16

An IQ2 block's scale is d * (0.5 + s) * 0.25 (ggml stores l = round((s/d - 1)/2) and
decodes 2l + 1), an IQ1 block's d * (2s + 1).

Where ggml aborts (a GGML_ASSERT in the search: rows of |x| around 1e16 and up, whose squares
overflow float32), the superblock kernels return False and the codec raises a ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from gguf import GGML_QUANT_SIZES, QK_K
from gguf import GGMLQuantizationType as T
from numba import njit, prange

from ..grids import IQ1S_DELTA, IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, KSIGNS
from . import Codec, register
from ._bits import fp16_to_fp32, fp16_validator, fp32_to_fp16, load_fp16, nearest_int, store_fp16
from .kquants import importance_weights, make_qp_quants, sum_squares

f32 = np.float32
FLT_MAX = f32(3.4028234663852886e38)
# a block whose largest |x| is below these is left empty (ggml-quants.c's GROUP_MAX_EPS*)
GROUP_MAX_EPS = f32(1e-15)
GROUP_MAX_EPS_IQ2_S = f32(1e-8)
GROUP_MAX_EPS_IQ1_S = f32(1e-12)
GROUP_MAX_EPS_IQ1_M = f32(1e-7)
NO_WEIGHTS = np.zeros(0, np.float32)

FP16 = 2
# IQ2_XXS: d | qs (QK_K/8 u16)
XXS_QS = FP16
XXS_TS = GGML_QUANT_SIZES[T.IQ2_XXS][1]
assert XXS_TS == XXS_QS + QK_K // 4
# IQ2_XS: d | qs (QK_K/8 u16) | scales[QK_K/32]
XS_QS = FP16
XS_SC = XS_QS + QK_K // 4
XS_TS = GGML_QUANT_SIZES[T.IQ2_XS][1]
assert XS_TS == XS_SC + QK_K // 32
# IQ2_S: d | qs[QK_K/8] | signs[QK_K/8] | qh[QK_K/32] | scales[QK_K/32]
S_QS = FP16
S_SIGNS = S_QS + QK_K // 8
S_QH = S_SIGNS + QK_K // 8
S_SC = S_QH + QK_K // 32
S_TS = GGML_QUANT_SIZES[T.IQ2_S][1]
assert S_TS == S_SC + QK_K // 32
# IQ1_S: d | qs[QK_K/8] | qh (QK_K/32 u16)
IQ1S_QS = FP16
IQ1S_QH = IQ1S_QS + QK_K // 8
IQ1S_TS = GGML_QUANT_SIZES[T.IQ1_S][1]
assert IQ1S_TS == IQ1S_QH + QK_K // 16
# IQ1_M: qs[QK_K/8] | qh[QK_K/16] | scales (QK_K/64 u16)
IQ1M_QS = 0
IQ1M_QH = IQ1M_QS + QK_K // 8
IQ1M_SC = IQ1M_QH + QK_K // 16
IQ1M_TS = GGML_QUANT_SIZES[T.IQ1_M][1]
assert IQ1M_TS == IQ1M_SC + QK_K // 32
IQ1S_BLOCK = 32  # IQ1S_BLOCK_SIZE
IQ1M_BLOCK = 16  # IQ1M_BLOCK_SIZE


# -- the lattices of iq2xs_init_impl -----------------------------------------------------------

KMAP_SIZE = 43692  # kmap_size: above every u whose 8 levels are 0..2 (0xAAAA = 43690)
_SHIFTS = 2 * np.arange(8)


@dataclass(frozen=True)
class Lattice:
    """iq2_data[gindex] of ggml-quants.c, in the order iq2xs_init_impl fills it."""

    levels: np.ndarray      # uint8[G, 8]: level l of each coordinate; kgrid_q2xs holds 2l + 1
    kmap: np.ndarray        # int32[KMAP_SIZE]: u -> grid index, or -(offset + 1) off the grid
    neighbours: np.ndarray  # uint16[...]: at each offset a count n, then n grid indices


def grid_levels(grid: np.ndarray, values: tuple) -> np.ndarray:
    """The levels (index into `values`) of a decoded grid: kgrid_2bit_* / kgrid_1bit_2048."""
    lv = np.full(grid.shape, 255, np.uint8)
    for l, v in enumerate(values):
        lv[grid == v] = l
    assert (lv < len(values)).all()
    return lv


def build_lattice(levels: np.ndarray, nwant: int) -> Lattice:
    """iq2xs_init_impl: the grid map, and for every u in [0, KMAP_SIZE) off the grid the grid
    points at its `nwant` smallest squared distances (all points at the nwant-th distance
    too), ordered by (distance, index) as qsort with iq2_compare_func leaves them."""
    g = levels.shape[0]
    kmap = np.full(KMAP_SIZE, -1, np.int32)
    kmap[(levels.astype(np.int64) << _SHIFTS).sum(axis=1)] = np.arange(g, dtype=np.int32)
    off = np.nonzero(kmap < 0)[0]                                   # (M,) the points off the grid
    pos = (2 * ((off[:, None] >> _SHIFTS) & 3) + 1).astype(np.float32)  # (M, 8), 1 3 5 7
    pg = 2 * levels.astype(np.float32) + 1                          # (G, 8)
    counts = np.empty(off.shape[0], np.int64)
    lists = []
    for s in range(0, off.shape[0], 1024):
        p = pos[s:s + 1024]
        # |p - g|^2 (small integers, exact in float32), (chunk, G)
        d2 = ((p * p).sum(1)[:, None] + (pg * pg).sum(1)[None, :] - 2 * (p @ pg.T)).astype(np.int16)
        cut = d2.min(axis=1)
        for _ in range(nwant - 1):  # the next larger distance, or all if none is left
            cut = np.where(d2 > cut[:, None], d2, np.int16(np.iinfo(np.int16).max)).min(axis=1)
        r, c = np.nonzero(d2 <= cut[:, None])
        order = np.lexsort((c, d2[r, c], r))
        lists.append(c[order])
        counts[s:s + 1024] = np.bincount(r, minlength=p.shape[0])
    cols = np.concatenate(lists)
    offsets = np.concatenate(([0], np.cumsum(counts + 1)[:-1]))     # each list: count, then indices
    neighbours = np.empty(int(counts.sum()) + off.shape[0], np.uint16)
    neighbours[offsets] = counts
    row = np.repeat(np.arange(off.shape[0]), counts)
    rank = np.arange(cols.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
    neighbours[offsets[row] + 1 + rank] = cols
    kmap[off] = -(offsets + 1)
    return Lattice(levels, kmap, neighbours)


@lru_cache(maxsize=None)
def lattice(qtype: T) -> Lattice:
    """iq2xs_init_impl(type), computed on first use as ggml_quantize_init does (IQ1_S and IQ1_M
    share one). nwant: 3 for the IQ1 grid, 1 for IQ2_S's, 2 for the others."""
    if qtype in (T.IQ1_S, T.IQ1_M):
        return _lattice_iq1()
    grid, nwant = {T.IQ2_XXS: (IQ2XXS_GRID, 2), T.IQ2_XS: (IQ2XS_GRID, 2), T.IQ2_S: (IQ2S_GRID, 1)}[qtype]
    return build_lattice(grid_levels(grid, (8, 25, 43)), nwant)


@lru_cache(maxsize=None)
def _lattice_iq1() -> Lattice:
    return build_lattice(grid_levels(IQ1S_GRID, (-1, 0, 1)), 3)


# -- shared helpers (ggml-quants.c) ------------------------------------------------------------


@njit(cache=True)
def _grid_u(L, o):
    """The lattice point of the 8 levels L[o:o+8]: sum L[o+k] << 2k."""
    u = 0
    for k in range(8):
        u |= np.int64(L[o + k]) << (2 * k)
    return u


@njit(cache=True)
def _lookup(kmap, L, o):
    """kmap of the point L[o:o+8], negative off the grid; a level above 2 (IQ2_XXS's
    make_qp_quants levels, kept if no scale was found) is off the grid too (ggml reads past
    its map there, then aborts: "found point not on grid")."""
    u = _grid_u(L, o)
    return kmap[u] if u < KMAP_SIZE else -1


@njit(cache=True)
def _iq2_find_best_neighbour(nb, start, levels, xval, w, o, scale, L, e):
    """iq2_find_best_neighbour: of the grid points listed at nb[start], the one with the least
    sum w * (scale * q - xval)^2 over xval[o:o+8] (q = 2l + 1); its levels go to L[o:o+8].
    Each term w * diff * diff depends only on the coordinate and its level, so the 24 are
    computed once into e (the same float32 products ggml forms per point) and each point's
    distance sums its 8 in ggml's order."""
    for i in range(8):
        for l in range(3):
            diff = scale * f32(2 * l + 1) - xval[o + i]
            e[3 * i + l] = w[o + i] * diff * diff
    best_d2 = FLT_MAX
    gi = -1
    for j in range(1, np.int64(nb[start]) + 1):
        g = np.int64(nb[start + j])
        d2 = f32(0.0)
        for i in range(8):
            d2 += e[3 * i + levels[g, i]]
        if d2 < best_d2:
            best_d2 = d2
            gi = g
    if gi < 0:  # every distance NaN (an overflow): GGML_ASSERT(grid_index >= 0) aborts
        return -1
    for i in range(8):
        L[o + i] = levels[gi, i]
    return gi


@njit(cache=True)
def _round_to_levels(xval, o, inv, L):
    """Laux[o+i] = clamp(nearest_int(0.5 * (inv * xval - 1)), 0, kMaxQ - 1): the level whose
    2l + 1 is nearest inv * xval. Returns the lattice point."""
    u = 0
    for i in range(8):
        l = max(0, min(2, nearest_int(f32(0.5) * (inv * xval[o + i] - f32(1.0)))))
        L[o + i] = l
        u |= l << (2 * i)
    return u


@njit(cache=True)
def _sums_2l1(xval, w, L, n):
    """sumqx, sumq2 of q = 2L + 1 against xval under the weights w."""
    sumqx, sumq2 = f32(0.0), f32(0.0)
    for i in range(n):
        q = f32(2 * np.int64(L[i]) + 1)
        sumqx += w[i] * xval[i] * q
        sumq2 += w[i] * q * q
    return sumqx, sumq2


@njit(cache=True)
def _abs_signs(xb, weight, xval, o, even):
    """|xb[o:o+8]| into xval and the sign bits of the negative ones. With `even` (IQ2_XXS,
    IQ2_XS: signs stored as 7 bits of an even-parity pattern) an odd count of negatives flips
    the sign of the one with the least weight * x^2, as quantize_row_iq2_x*_impl does."""
    s = 0
    nflip = 0
    for i in range(8):
        if xb[o + i] >= 0:
            xval[o + i] = xb[o + i]
        else:
            xval[o + i] = -xb[o + i]
            nflip += 1
            s |= 1 << i
    if even and nflip % 2:
        imin = 0
        vmin = weight[o] * xb[o] * xb[o]
        for i in range(1, 8):
            ax = weight[o + i] * xb[o + i] * xb[o + i]
            if ax < vmin:
                vmin = ax
                imin = i
        xval[o + imin] = -xval[o + imin]
        s ^= 1 << imin
    return s & 127 if even else s


@njit(cache=True)
def _max_of(x, n):
    m = x[0]
    for i in range(1, n):
        m = m if m > x[i] else x[i]  # MAX(max, x[i])
    return m


@njit(cache=True)
def _search16(xval, weight, waux, L, Laux, levels, kmap, nb, e):
    """The scale search of quantize_row_iq2_xs_impl and quantize_row_iq2_s_impl for a block of
    16 (two groups) with max(xval) above its epsilon: 19 inverse scales (5 + 0.1 is)/max,
    each group rounded to levels and moved to its best neighbour if off the grid; the best
    sumqx^2/sumq2 wins. A group that was off the grid is then re-rounded at that scale and
    the scale refitted. L gets the levels; returns the scale (NaN where ggml aborts)."""
    vmax = _max_of(xval, 16)
    best = f32(0.0)
    scale = vmax / f32(5.0)  # max / (2 kMaxQ - 1)
    on0, on1 = True, True
    for step in range(-9, 10):
        inv = (f32(5.0) + f32(step) * f32(0.1)) / vmax
        this_scale = f32(1.0) / inv
        aux0, aux1 = True, True
        for k in range(2):
            u = _round_to_levels(xval, 8 * k, inv, Laux)
            gi = kmap[u]
            if gi < 0:
                if k == 0:
                    aux0 = False
                else:
                    aux1 = False
                if _iq2_find_best_neighbour(nb, -gi - 1, levels, xval, waux, 8 * k, this_scale, Laux, e) < 0:
                    return f32(np.nan)
        sumqx, sumq2 = _sums_2l1(xval, weight, Laux, 16)
        if sumq2 > 0 and sumqx * sumqx > best * sumq2:
            scale = sumqx / sumq2
            best = scale * sumqx
            for i in range(16):
                L[i] = Laux[i]
            on0, on1 = aux0, aux1
    if (not on0 or not on1) and scale > 0:
        inv = f32(1.0) / scale
        for k in range(2):
            if (on0 if k == 0 else on1):
                continue
            u = _round_to_levels(xval, 8 * k, inv, L)
            gi = kmap[u]
            if gi < 0:
                if _iq2_find_best_neighbour(nb, -gi - 1, levels, xval, waux, 8 * k, scale, L, e) < 0:
                    return f32(np.nan)
        sumqx, sumq2 = _sums_2l1(xval, weight, L, 16)
        if sumq2 > 0:
            scale = sumqx / sumq2
    return scale


@njit(cache=True)
def _scale_nibble(inv_d, s, top):
    """nearest_int(0.5 * (s / d - 1)) clamped to 0..top: a block scale as stored."""
    return max(0, min(top, nearest_int(f32(0.5) * (inv_d * s - f32(1.0)))))


# -- IQ2_XXS -----------------------------------------------------------------------------------


@njit(cache=True)
def _iq2_xxs_superblock(x, qw, row, o, levels, kmap, nb, scales, weight, waux, xval, L, Laux, signs, q2, e):
    """quantize_row_iq2_xxs_impl for one super-block x (256) with imatrix row qw into row[o:];
    False where ggml aborts."""
    for i in range(QK_K // 16):
        q2[i] = 0
    max_scale = f32(0.0)
    sigma2 = sum_squares(x) / f32(QK_K)
    for ib in range(QK_K // 32):
        xb = x[32 * ib:32 * ib + 32]
        importance_weights(xb, qw[32 * ib:32 * ib + 32], sigma2, weight)
        for i in range(32):
            waux[i] = np.sqrt(weight[i])
        for k in range(4):
            signs[k] = _abs_signs(xb, weight, xval, 8 * k, True)
        if _max_of(xval, 32) < GROUP_MAX_EPS:
            scales[ib] = 0
            continue
        scale = make_qp_quants(32, 4, xval, L, weight)  # kMaxQ + 1
        eff_max = scale * f32(3.0)
        if eff_max <= 0:
            scales[ib] = 0
            continue
        best = f32(0.0)
        for step in range(-6, 7):
            inv = (f32(5.0) + f32(step) * f32(0.1)) / eff_max
            this_scale = f32(1.0) / inv
            for k in range(4):
                gi = kmap[_round_to_levels(xval, 8 * k, inv, Laux)]
                if gi < 0 and _iq2_find_best_neighbour(nb, -gi - 1, levels, xval, waux, 8 * k, this_scale, Laux, e) < 0:
                    return False
            sumqx, sumq2 = _sums_2l1(xval, weight, Laux, 32)
            if sumq2 > 0 and sumqx * sumqx > best * sumq2:
                scale = sumqx / sumq2
                best = scale * sumqx
                for i in range(32):
                    L[i] = Laux[i]
        if scale > 0:
            inv = f32(1.0) / scale
            for k in range(4):
                gi = kmap[_round_to_levels(xval, 8 * k, inv, Laux)]
                if gi < 0:
                    gi = _iq2_find_best_neighbour(nb, -gi - 1, levels, xval, waux, 8 * k, scale, Laux, e)
                    if gi < 0:
                        return False
                for i in range(8):
                    L[8 * k + i] = levels[gi, i]
            sumqx, sumq2 = _sums_2l1(xval, weight, L, 32)
            if sumq2 > 0:
                scale = sumqx / sumq2
        if scale < 0:  # "should never happen" (ggml): flip the scale and the signs
            scale = -scale
            for k in range(4):
                signs[k] = (~signs[k]) & 127
        if not scale >= 0:  # GGML_ASSERT(scale >= 0): a NaN
            return False
        for k in range(4):
            gi = _lookup(kmap, L, 8 * k)
            if gi < 0:
                return False
            q2[2 * ib] |= np.int64(gi) << (8 * k)
            q2[2 * ib + 1] |= np.int64(signs[k]) << (7 * k)
        scales[ib] = scale
        max_scale = max_scale if max_scale > scale else scale
    if not max_scale:
        for i in range(XXS_TS):
            row[o + i] = 0
        return True
    d = max_scale / f32(31.0)
    store_fp16(row, o, d)
    inv_d = f32(1.0) / d
    for ib in range(QK_K // 32):
        q2[2 * ib + 1] |= np.int64(_scale_nibble(inv_d, scales[ib], 15)) << 28
    for i in range(QK_K // 16):
        for b in range(4):
            row[o + XXS_QS + 4 * i + b] = (q2[i] >> (8 * b)) & 0xFF
    return True


@njit(cache=True, parallel=True)
def _quantize_iq2_xxs(x, qw, out, levels, kmap, nb):
    """quantize_iq2_xxs: every super-block of every row."""
    n, ne0 = x.shape
    bad = np.zeros(n, np.uint8)
    for r in prange(n):
        scales = np.empty(QK_K // 32, np.float32)
        weight = np.empty(32, np.float32)
        waux = np.empty(32, np.float32)
        e = np.empty(24, np.float32)
        xval = np.empty(32, np.float32)
        L = np.zeros(32, np.int64)
        Laux = np.zeros(32, np.int64)
        signs = np.empty(4, np.int64)
        q2 = np.empty(QK_K // 16, np.int64)
        for b in range(ne0 // QK_K):
            if not _iq2_xxs_superblock(x[r, b * QK_K:(b + 1) * QK_K], qw[b * QK_K:(b + 1) * QK_K], out[r], b * XXS_TS,
                                       levels, kmap, nb, scales, weight, waux, xval, L, Laux, signs, q2, e):
                bad[r] = 1  # ggml aborts on this row
                break
    return bad


@njit(cache=True, parallel=True)
def _dequantize_iq2_xxs(q, out, grid, ksigns):
    """dequantize_row_iq2_xxs, in gguf-py's order: (d * (0.5 + s) * 0.25) * grid * sign."""
    n, rb = q.shape
    for r in prange(n):
        row = q[r]
        for b in range(rb // XXS_TS):
            o = b * XXS_TS
            d = load_fp16(row, o)
            for ib in range(QK_K // 32):
                p = o + XXS_QS + 8 * ib
                aux1 = 0  # the second u32: four 7-bit sign patterns, the scale in bits 28..31
                for i in range(4):
                    aux1 |= np.int64(row[p + 4 + i]) << (8 * i)
                db = d * (f32(0.5) + f32(aux1 >> 28)) * f32(0.25)
                for k in range(4):
                    g = row[p + k]
                    sg = ksigns[(aux1 >> (7 * k)) & 127]
                    for j in range(8):
                        v = db * f32(grid[g, j])
                        out[r, b * QK_K + 32 * ib + 8 * k + j] = -v if (sg >> j) & 1 else v


# -- IQ2_XS and IQ2_S --------------------------------------------------------------------------


@njit(cache=True)
def _iq2_xs_superblock(x, qw, row, o, levels, kmap, nb, scales, weight, waux, xval, L, Laux, q2, e):
    """quantize_row_iq2_xs_impl for one super-block x (256) with imatrix row qw into row[o:];
    False where ggml aborts."""
    for i in range(QK_K // 8):
        q2[i] = 0
    max_scale = f32(0.0)
    sigma2 = sum_squares(x) / f32(QK_K)
    for ib in range(QK_K // 16):
        xb = x[16 * ib:16 * ib + 16]
        importance_weights(xb, qw[16 * ib:16 * ib + 16], sigma2, weight)
        for i in range(16):
            waux[i] = np.sqrt(weight[i])
        s0 = _abs_signs(xb, weight, xval, 0, True)
        s1 = _abs_signs(xb, weight, xval, 8, True)
        for i in range(16):
            L[i] = 0
        if _max_of(xval, 16) < GROUP_MAX_EPS:
            scales[ib] = 0
            continue
        scale = _search16(xval, weight, waux, L, Laux, levels, kmap, nb, e)
        if scale < 0:
            scale = -scale
            s0, s1 = (~s0) & 127, (~s1) & 127
        g0, g1 = _lookup(kmap, L, 0), _lookup(kmap, L, 8)
        if not scale >= 0 or g0 < 0 or g1 < 0:  # where ggml asserts / aborts
            return False
        q2[2 * ib] = g0 | (s0 << 9)
        q2[2 * ib + 1] = g1 | (s1 << 9)
        scales[ib] = scale
        max_scale = max_scale if max_scale > scale else scale
    for i in range(XS_TS):
        row[o + i] = 0
    if not max_scale:
        return True
    d = max_scale / f32(31.0)
    store_fp16(row, o, d)
    inv_d = f32(1.0) / d
    for ib in range(QK_K // 16):
        row[o + XS_SC + ib // 2] |= _scale_nibble(inv_d, scales[ib], 15) << (4 * (ib % 2))
    for i in range(QK_K // 8):
        row[o + XS_QS + 2 * i] = q2[i] & 0xFF
        row[o + XS_QS + 2 * i + 1] = q2[i] >> 8
    return True


@njit(cache=True, parallel=True)
def _quantize_iq2_xs(x, qw, out, levels, kmap, nb):
    """quantize_iq2_xs: every super-block of every row."""
    n, ne0 = x.shape
    bad = np.zeros(n, np.uint8)
    for r in prange(n):
        scales = np.empty(QK_K // 16, np.float32)
        weight = np.empty(16, np.float32)
        waux = np.empty(16, np.float32)
        e = np.empty(24, np.float32)
        xval = np.empty(16, np.float32)
        L = np.zeros(16, np.int64)
        Laux = np.zeros(16, np.int64)
        q2 = np.empty(QK_K // 8, np.int64)
        for b in range(ne0 // QK_K):
            if not _iq2_xs_superblock(x[r, b * QK_K:(b + 1) * QK_K], qw[b * QK_K:(b + 1) * QK_K], out[r], b * XS_TS,
                                      levels, kmap, nb, scales, weight, waux, xval, L, Laux, q2, e):
                bad[r] = 1  # ggml aborts on this row
                break
    return bad


@njit(cache=True, parallel=True)
def _dequantize_iq2_xs(q, out, grid, ksigns):
    """dequantize_row_iq2_xs, in gguf-py's order."""
    n, rb = q.shape
    for r in prange(n):
        row = q[r]
        for b in range(rb // XS_TS):
            o = b * XS_TS
            d = load_fp16(row, o)
            for ib in range(QK_K // 16):
                s = (row[o + XS_SC + ib // 2] >> (4 * (ib % 2))) & 15
                db = d * (f32(0.5) + f32(s)) * f32(0.25)
                for k in range(2):
                    p = o + XS_QS + 2 * (2 * ib + k)
                    v16 = np.int64(row[p]) | (np.int64(row[p + 1]) << 8)
                    sg = ksigns[v16 >> 9]
                    for j in range(8):
                        v = db * f32(grid[v16 & 511, j])
                        out[r, b * QK_K + 16 * ib + 8 * k + j] = -v if (sg >> j) & 1 else v


@njit(cache=True)
def _iq2_s_superblock(x, qw, row, o, levels, kmap, nb, scales, weight, waux, xval, L, Laux, e):
    """quantize_row_iq2_s_impl for one super-block x (256) into row[o:]; qw the imatrix row or
    empty (then weight = 0.25 sigma2 + x^2); False where ggml aborts."""
    for i in range(S_TS):
        row[o + i] = 0
    max_scale = f32(0.0)
    sigma2 = f32(2.0) * sum_squares(x) / f32(QK_K)
    for ib in range(QK_K // 16):
        xb = x[16 * ib:16 * ib + 16]
        if qw.shape[0]:
            importance_weights(xb, qw[16 * ib:16 * ib + 16], sigma2, weight)
        else:
            for i in range(16):
                weight[i] = f32(0.25) * sigma2 + xb[i] * xb[i]
        for i in range(16):
            waux[i] = np.sqrt(weight[i])
        s0 = _abs_signs(xb, weight, xval, 0, False)
        s1 = _abs_signs(xb, weight, xval, 8, False)
        for i in range(16):
            L[i] = 0
        if _max_of(xval, 16) < GROUP_MAX_EPS_IQ2_S:
            scales[ib] = 0
            continue
        scale = _search16(xval, weight, waux, L, Laux, levels, kmap, nb, e)
        if scale < 0:
            scale = -scale
            s0, s1 = (~s0) & 255, (~s1) & 255
        if not scale >= 0:
            return False
        for k in range(2):
            gi = _lookup(kmap, L, 8 * k)
            if gi < 0:
                return False
            i8 = 2 * ib + k
            row[o + S_QS + i8] = gi & 255
            row[o + S_QH + i8 // 4] |= (gi >> 8) << (2 * (i8 % 4))
            row[o + S_SIGNS + i8] = s0 if k == 0 else s1
        scales[ib] = scale
        max_scale = max_scale if max_scale > scale else scale
    if not max_scale:  # the indices and signs written above stay, as in ggml
        return True
    d = max_scale / f32(31.0)
    store_fp16(row, o, d * f32(0.9875))
    inv_d = f32(1.0) / d
    for ib in range(QK_K // 16):
        row[o + S_SC + ib // 2] |= _scale_nibble(inv_d, scales[ib], 15) << (4 * (ib % 2))
    return True


@njit(cache=True, parallel=True)
def _quantize_iq2_s(x, qw, out, levels, kmap, nb):
    """quantize_iq2_s: every super-block of every row (qw empty: no imatrix)."""
    n, ne0 = x.shape
    bad = np.zeros(n, np.uint8)
    for r in prange(n):
        scales = np.empty(QK_K // 16, np.float32)
        weight = np.empty(16, np.float32)
        waux = np.empty(16, np.float32)
        e = np.empty(24, np.float32)
        xval = np.empty(16, np.float32)
        L = np.zeros(16, np.int64)
        Laux = np.zeros(16, np.int64)
        for b in range(ne0 // QK_K):
            w = qw[b * QK_K:(b + 1) * QK_K] if qw.shape[0] else qw
            if not _iq2_s_superblock(x[r, b * QK_K:(b + 1) * QK_K], w, out[r], b * S_TS,
                                     levels, kmap, nb, scales, weight, waux, xval, L, Laux, e):
                bad[r] = 1  # ggml aborts on this row
                break
    return bad


@njit(cache=True, parallel=True)
def _dequantize_iq2_s(q, out, grid):
    """dequantize_row_iq2_s, in gguf-py's order."""
    n, rb = q.shape
    for r in prange(n):
        row = q[r]
        for b in range(rb // S_TS):
            o = b * S_TS
            d = load_fp16(row, o)
            for ib in range(QK_K // 16):
                s = (row[o + S_SC + ib // 2] >> (4 * (ib % 2))) & 15
                db = d * (f32(0.5) + f32(s)) * f32(0.25)
                for k in range(2):
                    i8 = 2 * ib + k
                    hi = (np.int64(row[o + S_QH + i8 // 4]) >> (2 * (i8 % 4))) & 3
                    g = np.int64(row[o + S_QS + i8]) | (hi << 8)
                    sg = row[o + S_SIGNS + i8]
                    for j in range(8):
                        v = db * f32(grid[g, j])
                        out[r, b * QK_K + 16 * ib + 8 * k + j] = -v if (sg >> j) & 1 else v


# -- IQ1_S and IQ1_M ---------------------------------------------------------------------------


@njit(cache=True)
def _iq1_find_best_neighbour2(nb, start, levels, xb, w, o, scale, xx, L, ngrid):
    """iq1_find_best_neighbour2: of the grid points listed at nb[start], the one with the least
    sum w * (scale * xx[l] - xb)^2 over xb[o:o+8]; its levels go to L[o:o+8]. If none scores
    below FLT_MAX (an overflow) ggml scans the whole grid, reading xval[i] with i the grid
    index there (out of bounds); that scan is done here with the coordinate's own xb."""
    best = FLT_MAX
    gi = -1
    for j in range(1, np.int64(nb[start]) + 1):
        g = np.int64(nb[start + j])
        d2 = f32(0.0)
        for i in range(8):
            diff = scale * xx[levels[g, i]] - xb[o + i]
            d2 += w[o + i] * diff * diff
        if d2 < best:
            best = d2
            gi = g
    if gi < 0:
        for g in range(ngrid):
            d2 = f32(0.0)
            for i in range(8):
                diff = scale * xx[levels[g, i]] - xb[o + i]
                d2 += w[o + i] * diff * diff
            if d2 < best:
                best = d2
                gi = g
    if gi < 0:  # GGML_ASSERT(grid_index >= 0) aborts
        return -1
    for i in range(8):
        L[o + i] = levels[gi, i]
    return gi


@njit(cache=True)
def _sort_index(xb, n, idx):
    """idx[:n] = the order of xb[:n] ascending, equal values in their original order: glibc's
    qsort (a merge sort for arrays this small, so stable) with iq1_sort_helper."""
    for j in range(n):
        v = xb[j]
        i = j
        while i > 0 and xb[idx[i - 1]] > v:
            idx[i] = idx[i - 1]
            i -= 1
        idx[i] = j


@njit(cache=True)
def _iq1_s_superblock(x, qw, row, o, levels, kmap, nb, x_p, x_m, scales, shifts, weight, idx, sumx, sumw, L, index):
    """quantize_row_iq1_s_impl for one super-block x (256) with imatrix row qw into row[o:];
    False where ggml aborts."""
    bs = IQ1S_BLOCK
    for i in range(IQ1S_TS):
        row[o + i] = 0
    max_scale = f32(0.0)
    sigma2 = f32(2.0) * sum_squares(x) / f32(QK_K)
    for ib in range(QK_K // bs):
        xb = x[bs * ib:bs * ib + bs]
        importance_weights(xb, qw[bs * ib:bs * ib + bs], sigma2, weight)
        vmax = abs(xb[0])
        for i in range(1, bs):
            vmax = vmax if vmax > abs(xb[i]) else abs(xb[i])
        if vmax < GROUP_MAX_EPS_IQ1_S:
            scales[ib] = 0
            shifts[ib] = 1
            continue
        # the exact weighted least squares over the 3-level splits of the sorted block:
        # prefix sums S_i of w x and W_i of w, then every split (i1, i2) with either shift
        _sort_index(xb, bs, idx)
        sumx[0] = 0
        sumw[0] = 0
        for j in range(bs):
            i = idx[j]
            sumx[j + 1] = sumx[j] + weight[i] * xb[i]
            sumw[j + 1] = sumw[j] + weight[i]
        best_score = -FLT_MAX
        scale = vmax
        besti1, besti2, best_shift = -1, -1, 0
        for i1 in range(bs + 1):
            for i2 in range(i1, bs + 1):
                for sh in range(2):
                    xv = x_p if sh == 0 else x_m
                    sumqx = (sumx[i1] - sumx[0]) * xv[0] + (sumx[i2] - sumx[i1]) * xv[1] + (sumx[bs] - sumx[i2]) * xv[2]
                    sumq2 = ((sumw[i1] - sumw[0]) * xv[0] * xv[0] + (sumw[i2] - sumw[i1]) * xv[1] * xv[1]
                             + (sumw[bs] - sumw[i2]) * xv[2] * xv[2])
                    if sumq2 > 0 and sumqx * sumqx > best_score * sumq2:
                        scale = sumqx / sumq2
                        best_score = scale * sumqx
                        besti1, besti2, best_shift = i1, i2, 1 - 2 * sh
        if besti1 < 0 or besti2 < 0 or best_shift == 0:
            scales[ib] = 0
            shifts[ib] = 1
            continue
        for j in range(bs):
            L[idx[j]] = 0 if j < besti1 else (1 if j < besti2 else 2)
        if scale < 0:
            for j in range(bs):
                L[j] = 2 - L[j]
            scale = -scale
            best_shift = -best_shift
        xx = x_p if best_shift == 1 else x_m
        all_on_grid = True
        for k in range(bs // 8):
            gi = kmap[_grid_u(L, 8 * k)]
            if gi < 0:
                all_on_grid = False
                gi = _iq1_find_best_neighbour2(nb, -gi - 1, levels, xb, weight, 8 * k, scale, xx, L, levels.shape[0])
                if gi < 0:
                    return False
            index[k] = gi
        if not all_on_grid:
            sumqx, sumq2 = f32(0.0), f32(0.0)
            for k in range(bs // 8):
                for j in range(8):
                    w = weight[8 * k + j]
                    q = xx[levels[index[k], j]]
                    sumqx += w * q * xb[8 * k + j]
                    sumq2 += w * q * q
            if sumqx > 0 and sumq2 > 0:
                scale = sumqx / sumq2
        h = 0
        for k in range(bs // 8):
            row[o + IQ1S_QS + (bs // 8) * ib + k] = index[k] & 255
            h |= (index[k] >> 8) << (3 * k)
        row[o + IQ1S_QH + 2 * ib] = h & 255
        row[o + IQ1S_QH + 2 * ib + 1] = h >> 8
        if not scale >= 0:
            return False
        scales[ib] = scale
        shifts[ib] = best_shift
        max_scale = max_scale if max_scale > scale else scale
    if not max_scale:
        return True
    d = max_scale / f32(15.0)
    store_fp16(row, o, d * f32(1.125))
    inv_d = f32(1.0) / d
    for ib in range(QK_K // bs):
        l = _scale_nibble(inv_d, scales[ib], 7)
        if shifts[ib] == -1:
            l |= 8
        row[o + IQ1S_QH + 2 * ib + 1] |= l << 4  # bits 12..15 of qh[ib]
    return True


@njit(cache=True, parallel=True)
def _quantize_iq1_s(x, qw, out, levels, kmap, nb, x_p, x_m):
    """quantize_iq1_s: every super-block of every row."""
    n, ne0 = x.shape
    bad = np.zeros(n, np.uint8)
    for r in prange(n):
        scales = np.empty(QK_K // IQ1S_BLOCK, np.float32)
        shifts = np.empty(QK_K // IQ1S_BLOCK, np.int64)
        weight = np.empty(IQ1S_BLOCK, np.float32)
        idx = np.empty(IQ1S_BLOCK, np.int64)
        sumx = np.empty(IQ1S_BLOCK + 1, np.float32)
        sumw = np.empty(IQ1S_BLOCK + 1, np.float32)
        L = np.zeros(IQ1S_BLOCK, np.int64)
        index = np.empty(IQ1S_BLOCK // 8, np.int64)
        for b in range(ne0 // QK_K):
            if not _iq1_s_superblock(x[r, b * QK_K:(b + 1) * QK_K], qw[b * QK_K:(b + 1) * QK_K], out[r], b * IQ1S_TS,
                                     levels, kmap, nb, x_p, x_m, scales, shifts, weight, idx, sumx, sumw, L, index):
                bad[r] = 1  # ggml aborts on this row
                break
    return bad


@njit(cache=True, parallel=True)
def _dequantize_iq1_s(q, out, grid, delta):
    """dequantize_row_iq1_s, in gguf-py's order: (d * (2s + 1)) * (grid + delta)."""
    n, rb = q.shape
    for r in prange(n):
        row = q[r]
        for b in range(rb // IQ1S_TS):
            o = b * IQ1S_TS
            d = load_fp16(row, o)
            for ib in range(QK_K // 32):
                qh = np.int64(row[o + IQ1S_QH + 2 * ib]) | (np.int64(row[o + IQ1S_QH + 2 * ib + 1]) << 8)
                dl = d * f32(2 * ((qh >> 12) & 7) + 1)
                dt = -delta if qh & 0x8000 else delta
                for k in range(4):
                    g = np.int64(row[o + IQ1S_QS + 4 * ib + k]) | (((qh >> (3 * k)) & 7) << 8)
                    for j in range(8):
                        out[r, b * QK_K + 32 * ib + 8 * k + j] = dl * (f32(grid[g, j]) + dt)


@njit(cache=True)
def _iq1_m_weights(xb, qw, sigma2, weight):
    """The weights of quantize_row_iq1_m_impl: imatrix-based, or x^2 without one."""
    if qw.shape[0]:
        importance_weights(xb, qw, sigma2, weight)
    else:
        for i in range(xb.shape[0]):
            weight[i] = xb[i] * xb[i]


@njit(cache=True)
def _iq1_m_superblock(x, qw, row, o, levels, kmap, nb, x_p, x_m, scales, shifts, weight, idx, px, pw, L, index):
    """quantize_row_iq1_m_impl for one super-block x (256) into row[o:]; qw the imatrix row or
    empty; False where ggml aborts. shifts[ib] = k: the delta sign of each half, 0 (+, +),
    1 (+, -), 2 (-, +), 3 (-, -)."""
    bs = IQ1M_BLOCK
    for i in range(IQ1M_TS):
        row[o + i] = 0
    max_scale = f32(0.0)
    sigma2 = f32(2.0) * sum_squares(x) / f32(QK_K)
    # per half of the block: since v[0] - v[1] = v[1] - v[2] = -1 for x_p and x_m, the 3-group
    # sum of a split collapses to T v[2] - S_i1 - S_i2 (ggml's closed form, same float order)
    p2, m2 = x_p[2], x_m[2]
    cp1 = x_p[0] * x_p[0] - x_p[1] * x_p[1]
    cp2 = x_p[1] * x_p[1] - x_p[2] * x_p[2]
    cm1 = x_m[0] * x_m[0] - x_m[1] * x_m[1]
    cm2 = x_m[1] * x_m[1] - x_m[2] * x_m[2]
    for ib in range(QK_K // bs):
        xb = x[bs * ib:bs * ib + bs]
        _iq1_m_weights(xb, qw[bs * ib:bs * ib + bs] if qw.shape[0] else qw, sigma2, weight)
        vmax = abs(xb[0])
        for i in range(1, bs):
            vmax = vmax if vmax > abs(xb[i]) else abs(xb[i])
        if vmax < GROUP_MAX_EPS_IQ1_M:
            scales[ib] = 0
            shifts[ib] = 0
            continue
        _sort_index(xb, bs, idx)
        for h in range(2):
            px[h, 0] = 0
            pw[h, 0] = 0
        for j in range(bs):
            i = idx[j]
            h = 0 if i < bs // 2 else 1
            px[h, j + 1] = px[h, j] + weight[i] * xb[i]
            px[1 - h, j + 1] = px[1 - h, j]
            pw[h, j + 1] = pw[h, j] + weight[i]
            pw[1 - h, j + 1] = pw[1 - h, j]
        best_score = -FLT_MAX
        scale = vmax
        besti1, besti2, best_k = -1, -1, -1
        for i1 in range(bs + 1):
            for i2 in range(i1, bs + 1):
                sx0 = px[0, i1] + px[0, i2]
                sx1 = px[1, i1] + px[1, i2]
                qx_p0, qx_m0 = px[0, bs] * p2 - sx0, px[0, bs] * m2 - sx0
                qx_p1, qx_m1 = px[1, bs] * p2 - sx1, px[1, bs] * m2 - sx1
                q2_p0 = pw[0, bs] * p2 * p2 + pw[0, i1] * cp1 + pw[0, i2] * cp2
                q2_m0 = pw[0, bs] * m2 * m2 + pw[0, i1] * cm1 + pw[0, i2] * cm2
                q2_p1 = pw[1, bs] * p2 * p2 + pw[1, i1] * cp1 + pw[1, i2] * cp2
                q2_m1 = pw[1, bs] * m2 * m2 + pw[1, i1] * cm1 + pw[1, i2] * cm2
                for k in range(4):
                    sumqx = (qx_p0 if k < 2 else qx_m0) + (qx_p1 if k % 2 == 0 else qx_m1)
                    sumq2 = (q2_p0 if k < 2 else q2_m0) + (q2_p1 if k % 2 == 0 else q2_m1)
                    if sumq2 > 0 and sumqx * sumqx > best_score * sumq2:
                        scale = sumqx / sumq2
                        best_score = scale * sumqx
                        besti1, besti2, best_k = i1, i2, k
        if besti1 < 0 or besti2 < 0 or best_k < 0:
            scales[ib] = 0
            shifts[ib] = 0
            continue
        for j in range(bs):
            L[idx[j]] = 0 if j < besti1 else (1 if j < besti2 else 2)
        if scale < 0:
            for j in range(bs):
                L[j] = 2 - L[j]
            scale = -scale
            best_k = 3 - best_k
        all_on_grid = True
        for k in range(bs // 8):
            xx = (x_p if best_k < 2 else x_m) if k == 0 else (x_p if best_k % 2 == 0 else x_m)
            gi = kmap[_grid_u(L, 8 * k)]
            if gi < 0:
                all_on_grid = False
                gi = _iq1_find_best_neighbour2(nb, -gi - 1, levels, xb, weight, 8 * k, scale, xx, L, levels.shape[0])
                if gi < 0:
                    return False
            index[k] = gi
        if not all_on_grid:
            sumqx, sumq2 = f32(0.0), f32(0.0)
            for k in range(bs // 8):
                xx = (x_p if best_k < 2 else x_m) if k == 0 else (x_p if best_k % 2 == 0 else x_m)
                for j in range(8):
                    w = weight[8 * k + j]
                    q = xx[levels[index[k], j]]
                    sumqx += w * q * xb[8 * k + j]
                    sumq2 += w * q * q
            if sumqx > 0 and sumq2 > 0:
                scale = sumqx / sumq2
        row[o + IQ1M_QS + 2 * ib] = index[0] & 255
        row[o + IQ1M_QS + 2 * ib + 1] = index[1] & 255
        row[o + IQ1M_QH + ib] = (index[0] >> 8) | ((index[1] >> 8) << 4)
        if not scale >= 0:
            return False
        scales[ib] = scale
        shifts[ib] = best_k
        max_scale = max_scale if max_scale > scale else scale
    if not max_scale:
        return True
    # the block scales, then d refitted over the whole super-block (skipped blocks included,
    # at grid point 0 and level 0, as ggml reads them back from the bytes)
    d = max_scale / f32(15.0)
    inv_d = f32(1.0) / d
    sc = np.zeros(4, np.int64)
    sumqx, sumq2 = f32(0.0), f32(0.0)
    for ib in range(QK_K // bs):
        l = _scale_nibble(inv_d, scales[ib], 7)
        sc[ib // 4] |= l << (3 * (ib % 4))
        row[o + IQ1M_QH + ib] |= (0x00, 0x80, 0x08, 0x88)[shifts[ib]]
        xb = x[bs * ib:bs * ib + bs]
        _iq1_m_weights(xb, qw[bs * ib:bs * ib + bs] if qw.shape[0] else qw, sigma2, weight)
        qh = np.int64(row[o + IQ1M_QH + ib])
        for k in range(bs // 8):
            xx = (x_p if shifts[ib] < 2 else x_m) if k == 0 else (x_p if shifts[ib] % 2 == 0 else x_m)
            g = np.int64(row[o + IQ1M_QS + 2 * ib + k]) + ((qh << (8 - 4 * k)) & 0x700)
            for j in range(8):
                w = weight[8 * k + j]
                q = xx[levels[g, j]] * f32(2 * l + 1)
                sumqx += w * q * xb[8 * k + j]
                sumq2 += w * q * q
    if sumq2 > 0:
        d = sumqx / sumq2
    h = fp32_to_fp16(d * f32(1.1125))
    sc[0] |= (h & 0x000F) << 12
    sc[1] |= (h & 0x00F0) << 8
    sc[2] |= (h & 0x0F00) << 4
    sc[3] |= h & 0xF000
    for i in range(4):
        row[o + IQ1M_SC + 2 * i] = sc[i] & 0xFF
        row[o + IQ1M_SC + 2 * i + 1] = sc[i] >> 8
    return True


@njit(cache=True, parallel=True)
def _quantize_iq1_m(x, qw, out, levels, kmap, nb, x_p, x_m):
    """quantize_iq1_m: every super-block of every row (qw empty: no imatrix)."""
    n, ne0 = x.shape
    bad = np.zeros(n, np.uint8)
    for r in prange(n):
        scales = np.empty(QK_K // IQ1M_BLOCK, np.float32)
        shifts = np.empty(QK_K // IQ1M_BLOCK, np.int64)
        weight = np.empty(IQ1M_BLOCK, np.float32)
        idx = np.empty(IQ1M_BLOCK, np.int64)
        px = np.empty((2, IQ1M_BLOCK + 1), np.float32)
        pw = np.empty((2, IQ1M_BLOCK + 1), np.float32)
        L = np.zeros(IQ1M_BLOCK, np.int64)
        index = np.empty(IQ1M_BLOCK // 8, np.int64)
        for b in range(ne0 // QK_K):
            w = qw[b * QK_K:(b + 1) * QK_K] if qw.shape[0] else qw
            if not _iq1_m_superblock(x[r, b * QK_K:(b + 1) * QK_K], w, out[r], b * IQ1M_TS,
                                     levels, kmap, nb, x_p, x_m, scales, shifts, weight, idx, px, pw, L, index):
                bad[r] = 1  # ggml aborts on this row
                break
    return bad


@njit(cache=True)
def _iq1_m_d_bits(row, o):
    """The fp16 bits of an IQ1_M super-block's d, from the top nibbles of its four u16 scales."""
    h = 0
    for i in range(4):
        h |= (np.int64(row[o + IQ1M_SC + 2 * i + 1]) >> 4) << (4 * i)
    return h


@njit(cache=True, parallel=True)
def _dequantize_iq1_m(q, out, grid, delta):
    """dequantize_row_iq1_m, in gguf-py's order: (d * (2s + 1)) * (grid + delta)."""
    n, rb = q.shape
    for r in prange(n):
        row = q[r]
        for b in range(rb // IQ1M_TS):
            o = b * IQ1M_TS
            d = fp16_to_fp32(_iq1_m_d_bits(row, o))
            for ib in range(QK_K // 16):
                p = o + IQ1M_SC + 2 * (ib // 4)
                sc = np.int64(row[p]) | (np.int64(row[p + 1]) << 8)
                dl = d * f32(2 * ((sc >> (3 * (ib % 4))) & 7) + 1)
                qh = np.int64(row[o + IQ1M_QH + ib])
                for k in range(2):
                    hk = qh >> (4 * k)
                    g = np.int64(row[o + IQ1M_QS + 2 * ib + k]) | ((hk & 7) << 8)
                    dt = -delta if hk & 8 else delta
                    for j in range(8):
                        out[r, b * QK_K + 16 * ib + 8 * k + j] = dl * (f32(grid[g, j]) + dt)


@njit(cache=True)
def _validate_iq1_m(q):
    """ggml_validate_row_data for IQ1_M: the d gathered from the scales must be finite."""
    n, rb = q.shape
    for r in range(n):
        for b in range(rb // IQ1M_TS):
            if (_iq1_m_d_bits(q[r], b * IQ1M_TS) & 0x7C00) == 0x7C00:
                return r
    return -1


# -- registry ----------------------------------------------------------------------------------


X_P = np.array([-1 + IQ1S_DELTA, IQ1S_DELTA, 1 + IQ1S_DELTA], np.float32)  # x_p of quantize_row_iq1_*_impl
X_M = np.array([-1 - IQ1S_DELTA, -IQ1S_DELTA, 1 - IQ1S_DELTA], np.float32)  # x_m (IQ1M_DELTA == IQ1S_DELTA)


def _tables(qt: T):
    lat = lattice(qt)
    return lat.levels, lat.kmap, lat.neighbours


def _refuse(qt: T):
    def quantize(x, out):
        raise ValueError(f"{qt.name}: this quantization requires an importance matrix")
    return quantize


def _codec(qt: T, kernel, dequantize, validate, requires_weights: bool, *extra) -> Codec:
    """The Codec of one type over its row kernel `kernel(x, w, out, levels, kmap, neighbours,
    *extra) -> bad rows`; a row flagged bad is one where ggml aborts (GGML_ASSERT: no grid point
    at a finite distance, or a NaN scale, as when the squares of a row overflow float32)."""
    def weighted(x, w, out):
        bad = np.nonzero(kernel(x, w, out, *_tables(qt), *extra))[0]
        if bad.size:
            raise ValueError(f"{qt.name}: row {bad[0]} overflows the quantizer (ggml_quantize_chunk aborts on it)")

    plain = _refuse(qt) if requires_weights else (lambda x, out: weighted(x, NO_WEIGHTS, out))
    return Codec(qt, plain, dequantize, validate, _quantize_weighted=weighted, requires_weights=requires_weights)


register(_codec(T.IQ2_XXS, _quantize_iq2_xxs, lambda q, out: _dequantize_iq2_xxs(q, out, IQ2XXS_GRID, KSIGNS),
                fp16_validator(XXS_TS, 0), True))
register(_codec(T.IQ2_XS, _quantize_iq2_xs, lambda q, out: _dequantize_iq2_xs(q, out, IQ2XS_GRID, KSIGNS),
                fp16_validator(XS_TS, 0), True))
register(_codec(T.IQ2_S, _quantize_iq2_s, lambda q, out: _dequantize_iq2_s(q, out, IQ2S_GRID),
                fp16_validator(S_TS, 0), False))
register(_codec(T.IQ1_S, _quantize_iq1_s, lambda q, out: _dequantize_iq1_s(q, out, IQ1S_GRID, IQ1S_DELTA),
                fp16_validator(IQ1S_TS, 0), True, X_P, X_M))
register(_codec(T.IQ1_M, _quantize_iq1_m, lambda q, out: _dequantize_iq1_m(q, out, IQ1S_GRID, IQ1S_DELTA),
                _validate_iq1_m, False, X_P, X_M))
