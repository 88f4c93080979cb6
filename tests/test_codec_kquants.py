"""The k-quant quantizers against slow, ggml-faithful NumPy twins (gguf.quants has none).

Each twin is quantize_row_qN_K_ref (ggml-quants.c) written again, vectorised over blocks: the
per-block sums stay serial loops over float32 arrays, so every block sees C's operation order,
and NumPy's float32 arithmetic is IEEE float32 like the reference build (no fused multiply-add).
The golden tests check the same kernels against llama.cpp's files; these check them on rows
chosen to be hard (see test_codec.adversarial_rows).
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import QK_K
from gguf import GGMLQuantizationType as T

from llamacli.kernels.codec import CODECS

from test_codec import ROWS

f = np.float32
EPS = f(1e-15)  # GROUP_MAX_EPS


def nearest_int(v: np.ndarray) -> np.ndarray:
    """ggml's nearest_int: add 1.5*2^23, read the low mantissa bits."""
    b = (np.asarray(v, dtype=f) + f(12582912.0)).astype(f).view(np.int32).astype(np.int64)
    return (b & 0x007FFFFF) - 0x00400000


def fp16(v) -> np.ndarray:
    return np.asarray(v, dtype=f).astype(np.float16)


def fp16_bytes(v) -> np.ndarray:
    return fp16(v).view(np.uint8).reshape(-1, 2)


def make_qkx2(x, w, nmax, rmin, rdelta, nstep, use_mad):
    """make_qkx2_quants for G groups at once. x, w: float32[G, n] -> (scale, the_min, L)."""
    G, n = x.shape
    vmin = x[:, 0].copy()
    vmax = x[:, 0].copy()
    sum_w = w[:, 0].copy()
    sum_x = (sum_w * x[:, 0]).astype(f)
    for i in range(1, n):
        vmin = np.where(x[:, i] < vmin, x[:, i], vmin)
        vmax = np.where(x[:, i] > vmax, x[:, i], vmax)
        sum_w = (sum_w + w[:, i]).astype(f)
        sum_x = (sum_x + w[:, i] * x[:, i]).astype(f)
    vmin = np.where(vmin > 0, f(0), vmin).astype(f)
    flat = vmax == vmin

    def span():  # max - min, with the min as updated by the search (C reuses the variable)
        return np.where(flat, f(1), vmax - vmin).astype(f)

    def levels(iscale):
        return np.clip(nearest_int(iscale[:, None] * (x - vmin[:, None])), 0, nmax)

    def error(scale, mn, L):
        e = np.zeros(G, dtype=f)
        for i in range(n):
            diff = (scale * L[:, i].astype(f) + mn - x[:, i]).astype(f)
            diff = np.abs(diff) if use_mad else (diff * diff).astype(f)
            e = (e + w[:, i] * diff).astype(f)
        return e

    iscale = (f(nmax) / span()).astype(f)
    scale = (f(1) / iscale).astype(f)
    L = levels(iscale)
    best = error(scale, vmin, L)
    if nstep >= 1:
        for step in range(nstep + 1):
            iscale = ((f(rmin) + f(rdelta) * f(step) + f(nmax)) / span()).astype(f)
            La = levels(iscale)
            sum_l = np.zeros(G, dtype=f)
            sum_l2 = np.zeros(G, dtype=f)
            sum_xl = np.zeros(G, dtype=f)
            for i in range(n):
                wl = (w[:, i] * La[:, i].astype(f)).astype(f)
                sum_l = (sum_l + wl).astype(f)
                sum_l2 = (sum_l2 + wl * La[:, i].astype(f)).astype(f)
                sum_xl = (sum_xl + wl * x[:, i]).astype(f)
            D = (sum_w * sum_l2 - sum_l * sum_l).astype(f)
            ok = D > 0
            Ds = np.where(ok, D, f(1))
            this_scale = ((sum_w * sum_xl - sum_x * sum_l) / Ds).astype(f)
            this_min = ((sum_l2 * sum_x - sum_l * sum_xl) / Ds).astype(f)
            pos = this_min > 0
            this_min = np.where(pos, f(0), this_min).astype(f)
            this_scale = np.where(pos, sum_xl / np.where(pos, sum_l2, f(1)), this_scale).astype(f)
            cur = error(this_scale, this_min, La)
            better = ok & (cur < best)
            L = np.where(better[:, None], La, L)
            best = np.where(better, cur, best)
            scale = np.where(better, this_scale, scale)
            vmin = np.where(better, this_min, vmin)
    L = np.where(flat[:, None], 0, L)
    scale = np.where(flat, f(0), scale).astype(f)
    return scale, (-vmin).astype(f), L


def amax_first(x):
    """(max |x|, the x it came from): the first one, as C's strict `>` keeps."""
    amax = np.zeros(x.shape[0], dtype=f)
    vmax = np.zeros(x.shape[0], dtype=f)
    for i in range(x.shape[1]):
        ax = np.abs(x[:, i])
        up = ax > amax
        amax = np.where(up, ax, amax)
        vmax = np.where(up, x[:, i], vmax)
    return amax, vmax


def make_q3(x, nmax):
    """make_q3_quants(do_rmse=true) for G groups: levels in -nmax..nmax-1, then up to five
    coordinate-descent passes (a group stops after a pass that changed nothing)."""
    G, n = x.shape
    amax, vmax = amax_first(x)
    zero = amax < EPS
    iscale = (f(-nmax) / np.where(zero, f(1), vmax)).astype(f)
    L = np.clip(nearest_int(iscale[:, None] * x), -nmax, nmax - 1)
    w = (x * x).astype(f)
    sumlx = np.zeros(G, dtype=f)
    suml2 = np.zeros(G, dtype=f)
    for i in range(n):
        fl = L[:, i].astype(f)
        sumlx = (sumlx + w[:, i] * x[:, i] * fl).astype(f)
        suml2 = (suml2 + w[:, i] * fl * fl).astype(f)
    active = ~zero
    for _ in range(5):
        changed = np.zeros(G, dtype=bool)
        for i in range(n):
            fl = L[:, i].astype(f)
            slx = (sumlx - w[:, i] * x[:, i] * fl).astype(f)
            c1 = active & (slx > 0)
            sl2 = (suml2 - w[:, i] * fl * fl).astype(f)
            with np.errstate(all="ignore"):
                new_l = np.clip(nearest_int((x[:, i] * sl2 / np.where(c1, slx, f(1))).astype(f)), -nmax, nmax - 1)
            c2 = c1 & (new_l != L[:, i])
            fn = new_l.astype(f)
            slx2 = (slx + w[:, i] * x[:, i] * fn).astype(f)
            sl22 = (sl2 + w[:, i] * fn * fn).astype(f)
            c3 = c2 & (sl22 > 0) & ((slx2 * slx2 * suml2).astype(f) > (sumlx * sumlx * sl22).astype(f))
            L[:, i] = np.where(c3, new_l, L[:, i])
            sumlx = np.where(c3, slx2, sumlx)
            suml2 = np.where(c3, sl22, suml2)
            changed |= c3
        active &= changed
    L = np.where(zero[:, None], 0, L + nmax)
    scale = np.where(suml2 > 0, sumlx / np.where(suml2 > 0, suml2, f(1)), f(0)).astype(f)
    return np.where(zero, f(0), scale).astype(f), L


def make_qx_rmse1(x, nmax):
    """make_qx_quants(rmse_type=1, no weights) for G groups."""
    G, n = x.shape
    amax, vmax = amax_first(x)
    zero = amax < EPS
    vm = np.where(zero, f(1), vmax)
    w = (x * x).astype(f)

    def fit(iscale):
        l = np.clip(nearest_int(iscale[:, None] * x), -nmax, nmax - 1)
        sumlx = np.zeros(G, dtype=f)
        suml2 = np.zeros(G, dtype=f)
        for i in range(n):
            fl = l[:, i].astype(f)
            sumlx = (sumlx + w[:, i] * x[:, i] * fl).astype(f)
            suml2 = (suml2 + w[:, i] * fl * fl).astype(f)
        return l, sumlx, suml2

    l, sumlx, suml2 = fit((f(-nmax) / vm).astype(f))
    L = l + nmax
    scale = np.where(suml2 != 0, sumlx / np.where(suml2 != 0, suml2, f(1)), f(0)).astype(f)
    best = (scale * sumlx).astype(f)
    for step in range(-9, 10):
        if step == 0:
            continue
        l, sumlx, suml2 = fit((-(f(nmax) + f(0.1) * f(step)) / vm).astype(f))
        better = (suml2 > 0) & ((sumlx * sumlx).astype(f) > (best * suml2).astype(f))
        L = np.where(better[:, None], l + nmax, L)
        s = (sumlx / np.where(better, suml2, f(1))).astype(f)
        scale = np.where(better, s, scale)
        best = np.where(better, (s * sumlx).astype(f), best)
    return np.where(zero, f(0), scale).astype(f), np.where(zero[:, None], 0, L)


def pack_2bit(L):
    """qs[j/4 + l] = L[j+l] | L[j+l+32] << 2 | L[j+l+64] << 4 | L[j+l+96] << 6, per 128 weights."""
    B = L.shape[0]
    q = L.reshape(B, QK_K // 128, 4, 32)
    return (q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)).reshape(B, -1).astype(np.uint8)


def pack_scales_k4(ls, lm):
    """8 six-bit scales and mins into 12 bytes (the inverse of get_scale_min_k4)."""
    sc = np.zeros((ls.shape[0], 12), dtype=np.int64)
    sc[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    sc[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    sc[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    return sc.astype(np.uint8)


def twin_q2_K(x):
    B = x.shape[0]
    g = x.reshape(-1, 16)
    scales, mins, L = make_qkx2(g, np.abs(g), 3, -0.5, 0.1, 15, True)
    scales, mins, L = scales.reshape(B, 16), mins.reshape(B, 16), L.reshape(B, QK_K)
    max_scale, max_min = scales.max(axis=1), mins.max(axis=1)
    max_scale = np.maximum(max_scale, 0)
    max_min = np.maximum(max_min, 0)
    ms = np.where(max_scale > 0, max_scale, f(1))
    mm = np.where(max_min > 0, max_min, f(1))
    lsc = np.where((max_scale > 0)[:, None], nearest_int((f(15) / ms)[:, None] * scales) & 0xFF, 0)
    lmn = np.where((max_min > 0)[:, None], (nearest_int((f(15) / mm)[:, None] * mins) << 4) & 0xFF, 0)
    sc = (lsc | lmn) & 0xFF
    d = fp16(np.where(max_scale > 0, max_scale / f(15), f(0)))
    dmin = fp16(np.where(max_min > 0, max_min / f(15), f(0)))
    dd = (d.astype(f)[:, None] * (sc & 0xF).astype(f)).astype(f)
    dm = (dmin.astype(f)[:, None] * (sc >> 4).astype(f)).astype(f)
    xs = x.reshape(B, 16, 16)
    with np.errstate(all="ignore"):
        Lnew = np.clip(nearest_int(((xs + dm[:, :, None]) / dd[:, :, None]).astype(f)), 0, 3)
    L = np.where((dd != 0)[:, :, None], Lnew, L.reshape(B, 16, 16)).reshape(B, QK_K)
    return np.concatenate([sc.astype(np.uint8), pack_2bit(L), d.view(np.uint8).reshape(-1, 2),
                           dmin.view(np.uint8).reshape(-1, 2)], axis=1)


def twin_q3_K(x):
    B = x.shape[0]
    scales, L = make_q3(x.reshape(-1, 16), 4)
    scales, L = scales.reshape(B, 16), L.reshape(B, QK_K)
    _, max_scale = amax_first(scales)
    has = max_scale != 0
    iscale = (f(-32) / np.where(has, max_scale, f(1))).astype(f)
    l = np.clip(nearest_int(iscale[:, None] * scales), -32, 31) + 32
    sc = np.zeros((B, 12), dtype=np.int64)
    sc[:, 0:8] = (l[:, 0:8] & 0xF) | ((l[:, 8:16] & 0xF) << 4)
    for j in range(16):
        sc[:, 8 + j % 4] |= (l[:, j] >> 4) << (2 * (j // 4))
    sc = np.where(has[:, None], sc, 0)
    d = fp16(np.where(has, f(1) / iscale, f(0)))
    # the scales as stored (all zero bytes when there is no scale), minus their bias
    lo = np.concatenate([sc[:, 0:8] & 0xF, sc[:, 0:8] >> 4], axis=1)
    hi = np.stack([(sc[:, 8 + j % 4] >> (2 * (j // 4))) & 3 for j in range(16)], axis=1)
    s6 = (lo | (hi << 4)) - 32
    dd = (d.astype(f)[:, None] * s6.astype(f)).astype(f)
    xs = x.reshape(B, 16, 16)
    with np.errstate(all="ignore"):
        Lnew = np.clip(nearest_int((xs / dd[:, :, None]).astype(f)), -4, 3) + 4
    L = np.where((dd != 0)[:, :, None], Lnew, L.reshape(B, 16, 16)).reshape(B, QK_K)
    high = L > 3
    hmask = np.zeros((B, QK_K // 8), dtype=np.int64)
    for j in range(QK_K):
        hmask[:, j % 32] |= high[:, j].astype(np.int64) << (j // 32)
    L = np.where(high, L - 4, L)
    return np.concatenate([hmask.astype(np.uint8), pack_2bit(L), sc.astype(np.uint8),
                           d.view(np.uint8).reshape(-1, 2)], axis=1)


def _twin_k4(x, nmax, rmin, rdelta, nstep):
    """The shared part of quantize_row_q4_K_ref / q5_K_ref: (d, dmin, 12 scale bytes, L)."""
    B = x.shape[0]
    g = x.reshape(-1, 32)
    sum_x2 = np.zeros(g.shape[0], dtype=f)
    for l in range(32):
        sum_x2 = (sum_x2 + g[:, l] * g[:, l]).astype(f)
    av_x = np.sqrt((sum_x2 / f(32)).astype(f)).astype(f)
    w = (av_x[:, None] + np.abs(g)).astype(f)
    scales, mins, L = make_qkx2(g, w, nmax, rmin, rdelta, nstep, False)
    scales, mins, L = scales.reshape(B, 8), mins.reshape(B, 8), L.reshape(B, QK_K)
    max_scale = np.maximum(scales.max(axis=1), 0)
    max_min = np.maximum(mins.max(axis=1), 0)
    inv_scale = np.where(max_scale > 0, f(63) / np.where(max_scale > 0, max_scale, f(1)), f(0)).astype(f)
    inv_min = np.where(max_min > 0, f(63) / np.where(max_min > 0, max_min, f(1)), f(0)).astype(f)
    ls = np.minimum(63, nearest_int(inv_scale[:, None] * scales) & 0xFF)
    lm = np.minimum(63, nearest_int(inv_min[:, None] * mins) & 0xFF)
    d = fp16(max_scale / f(63))
    dmin = fp16(max_min / f(63))
    dd = (d.astype(f)[:, None] * ls.astype(f)).astype(f)
    dm = (dmin.astype(f)[:, None] * lm.astype(f)).astype(f)
    xs = x.reshape(B, 8, 32)
    with np.errstate(all="ignore"):
        Lnew = np.clip(nearest_int(((xs + dm[:, :, None]) / dd[:, :, None]).astype(f)), 0, nmax)
    L = np.where((dd != 0)[:, :, None], Lnew, L.reshape(B, 8, 32)).reshape(B, QK_K)
    return d, dmin, pack_scales_k4(ls, lm), L


def twin_q4_K(x):
    B = x.shape[0]
    d, dmin, sc, L = _twin_k4(x, 15, -1.0, 0.1, 20)
    q = L.reshape(B, 4, 2, 32)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(B, -1).astype(np.uint8)
    return np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), sc, qs], axis=1)


def twin_q5_K(x):
    B = x.shape[0]
    d, dmin, sc, L = _twin_k4(x, 31, -0.5, 0.1, 15)
    q = L.reshape(B, 4, 2, 32)
    qs = ((q[:, :, 0] & 0xF) | ((q[:, :, 1] & 0xF) << 4)).reshape(B, -1).astype(np.uint8)
    qh = np.zeros((B, 32), dtype=np.int64)
    for k in range(4):
        qh |= ((q[:, k, 0] >> 4) & 1) << (2 * k)
        qh |= ((q[:, k, 1] >> 4) & 1) << (2 * k + 1)
    return np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), sc,
                           qh.astype(np.uint8), qs], axis=1)


def twin_q6_K(x):
    B = x.shape[0]
    scales, L = make_qx_rmse1(x.reshape(-1, 16), 32)
    scales, L = scales.reshape(B, 16), L.reshape(B, QK_K)
    max_abs, max_scale = amax_first(scales)
    zero = max_abs < EPS
    iscale = (f(-128) / np.where(zero, f(1), max_scale)).astype(f)
    d = fp16(np.where(zero, f(0), f(1) / iscale))
    sc = np.minimum(127, nearest_int(iscale[:, None] * scales))
    dd = (d.astype(f)[:, None] * sc.astype(f)).astype(f)
    xs = x.reshape(B, 16, 16)
    with np.errstate(all="ignore"):
        Lnew = np.clip(nearest_int((xs / dd[:, :, None]).astype(f)), -32, 31) + 32
    L = np.where((dd != 0)[:, :, None], Lnew, L.reshape(B, 16, 16)).reshape(B, QK_K)
    q = L.reshape(B, 2, 4, 32)
    ql = np.concatenate([(q[:, :, 0] & 0xF) | ((q[:, :, 2] & 0xF) << 4),
                         (q[:, :, 1] & 0xF) | ((q[:, :, 3] & 0xF) << 4)], axis=2).reshape(B, -1)
    qh = ((q[:, :, 0] >> 4) | ((q[:, :, 1] >> 4) << 2) | ((q[:, :, 2] >> 4) << 4) | ((q[:, :, 3] >> 4) << 6))
    out = np.concatenate([ql.astype(np.uint8), qh.reshape(B, -1).astype(np.uint8),
                          (sc & 0xFF).astype(np.uint8), d.view(np.uint8).reshape(-1, 2)], axis=1)
    return np.where(zero[:, None], 0, out).astype(np.uint8)


TWINS = {T.Q2_K: twin_q2_K, T.Q3_K: twin_q3_K, T.Q4_K: twin_q4_K, T.Q5_K: twin_q5_K, T.Q6_K: twin_q6_K}


@pytest.mark.parametrize("qt", list(TWINS), ids=lambda t: t.name)
@pytest.mark.parametrize("case", sorted(ROWS))
def test_kquant_matches_ggml_twin(qt, case):
    x = ROWS[case]
    ours = CODECS[qt].quantize(x, nthreads=2)
    with np.errstate(all="ignore"):
        want = TWINS[qt](x.reshape(-1, QK_K)).reshape(ours.shape)
    bad = np.nonzero((ours != want).any(axis=1))[0]
    assert bad.size == 0, f"{qt.name}/{case}: rows {bad.tolist()} differ"


@pytest.mark.parametrize("qt", list(TWINS), ids=lambda t: t.name)
def test_kquant_twin_can_fail(qt):
    """The comparison is not vacuous: moving one weight changes the twin's bytes."""
    x = ROWS["normal"][:1].copy()
    a = TWINS[qt](x.reshape(-1, QK_K))
    x[0, 3] += f(0.3) * np.abs(x[0]).max()
    assert not np.array_equal(a, TWINS[qt](x.reshape(-1, QK_K)))
