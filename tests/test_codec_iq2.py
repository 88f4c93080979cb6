"""kernels/codec/iq2.py against slow twins: iq2xs_init_impl's neighbour search as ggml loops it,
and quantize_row_iq2_xs_impl transcribed into plain Python with float32 scalars, on a few blocks.

(The codecs' bytes are checked against ggml itself in test_codec_chunks.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, QK_K
from gguf import GGMLQuantizationType as T

from llamacli.kernels.codec import CODECS, iq2

f = np.float32
NWANT = {T.IQ2_XXS: 2, T.IQ2_XS: 2, T.IQ2_S: 1, T.IQ1_S: 3}


def _neighbours_slow(levels: np.ndarray, nwant: int, u: int) -> list[int]:
    """iq2xs_init_impl's loop for one point u off the grid: qsort (distance, index), then take
    indices until the (nwant + 1)-th distinct distance."""
    grid = [[2 * int(l) + 1 for l in row] for row in levels]
    pos = [2 * ((u >> 2 * k) & 3) + 1 for k in range(8)]
    dist = sorted((sum((g[k] - pos[k]) ** 2 for k in range(8)), j) for j, g in enumerate(grid))
    out, d2, nhave = [], dist[0][0], 1
    for d, j in dist:
        if d > d2:
            if nhave == nwant:
                break
            d2, nhave = d, nhave + 1
        out.append(j)
    return out


@pytest.mark.parametrize("qt", list(NWANT), ids=lambda t: t.name)
def test_lattice_is_iq2xs_init_impl_s(qt):
    lat = iq2.lattice(qt)
    u = (lat.levels.astype(np.int64) << (2 * np.arange(8))).sum(axis=1)
    assert np.array_equal(lat.kmap[u], np.arange(lat.levels.shape[0]))  # the map of the grid
    off = np.nonzero(lat.kmap < 0)[0]
    assert off.shape[0] + lat.levels.shape[0] == iq2.KMAP_SIZE
    for p in np.random.default_rng(1).choice(off, 12, replace=False):
        o = -int(lat.kmap[p]) - 1
        got = lat.neighbours[o + 1:o + 1 + int(lat.neighbours[o])].tolist()
        assert got == _neighbours_slow(lat.levels, NWANT[qt], int(p)), f"{qt.name}: neighbours of {p}"


# -- quantize_row_iq2_xs_impl in plain Python ---------------------------------------------------


def _nearest_int(v) -> int:
    return int((f(v) + f(12582912.0)).view(np.int32) & 0x007FFFFF) - 0x00400000


def _best_neighbour(lat, u, xval, w, scale):
    """iq2_find_best_neighbour: the levels of the nearest listed grid point."""
    o = -int(lat.kmap[u]) - 1
    best, gi = f(3.4028234663852886e38), -1
    for g in lat.neighbours[o + 1:o + 1 + int(lat.neighbours[o])]:
        d2 = f(0.0)
        for i in range(8):
            diff = scale * f(2 * int(lat.levels[g, i]) + 1) - xval[i]
            d2 += w[i] * diff * diff
        if d2 < best:
            best, gi = d2, int(g)
    return [int(l) for l in lat.levels[gi]]


def _group(lat, xval, waux, inv, scale):
    """Round 8 values to levels; move an off-grid point to its best neighbour. (levels, on grid)"""
    L = [max(0, min(2, _nearest_int(f(0.5) * (inv * v - f(1.0))))) for v in xval]
    u = sum(l << 2 * i for i, l in enumerate(L))
    if lat.kmap[u] >= 0:
        return L, True
    return _best_neighbour(lat, u, xval, waux, scale), False


def _sums(xval, weight, L):
    sumqx, sumq2 = f(0.0), f(0.0)
    for v, w, l in zip(xval, weight, L):
        q = f(2 * l + 1)
        sumqx += w * v * q
        sumq2 += w * q * q
    return sumqx, sumq2


def _iq2_xs_slow(x: np.ndarray, qw: np.ndarray) -> bytes:
    """One IQ2_XS super-block, as quantize_row_iq2_xs_impl writes it."""
    lat = iq2.lattice(T.IQ2_XS)
    sumx2 = f(0.0)
    for v in x:
        sumx2 += v * v
    sigma2 = sumx2 / f(QK_K)
    q2, scales = [0] * (QK_K // 8), [f(0.0)] * (QK_K // 16)
    for ib in range(QK_K // 16):
        xb, qb = x[16 * ib:16 * ib + 16], qw[16 * ib:16 * ib + 16]
        weight = [q * np.sqrt(sigma2 + v * v) for v, q in zip(xb, qb)]
        waux = [np.sqrt(w) for w in weight]
        xval, signs = [abs(v) if v < 0 else v for v in xb], []
        for k in range(2):
            neg = [i for i in range(8) if xb[8 * k + i] < 0]
            s = sum(1 << i for i in neg)
            if len(neg) % 2:  # even parity: flip the least important one
                cost = [weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i] for i in range(8)]
                imin = min(range(8), key=lambda i: (cost[i], i))
                xval[8 * k + imin] = -xval[8 * k + imin]
                s ^= 1 << imin
            signs.append(s & 127)
        vmax = max(xval)
        if vmax < f(1e-15):
            continue
        best, scale, L, on = f(0.0), vmax / f(5.0), [0] * 16, [True, True]
        for step in range(-9, 10):
            inv = (f(5.0) + f(step) * f(0.1)) / vmax
            groups = [_group(lat, xval[8 * k:8 * k + 8], waux[8 * k:8 * k + 8], inv, f(1.0) / inv) for k in range(2)]
            Laux = groups[0][0] + groups[1][0]
            sumqx, sumq2 = _sums(xval, weight, Laux)
            if sumq2 > 0 and sumqx * sumqx > best * sumq2:
                scale = sumqx / sumq2
                best = scale * sumqx
                L, on = Laux, [groups[0][1], groups[1][1]]
        if not all(on) and scale > 0:
            for k in range(2):
                if not on[k]:
                    g = slice(8 * k, 8 * k + 8)
                    L[g] = _group(lat, xval[g], waux[g], f(1.0) / scale, scale)[0]
            sumqx, sumq2 = _sums(xval, weight, L)
            if sumq2 > 0:
                scale = sumqx / sumq2
        if scale < 0:
            scale, signs = -scale, [(~s) & 127 for s in signs]
        for k in range(2):
            u = sum(l << 2 * i for i, l in enumerate(L[8 * k:8 * k + 8]))
            q2[2 * ib + k] = int(lat.kmap[u]) | (signs[k] << 9)
        scales[ib] = scale
    out = bytearray(GGML_QUANT_SIZES[T.IQ2_XS][1])
    max_scale = max(scales)
    if not max_scale:
        return bytes(out)
    d = max_scale / f(31.0)
    out[0:2] = np.float16(d).tobytes()  # round to nearest even, as ggml's fp32 -> fp16
    for ib in range(QK_K // 16):
        l = max(0, min(15, _nearest_int(f(0.5) * ((f(1.0) / d) * scales[ib] - f(1.0)))))
        out[iq2.XS_SC + ib // 2] |= l << 4 * (ib % 2)
    out[iq2.XS_QS:iq2.XS_SC] = np.array(q2, np.uint16).tobytes()
    return bytes(out)


def test_iq2_xs_superblocks_are_the_slow_twin_s():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, QK_K)).astype(np.float32)
    x[1, ::7] *= 8  # outliers
    x[2, 32:64] = 0  # two empty blocks
    qw = ((np.abs(rng.standard_normal(QK_K)) + 0.05) ** 2).astype(np.float32)
    got = CODECS[T.IQ2_XS].quantize(x, 1, weights=qw)
    for r in range(x.shape[0]):
        assert got[r].tobytes() == _iq2_xs_slow(x[r], qw), f"row {r}"


def test_iq1_m_validate_finds_an_infinite_d():
    c = CODECS[T.IQ1_M]
    x = np.random.default_rng(4).standard_normal((3, 2 * QK_K)).astype(np.float32)
    q = c.quantize(x, 1)
    assert c.validate(q) == -1
    ts = GGML_QUANT_SIZES[T.IQ1_M][1]
    q[2, ts + iq2.IQ1M_SC + 5] |= 0xC0  # d's exponent: bits 10..11 are the third u16's bits 14..15
    q[2, ts + iq2.IQ1M_SC + 7] |= 0x70  # and bits 12..14 the fourth's bits 12..14
    assert c.validate(q) == 2


def test_rows_ggml_aborts_on_are_refused():
    """x ~ 1e16: the weighted squares overflow, no neighbour is at a finite distance and ggml's
    GGML_ASSERT(grid_index >= 0) aborts (checked against libggml-base); the codec raises."""
    x = (np.random.default_rng(6).standard_normal((2, QK_K)) * 1e16).astype(np.float32)
    qw = np.ones(QK_K, np.float32)
    with pytest.raises(ValueError, match="IQ2_XS: row 0 overflows"):
        CODECS[T.IQ2_XS].quantize(x, 1, weights=qw)
