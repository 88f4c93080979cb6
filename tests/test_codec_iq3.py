"""kernels/codec/iq3.py against slow twins: iq3xs_init_impl's neighbour search as ggml loops it,
and quantize_row_iq3_xxs_impl / quantize_row_iq3_s_impl transcribed into plain Python with
float32 scalars, on a few super-blocks.

(The codecs' bytes are checked against ggml itself in test_codec_chunks.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, QK_K
from gguf import GGMLQuantizationType as T

from llamacli.kernels.codec import CODECS, iq3

f = np.float32
LATTICES = {T.IQ3_XXS: (iq3.LATTICE_XXS, 2), T.IQ3_S: (iq3.LATTICE_S, 3)}


def _neighbours_slow(levels: np.ndarray, nwant: int, u: int) -> list[int]:
    """iq3xs_init_impl's loop for one point u off the grid: qsort (distance, index), then take
    indices until the (nwant + 1)-th distinct distance."""
    grid = [[2 * int(l) + 1 for l in row] for row in levels]
    pos = [2 * ((u >> 3 * k) & 7) + 1 for k in range(4)]
    dist = sorted((sum((g[k] - pos[k]) ** 2 for k in range(4)), j) for j, g in enumerate(grid))
    out, d2, nhave = [], dist[0][0], 1
    for d, j in dist:
        if d > d2:
            if nhave == nwant:
                break
            d2, nhave = d, nhave + 1
        out.append(j)
    return out


@pytest.mark.parametrize("qt", list(LATTICES), ids=lambda t: t.name)
def test_lattice_is_iq3xs_init_impl_s(qt):
    lat, nwant = LATTICES[qt]
    u = (lat.levels.astype(np.int64) << (3 * np.arange(4))).sum(axis=1)
    assert np.array_equal(lat.kmap[u], np.arange(lat.levels.shape[0]))  # the map of the grid
    off = np.nonzero(lat.kmap < 0)[0]
    assert off.shape[0] + lat.levels.shape[0] == iq3.KMAP_SIZE
    offsets = -lat.kmap[off].astype(np.int64) - 1  # the lists follow one another in u's order
    assert offsets[0] == 0 and np.array_equal(np.diff(offsets), lat.neighbours[offsets[:-1]].astype(np.int64) + 1)
    assert offsets[-1] + 1 + lat.neighbours[offsets[-1]] == lat.neighbours.shape[0]
    for p in np.random.default_rng(1).choice(off, 24, replace=False):
        o = -int(lat.kmap[p]) - 1
        got = lat.neighbours[o + 1:o + 1 + int(lat.neighbours[o])].tolist()
        assert got == _neighbours_slow(lat.levels, nwant, int(p)), f"{qt.name}: neighbours of {p}"


# -- quantize_row_iq3_xxs_impl and quantize_row_iq3_s_impl in plain Python -----------------------


def _nearest_int(v) -> int:
    return int((f(v) + f(12582912.0)).view(np.int32) & 0x007FFFFF) - 0x00400000


def _best_neighbour(lat, u, xval, waux, scale):
    """iq3_find_best_neighbour: the levels of the nearest listed grid point."""
    o = -int(lat.kmap[u]) - 1
    best, gi = f(3.4028234663852886e38), -1
    for g in lat.neighbours[o + 1:o + 1 + int(lat.neighbours[o])]:
        d2 = f(0.0)
        for i in range(4):
            diff = scale * f(2 * int(lat.levels[g, i]) + 1) - xval[i]
            d2 += waux[i] * diff * diff
        if d2 < best:
            best, gi = d2, int(g)
    return [int(l) for l in lat.levels[gi]]


def _group(lat, xval, waux, inv, scale):
    """Round 4 values to levels; move an off-grid point to its best neighbour. (levels, on grid)"""
    L = [max(0, min(7, _nearest_int(f(0.5) * (inv * v - f(1.0))))) for v in xval]
    u = sum(l << 3 * i for i, l in enumerate(L))
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


def _search(lat, xval, weight, waux, nstep, on_init, redo_all):
    """The block scale search, as both quantize_row_iq3_*_impl loop it. (levels, scale)"""
    vmax = max(xval)
    best, scale, L, on = f(0.0), vmax / f(15.0), [0] * 32, [on_init] * 8
    for step in range(-nstep, nstep + 1):
        inv = (f(15.0) + f(step) * f(0.2)) / vmax
        groups = [_group(lat, xval[4 * k:4 * k + 4], waux[4 * k:4 * k + 4], inv, f(1.0) / inv) for k in range(8)]
        Laux = [l for g in groups for l in g[0]]
        sumqx, sumq2 = _sums(xval, weight, Laux)
        if sumq2 > 0 and sumqx * sumqx > best * sumq2:
            scale = sumqx / sumq2
            best = scale * sumqx
            L, on = Laux, [g[1] for g in groups]
    if not all(on) and scale > 0:
        for k in range(8):
            if redo_all or not on[k]:
                g = slice(4 * k, 4 * k + 4)
                L[g] = _group(lat, xval[g], waux[g], f(1.0) / scale, scale)[0]
        sumqx, sumq2 = _sums(xval, weight, L)
        if sumq2 > 0:
            scale = sumqx / sumq2
    return L, scale


def _fp16(v) -> bytes:
    return np.float16(v).tobytes()  # round to nearest even, as ggml's fp32 -> fp16


def _iq3_slow(qt: T, x: np.ndarray, qw: np.ndarray | None) -> bytes:
    """One super-block as quantize_row_iq3_xxs_impl (IQ3_XXS) or quantize_row_iq3_s_impl
    (IQ3_S) writes it."""
    xxs = qt == T.IQ3_XXS
    lat = iq3.LATTICE_XXS if xxs else iq3.LATTICE_S
    sumx2 = f(0.0)
    for v in x:
        sumx2 += v * v
    sigma2 = f(2.0) * sumx2 / f(QK_K)
    out = bytearray(GGML_QUANT_SIZES[qt][1])
    scales, slot = [f(0.0)] * 8, 0
    for ib in range(8):
        xb = x[32 * ib:32 * ib + 32]
        if qw is None:
            weight = [v * v for v in xb]
        else:
            weight = [q * np.sqrt(sigma2 + v * v) for v, q in zip(xb, qw[32 * ib:32 * ib + 32])]
        waux = [np.sqrt(w) for w in weight]
        xval, signs = [-v if v < 0 else v for v in xb], []
        for k in range(4):
            neg = [i for i in range(8) if xb[8 * k + i] < 0]
            s = sum(1 << i for i in neg)
            if xxs and len(neg) % 2:  # even parity: flip the least important one
                cost = [weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i] for i in range(8)]
                imin = min(range(8), key=lambda i: (cost[i], i))
                xval[8 * k + imin] = -xval[8 * k + imin]
                s ^= 1 << imin
            signs.append(s & 127 if xxs else s)
        vmax = max(xval)
        if (vmax < f(1e-8)) if xxs else (vmax == 0):
            continue
        L, scale = _search(lat, xval, weight, waux, 15 if xxs else 9, xxs, not xxs)
        if scale < 0:
            scale, signs = -scale, [(~s) & (127 if xxs else 255) for s in signs]
        index = [int(lat.kmap[sum(l << 3 * i for i, l in enumerate(L[4 * k:4 * k + 4]))]) for k in range(8)]
        assert min(index) >= 0
        if xxs:
            out[2 + 8 * ib:2 + 8 * ib + 8] = bytes(index)
            sas = signs[0] | signs[1] << 7 | signs[2] << 14 | signs[3] << 21
            out[iq3.XXS_SAS + 4 * ib:iq3.XXS_SAS + 4 * ib + 4] = sas.to_bytes(4, "little")
        else:  # ggml's qs and signs pointers move past the non-empty blocks only
            out[iq3.S_QS + 8 * slot:iq3.S_QS + 8 * slot + 8] = bytes(g & 255 for g in index)
            out[iq3.S_QH + ib] = sum((g >> 8) << k for k, g in enumerate(index))
            out[iq3.S_SIGNS + 4 * slot:iq3.S_SIGNS + 4 * slot + 4] = bytes(signs)
            slot += 1
        scales[ib] = scale
    max_scale = max(scales)
    if not max_scale:
        return bytes(len(out)) if xxs else bytes(out)
    d = max_scale / f(31.0)
    out[0:2] = _fp16(d * f(1.0125 if xxs else 1.033))
    nib = [max(0, min(15, _nearest_int(f(0.5) * ((f(1.0) / d) * s - f(1.0))))) for s in scales]
    for ib in range(8):
        if xxs:
            out[iq3.XXS_SAS + 4 * ib + 3] |= nib[ib] << 4
        else:
            out[iq3.S_SC + ib // 2] |= nib[ib] << 4 * (ib % 2)
    return bytes(out)


def _superblocks() -> np.ndarray:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, QK_K)).astype(np.float32)
    x[1, ::7] *= 8      # outliers
    x[2, 32:64] = 0     # an empty block (IQ3_S: the later blocks' indices move up one slot)
    x[2, 200:232] = 1e-9  # a block below IQ3_XXS's epsilon
    return x


@pytest.mark.parametrize("weighted", [False, True], ids=["none", "imatrix"])
@pytest.mark.parametrize("qt", list(LATTICES), ids=lambda t: t.name)
def test_superblocks_are_the_slow_twin_s(qt, weighted):
    x = _superblocks()
    qw = ((np.abs(np.random.default_rng(4).standard_normal(QK_K)) + 0.05) ** 2).astype(np.float32)
    got = CODECS[qt].quantize(x, 1, weights=qw if weighted else None)
    for r in range(x.shape[0]):
        assert got[r].tobytes() == _iq3_slow(qt, x[r], qw if weighted else None), f"row {r}"


@pytest.mark.parametrize("qt", list(LATTICES), ids=lambda t: t.name)
def test_validate_finds_an_infinite_d(qt):
    c = CODECS[qt]
    q = c.quantize(np.random.default_rng(5).standard_normal((3, 2 * QK_K)).astype(np.float32), 1)
    assert c.validate(q) == -1
    q[1, GGML_QUANT_SIZES[qt][1]:][:2] = np.frombuffer(np.float16(np.inf).tobytes(), np.uint8)
    assert c.validate(q) == 1


@pytest.mark.parametrize("qt", list(LATTICES), ids=lambda t: t.name)
def test_rows_ggml_aborts_on_are_refused(qt):
    """x ~ 1e16: the weighted squares overflow, no neighbour is at a finite distance and ggml's
    GGML_ASSERT(grid_index >= 0) aborts (checked against libggml-base); the codec raises."""
    x = (np.random.default_rng(8).standard_normal((2, QK_K)) * 1e16).astype(np.float32)
    with pytest.raises(ValueError, match=f"{qt.name}: row 0 overflows"):
        CODECS[qt].quantize(x, 1)
    with pytest.raises(ValueError, match=f"{qt.name}: row 0 overflows"):
        CODECS[qt].quantize(x, 1, weights=np.ones(QK_K, np.float32))
