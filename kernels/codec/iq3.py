"""IQ3_XXS and IQ3_S: groups of 4 weights on a lattice of 3-bit levels (ggml-quants.c).

Each group of 4 magnitudes is one point of a grid whose coordinates take 8 levels l = 0..7,
stored as 2l + 1 (the sign of each weight is kept apart). ``iq3xs_init_impl`` builds, per grid,
the map from a point u = sum l_k << 3k (k = 0..3) to its grid index, and for a point off the
grid the list of its nearest grid points (`Lattice` below): 256 points for IQ3_XXS, 512 for
IQ3_S. The quantizers search a block scale, round each group to levels at that scale and look
the point up, falling back on the listed neighbour nearest in weighted squares.

The quantizers are ggml's ``quantize_iq3_xxs`` / ``quantize_iq3_s`` (what ``ggml_quantize_chunk``
runs). Neither requires an importance matrix: with one (qw) the weight of x is
qw * sqrt(sigma2 + x^2), sigma2 twice the super-block's mean square; without one it is x^2.

Block layouts (ggml-common.h), one super-block of QK_K = 256 weights, blocks of 32:

    IQ3_XXS: d (fp16) | qs[QK_K/4] (grid indices, 8 a block) |
             8 x u32 (four 7-bit sign patterns (ksigns, even parity) | 4-bit scale << 28)
    IQ3_S:   d (fp16) | qs[QK_K/4] (grid index low bytes) | qh[QK_K/32] (bit k of qh[ib]:
             the high index bit of group k of block ib) | signs[QK_K/8] (8 sign bits) |
             scales[QK_K/64] (two 4-bit scales)

A block's scale decodes as d * (0.5 + s) * 0.5 (IQ3_XXS) or d * (1 + 2s) (IQ3_S); ggml stores
s = round((scale/d - 1) / 2) with d = max scale / 31, the stored d carrying a small fudge
factor (1.0125 and 1.033).

Where ggml aborts (a GGML_ASSERT: no listed neighbour at a finite distance, or a NaN scale,
as when the squares of a row overflow float32), the super-block kernels return False and the
codec raises a ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGML_QUANT_SIZES, QK_K
from gguf import GGMLQuantizationType as T
from numba import njit, prange

from ..grids import IQ3S_GRID, IQ3XXS_GRID, KSIGNS
from . import Codec, register
from ._bits import fp16_validator, load_fp16, nearest_int, store_fp16
from .iq2 import FLT_MAX, _max_of, _sums_2l1  # the same sums and maximum over a block
from .kquants import importance_weights, sum_squares

f32 = np.float32
GROUP_MAX_EPS_IQ3_XXS = f32(1e-8)  # a block whose largest |x| is below this is left empty
NO_WEIGHTS = np.zeros(0, np.float32)
KMAXQ = 8    # kMaxQ: levels 0..7, values 2l + 1 = 1..15
BLOCK = 32   # the block of one scale
GROUPS = BLOCK // 4

FP16 = 2
# IQ3_XXS: d | qs[3*QK_K/8] = grid indices (QK_K/4) | scales_and_signs (QK_K/32 u32)
XXS_QS = FP16
XXS_SAS = XXS_QS + QK_K // 4
XXS_TS = GGML_QUANT_SIZES[T.IQ3_XXS][1]
assert XXS_TS == XXS_SAS + 4 * (QK_K // 32)
# IQ3_S: d | qs[QK_K/4] | qh[QK_K/32] | signs[QK_K/8] | scales[QK_K/64]
S_QS = FP16
S_QH = S_QS + QK_K // 4
S_SIGNS = S_QH + QK_K // 32
S_SC = S_SIGNS + QK_K // 8
S_TS = GGML_QUANT_SIZES[T.IQ3_S][1]
assert S_TS == S_SC + QK_K // 64


# -- the lattices of iq3xs_init_impl -----------------------------------------------------------

KMAP_SIZE = 4096  # kmap_size: every u of 4 levels 0..7
_SHIFTS = 3 * np.arange(4)


@dataclass(frozen=True)
class Lattice:
    """iq3_data[gindex] of ggml-quants.c, in the order iq3xs_init_impl fills it."""

    levels: np.ndarray      # uint8[G, 4]: level l of each coordinate; kgrid_q3xs holds 2l + 1
    kmap: np.ndarray        # int32[KMAP_SIZE]: u -> grid index, or -(offset + 1) off the grid
    neighbours: np.ndarray  # uint16[...]: at each offset a count n, then n grid indices


def grid_levels(grid: np.ndarray) -> np.ndarray:
    """The levels of a decoded grid (iq3xxs_grid's values 4 .. 62, iq3s_grid's 1 .. 15): the
    rank of each value among the grid's 8 distinct ones. The points come out in increasing
    u = sum l_k << 3k, the order of kgrid_256 / kgrid_512 in iq3xs_init_impl."""
    values = np.unique(grid)
    assert values.shape[0] == KMAXQ
    levels = np.searchsorted(values, grid).astype(np.uint8)
    u = (levels.astype(np.int64) << _SHIFTS).sum(axis=1)
    assert (np.diff(u) > 0).all()
    return levels


def build_lattice(levels: np.ndarray, nwant: int) -> Lattice:
    """iq3xs_init_impl: the grid map, and for every u in [0, KMAP_SIZE) off the grid the grid
    points at its `nwant` smallest squared distances (all points at the nwant-th distance
    too), ordered by (distance, index) as qsort with iq3_compare_func leaves them; the lists
    follow one another in increasing u."""
    g = levels.shape[0]
    kmap = np.full(KMAP_SIZE, -1, np.int32)
    kmap[(levels.astype(np.int64) << _SHIFTS).sum(axis=1)] = np.arange(g, dtype=np.int32)
    off = np.nonzero(kmap < 0)[0]                                        # (M,) points off the grid
    pos = 2 * ((off[:, None] >> _SHIFTS) & 7) + 1                        # (M, 4): 1, 3, .., 15
    pg = 2 * levels.astype(np.int64) + 1                                 # (G, 4)
    d2 = ((pos[:, None, :] - pg[None, :, :]) ** 2).sum(axis=2)           # (M, G), exact ints
    order = np.argsort(d2 * g + np.arange(g), axis=1)                    # by (distance, index)
    sd = np.take_along_axis(d2, order, axis=1)
    rank = np.concatenate([np.zeros((off.shape[0], 1), np.int64),
                           np.cumsum(sd[:, 1:] != sd[:, :-1], axis=1)], axis=1)  # distinct distance rank
    keep = rank < nwant                                                  # (M, G)
    counts = keep.sum(axis=1)
    # each list as the C writes it: its count, then its indices
    table = np.concatenate([counts[:, None], order], axis=1)             # (M, 1 + G)
    mask = np.concatenate([np.ones((off.shape[0], 1), bool), keep], axis=1)
    neighbours = table[mask].astype(np.uint16)
    offsets = np.concatenate(([0], np.cumsum(counts + 1)[:-1]))
    kmap[off] = -(offsets + 1)
    return Lattice(levels, kmap, neighbours)


# nwant: 2 for the 256-point grid, 3 for the 512-point one (iq3xs_init_impl)
LATTICE_XXS = build_lattice(grid_levels(IQ3XXS_GRID), 2)
LATTICE_S = build_lattice(grid_levels(IQ3S_GRID), 3)


# -- the block search (shared by quantize_row_iq3_xxs_impl and quantize_row_iq3_s_impl) --------


@njit(cache=True)
def _block_weights(xb, qw, sigma2, weight):
    """The weights of a block: qw * sqrtf(sigma2 + x^2) with an imatrix row, x^2 without (qw empty)."""
    if qw.shape[0]:
        importance_weights(xb, qw, sigma2, weight)
    else:
        for i in range(xb.shape[0]):
            weight[i] = xb[i] * xb[i]


@njit(cache=True)
def _round_group(xval, o, inv, L):
    """L[o+i] = clamp(nearest_int(0.5 * (inv * xval[o+i] - 1)), 0, kMaxQ - 1) for the 4 values of
    a group: the level whose 2l + 1 is nearest inv * xval. Returns the lattice point u."""
    u = 0
    for i in range(4):
        l = max(0, min(KMAXQ - 1, nearest_int(f32(0.5) * (inv * xval[o + i] - f32(1.0)))))
        L[o + i] = l
        u |= l << (3 * i)
    return u


@njit(cache=True)
def _find_best_neighbour(nb, start, levels, xval, waux, o, scale, L, e):
    """iq3_find_best_neighbour: of the grid points listed at nb[start], the one with the least
    sum waux * (scale * q - xval)^2 over the group xval[o:o+4] (q = 2l + 1); its levels go to
    L[o:o+4]. Returns its index, -1 where ggml's GGML_ASSERT(grid_index >= 0) aborts (every
    distance NaN or infinite). Each term depends only on the coordinate and its level, so the
    32 are formed once into e (the same float32 products as ggml's per point) and each point's
    distance sums its 4 in ggml's order."""
    for i in range(4):
        for l in range(KMAXQ):
            diff = scale * f32(2 * l + 1) - xval[o + i]
            e[KMAXQ * i + l] = waux[o + i] * diff * diff
    best_d2 = FLT_MAX
    gi = -1
    for j in range(1, np.int64(nb[start]) + 1):
        g = np.int64(nb[start + j])
        d2 = f32(0.0)
        for i in range(4):
            d2 += e[KMAXQ * i + levels[g, i]]
        if d2 < best_d2:
            best_d2 = d2
            gi = g
    if gi >= 0:
        for i in range(4):
            L[o + i] = levels[gi, i]
    return gi


@njit(cache=True)
def _search_block(xval, vmax, weight, waux, L, Laux, on, on_aux, levels, kmap, nb, nstep, on_init, redo_all, e):
    """The scale search of quantize_row_iq3_xxs_impl (nstep 15, groups start on the grid, only
    off-grid ones redone) and quantize_row_iq3_s_impl (nstep 9, groups start off the grid, all
    redone) for one block of 32 magnitudes xval with max vmax > 0: 2 nstep + 1 inverse scales
    (15 + 0.2 is)/max, each group rounded to levels and moved to its best neighbour if off the
    grid; the best sumqx^2/sumq2 wins. If a winning group was off the grid, the groups are
    re-rounded at that scale and the scale refitted. L gets the levels; returns the scale (NaN
    where ggml aborts)."""
    best = f32(0.0)
    scale = vmax / f32(2 * KMAXQ - 1)
    for k in range(GROUPS):
        on[k] = on_init
    for step in range(-nstep, nstep + 1):
        inv = (f32(2 * KMAXQ - 1) + f32(step) * f32(0.2)) / vmax
        this_scale = f32(1.0) / inv
        for k in range(GROUPS):
            gi = kmap[_round_group(xval, 4 * k, inv, Laux)]
            on_aux[k] = gi >= 0
            if gi < 0 and _find_best_neighbour(nb, -gi - 1, levels, xval, waux, 4 * k, this_scale, Laux, e) < 0:
                return f32(np.nan)
        sumqx, sumq2 = _sums_2l1(xval, weight, Laux, BLOCK)
        if sumq2 > 0 and sumqx * sumqx > best * sumq2:
            scale = sumqx / sumq2
            best = scale * sumqx
            for i in range(BLOCK):
                L[i] = Laux[i]
            for k in range(GROUPS):
                on[k] = on_aux[k]
    n_off = 0
    for k in range(GROUPS):
        if not on[k]:
            n_off += 1
    if n_off > 0 and scale > 0:
        inv = f32(1.0) / scale
        for k in range(GROUPS):
            if on[k] and not redo_all:
                continue
            gi = kmap[_round_group(xval, 4 * k, inv, L)]
            if gi < 0 and _find_best_neighbour(nb, -gi - 1, levels, xval, waux, 4 * k, scale, L, e) < 0:
                return f32(np.nan)
        sumqx, sumq2 = _sums_2l1(xval, weight, L, BLOCK)
        if sumq2 > 0:
            scale = sumqx / sumq2
    return scale


@njit(cache=True)
def _group_index(kmap, L, k):
    """The grid index of group k's levels L[4k:4k+4]; -1 off the grid (ggml: "found point not
    on grid", then abort)."""
    u = 0
    for i in range(4):
        u |= np.int64(L[4 * k + i]) << (3 * i)
    return kmap[u]


@njit(cache=True)
def _scale_nibble(inv_d, s):
    """nearest_int(0.5 * (s / d - 1)) clamped to 0..15: a block scale as stored."""
    return max(0, min(15, nearest_int(f32(0.5) * (inv_d * s - f32(1.0)))))


# -- IQ3_XXS -----------------------------------------------------------------------------------


@njit(cache=True)
def _iq3_xxs_superblock(x, qw, row, o, levels, kmap, nb, scales, weight, waux, xval, L, Laux, on, on_aux,
                        signs, q3, sas, e):
    """quantize_row_iq3_xxs_impl (grid_size 256) for one super-block x (256) into row[o:]; qw the
    imatrix row or empty. False where ggml aborts."""
    for i in range(QK_K // 4):
        q3[i] = 0
    for ib in range(QK_K // BLOCK):
        sas[ib] = 0
    max_scale = f32(0.0)
    sigma2 = f32(2.0) * sum_squares(x) / f32(QK_K)
    for ib in range(QK_K // BLOCK):
        xb = x[BLOCK * ib:BLOCK * ib + BLOCK]
        _block_weights(xb, qw[BLOCK * ib:BLOCK * ib + BLOCK], sigma2, weight)
        for i in range(BLOCK):
            waux[i] = np.sqrt(weight[i])
        # magnitudes, and 7 bits of an even-parity sign pattern per 8: an odd count of negatives
        # flips the sign of the one with the least weight * x^2 (it is quantized as negative)
        for k in range(4):
            s = 0
            nflip = 0
            for i in range(8):
                v = xb[8 * k + i]
                if v >= 0:
                    xval[8 * k + i] = v
                else:
                    xval[8 * k + i] = -v
                    nflip += 1
                    s |= 1 << i
            if nflip % 2:
                imin = 0
                vmin = weight[8 * k] * xb[8 * k] * xb[8 * k]
                for i in range(1, 8):
                    ax = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i]
                    if ax < vmin:
                        vmin = ax
                        imin = i
                xval[8 * k + imin] = -xval[8 * k + imin]
                s ^= 1 << imin
            signs[k] = s & 127
        for i in range(BLOCK):
            L[i] = 0
        vmax = _max_of(xval, BLOCK)
        if vmax < GROUP_MAX_EPS_IQ3_XXS:
            scales[ib] = 0
            continue
        scale = _search_block(xval, vmax, weight, waux, L, Laux, on, on_aux, levels, kmap, nb, 15, True, False, e)
        if scale < 0:  # "should never happen" (ggml): flip the scale and the signs
            scale = -scale
            for k in range(4):
                signs[k] = (~signs[k]) & 127
        for k in range(GROUPS):
            gi = _group_index(kmap, L, k)
            if gi < 0:
                return False
            q3[GROUPS * ib + k] = gi
        sas[ib] = signs[0] | (signs[1] << 7) | (signs[2] << 14) | (signs[3] << 21)
        if not scale >= 0:  # GGML_ASSERT(scale >= 0): a NaN
            return False
        scales[ib] = scale
        max_scale = max_scale if max_scale > scale else scale
    if not max_scale:
        for i in range(XXS_TS):
            row[o + i] = 0
        return True
    d = max_scale / f32(31.0)
    store_fp16(row, o, d * f32(1.0125))  # ggml's fudge factor
    inv_d = f32(1.0) / d
    for ib in range(QK_K // BLOCK):
        v = sas[ib] | (np.int64(_scale_nibble(inv_d, scales[ib])) << 28)
        for b in range(4):
            row[o + XXS_SAS + 4 * ib + b] = (v >> (8 * b)) & 0xFF
    for i in range(QK_K // 4):
        row[o + XXS_QS + i] = q3[i]
    return True


@njit(cache=True, parallel=True)
def _quantize_iq3_xxs(x, qw, out, levels, kmap, nb):
    """quantize_iq3_xxs: every super-block of every row (qw empty: no imatrix). Returns the
    rows ggml aborts on (1)."""
    n, ne0 = x.shape
    bad = np.zeros(n, np.uint8)
    for r in prange(n):
        scales = np.empty(QK_K // BLOCK, np.float32)
        weight = np.empty(BLOCK, np.float32)
        waux = np.empty(BLOCK, np.float32)
        e = np.empty(4 * KMAXQ, np.float32)
        xval = np.empty(BLOCK, np.float32)
        L = np.zeros(BLOCK, np.int64)
        Laux = np.zeros(BLOCK, np.int64)
        on = np.empty(GROUPS, np.bool_)
        on_aux = np.empty(GROUPS, np.bool_)
        signs = np.empty(4, np.int64)
        q3 = np.empty(QK_K // 4, np.uint8)
        sas = np.empty(QK_K // BLOCK, np.int64)
        for b in range(ne0 // QK_K):
            w = qw[b * QK_K:(b + 1) * QK_K] if qw.shape[0] else qw
            if not _iq3_xxs_superblock(x[r, b * QK_K:(b + 1) * QK_K], w, out[r], b * XXS_TS, levels, kmap, nb,
                                       scales, weight, waux, xval, L, Laux, on, on_aux, signs, q3, sas, e):
                bad[r] = 1
                break
    return bad


@njit(cache=True, parallel=True)
def _dequantize_iq3_xxs(q, out, grid, ksigns):
    """dequantize_row_iq3_xxs: (d * (0.5 + s) * 0.5) * grid * sign."""
    n, rb = q.shape
    for r in prange(n):
        row = q[r]
        for b in range(rb // XXS_TS):
            o = b * XXS_TS
            d = load_fp16(row, o)
            for ib in range(QK_K // BLOCK):
                aux = 0
                for i in range(4):
                    aux |= np.int64(row[o + XXS_SAS + 4 * ib + i]) << (8 * i)
                db = d * (f32(0.5) + f32(aux >> 28)) * f32(0.5)
                for l in range(4):
                    sg = ksigns[(aux >> (7 * l)) & 127]
                    for h in range(2):  # the two groups of 4 under one sign pattern
                        g = row[o + XXS_QS + 8 * ib + 2 * l + h]
                        for j in range(4):
                            v = db * f32(grid[g, j])
                            out[r, b * QK_K + BLOCK * ib + 8 * l + 4 * h + j] = -v if (sg >> (4 * h + j)) & 1 else v


# -- IQ3_S -------------------------------------------------------------------------------------


@njit(cache=True)
def _iq3_s_superblock(x, qw, row, o, levels, kmap, nb, scales, weight, waux, xval, L, Laux, on, on_aux, signs, e):
    """quantize_row_iq3_s_impl (block_size 32) for one super-block x (256) into row[o:]; qw the
    imatrix row or empty. False where ggml aborts."""
    for i in range(S_TS):
        row[o + i] = 0
    # ggml advances its qs and signs pointers only past the blocks it quantizes (an empty block
    # `continue`s before them), so block ib's indices and signs go to the slot of the count of
    # non-empty blocks before it; qh and the scales are indexed by ib itself
    slot = 0
    max_scale = f32(0.0)
    sigma2 = f32(2.0) * sum_squares(x) / f32(QK_K)
    for ib in range(QK_K // BLOCK):
        xb = x[BLOCK * ib:BLOCK * ib + BLOCK]
        _block_weights(xb, qw[BLOCK * ib:BLOCK * ib + BLOCK], sigma2, weight)
        for i in range(BLOCK):
            waux[i] = np.sqrt(weight[i])
        for k in range(BLOCK // 8):  # magnitudes and 8 plain sign bits
            s = 0
            for i in range(8):
                v = xb[8 * k + i]
                if v >= 0:
                    xval[8 * k + i] = v
                else:
                    xval[8 * k + i] = -v
                    s |= 1 << i
            signs[k] = s
        for i in range(BLOCK):
            L[i] = 0
        vmax = _max_of(xval, BLOCK)
        if vmax == 0:
            scales[ib] = 0
            continue
        scale = _search_block(xval, vmax, weight, waux, L, Laux, on, on_aux, levels, kmap, nb, 9, False, True, e)
        if scale < 0:  # "should never happen" (ggml): flip the scale and the signs
            scale = -scale
            for k in range(BLOCK // 8):
                signs[k] = (~signs[k]) & 255
        for k in range(GROUPS):
            gi = _group_index(kmap, L, k)
            if gi < 0:
                return False
            row[o + S_QS + GROUPS * slot + k] = gi & 255
            row[o + S_QH + ib] |= (gi >> 8) << k
        for k in range(BLOCK // 8):
            row[o + S_SIGNS + (BLOCK // 8) * slot + k] = signs[k]
        slot += 1
        if not scale >= 0:  # GGML_ASSERT(scale >= 0): a NaN
            return False
        scales[ib] = scale
        max_scale = max_scale if max_scale > scale else scale
    if not max_scale:  # the indices and signs written stay, d stays 0
        return True
    d = max_scale / f32(31.0)
    store_fp16(row, o, d * f32(1.033))  # ggml's fudge factor
    inv_d = f32(1.0) / d
    for ib in range(0, QK_K // BLOCK, 2):
        row[o + S_SC + ib // 2] = _scale_nibble(inv_d, scales[ib]) | (_scale_nibble(inv_d, scales[ib + 1]) << 4)
    return True


@njit(cache=True, parallel=True)
def _quantize_iq3_s(x, qw, out, levels, kmap, nb):
    """quantize_iq3_s: every super-block of every row (qw empty: no imatrix). Returns the rows
    ggml aborts on (1)."""
    n, ne0 = x.shape
    bad = np.zeros(n, np.uint8)
    for r in prange(n):
        scales = np.empty(QK_K // BLOCK, np.float32)
        weight = np.empty(BLOCK, np.float32)
        waux = np.empty(BLOCK, np.float32)
        e = np.empty(4 * KMAXQ, np.float32)
        xval = np.empty(BLOCK, np.float32)
        L = np.zeros(BLOCK, np.int64)
        Laux = np.zeros(BLOCK, np.int64)
        on = np.empty(GROUPS, np.bool_)
        on_aux = np.empty(GROUPS, np.bool_)
        signs = np.empty(BLOCK // 8, np.int64)
        for b in range(ne0 // QK_K):
            w = qw[b * QK_K:(b + 1) * QK_K] if qw.shape[0] else qw
            if not _iq3_s_superblock(x[r, b * QK_K:(b + 1) * QK_K], w, out[r], b * S_TS, levels, kmap, nb,
                                     scales, weight, waux, xval, L, Laux, on, on_aux, signs, e):
                bad[r] = 1
                break
    return bad


@njit(cache=True, parallel=True)
def _dequantize_iq3_s(q, out, grid):
    """dequantize_row_iq3_s: (d * (1 + 2s)) * grid * sign."""
    n, rb = q.shape
    for r in prange(n):
        row = q[r]
        for b in range(rb // S_TS):
            o = b * S_TS
            d = load_fp16(row, o)
            for ib in range(QK_K // BLOCK):
                db = d * f32(1 + 2 * ((np.int64(row[o + S_SC + ib // 2]) >> (4 * (ib % 2))) & 15))
                qh = np.int64(row[o + S_QH + ib])
                for k in range(GROUPS):
                    g = np.int64(row[o + S_QS + GROUPS * ib + k]) | (((qh >> k) & 1) << 8)
                    sg = np.int64(row[o + S_SIGNS + (BLOCK // 8) * ib + k // 2])
                    for j in range(4):
                        v = db * f32(grid[g, j])
                        out[r, b * QK_K + BLOCK * ib + 4 * k + j] = -v if (sg >> (4 * (k % 2) + j)) & 1 else v


# -- registry ----------------------------------------------------------------------------------


def _codec(qt: T, kernel, lat: Lattice, dequantize, validate) -> Codec:
    """The Codec of one type over its row kernel `kernel(x, w, out, levels, kmap, neighbours)
    -> bad rows`; a row flagged bad is one where ggml aborts (GGML_ASSERT)."""
    def weighted(x, w, out):
        bad = np.nonzero(kernel(x, w, out, lat.levels, lat.kmap, lat.neighbours))[0]
        if bad.size:
            raise ValueError(f"{qt.name}: row {bad[0]} overflows the quantizer (ggml_quantize_chunk aborts on it)")

    return Codec(qt, lambda x, out: weighted(x, NO_WEIGHTS, out), dequantize, validate, _quantize_weighted=weighted)


register(_codec(T.IQ3_XXS, _quantize_iq3_xxs, LATTICE_XXS,
                lambda q, out: _dequantize_iq3_xxs(q, out, IQ3XXS_GRID, KSIGNS), fp16_validator(XXS_TS, 0)))
register(_codec(T.IQ3_S, _quantize_iq3_s, LATTICE_S,
                lambda q, out: _dequantize_iq3_s(q, out, IQ3S_GRID), fp16_validator(S_TS, 0)))
