"""Flash attention as ggml's CPU backend computes it (ggml_compute_forward_flash_attn_ext_f16,
ggml-cpu/ops.cpp): llama.cpp's default attention (`-fa auto` is on for the CPU).

The cache is llama.cpp's with flash attention: K and V both F16 and both stored by rows,
cache_k (n_ctx, n_head_kv*D) and cache_v (n_ctx, n_head_kv*D). ggml takes one of three paths:

- **One row at a time** (`_f16_one_chunk`), for a batch of fewer than 64 queries: q goes to fp16,
  each key's score is ggml_vec_dot_f16, then an online softmax with the C library's expf, V·p
  accumulated in fp16 (ggml_vec_scale_f16, ggml_vec_mad_f16) and divided by the sum at the end.
- **Keys split by thread** (the split-KV path), for one query over n_kv >= 512 cache cells: each
  of the nth threads runs the row over its chunk of ceil(n_kv/nth) cells, and
  ggml_flash_attn_ext_reduce_partials merges the chunks' (max, sum, V·p) in order. The result
  depends on the thread count, as llama.cpp's does.
- **Tiles** (`_tiled`), for 64 queries or more: 64 queries x 64 keys at a time in float32 (q not
  rounded to fp16), scores and V·p by simd_gemm's fused multiply-add chains, each tile's
  exponentials by ggml_vec_soft_max_f32.

n_kv here is the graph's: the cells llama.cpp's kv cache shows the kernel, max(256, used cells
padded to 256) (llama_kv_cache::get_n_kv); masked cells add nothing, so only the split choice
and its chunk size read it. GCC contracts some of ggml's expressions into fused multiply-adds;
the ones that change bits are written below as fma32, read off libggml-cpu.so's disassembly.

Each kernel takes `wide`: an AVX-512 build's score dot (sixteen lanes) and softmax groups of
sixteen, else AVX2's. The fp16 accumulator works element by element, the same on both. The slow
twins are in tests/test_flash.py.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .dot.fp16 import F16_TO_F32, dot_f16_512, dot_f16_fast, f16_round, f32_to_f16_bits, round_to_f16
from .simd import exp8_shifted, fma32, libm_expf, libm_tanhf, mad8_to_f16, scale8_to_f16
from .simd512 import exp16_shifted

TILE_Q = 64  # GGML_FA_TILE_Q: a batch of this many queries takes the tiled path
TILE_KV = 64  # GGML_FA_TILE_KV
SPLIT_KV = 512  # a single query over this many cells (or more) splits the keys by thread
CELL_PAD = 256  # llama_kv_cache::get_n_kv pads the cells it shows to this


def graph_n_kv(n_used: int, n_ctx: int) -> int:
    """The cells llama.cpp's graph attends over once n_used positions are filled: at least 256,
    used cells padded to 256, at most the cache's size (the context padded to 256)."""
    size = -(-n_ctx // CELL_PAD) * CELL_PAD
    return min(size, max(CELL_PAD, -(-n_used // CELL_PAD) * CELL_PAD))


@njit(cache=True)
def store_kv_rows(k, v, cache_k, cache_v, pos0):
    """Write T new keys and values (T, n_kv*D) as fp16 bits at rows pos0.. of cache_k and
    cache_v (n_ctx, n_kv*D): llama.cpp's cache layout with flash attention (V not transposed)."""
    kb, vb = k.view(np.uint32), v.view(np.uint32)
    for t in range(k.shape[0]):
        for i in range(k.shape[1]):
            cache_k[pos0 + t, i] = f32_to_f16_bits(kb[t, i], k[t, i])
        for i in range(v.shape[1]):
            cache_v[pos0 + t, i] = f32_to_f16_bits(vb[t, i], v[t, i])


# -- one row: ggml_compute_forward_flash_attn_ext_f16_one_chunk --------------------------------

@njit(inline="always", cache=True)
def _mad_f16(acc, cache_v, ic, col, w, D):
    """ggml_vec_mad_f16: acc = fp16(v*w + acc) for v cache_v[ic, col:col+D] (eight lanes, then
    the scalar leftovers)."""
    n8 = D & ~7
    vo = ic * cache_v.shape[1] + col
    for i in range(0, n8, 8):
        mad8_to_f16(acc, i, cache_v, vo + i, w)
    for i in range(n8, D):
        acc[i] = f16_round(fma32(F16_TO_F32[cache_v[ic, col + i]], w, acc[i]))


@njit(inline="always", cache=True)
def _scale_f16(acc, w, D):
    """ggml_vec_scale_f16: acc = fp16(acc*w)."""
    n8 = D & ~7
    for i in range(0, n8, 8):
        scale8_to_f16(acc, i, w)
    for i in range(n8, D):
        acc[i] = f16_round(acc[i] * w)


@njit(inline="always", cache=True)
def _row(q, qo, cache_k, cache_v, col, lo, hi, scale, softcap, acc, wide):
    """One query over the cells lo..hi-1 (all visible): the online softmax of one_chunk. acc
    (D,) ends holding VKQ16 as floats; returns (M, S), the running max and sum."""
    D = acc.shape[0]
    ek = cache_k.shape[1]
    for i in range(D):
        acc[i] = 0.0
    M = np.float32(-np.inf)
    S = np.float32(0.0)
    for ic in range(lo, hi):
        s = dot_f16_512(q, qo, cache_k, ic * ek + col, D) if wide else dot_f16_fast(q, qo, cache_k, ic * ek + col, D)
        s = np.float32(s * scale)
        if softcap != 0:
            s = np.float32(softcap * libm_tanhf(s))
        s = np.float32(s + np.float32(0.0))  # the mask's 0 (ALiBi slope 1)
        if s > M:  # a new maximum: rescale what is there, this key weighs expf(0) = 1
            ms = libm_expf(np.float32(M - s))
            M = s
            _scale_f16(acc, ms, D)
            _mad_f16(acc, cache_v, ic, col, np.float32(1.0), D)
            S = fma32(ms, S, np.float32(1.0))  # S = S*ms + vs, contracted by GCC
        else:
            vs = libm_expf(np.float32(s - M))
            _mad_f16(acc, cache_v, ic, col, vs, D)
            S = np.float32(S + vs)
    return M, S


@njit(inline="always", cache=True)
def _sink(acc, M, S, sink):
    """The head's sink logit joins the softmax (gpt-oss): returns (M, S), acc rescaled."""
    if sink > M:
        ms = libm_expf(np.float32(M - sink))
        for i in range(acc.shape[0]):
            acc[i] = np.float32(acc[i] * ms)
        return sink, np.float32(np.float32(S * ms) + np.float32(1.0))
    return M, np.float32(S + libm_expf(np.float32(sink - M)))


@njit(inline="always", cache=True)
def _finish(acc, S, out, t, o):
    """V /= S (ggml_vec_scale_f32 by 1/S, or 0 when nothing was seen) into out[t, o:o+D]."""
    inv = np.float32(0.0) if S == 0 else np.float32(np.float32(1.0) / S)
    for i in range(acc.shape[0]):
        out[t, o + i] = np.float32(acc[i] * inv)


@njit(inline="always", cache=True)
def _seen(p, n_kv, window):
    """The cells lo..hi-1 a query at position p sees (causal, and the sliding window)."""
    lo = 0 if window <= 0 else max(0, p - window + 1)
    return lo, min(p + 1, n_kv)


@njit(parallel=True, cache=True)
def _rows(q, cache_k, cache_v, pos, n_kv, scale, window, softcap, sinks, scratch, out, wide):
    T, H, D = q.shape
    group = H // (cache_k.shape[1] // D)
    if softcap != 0:
        scale = np.float32(scale / softcap)
    for job in prange(H * T):
        h, t = job // T, job % T
        acc = scratch[numba.get_thread_id(), 0]
        lo, hi = _seen(pos[t], n_kv, window)
        M, S = _row(q, (t * H + h) * D, cache_k, cache_v, (h // group) * D, lo, hi, scale, softcap, acc, wide)
        if sinks.shape[0] > 0:
            M, S = _sink(acc, M, S, sinks[h])
        _finish(acc, S, out, t, h * D)


# -- one query, the cells split by thread: the split-KV path -----------------------------------

@njit(parallel=True, cache=True)
def _split(q, cache_k, cache_v, p, n_kv, graph_kv, nth, scale, window, softcap, sinks, parts, out, wide):
    """parts (H*(nth + 1), 2 + D): each (head, chunk)'s M, S and VKQ, then merged per head in
    chunk order into the last H rows, as ggml_flash_attn_ext_reduce_partials does (GCC fuses
    one product of each update)."""
    _, H, D = q.shape
    group = H // (cache_k.shape[1] // D)
    if softcap != 0:
        scale = np.float32(scale / softcap)
    chunk = (graph_kv + nth - 1) // nth
    lo, hi = _seen(p, n_kv, window)
    for job in prange(H * nth):
        h, c = job // nth, job % nth
        part = parts[job]
        acc = part[2:2 + D]
        c0, c1 = max(lo, c * chunk), min(hi, (c + 1) * chunk)
        M, S = np.float32(-np.inf), np.float32(0.0)
        if c * chunk < graph_kv:
            if c0 < c1:
                M, S = _row(q, h * D, cache_k, cache_v, (h // group) * D, c0, c1, scale, softcap, acc, wide)
            else:
                acc[:] = 0.0
            if sinks.shape[0] > 0 and c == 0:
                M, S = _sink(acc, M, S, sinks[h])
        part[0], part[1] = M, S
    for h in prange(H):
        M, S = np.float32(-np.inf), np.float32(0.0)
        fin = parts[H * nth + h, 2:2 + D]  # VKQ_final
        fin[:] = 0.0
        for c in range(nth):
            part = parts[h * nth + c]
            if c * chunk >= graph_kv or part[1] == 0:
                continue
            Mc, Sc = part[0], part[1]
            Mn = max(M, Mc)
            so = libm_expf(np.float32(M - Mn))
            sn = libm_expf(np.float32(Mc - Mn))
            for i in range(D):
                fin[i] = fma32(fin[i], so, np.float32(part[2 + i] * sn))
            S = fma32(S, so, np.float32(Sc * sn))
            M = Mn
        inv = np.float32(np.float32(1.0) / S) if S != 0 else np.float32(1.0)
        for i in range(D):
            out[0, h * D + i] = np.float32(fin[i] * inv)


# -- 64 queries at a time: ggml_compute_forward_flash_attn_ext_tiled ---------------------------

@njit(parallel=True, cache=True)
def _tiled(q, cache_k, cache_v, pos, n_kv, scale, window, softcap, sinks, Qs, Ks, Vs, Os, Ss, out, wide):
    """Qs, Os (threads, 64, D), Ks (threads, D, 64), Vs (threads, 64, D), Ss (threads, 66, 64):
    each thread's query tile, key tile (transposed), value tile, VKQ, and scores (rows 64 and
    65: M and S of each query). Separate arrays, so that LLVM vectorises the 64-wide loops."""
    T, H, D = q.shape
    ek = cache_k.shape[1]
    group = H // (ek // D)
    if softcap != 0:
        scale = np.float32(scale / softcap)
    n_tiles = (T + TILE_Q - 1) // TILE_Q
    gl = 16 if wide else 8
    for job in prange(H * n_tiles):
        h, t0 = job // n_tiles, (job % n_tiles) * TILE_Q
        rows = min(TILE_Q, T - t0)
        col = (h // group) * D
        th = numba.get_thread_id()
        Qf, Kt, Vf, VKQ, KQ = Qs[th], Ks[th], Vs[th], Os[th], Ss[th]
        Ms, Sm = KQ[TILE_Q], KQ[TILE_Q + 1]
        first, last = n_kv, 0  # the cells any of these queries sees
        for r in range(rows):
            for d in range(D):
                Qf[r, d] = q[t0 + r, h, d]
                VKQ[r, d] = 0.0
            Ms[r], Sm[r] = -np.inf, 0.0
            lo, hi = _seen(pos[t0 + r], n_kv, window)
            first, last = min(first, lo), max(last, hi)
        for ic in range(first // TILE_KV * TILE_KV, last, TILE_KV):
            nk = min(TILE_KV, n_kv - ic)
            for tk in range(TILE_KV):  # the tile in float32, zero past the cells that exist
                if tk < nk:
                    for d in range(D):
                        Kt[d, tk] = F16_TO_F32[cache_k[ic + tk, col + d]]
                        Vf[tk, d] = F16_TO_F32[cache_v[ic + tk, col + d]]
                else:
                    for d in range(D):
                        Kt[d, tk] = 0.0
                        Vf[tk, d] = 0.0
            for r in range(rows):
                lo, hi = _seen(pos[t0 + r], n_kv, window)
                a, b = max(lo - ic, 0), min(hi - ic, TILE_KV)
                if a >= b:  # no cell of this tile is seen: the row skips it
                    continue
                kq = KQ[r]
                _scores(Qf[r], Kt, kq, D)
                mx = np.float32(-np.inf)
                for tk in range(TILE_KV):
                    if tk < a or tk >= b:
                        kq[tk] = -np.inf
                        continue
                    s = np.float32(kq[tk] * scale)
                    if softcap != 0:
                        s = np.float32(libm_tanhf(s) * softcap)
                    kq[tk] = s
                    mx = max(mx, s)
                Mold = Ms[r]
                Mn = max(Mold, mx)
                acc = VKQ[r]
                if Mn > Mold:
                    ms = libm_expf(np.float32(Mold - Mn))
                    for d in range(D):
                        acc[d] = np.float32(acc[d] * ms)
                    Sm[r] = np.float32(Sm[r] * ms)
                Ms[r] = Mn
                total = 0.0  # ggml_vec_soft_max_f32: group sums in double
                for g in range(0, TILE_KV, gl):
                    total += np.float64(exp16_shifted(kq, g, Mn) if wide else exp8_shifted(kq, g, Mn))
                Sm[r] = np.float32(np.float64(Sm[r]) + total)
                _accumulate(kq, Vf, acc, D)
        for r in range(rows):
            M, S = Ms[r], Sm[r]
            if sinks.shape[0] > 0:
                M, S = _sink(VKQ[r], M, S, sinks[h])
            _finish(VKQ[r], S, out, t0 + r, h * D)


@njit(inline="always", cache=True)
def _scores(qr, Kt, kq, D):
    """simd_gemm for one query over a tile: kq[tk] = the fused chain over d of q[d] * K[tk, d]
    (all 64 cells; the caller masks the unseen ones)."""
    for tk in range(TILE_KV):
        kq[tk] = 0.0
    for d in range(D):
        x = qr[d]
        kd = Kt[d]
        for tk in range(TILE_KV):
            kq[tk] = fma32(x, kd[tk], kq[tk])


@njit(inline="always", cache=True)
def _accumulate(p, Vf, acc, D):
    """simd_gemm for V: acc[d] = the fused chain over the tile's 64 cells of p[tk] * V[tk, d]
    (a masked cell's p is +0 and its V finite, which leaves acc as it is)."""
    for tk in range(TILE_KV):
        w = p[tk]
        vt = Vf[tk]
        for d in range(D):
            acc[d] = fma32(w, vt[d], acc[d])


class Scratch:
    """Each thread's buffers for flash_attn: the tiles (separate arrays) and the split path's
    (head, chunk) partials, parts (n_head*(threads + 1), 2 + D)."""

    def __init__(self, n_threads: int, n_head: int, D: int):
        self.q = np.zeros((n_threads, TILE_Q, D), np.float32)
        self.k = np.zeros((n_threads, D, TILE_KV), np.float32)
        self.v = np.zeros((n_threads, TILE_KV, D), np.float32)
        self.o = np.zeros((n_threads, TILE_Q, D), np.float32)
        self.s = np.zeros((n_threads, TILE_Q + 2, TILE_KV), np.float32)
        self.parts = np.zeros((n_head * (n_threads + 1), 2 + D), np.float32)


# -- the entry point ----------------------------------------------------------------------------

def flash_attn(q, cache_k, cache_v, pos, n_kv, graph_kv, nth, scale, window, softcap, sinks, scratch, out,
               wide=False):
    """softmax(q K^T * scale + mask) V for T queries (q (T, n_head, D) float32, not rounded) at
    positions pos against the first n_kv cells, into out (T, n_head*D); window > 0 masks cells
    more than window-1 behind; softcap > 0 soft-caps the scores; sinks (n_head,) or empty.
    graph_kv (graph_n_kv) and nth (the threads) pick the path as ggml does; scratch a Scratch
    for at least nth threads."""
    T = q.shape[0]
    if T >= TILE_Q:
        _tiled(q, cache_k, cache_v, pos, n_kv, scale, window, softcap, sinks, scratch.q, scratch.k, scratch.v,
               scratch.o, scratch.s, out, wide)
        return
    flat = q.reshape(-1)  # ggml converts q to the K vec_dot type, fp16, for these paths
    round_to_f16(flat, flat)
    if T == 1 and graph_kv >= SPLIT_KV:
        _split(q, cache_k, cache_v, pos[0], n_kv, graph_kv, nth, scale, window, softcap, sinks, scratch.parts, out,
               wide)
    else:
        _rows(q, cache_k, cache_v, pos, n_kv, scale, window, softcap, sinks, scratch.o, out, wide)

