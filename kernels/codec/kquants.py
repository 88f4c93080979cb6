"""The k-quants Q2_K .. Q6_K: super-blocks of QK_K = 256 weights (ggml-quants.c).

Without an importance matrix each quantizer is ggml's ``quantize_row_qN_K_ref``, with its
helpers ``make_qkx2_quants`` (Q2_K, Q4_K, Q5_K: scale and min per sub-block, searched over a
grid of candidate scales), ``make_q3_quants`` (Q3_K) and ``make_qx_quants`` (Q6_K). With one
(quant_weights: one float a column, the same for every row) it is ``quantize_row_qN_K_impl``:
the sub-blocks are fitted under the weights qw * sqrt(sigma2 + x^2) by make_qkx3_quants (Q2_K,
Q4_K, Q5_K; make_qkx2_quants line for line once it is given weights) or make_qx_quants (Q3_K;
Q6_K takes qw as it is), and the sub-block scales and mins themselves by make_qp_quants (Q2_K,
Q4_K, Q5_K) or make_qx_quants (Q3_K), weighted by each sub-block's sum of weights. Every float operation is a float32 operation in C's order: the
sums are accumulated serially, ints are converted before they meet a float, and rounding is
ggml's ``nearest_int`` (round half to even through the 1.5*2^23 trick).

Block layouts (ggml-common.h; sizes from gguf.constants, offsets asserted below):

    Q2_K: scales[QK_K/16] (4-bit scale | 4-bit min << 4), qs[QK_K/4], d, dmin
    Q3_K: hmask[QK_K/8], qs[QK_K/4], scales[12] (16 x 6 bits), d
    Q4_K: d, dmin, scales[12] (8 scales + 8 mins, 6 bits each), qs[QK_K/2]
    Q5_K: d, dmin, scales[12], qh[QK_K/8], qs[QK_K/2]
    Q6_K: ql[QK_K/2], qh[QK_K/4], scales[QK_K/16] (int8), d

The 12 scale bytes of Q4_K / Q5_K hold 8 six-bit scales (s) and mins (m):
    bytes 0-3:  s0..s3 in bits 0-5, the top 2 bits of s4..s7 in bits 6-7
    bytes 4-7:  m0..m3 in bits 0-5, the top 2 bits of m4..m7 in bits 6-7
    bytes 8-11: low 4 bits of s4..s7 | low 4 bits of m4..m7 << 4
(get_scale_min_k4). Q3_K's 12 bytes hold 16 six-bit scales biased by 32:
    bytes 0-7:  low 4 bits of scales 0-7 | low 4 bits of scales 8-15 << 4
    bytes 8-11: the top 2 bits of scale j at bits 2*(j/4) of byte 8 + j%4.
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, QK_K
from gguf import GGMLQuantizationType as T
from numba import njit, prange

from . import Codec, register
from ._bits import fp16_validator, load_fp16, nearest_int, store_fp16

FP16 = 2  # bytes of an fp16 scale
K_SCALE_SIZE = 12  # packed 6-bit scales of Q3_K, Q4_K, Q5_K
GROUP_MAX_EPS = np.float32(1e-15)

# Q2_K
Q2_SC, Q2_QS = 0, QK_K // 16
Q2_D = Q2_QS + QK_K // 4
Q2_DMIN = Q2_D + FP16
Q2_TS = GGML_QUANT_SIZES[T.Q2_K][1]
assert Q2_TS == Q2_DMIN + FP16
# Q3_K
Q3_HM, Q3_QS = 0, QK_K // 8
Q3_SC = Q3_QS + QK_K // 4
Q3_D = Q3_SC + K_SCALE_SIZE
Q3_TS = GGML_QUANT_SIZES[T.Q3_K][1]
assert Q3_TS == Q3_D + FP16
# Q4_K
Q4_D, Q4_DMIN, Q4_SC = 0, FP16, 2 * FP16
Q4_QS = Q4_SC + K_SCALE_SIZE
Q4_TS = GGML_QUANT_SIZES[T.Q4_K][1]
assert Q4_TS == Q4_QS + QK_K // 2
# Q5_K
Q5_D, Q5_DMIN, Q5_SC = 0, FP16, 2 * FP16
Q5_QH = Q5_SC + K_SCALE_SIZE
Q5_QS = Q5_QH + QK_K // 8
Q5_TS = GGML_QUANT_SIZES[T.Q5_K][1]
assert Q5_TS == Q5_QS + QK_K // 2
assert (Q4_D, Q4_DMIN, Q4_SC) == (Q5_D, Q5_DMIN, Q5_SC)
# Q6_K
Q6_QL, Q6_QH = 0, QK_K // 2
Q6_SC = Q6_QH + QK_K // 4
Q6_D = Q6_SC + QK_K // 16
Q6_TS = GGML_QUANT_SIZES[T.Q6_K][1]
assert Q6_TS == Q6_D + FP16


# -- helpers (ggml-quants.c) -------------------------------------------------------------------


# error_model="numpy": C divides by zero here (see below) and goes on with an infinity
@njit(cache=True, error_model="numpy")
def make_qkx2_quants(n, nmax, x, weights, L, Laux, rmin, rdelta, nstep, use_mad):
    """make_qkx2_quants: asymmetric levels 0..nmax for x[:n]; returns (scale, the_min), sets L.

    The first guess spans [min(x, 0), max(x)]; then nstep+1 candidate inverse scales
    (rmin + rdelta*is + nmax) / (max - min) are tried, each with the least-squares scale and
    min for its levels, keeping the one with the smallest weighted error. As in C, `min` is
    the best candidate's min once one is taken, so max - min can become 0 (a block of zeros
    and one negative value that carries no weight): the inverse scale is then infinite, every
    level nearest_int(inf or NaN) = 0 or clamped to it, and no later candidate wins.
    """
    rmin = np.float32(rmin)
    rdelta = np.float32(rdelta)
    fnmax = np.float32(nmax)
    vmin = x[0]
    vmax = x[0]
    sum_w = weights[0]
    sum_x = sum_w * x[0]
    for i in range(1, n):
        if x[i] < vmin:
            vmin = x[i]
        if x[i] > vmax:
            vmax = x[i]
        w = weights[i]
        sum_w += w
        sum_x += w * x[i]
    if vmin > np.float32(0.0):
        vmin = np.float32(0.0)
    if vmax == vmin:
        for i in range(n):
            L[i] = 0
        return np.float32(0.0), -vmin
    iscale = fnmax / (vmax - vmin)
    scale = np.float32(1.0) / iscale
    best_error = np.float32(0.0)
    for i in range(n):
        l = nearest_int(iscale * (x[i] - vmin))
        L[i] = max(0, min(nmax, l))
        diff = scale * np.float32(L[i]) + vmin - x[i]
        diff = abs(diff) if use_mad else diff * diff
        best_error += weights[i] * diff
    if nstep < 1:
        return scale, -vmin
    for step in range(nstep + 1):
        iscale = (rmin + rdelta * np.float32(step) + fnmax) / (vmax - vmin)
        sum_l = np.float32(0.0)
        sum_l2 = np.float32(0.0)
        sum_xl = np.float32(0.0)
        for i in range(n):
            l = nearest_int(iscale * (x[i] - vmin))
            l = max(0, min(nmax, l))
            Laux[i] = l
            w = weights[i]
            fl = np.float32(l)
            sum_l += w * fl
            sum_l2 += w * fl * fl
            sum_xl += w * fl * x[i]
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > np.float32(0.0):
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > np.float32(0.0):
                this_min = np.float32(0.0)
                this_scale = sum_xl / sum_l2
            cur_error = np.float32(0.0)
            for i in range(n):
                diff = this_scale * np.float32(Laux[i]) + this_min - x[i]
                diff = abs(diff) if use_mad else diff * diff
                cur_error += weights[i] * diff
            if cur_error < best_error:
                for i in range(n):
                    L[i] = Laux[i]
                best_error = cur_error
                scale = this_scale
                vmin = this_min
    return scale, -vmin


@njit(cache=True)
def make_q3_quants(n, nmax, x, L):
    """make_q3_quants with do_rmse: symmetric levels -nmax..nmax-1 (stored +nmax), refined by
    up to five passes of coordinate descent on the weighted (w = x^2) least-squares fit."""
    vmax = np.float32(0.0)
    amax = np.float32(0.0)
    for i in range(n):
        ax = abs(x[i])
        if ax > amax:
            amax = ax
            vmax = x[i]
    if amax < GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return np.float32(0.0)
    iscale = np.float32(-nmax) / vmax
    sumlx = np.float32(0.0)
    suml2 = np.float32(0.0)
    for i in range(n):
        l = nearest_int(iscale * x[i])
        l = max(-nmax, min(nmax - 1, l))
        L[i] = l
        w = x[i] * x[i]
        fl = np.float32(l)
        sumlx += w * x[i] * fl
        suml2 += w * fl * fl
    for itry in range(5):
        n_changed = 0
        for i in range(n):
            w = x[i] * x[i]
            fli = np.float32(L[i])
            slx = sumlx - w * x[i] * fli
            if slx > np.float32(0.0):
                sl2 = suml2 - w * fli * fli
                new_l = nearest_int(x[i] * sl2 / slx)
                new_l = max(-nmax, min(nmax - 1, new_l))
                if new_l != L[i]:
                    fnl = np.float32(new_l)
                    slx += w * x[i] * fnl
                    sl2 += w * fnl * fnl
                    if sl2 > np.float32(0.0) and slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    for i in range(n):
        L[i] += nmax
    return sumlx / suml2 if suml2 > np.float32(0.0) else np.float32(0.0)


@njit(cache=True)
def make_qx_quants(n, nmax, x, L, qw):
    """make_qx_quants with rmse_type = 1: symmetric levels -nmax..nmax-1 (stored +nmax) for
    x[:n], weights qw[:n] (ggml's own choice without an imatrix is qw = x^2); tries 18 scales
    -(nmax + 0.1*is)/max around the first and keeps the best weighted least-squares fit."""
    vmax = np.float32(0.0)
    amax = np.float32(0.0)
    for i in range(n):
        ax = abs(x[i])
        if ax > amax:
            amax = ax
            vmax = x[i]
    if amax < GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return np.float32(0.0)
    fnmax = np.float32(nmax)
    iscale = np.float32(-nmax) / vmax
    sumlx = np.float32(0.0)
    suml2 = np.float32(0.0)
    for i in range(n):
        l = nearest_int(iscale * x[i])
        l = max(-nmax, min(nmax - 1, l))
        L[i] = l + nmax
        w = qw[i]
        fl = np.float32(l)
        sumlx += w * x[i] * fl
        suml2 += w * fl * fl
    scale = sumlx / suml2 if suml2 != np.float32(0.0) else np.float32(0.0)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = -(fnmax + np.float32(0.1) * np.float32(step)) / vmax
        sumlx = np.float32(0.0)
        suml2 = np.float32(0.0)
        for i in range(n):
            l = nearest_int(iscale * x[i])
            l = max(-nmax, min(nmax - 1, l))
            w = qw[i]
            fl = np.float32(l)
            sumlx += w * x[i] * fl
            suml2 += w * fl * fl
        if suml2 > np.float32(0.0) and sumlx * sumlx > best * suml2:
            for i in range(n):
                l = nearest_int(iscale * x[i])
                L[i] = nmax + max(-nmax, min(nmax - 1, l))
            scale = sumlx / suml2
            best = scale * sumlx
    return scale


@njit(cache=True)
def make_qp_quants(n, nmax, x, L, qw):
    """make_qp_quants: levels 0..nmax for the non-negative x[:n] (sub-block scales or mins),
    weighted by qw; 8 scales (0.1*is + nmax)/max around the first, then up to five passes of
    coordinate descent. L holds uint8_t in C, so a stored level keeps its low byte."""
    fnmax = np.float32(nmax)
    vmax = np.float32(0.0)
    for i in range(n):
        vmax = vmax if vmax > x[i] else x[i]  # MAX(max, x[i])
    if vmax < GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return np.float32(0.0)
    iscale = fnmax / vmax
    for i in range(n):
        L[i] = nearest_int(iscale * x[i]) & 0xFF
    scale = np.float32(1.0) / iscale
    best_mse = np.float32(0.0)
    for i in range(n):
        diff = x[i] - scale * np.float32(L[i])
        best_mse += qw[i] * diff * diff
    for step in range(-4, 5):
        if step == 0:
            continue
        iscale_is = (np.float32(0.1) * np.float32(step) + fnmax) / vmax
        scale_is = np.float32(1.0) / iscale_is
        mse = np.float32(0.0)
        for i in range(n):
            l = min(nmax, nearest_int(iscale_is * x[i]))
            diff = x[i] - scale_is * np.float32(l)
            mse += qw[i] * diff * diff
        if mse < best_mse:
            best_mse = mse
            iscale = iscale_is
    sumlx = np.float32(0.0)
    suml2 = np.float32(0.0)
    for i in range(n):
        l = min(nmax, nearest_int(iscale * x[i]))
        L[i] = l & 0xFF
        w = qw[i]
        fl = np.float32(l)
        sumlx += w * x[i] * fl
        suml2 += w * fl * fl
    for itry in range(5):
        n_changed = 0
        for i in range(n):
            w = qw[i]
            fli = np.float32(L[i])
            slx = sumlx - w * x[i] * fli
            sl2 = suml2 - w * fli * fli
            if slx > np.float32(0.0) and sl2 > np.float32(0.0):
                new_l = min(nmax, nearest_int(x[i] * sl2 / slx))
                if new_l != L[i]:
                    fnl = np.float32(new_l)
                    slx += w * x[i] * fnl
                    sl2 += w * fnl * fnl
                    if slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l & 0xFF
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    return sumlx / suml2 if suml2 > np.float32(0.0) else np.float32(0.0)


@njit(cache=True)
def importance_weights(x, qw, sigma2, out):
    """out[l] = qw[l] * sqrtf(sigma2 + x[l]^2), the weights every ``quantize_row_*_impl``
    builds from an imatrix row; returns their sum (serial, as C's sumw / sw[j])."""
    s = np.float32(0.0)
    for l in range(x.shape[0]):
        out[l] = qw[l] * np.sqrt(sigma2 + x[l] * x[l])
        s += out[l]
    return s


@njit(cache=True)
def sum_squares(x):
    """sum of x^2, accumulated serially in float32."""
    s = np.float32(0.0)
    for l in range(x.shape[0]):
        s += x[l] * x[l]
    return s


@njit(cache=True)
def get_scale_min_k4(j, q, off):
    """get_scale_min_k4: the 6-bit scale and min of sub-block j from the 12 bytes at q[off:]."""
    if j < 4:
        return np.int64(q[off + j]) & 63, np.int64(q[off + j + 4]) & 63
    a = np.int64(q[off + j + 4])
    d = (a & 0xF) | ((np.int64(q[off + j - 4]) >> 6) << 4)
    m = (a >> 4) | ((np.int64(q[off + j]) >> 6) << 4)
    return d, m


@njit(cache=True)
def _pack_2bit(L, y, off):
    """qs[j/4 + l] = L[j+l] | L[j+l+32] << 2 | L[j+l+64] << 4 | L[j+l+96] << 6  (Q2_K, Q3_K)"""
    for j in range(0, QK_K, 128):
        for l in range(32):
            y[off + j // 4 + l] = L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6)


@njit(cache=True)
def _pack_scales_k4(scales, mins, max_scale, max_min, y, off):
    """Q4_K / Q5_K: 8 scales and mins as 6-bit fractions of the largest, packed in 12 bytes."""
    inv_scale = np.float32(63.0) / max_scale if max_scale > np.float32(0.0) else np.float32(0.0)
    inv_min = np.float32(63.0) / max_min if max_min > np.float32(0.0) else np.float32(0.0)
    for j in range(QK_K // 32):
        ls = min(63, nearest_int(inv_scale * scales[j]) & 0xFF)  # uint8_t, then MIN(63, .)
        lm = min(63, nearest_int(inv_min * mins[j]) & 0xFF)
        _pack_k4(j, ls, lm, y, off)


@njit(cache=True)
def _pack_k4(j, ls, lm, y, off):
    """The 6-bit scale ls and min lm of sub-block j into the 12 bytes at y[off:] (a uint8_t
    level above 63 spills its top bits as C's byte stores do)."""
    if j < 4:
        y[off + j] = ls & 0xFF
        y[off + j + 4] = lm & 0xFF
    else:
        y[off + j + 4] = ((ls & 0xF) | ((lm & 0xF) << 4)) & 0xFF
        y[off + j - 4] |= ((ls >> 4) << 6) & 0xFF
        y[off + j] |= ((lm >> 4) << 6) & 0xFF


@njit(cache=True)
def _qkx2_block(x, L, nmax, rmin, rdelta, nstep, scales, mins, weights, Laux):
    """The sub-block loop of quantize_row_q4_K_ref / q5_K_ref: weights av_x + |x|."""
    max_scale = np.float32(0.0)
    max_min = np.float32(0.0)
    for j in range(QK_K // 32):
        xs = x[32 * j:32 * j + 32]
        sum_x2 = np.float32(0.0)
        for l in range(32):
            sum_x2 += xs[l] * xs[l]
        av_x = np.sqrt(sum_x2 / np.float32(32.0))
        for l in range(32):
            weights[l] = av_x + abs(xs[l])
        sc, mn = make_qkx2_quants(32, nmax, xs, weights, L[32 * j:32 * j + 32], Laux, rmin, rdelta, nstep, False)
        scales[j] = sc
        mins[j] = mn
        if sc > max_scale:
            max_scale = sc
        if mn > max_min:
            max_min = mn
    return max_scale, max_min


@njit(cache=True)
def _requantize_k4(x, L, y, d_off, dmin_off, sc_off, nmax):
    """Q4_K / Q5_K: levels again from the rounded (fp16, 6-bit) scales and mins."""
    for j in range(QK_K // 32):
        sc, m = get_scale_min_k4(j, y, sc_off)
        d = load_fp16(y, d_off) * np.float32(sc)
        if d == np.float32(0.0):
            continue
        dm = load_fp16(y, dmin_off) * np.float32(m)
        for ii in range(32):
            l = nearest_int((x[32 * j + ii] + dm) / d)
            L[32 * j + ii] = max(0, min(nmax, l))


@njit(cache=True)
def _pack_q4_K_levels(L, y):
    """qs[j/2 + l] = L[j+l] | L[j+l+32] << 4 for each 64 weights j (Q4_K)."""
    for j in range(0, QK_K, 64):
        for l in range(32):
            y[Q4_QS + j // 2 + l] = L[j + l] | (L[j + l + 32] << 4)


@njit(cache=True)
def _pack_q5_K_levels(L, y):
    """Q5_K: low nibbles as Q4_K's; the fifth bit of weight nn + j (nn = 64*k) and of
    nn + j + 32 go to bits 2k and 2k+1 of qh[j]."""
    for b in range(QK_K // 8):
        y[Q5_QH + b] = 0
    m1 = 1
    m2 = 2
    for nn in range(0, QK_K, 64):
        for j in range(32):
            l1 = L[nn + j]
            if l1 > 15:
                l1 -= 16
                y[Q5_QH + j] |= m1
            l2 = L[nn + j + 32]
            if l2 > 15:
                l2 -= 16
                y[Q5_QH + j] |= m2
            y[Q5_QS + nn // 2 + j] = l1 | (l2 << 4)
        m1 <<= 2
        m2 <<= 2


@njit(cache=True, parallel=True)
def _quantize_k4_weighted(x, qw, out, nmax, type_size):
    """quantize_row_q4_K_impl (nmax 15) / quantize_row_q5_K_impl (nmax 31): each 32-weight
    sub-block by make_qkx3_quants(32, nmax, .., -0.9f, 0.05f, 36) under qw*sqrt(sigma2 + x^2)
    with sigma2 = 2*mean(x^2); the 8 scales and mins by make_qp_quants(8, 63, .., sw), sw the
    sub-blocks' weight sums; then the levels again from the stored scales. Q5_K clamps the
    6-bit levels to 63, Q4_K stores them as they come."""
    n, m = x.shape
    for r in prange(n):
        L = np.zeros(QK_K, dtype=np.int32)
        Laux = np.zeros(32, dtype=np.int32)
        Ls = np.zeros(QK_K // 32, dtype=np.int32)
        Lm = np.zeros(QK_K // 32, dtype=np.int32)
        weights = np.zeros(32, dtype=np.float32)
        sw = np.zeros(QK_K // 32, dtype=np.float32)
        scales = np.zeros(QK_K // 32, dtype=np.float32)
        mins = np.zeros(QK_K // 32, dtype=np.float32)
        for i in range(m // QK_K):
            xb = x[r, i * QK_K:(i + 1) * QK_K]
            y = out[r, i * type_size:(i + 1) * type_size]
            sigma2 = np.float32(2.0) * sum_squares(xb) / np.float32(QK_K)
            for j in range(QK_K // 32):
                xs = xb[32 * j:32 * j + 32]
                sw[j] = importance_weights(xs, qw[i * QK_K + 32 * j:i * QK_K + 32 * j + 32], sigma2, weights)
                # make_qkx3_quants given weights is make_qkx2_quants line for line
                scales[j], mins[j] = make_qkx2_quants(32, nmax, xs, weights, L[32 * j:32 * j + 32], Laux,
                                                      -0.9, 0.05, 36, False)
            d_block = make_qp_quants(QK_K // 32, 63, scales, Ls, sw)
            m_block = make_qp_quants(QK_K // 32, 63, mins, Lm, sw)
            for j in range(QK_K // 32):
                if nmax == 31:
                    _pack_k4(j, min(63, Ls[j]), min(63, Lm[j]), y, Q5_SC)
                else:
                    _pack_k4(j, Ls[j], Lm[j], y, Q4_SC)
            # Q4_K and Q5_K share d, dmin and the scales' offsets
            store_fp16(y, Q4_D, d_block)
            store_fp16(y, Q4_DMIN, m_block)
            _requantize_k4(xb, L, y, Q4_D, Q4_DMIN, Q4_SC, nmax)
            if nmax == 31:
                _pack_q5_K_levels(L, y)
            else:
                _pack_q4_K_levels(L, y)


def _quantize_q4_K_weighted(x, qw, out):
    _quantize_k4_weighted(x, qw, out, 15, Q4_TS)


def _quantize_q5_K_weighted(x, qw, out):
    _quantize_k4_weighted(x, qw, out, 31, Q5_TS)


# -- Q2_K --------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _quantize_q2_K(x, out):
    """quantize_row_q2_K_ref. x: float32[n, ne0] -> out: uint8[n, ne0/QK_K*Q2_TS]"""
    n, m = x.shape
    q4scale = np.float32(15.0)
    for r in prange(n):
        L = np.zeros(QK_K, dtype=np.int32)
        Laux = np.zeros(16, dtype=np.int32)
        weights = np.zeros(16, dtype=np.float32)
        scales = np.zeros(QK_K // 16, dtype=np.float32)
        mins = np.zeros(QK_K // 16, dtype=np.float32)
        for i in range(m // QK_K):
            xb = x[r, i * QK_K:(i + 1) * QK_K]
            y = out[r, i * Q2_TS:(i + 1) * Q2_TS]
            max_scale = np.float32(0.0)
            max_min = np.float32(0.0)
            for j in range(QK_K // 16):
                for l in range(16):
                    weights[l] = abs(xb[16 * j + l])
                sc, mn = make_qkx2_quants(16, 3, xb[16 * j:16 * j + 16], weights, L[16 * j:16 * j + 16], Laux,
                                          -0.5, 0.1, 15, True)
                scales[j] = sc
                mins[j] = mn
                if sc > max_scale:
                    max_scale = sc
                if mn > max_min:
                    max_min = mn
            if max_scale > np.float32(0.0):
                iscale = q4scale / max_scale
                for j in range(QK_K // 16):
                    y[Q2_SC + j] = nearest_int(iscale * scales[j]) & 0xFF
                store_fp16(y, Q2_D, max_scale / q4scale)
            else:
                for j in range(QK_K // 16):
                    y[Q2_SC + j] = 0
                store_fp16(y, Q2_D, np.float32(0.0))
            if max_min > np.float32(0.0):
                iscale = q4scale / max_min
                for j in range(QK_K // 16):
                    y[Q2_SC + j] |= (nearest_int(iscale * mins[j]) << 4) & 0xFF
                store_fp16(y, Q2_DMIN, max_min / q4scale)
            else:
                store_fp16(y, Q2_DMIN, np.float32(0.0))
            _q2_K_levels(xb, L, y)


@njit(cache=True)
def _q2_K_levels(xb, L, y):
    """Q2_K's last step: the levels 0..3 again from the stored (fp16, 4-bit) scales and mins
    (sub-blocks whose scale rounds to zero keep their first levels), then packed."""
    for j in range(QK_K // 16):
        d = load_fp16(y, Q2_D) * np.float32(y[Q2_SC + j] & 0xF)
        if d == np.float32(0.0):
            continue
        dm = load_fp16(y, Q2_DMIN) * np.float32(y[Q2_SC + j] >> 4)
        for ii in range(16):
            l = nearest_int((xb[16 * j + ii] + dm) / d)
            L[16 * j + ii] = max(0, min(3, l))
    _pack_2bit(L, y, Q2_QS)


@njit(cache=True, parallel=True)
def _quantize_q2_K_weighted(x, qw, out):
    """quantize_row_q2_K_impl: each 16-weight sub-block by make_qkx3_quants(16, 3, ..,
    -0.9f, 0.05f, 36) under qw*sqrt(sigma2 + x^2), sigma2 = mean(x^2) of the super-block;
    the 16 scales and mins by make_qp_quants(16, 15, .., sw), sw the sub-blocks' weight sums."""
    n, m = x.shape
    for r in prange(n):
        L = np.zeros(QK_K, dtype=np.int32)
        Laux = np.zeros(16, dtype=np.int32)
        Ls = np.zeros(QK_K // 16, dtype=np.int32)
        Lm = np.zeros(QK_K // 16, dtype=np.int32)
        weight = np.zeros(16, dtype=np.float32)
        sw = np.zeros(QK_K // 16, dtype=np.float32)
        scales = np.zeros(QK_K // 16, dtype=np.float32)
        mins = np.zeros(QK_K // 16, dtype=np.float32)
        for i in range(m // QK_K):
            xb = x[r, i * QK_K:(i + 1) * QK_K]
            y = out[r, i * Q2_TS:(i + 1) * Q2_TS]
            sigma2 = sum_squares(xb) / np.float32(QK_K)
            for j in range(QK_K // 16):
                xs = xb[16 * j:16 * j + 16]
                sw[j] = importance_weights(xs, qw[i * QK_K + 16 * j:i * QK_K + 16 * j + 16], sigma2, weight)
                # make_qkx3_quants given weights is make_qkx2_quants line for line
                scales[j], mins[j] = make_qkx2_quants(16, 3, xs, weight, L[16 * j:16 * j + 16], Laux,
                                                      -0.9, 0.05, 36, False)
            store_fp16(y, Q2_D, make_qp_quants(QK_K // 16, 15, scales, Ls, sw))
            store_fp16(y, Q2_DMIN, make_qp_quants(QK_K // 16, 15, mins, Lm, sw))
            for j in range(QK_K // 16):
                y[Q2_SC + j] = (Ls[j] | (Lm[j] << 4)) & 0xFF
            _q2_K_levels(xb, L, y)


@njit(cache=True, parallel=True)
def _dequantize_q2_K(q, out):
    """dequantize_row_q2_K"""
    n, rb = q.shape
    for r in prange(n):
        for i in range(rb // Q2_TS):
            y = q[r, i * Q2_TS:(i + 1) * Q2_TS]
            o = out[r, i * QK_K:(i + 1) * QK_K]
            d = load_fp16(y, Q2_D)
            mn = load_fp16(y, Q2_DMIN)
            k = 0
            s = 0
            for half in range(QK_K // 128):
                qo = Q2_QS + 32 * half
                for shift in range(0, 8, 2):
                    for h in range(2):
                        sc = y[Q2_SC + s]
                        s += 1
                        dl = d * np.float32(sc & 0xF)
                        ml = mn * np.float32(sc >> 4)
                        for l in range(16):
                            o[k] = dl * np.float32((y[qo + 16 * h + l] >> shift) & 3) - ml
                            k += 1


# -- Q3_K --------------------------------------------------------------------------------------


@njit(cache=True)
def _q3_scale(y, j):
    """The 6-bit scale j of a Q3_K block, minus its bias of 32."""
    if j < 8:
        lo = np.int64(y[Q3_SC + j]) & 0xF
    else:
        lo = np.int64(y[Q3_SC + j - 8]) >> 4
    hi = (np.int64(y[Q3_SC + 8 + j % 4]) >> (2 * (j // 4))) & 3
    return (lo | (hi << 4)) - 32


@njit(cache=True, parallel=True)
def _quantize_q3_K(x, out):
    """quantize_row_q3_K_ref"""
    n, m = x.shape
    for r in prange(n):
        L = np.zeros(QK_K, dtype=np.int32)
        scales = np.zeros(QK_K // 16, dtype=np.float32)
        for i in range(m // QK_K):
            xb = x[r, i * QK_K:(i + 1) * QK_K]
            y = out[r, i * Q3_TS:(i + 1) * Q3_TS]
            max_scale = np.float32(0.0)
            amax = np.float32(0.0)
            for j in range(QK_K // 16):
                scales[j] = make_q3_quants(16, 4, xb[16 * j:16 * j + 16], L[16 * j:16 * j + 16])
                scale = abs(scales[j])
                if scale > amax:
                    amax = scale
                    max_scale = scales[j]
            for b in range(K_SCALE_SIZE):
                y[Q3_SC + b] = 0
            if max_scale != np.float32(0.0):
                iscale = np.float32(-32.0) / max_scale
                for j in range(QK_K // 16):
                    l = nearest_int(iscale * scales[j])
                    _pack_q3_scale(y, j, max(-32, min(31, l)) + 32)
                store_fp16(y, Q3_D, np.float32(1.0) / iscale)
            else:
                store_fp16(y, Q3_D, np.float32(0.0))
            _q3_K_levels(xb, L, y)


@njit(cache=True)
def _pack_q3_scale(y, j, l):
    """The biased 6-bit scale l (0..63) of sub-block j into the 12 bytes at Q3_SC (zeroed first)."""
    if j < 8:
        y[Q3_SC + j] = l & 0xF
    else:
        y[Q3_SC + j - 8] |= (l & 0xF) << 4
    y[Q3_SC + j % 4 + 8] |= ((l >> 4) << (2 * (j // 4))) & 0xFF


@njit(cache=True)
def _q3_K_levels(xb, L, y):
    """Q3_K's last step: the levels -4..3 again from the stored scales, the high bit of weight
    j to bit j / (QK_K/8) of hmask[j % (QK_K/8)], the low two bits packed."""
    for j in range(QK_K // 16):
        d = load_fp16(y, Q3_D) * np.float32(_q3_scale(y, j))
        if d == np.float32(0.0):
            continue
        for ii in range(16):
            l = nearest_int(xb[16 * j + ii] / d)
            L[16 * j + ii] = max(-4, min(3, l)) + 4
    for b in range(QK_K // 8):
        y[Q3_HM + b] = 0
    for j in range(QK_K):
        if L[j] > 3:
            y[Q3_HM + j % (QK_K // 8)] |= 1 << (j // (QK_K // 8))
            L[j] -= 4
    _pack_2bit(L, y, Q3_QS)


@njit(cache=True, parallel=True)
def _quantize_q3_K_weighted(x, qw, out):
    """quantize_row_q3_K_impl: each 16-weight sub-block by make_qx_quants(16, 4, .., 1, weight)
    under qw*sqrt(sigma2 + x^2), sigma2 = 2*mean(x^2); the 16 scales by
    make_qx_quants(16, 32, scales, Ls, 1, sw), sw the sub-blocks' weight sums."""
    n, m = x.shape
    for r in prange(n):
        L = np.zeros(QK_K, dtype=np.int32)
        Ls = np.zeros(QK_K // 16, dtype=np.int32)
        weight = np.zeros(16, dtype=np.float32)
        sw = np.zeros(QK_K // 16, dtype=np.float32)
        scales = np.zeros(QK_K // 16, dtype=np.float32)
        for i in range(m // QK_K):
            xb = x[r, i * QK_K:(i + 1) * QK_K]
            y = out[r, i * Q3_TS:(i + 1) * Q3_TS]
            sigma2 = np.float32(2.0) * sum_squares(xb) / np.float32(QK_K)
            for j in range(QK_K // 16):
                xs = xb[16 * j:16 * j + 16]
                sw[j] = importance_weights(xs, qw[i * QK_K + 16 * j:i * QK_K + 16 * j + 16], sigma2, weight)
                scales[j] = make_qx_quants(16, 4, xs, L[16 * j:16 * j + 16], weight)
            for b in range(K_SCALE_SIZE):
                y[Q3_SC + b] = 0
            d_block = make_qx_quants(QK_K // 16, 32, scales, Ls, sw)
            for j in range(QK_K // 16):
                _pack_q3_scale(y, j, Ls[j])
            store_fp16(y, Q3_D, d_block)
            _q3_K_levels(xb, L, y)


@njit(cache=True, parallel=True)
def _dequantize_q3_K(q, out):
    """dequantize_row_q3_K"""
    n, rb = q.shape
    for r in prange(n):
        for i in range(rb // Q3_TS):
            y = q[r, i * Q3_TS:(i + 1) * Q3_TS]
            o = out[r, i * QK_K:(i + 1) * QK_K]
            d_all = load_fp16(y, Q3_D)
            k = 0
            s = 0
            bit = 1
            for half in range(QK_K // 128):
                qo = Q3_QS + 32 * half
                for shift in range(0, 8, 2):
                    for h in range(2):
                        dl = d_all * np.float32(_q3_scale(y, s))
                        s += 1
                        for l in range(16):
                            v = (y[qo + 16 * h + l] >> shift) & 3
                            if not (y[Q3_HM + 16 * h + l] & bit):
                                v -= 4
                            o[k] = dl * np.float32(v)
                            k += 1
                    bit <<= 1


# -- Q4_K --------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _quantize_q4_K(x, out):
    """quantize_row_q4_K_ref"""
    n, m = x.shape
    for r in prange(n):
        L = np.zeros(QK_K, dtype=np.int32)
        Laux = np.zeros(32, dtype=np.int32)
        weights = np.zeros(32, dtype=np.float32)
        scales = np.zeros(QK_K // 32, dtype=np.float32)
        mins = np.zeros(QK_K // 32, dtype=np.float32)
        for i in range(m // QK_K):
            xb = x[r, i * QK_K:(i + 1) * QK_K]
            y = out[r, i * Q4_TS:(i + 1) * Q4_TS]
            max_scale, max_min = _qkx2_block(xb, L, 15, -1.0, 0.1, 20, scales, mins, weights, Laux)
            _pack_scales_k4(scales, mins, max_scale, max_min, y, Q4_SC)
            store_fp16(y, Q4_D, max_scale / np.float32(63.0))
            store_fp16(y, Q4_DMIN, max_min / np.float32(63.0))
            _requantize_k4(xb, L, y, Q4_D, Q4_DMIN, Q4_SC, 15)
            _pack_q4_K_levels(L, y)


@njit(cache=True, parallel=True)
def _dequantize_q4_K(q, out):
    """dequantize_row_q4_K"""
    n, rb = q.shape
    for r in prange(n):
        for i in range(rb // Q4_TS):
            y = q[r, i * Q4_TS:(i + 1) * Q4_TS]
            o = out[r, i * QK_K:(i + 1) * QK_K]
            d = load_fp16(y, Q4_D)
            mn = load_fp16(y, Q4_DMIN)
            for j in range(QK_K // 64):
                sc, m_ = get_scale_min_k4(2 * j, y, Q4_SC)
                d1 = d * np.float32(sc)
                m1 = mn * np.float32(m_)
                sc, m_ = get_scale_min_k4(2 * j + 1, y, Q4_SC)
                d2 = d * np.float32(sc)
                m2 = mn * np.float32(m_)
                for l in range(32):
                    b = y[Q4_QS + 32 * j + l]
                    o[64 * j + l] = d1 * np.float32(b & 0xF) - m1
                    o[64 * j + 32 + l] = d2 * np.float32(b >> 4) - m2


# -- Q5_K --------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _quantize_q5_K(x, out):
    """quantize_row_q5_K_ref"""
    n, m = x.shape
    for r in prange(n):
        L = np.zeros(QK_K, dtype=np.int32)
        Laux = np.zeros(32, dtype=np.int32)
        weights = np.zeros(32, dtype=np.float32)
        scales = np.zeros(QK_K // 32, dtype=np.float32)
        mins = np.zeros(QK_K // 32, dtype=np.float32)
        for i in range(m // QK_K):
            xb = x[r, i * QK_K:(i + 1) * QK_K]
            y = out[r, i * Q5_TS:(i + 1) * Q5_TS]
            max_scale, max_min = _qkx2_block(xb, L, 31, -0.5, 0.1, 15, scales, mins, weights, Laux)
            _pack_scales_k4(scales, mins, max_scale, max_min, y, Q5_SC)
            store_fp16(y, Q5_D, max_scale / np.float32(63.0))
            store_fp16(y, Q5_DMIN, max_min / np.float32(63.0))
            _requantize_k4(xb, L, y, Q5_D, Q5_DMIN, Q5_SC, 31)
            _pack_q5_K_levels(L, y)


@njit(cache=True, parallel=True)
def _dequantize_q5_K(q, out):
    """dequantize_row_q5_K"""
    n, rb = q.shape
    for r in prange(n):
        for i in range(rb // Q5_TS):
            y = q[r, i * Q5_TS:(i + 1) * Q5_TS]
            o = out[r, i * QK_K:(i + 1) * QK_K]
            d = load_fp16(y, Q5_D)
            mn = load_fp16(y, Q5_DMIN)
            u1 = 1
            u2 = 2
            for j in range(QK_K // 64):
                sc, m_ = get_scale_min_k4(2 * j, y, Q5_SC)
                d1 = d * np.float32(sc)
                m1 = mn * np.float32(m_)
                sc, m_ = get_scale_min_k4(2 * j + 1, y, Q5_SC)
                d2 = d * np.float32(sc)
                m2 = mn * np.float32(m_)
                for l in range(32):
                    b = y[Q5_QS + 32 * j + l]
                    h = y[Q5_QH + l]
                    o[64 * j + l] = d1 * np.float32((b & 0xF) + (16 if h & u1 else 0)) - m1
                    o[64 * j + 32 + l] = d2 * np.float32((b >> 4) + (16 if h & u2 else 0)) - m2
                u1 <<= 2
                u2 <<= 2


# -- Q6_K --------------------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _q6_K_rows(x, qw, out):
    """quantize_row_q6_K_ref (qw empty: make_qx_quants weighs by x^2) and
    quantize_row_q6_K_impl (qw: the imatrix row, used as it is, without sigma2)."""
    n, m = x.shape
    weighted = qw.shape[0] > 0
    for r in prange(n):
        L = np.zeros(QK_K, dtype=np.int32)
        w = np.zeros(16, dtype=np.float32)
        scales = np.zeros(QK_K // 16, dtype=np.float32)
        for i in range(m // QK_K):
            xb = x[r, i * QK_K:(i + 1) * QK_K]
            y = out[r, i * Q6_TS:(i + 1) * Q6_TS]
            max_scale = np.float32(0.0)
            max_abs_scale = np.float32(0.0)
            for ib in range(QK_K // 16):
                xs = xb[16 * ib:16 * ib + 16]
                for l in range(16):
                    w[l] = qw[i * QK_K + 16 * ib + l] if weighted else xs[l] * xs[l]
                scale = make_qx_quants(16, 32, xs, L[16 * ib:16 * ib + 16], w)
                scales[ib] = scale
                abs_scale = abs(scale)
                if abs_scale > max_abs_scale:
                    max_abs_scale = abs_scale
                    max_scale = scale
            if max_abs_scale < GROUP_MAX_EPS:  # an all-zero block
                for b in range(Q6_TS):
                    y[b] = 0
                continue
            iscale = np.float32(-128.0) / max_scale
            store_fp16(y, Q6_D, np.float32(1.0) / iscale)
            for ib in range(QK_K // 16):
                y[Q6_SC + ib] = min(127, nearest_int(iscale * scales[ib])) & 0xFF
            for j in range(QK_K // 16):
                d = load_fp16(y, Q6_D) * np.float32(np.int8(y[Q6_SC + j]))
                if d == np.float32(0.0):
                    continue
                for ii in range(16):
                    l = nearest_int(xb[16 * j + ii] / d)
                    L[16 * j + ii] = max(-32, min(31, l)) + 32
            for j in range(0, QK_K, 128):
                qlo = Q6_QL + j // 2
                qho = Q6_QH + j // 4
                for l in range(32):
                    q1 = L[j + l] & 0xF
                    q2 = L[j + l + 32] & 0xF
                    q3 = L[j + l + 64] & 0xF
                    q4 = L[j + l + 96] & 0xF
                    y[qlo + l] = q1 | (q3 << 4)
                    y[qlo + l + 32] = q2 | (q4 << 4)
                    y[qho + l] = ((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2)
                                  | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6))


@njit(cache=True, parallel=True)
def _dequantize_q6_K(q, out):
    """dequantize_row_q6_K"""
    n, rb = q.shape
    for r in prange(n):
        for i in range(rb // Q6_TS):
            y = q[r, i * Q6_TS:(i + 1) * Q6_TS]
            o = out[r, i * QK_K:(i + 1) * QK_K]
            d = load_fp16(y, Q6_D)
            for half in range(QK_K // 128):
                qlo = Q6_QL + 64 * half
                qho = Q6_QH + 32 * half
                sco = Q6_SC + 8 * half
                base = 128 * half
                for l in range(32):
                    s = l // 16
                    h = y[qho + l]
                    q1 = ((y[qlo + l] & 0xF) | (((h >> 0) & 3) << 4)) - 32
                    q2 = ((y[qlo + l + 32] & 0xF) | (((h >> 2) & 3) << 4)) - 32
                    q3 = ((y[qlo + l] >> 4) | (((h >> 4) & 3) << 4)) - 32
                    q4 = ((y[qlo + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32
                    o[base + l] = d * np.float32(np.int8(y[sco + s])) * np.float32(q1)
                    o[base + l + 32] = d * np.float32(np.int8(y[sco + s + 2])) * np.float32(q2)
                    o[base + l + 64] = d * np.float32(np.int8(y[sco + s + 4])) * np.float32(q3)
                    o[base + l + 96] = d * np.float32(np.int8(y[sco + s + 6])) * np.float32(q4)


register(Codec(T.Q2_K, _quantize_q2_K, _dequantize_q2_K, fp16_validator(Q2_TS, Q2_D, Q2_DMIN), _quantize_q2_K_weighted))
register(Codec(T.Q3_K, _quantize_q3_K, _dequantize_q3_K, fp16_validator(Q3_TS, Q3_D), _quantize_q3_K_weighted))
register(Codec(T.Q4_K, _quantize_q4_K, _dequantize_q4_K, fp16_validator(Q4_TS, Q4_D, Q4_DMIN), _quantize_q4_K_weighted))
register(Codec(T.Q5_K, _quantize_q5_K, _dequantize_q5_K, fp16_validator(Q5_TS, Q5_D, Q5_DMIN), _quantize_q5_K_weighted))
_NO_WEIGHTS = np.zeros(0, dtype=np.float32)


def _quantize_q6_K(x, out):
    _q6_K_rows(x, _NO_WEIGHTS, out)


register(Codec(T.Q6_K, _quantize_q6_K, _dequantize_q6_K, fp16_validator(Q6_TS, Q6_D), _q6_K_rows))
