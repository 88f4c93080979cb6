"""The non-matmul operations of a transformer block, as ggml's CPU backend computes them.

Only attention runs in parallel: the element-wise operations are a few microseconds at
decode time, less than the cost of waking the thread pool (and much less when the machine is
busy and a pool thread has to wait for a core).

All work in place on preallocated float32 arrays shaped (T, ...) for T tokens; the KV cache
holds fp16 bit patterns (uint16), as llama.cpp's default F16 cache does.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from .dot.fp16 import F16_TO_F32, dot_f16_512, dot_f16_fast, f32_to_f16_bits  # noqa: F401  (the attention's dots)
from .simd import exp8_shifted, fma32, libm_expf, libm_tanhf, reduce8_hadd, row_dot_f16, scale8_to_f16, silu_mul8
from .simd512 import exp16_shifted, row_dot_f16_512, silu_mul16


@njit(cache=True)
def rms_norm(x, w, eps, out):
    """ggml_rms_norm then ggml_mul by the weight: the sum of squares in float64 (ggml_float),
    mean and scale in float32. x, out: (T, n); w: (n,)."""
    T, n = x.shape
    for t in range(T):
        s = 0.0
        for i in range(n):
            v = x[t, i] * x[t, i]
            s += np.float64(v)
        mean = np.float32(s / n)
        scale = np.float32(1.0) / np.float32(math.sqrt(np.float32(mean + eps)))
        for i in range(n):
            out[t, i] = (x[t, i] * scale) * w[i]


@njit(cache=True)
def rms_norm_heads(x, w, eps):
    """RMSNorm over each head in place: x (T, n_head, head_dim), w (head_dim,) (q/k norms)."""
    T, H, D = x.shape
    for t in range(T):
        for h in range(H):
            s = 0.0
            for i in range(D):
                v = x[t, h, i] * x[t, h, i]
                s += np.float64(v)
            mean = np.float32(s / D)
            scale = np.float32(1.0) / np.float32(math.sqrt(np.float32(mean + eps)))
            for i in range(D):
                x[t, h, i] = (x[t, h, i] * scale) * w[i]


@njit(cache=True)
def rope_cache(pos, n_dims, freq_base, freq_scale, ext_factor, attn_factor, corr_lo, corr_hi, freq_factors,
               cos_out, sin_out):
    """ggml_rope_cache_init with rope_yarn (ggml-cpu/ops.cpp): theta = pos * base^(-2i/n_dims), the
    powers taken by repeated float32 multiplication as ggml does, divided by the frequency factor
    of pair i (Llama 3's rope_freqs, LongRoPE's short or long factors; all ones when the model has
    none), then interpolated by freq_scale and, for YaRN (ext_factor != 0), ramped back towards
    the extrapolated angle between the correction dims corr_lo..corr_hi, with the magnitude
    attn_factor * (1 + 0.1 ln(1/freq_scale)). cos_out, sin_out: (T, n_dims/2).

    libggml-cpu is built with FMA, and GCC contracts rope_yarn's two sums; fma32 writes them as
    its code has them: fma(theta_interp, 1 - mix, theta_extrap * mix) and fma(0.1, logf(.), 1)."""
    theta_scale = np.float32(math.pow(np.float32(freq_base), np.float32(-2.0) / np.float32(n_dims)))
    mscale = np.float32(attn_factor)
    if ext_factor != 0.0:
        mscale = np.float32(mscale * fma32(np.float32(0.1), np.float32(math.log(np.float32(1.0) / freq_scale)),
                                           np.float32(1.0)))
    span = max(np.float32(0.001), np.float32(corr_hi - corr_lo))
    for t in range(pos.shape[0]):
        theta = np.float32(pos[t])
        for i in range(n_dims // 2):
            extrap = np.float32(theta / freq_factors[i])
            th = np.float32(freq_scale * extrap)
            if ext_factor != 0.0:
                y = np.float32(np.float32(np.float32(i) - corr_lo) / span)
                ramp = np.float32(np.float32(1.0) - min(np.float32(1.0), max(np.float32(0.0), y)))
                mix = np.float32(ramp * ext_factor)
                th = fma32(th, np.float32(np.float32(1.0) - mix), np.float32(extrap * mix))
            cos_out[t, i] = np.float32(np.float32(math.cos(th)) * mscale)
            sin_out[t, i] = np.float32(np.float32(math.sin(th)) * mscale)
            theta = np.float32(theta * theta_scale)


@njit(cache=True)
def rope(x, cos_c, sin_c, n_dims, neox):
    """Rotate x (T, n_head, head_dim) in place. Normal mode (llama) rotates adjacent pairs
    (2i, 2i+1); NeoX mode (gemma, qwen2) rotates (i, i + n_dims/2)."""
    T, H, D = x.shape
    half = n_dims // 2
    for t in range(T):
        for h in range(H):
            for i in range(half):
                c = cos_c[t, i]
                s = sin_c[t, i]
                if neox:
                    a, b = i, i + half
                else:
                    a, b = 2 * i, 2 * i + 1
                x0 = x[t, h, a]
                x1 = x[t, h, b]
                # rotate_pairs as GCC contracts it (vfmsub231ss / vfmadd132ss in libggml-cpu)
                x[t, h, a] = fma32(x0, c, -(x1 * s))
                x[t, h, b] = fma32(x0, s, x1 * c)


@njit(cache=True)
def store_kv(k, v, cache_k, cache_vt, pos0):
    """Write T new keys (T, n_kv*D) as fp16 bits at rows pos0.. of cache_k (n_ctx, n_kv*D), and
    the values transposed into cache_vt (n_kv*D, n_ctx), as llama.cpp's non-flash cache keeps V."""
    T, n = k.shape
    kb = k.view(np.uint32)
    vb = v.view(np.uint32)
    for t in range(T):
        for i in range(n):
            cache_k[pos0 + t, i] = f32_to_f16_bits(kb[t, i], k[t, i])
        for i in range(v.shape[1]):
            cache_vt[i, pos0 + t] = f32_to_f16_bits(vb[t, i], v[t, i])


@njit(inline="always", cache=True)
def dot_f16(x, y, n, acc):
    """ggml_vec_dot_f16 (AVX + F16C): x float32 values already fp16-exact, y fp16 bits. Four
    accumulators of eight lanes (acc, 32 floats of scratch) take fused multiply-adds over the
    first n & ~31 elements, then GGML_F32x8_REDUCE; the leftovers are added in double."""
    np_ = n & ~31
    for i in range(32):
        acc[i] = 0.0
    for i in range(0, np_, 32):
        for j in range(32):
            acc[j] = fma32(x[i + j], F16_TO_F32[y[i + j]], acc[j])
    for l in range(8):  # sum[0] += sum[2]; sum[1] += sum[3]; sum[0] += sum[1]
        acc[l] = (acc[l] + acc[16 + l]) + (acc[8 + l] + acc[24 + l])
    s = np.float64(reduce8_hadd(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7]))
    for i in range(np_, n):
        s += np.float64(np.float32(x[i] * F16_TO_F32[y[i]]))
    return np.float32(s)


@njit(cache=True)
def attention(q, cache_k, cache_vt, pos, n_kv, scale, window, softcap, sinks, scratch, out):
    """_attend as an AVX2 build of ggml computes it."""
    _attend(q, cache_k, cache_vt, pos, n_kv, scale, window, softcap, sinks, scratch, out, False)


@njit(cache=True)
def attention_512(q, cache_k, cache_vt, pos, n_kv, scale, window, softcap, sinks, scratch, out):
    """_attend as an AVX-512 build of ggml computes it."""
    _attend(q, cache_k, cache_vt, pos, n_kv, scale, window, softcap, sinks, scratch, out, True)


@njit(parallel=True, cache=True)
def _attend(q, cache_k, cache_vt, pos, n_kv, scale, window, softcap, sinks, scratch, out, wide):
    """Causal multi-head attention over an F16 KV cache, as llama.cpp's non-flash path computes
    it for one query at a time: kq = K @ fp16(q) (ggml_vec_dot_f16), softmax(kq * scale + mask)
    with ggml_v_expf in groups of eight and a float64 sum, the probabilities rounded to fp16,
    then V^T @ p (ggml_vec_dot_f16 again, over the row padded to 32).

    Only the keys a query can see are computed. That leaves every bit as llama.cpp's full row
    gives it: a masked score is exp(-inf) = +0, which adds nothing to a group's hsum or to the
    double total, and a chunk of 32 zero probabilities leaves the V accumulators unchanged
    (fma(+-0, v, acc) = acc, and an accumulator that starts at +0 stays +0).

    q (T, n_head, D) float32 holding fp16-exact values; cache_k (n_ctx, n_head_kv*D) and
    cache_vt (n_head_kv*D, n_ctx padded to 32) fp16 bits; pos (T,) the position of each query;
    n_kv keys in use; window > 0 masks keys more than window-1 behind (sliding-window
    attention); softcap > 0 applies tanh soft-capping to the scores; sinks (n_head,) or empty:
    gpt-oss's sink logit of each head joins the softmax (ggml_soft_max_add_sinks: the max
    includes it and the sum gains expf(sink - max)). scratch (n_threads,
    n_ctx + 64) float32, a row per thread; out (T, n_head*D).

    wide: an AVX-512 build's arithmetic (simd512): the dots in sixteen lanes over chunks of 64,
    softmax groups of sixteen. Its chunks of 64 still hold whole rows: llama.cpp pads n_kv to 256."""
    T, H, D = q.shape
    HKV = cache_k.shape[1] // D
    group = H // HKV
    ek = cache_k.shape[1]
    vstride = cache_vt.shape[1]
    inv_cap = np.float32(np.float32(1.0) / np.float32(softcap)) if softcap > 0 else np.float32(0.0)
    for job in prange(H * T):
        h = job // T
        t = job % T
        g = h // group
        p = pos[t]
        s = scratch[numba.get_thread_id()]
        lo = 0 if window <= 0 else max(0, p - window + 1)  # the keys this query sees: lo..hi-1
        hi = min(p + 1, n_kv)
        gl = 16 if wide else 8  # softmax group
        cl = 64 if wide else 32  # V dot chunk
        g0, g1 = lo // gl * gl, (hi + gl - 1) // gl * gl  # softmax groups that hold them
        c0, c1 = lo // cl * cl, (hi + cl - 1) // cl * cl  # V dot chunks that hold them
        qo = (t * H + h) * D
        mx = -np.inf
        for j in range(lo, hi):
            v = dot_f16_512(q, qo, cache_k, j * ek + g * D, D) if wide else dot_f16_fast(q, qo, cache_k, j * ek + g * D, D)
            if softcap > 0:  # build_attn_mha: ggml_scale by 1/c, ggml_tanh (tanhf), ggml_scale by c
                v = np.float32(libm_tanhf(np.float32(v * inv_cap)) * softcap)
            v = np.float32(v * scale)  # ggml_soft_max_ext scales before the mask
            s[j] = v
            if v > mx:
                mx = v
        for j in range(g0, lo):
            s[j] = -np.inf
        for j in range(hi, g1):
            s[j] = -np.inf
        if sinks.shape[0] > 0 and sinks[h] > mx:
            mx = sinks[h]
        total = 0.0
        for j in range(g0, g1, gl):
            total += np.float64(exp16_shifted(s, j, mx) if wide else exp8_shifted(s, j, mx))
        if sinks.shape[0] > 0:
            total += np.float64(libm_expf(np.float32(sinks[h] - mx)))
        inv = np.float32(1.0 / total)
        for j in range(g0, g1, 8):
            scale8_to_f16(s, j, inv)
        for j in range(c0, g0):
            s[j] = 0.0
        for j in range(g1, c1):
            s[j] = 0.0
        for i in range(D):
            vo = (g * D + i) * vstride + c0
            out[t, h * D + i] = row_dot_f16_512(s, c0, cache_vt, vo, c1 - c0) if wide else \
                row_dot_f16(s, c0, cache_vt, vo, c1 - c0)


@njit(parallel=True, cache=True)
def swiglu(gate, up, out):
    """ggml_vec_swiglu_f32 (AVX2): silu(g) = g / (1 + ggml_v_expf(-g)), times up, eight lanes at
    a time (n_ff is a multiple of 8). Prompt batches run their rows in parallel; one token runs
    on the calling thread."""
    T, n = gate.shape
    if T == 1:
        for i in range(0, n, 8):
            silu_mul8(gate, i, up, i, out, i)
        return
    for t in prange(T):
        for i in range(0, n, 8):
            silu_mul8(gate, t * n + i, up, t * n + i, out, t * n + i)


@njit(parallel=True, cache=True)
def swiglu_512(gate, up, out):
    """ggml_vec_swiglu_f32 (AVX-512): sixteen lanes at a time (simd512.silu_mul16), the scalar
    ggml_silu_f32 for the leftovers of a row. Twin: simd512.swiglu_ref."""
    if gate.shape[0] == 1:
        _swiglu_512_row(gate, up, out, 0)
        return
    for t in prange(gate.shape[0]):
        _swiglu_512_row(gate, up, out, t)


@njit(inline="always", cache=True)
def _swiglu_512_row(gate, up, out, t):
    n = gate.shape[1]
    n16 = n & ~15
    for i in range(0, n16, 16):
        silu_mul16(gate, t * n + i, up, t * n + i, out, t * n + i)
    for i in range(n16, n):
        x = gate[t, i]
        out[t, i] = (x / (np.float32(1.0) + libm_expf(-x))) * up[t, i]


GELU_COEF_A = np.float32(0.044715)
SQRT_2_OVER_PI = np.float32(0.79788456080286535587989211986876)


def _gelu_table() -> np.ndarray:
    """ggml_table_gelu_f16 as float32 values: ggml_gelu_f32 of every fp16 value, rounded to
    fp16 (ggml_cpu_init fills it; GGML_GELU_FP16 is defined in ggml-cpu/vec.h).

    ggml_gelu_f32 is 0.5f*x*(1.0f + tanhf(SQRT_2_OVER_PI*x*(1.0f + GELU_COEF_A*x*x))); GCC
    contracts the inner 1.0f + (GELU_COEF_A*x)*x into one fma, and glibc's tanhf is correctly
    rounded here. The fma is exact in float64 (a product of two float32 is) before its single
    rounding to float32, and tanh is rounded from float64. This reproduces the 65536 entries of
    llama-cpp-python 0.3.36's libggml-cpu.so bit for bit (tests/test_gemma3.py keeps its digest)."""
    x = F16_TO_F32
    with np.errstate(all="ignore"):
        ax = GELU_COEF_A * x
        inner = (ax.astype(np.float64) * x.astype(np.float64) + 1.0).astype(np.float32)
        th = np.tanh((SQRT_2_OVER_PI * x * inner).astype(np.float64)).astype(np.float32)
        y = np.float32(0.5) * x * (np.float32(1.0) + th)
    return y.astype(np.float16).astype(np.float32)


GELU_F16 = _gelu_table()  # (65536,) float32, indexed by the fp16 bits of the input


@njit(inline="always", cache=True)
def _geglu_row(g, u, o):
    bits = g.view(np.uint32)
    for i in range(g.shape[0]):
        x = g[i]
        if x <= np.float32(-10.0):
            o[i] = 0.0
        elif x >= np.float32(10.0):
            o[i] = x * u[i]
        else:
            o[i] = GELU_F16[f32_to_f16_bits(bits[i], x)] * u[i]


@njit(parallel=True, cache=True)
def geglu(gate, up, out):
    """ggml_vec_geglu_f32 with GGML_GELU_FP16: gelu(g) from the fp16 table for -10 < g < 10,
    0 below, g itself above; times up. gate, up, out: (T, n_ff); a batch's rows in parallel."""
    if gate.shape[0] == 1:
        _geglu_row(gate[0], up[0], out[0])
        return
    for t in prange(gate.shape[0]):
        _geglu_row(gate[t], up[t], out[t])


@njit(cache=True)
def softcap_inplace(x, cap):
    """x = c * tanh(x / c) as the graphs write it: ggml_scale by 1.0f/c, ggml_tanh (the C
    library's tanhf), ggml_scale by c. x: (T, n)."""
    c = np.float32(cap)
    inv = np.float32(np.float32(1.0) / c)
    T, n = x.shape
    for t in range(T):
        for i in range(n):
            x[t, i] = np.float32(libm_tanhf(np.float32(x[t, i] * inv)) * c)


@njit(cache=True)
def add_inplace(x, y):
    """x += y for (T, n) arrays."""
    T, n = x.shape
    for t in range(T):
        for i in range(n):
            x[t, i] += y[t, i]
