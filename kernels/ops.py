"""The non-matmul operations of a transformer block, as ggml's CPU backend computes them.

All work in place on preallocated float32 arrays shaped (T, ...) for T tokens; the KV cache
holds fp16 bit patterns (uint16), as llama.cpp's default F16 cache does.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from .dot.fp16 import F16_TO_F32, f16_round, f32_to_f16_bits
from .dot.legacy import FASTMATH


@njit(parallel=True, cache=True)
def rms_norm(x, w, eps, out):
    """ggml_rms_norm then ggml_mul by the weight: the sum of squares in float64 (ggml_float),
    mean and scale in float32. x, out: (T, n); w: (n,)."""
    T, n = x.shape
    for t in prange(T):
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
def rope_cache(pos, n_dims, freq_base, freq_scale, cos_out, sin_out):
    """ggml_rope_cache_init without YaRN: theta = pos * base^(-2i/n_dims), the powers taken by
    repeated float32 multiplication exactly as ggml does. cos_out, sin_out: (T, n_dims/2)."""
    theta_scale = np.float32(math.pow(np.float32(freq_base), np.float32(-2.0) / np.float32(n_dims)))
    for t in range(pos.shape[0]):
        theta = np.float32(pos[t])
        for i in range(n_dims // 2):
            th = np.float32(freq_scale * theta)
            cos_out[t, i] = np.float32(math.cos(th))
            sin_out[t, i] = np.float32(math.sin(th))
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
                x[t, h, a] = x0 * c - x1 * s
                x[t, h, b] = x0 * s + x1 * c


@njit(cache=True)
def store_kv(k, v, cache_k, cache_v, pos0):
    """Write T new keys and values (T, n_kv*head_dim) as fp16 bits at positions pos0.."""
    T, n = k.shape
    kb = k.view(np.uint32)
    vb = v.view(np.uint32)
    for t in range(T):
        for i in range(n):
            cache_k[pos0 + t, i] = f32_to_f16_bits(kb[t, i], k[t, i])
            cache_v[pos0 + t, i] = f32_to_f16_bits(vb[t, i], v[t, i])


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def attention(q, cache_k, cache_v, pos, n_kv, scale, window, softcap, scores, out):
    """Causal multi-head attention over an F16 KV cache, as llama.cpp's non-flash path:
    kq = K @ fp16(q) (float32 sums), softmax(kq * scale + mask) in float32 with a float64 sum,
    the probabilities rounded to fp16 before p @ V.

    q (T, n_head, D) float32; cache_k/v (n_ctx, n_head_kv*D) uint16; pos (T,) the position
    of each query; n_kv keys in use; window > 0 masks keys more than window-1 behind
    (sliding-window attention); softcap > 0 applies tanh soft-capping to the scores.
    scores (n_threads, n_ctx) float32 scratch, a row per thread; out (T, n_head*D)."""
    T, H, D = q.shape
    HKV = cache_k.shape[1] // D
    group = H // HKV
    for job in prange(H * T):
        h = job // T
        t = job % T
        g = h // group
        p = pos[t]
        s = scores[numba.get_thread_id()]
        mx = -np.inf
        for j in range(n_kv):
            masked = j > p or (window > 0 and p - j >= window)
            if masked:
                s[j] = -np.inf
                continue
            acc = np.float32(0.0)
            for i in range(D):
                acc += f16_round(q[t, h, i]) * F16_TO_F32[cache_k[j, g * D + i]]
            v = acc * scale
            if softcap > 0:
                v = np.float32(softcap * math.tanh(v / softcap))
            s[j] = v
            if v > mx:
                mx = v
        total = 0.0
        for j in range(n_kv):
            e = np.float32(math.exp(s[j] - mx)) if s[j] != -np.inf else np.float32(0.0)
            s[j] = e
            total += np.float64(e)
        inv = np.float32(1.0 / total)
        for j in range(n_kv):
            s[j] = f16_round(s[j] * inv)
        for i in range(D):
            acc = np.float32(0.0)
            for j in range(n_kv):
                acc += s[j] * F16_TO_F32[cache_v[j, g * D + i]]
            out[t, h * D + i] = acc


@njit(parallel=True, cache=True)
def swiglu(gate, up, out):
    """silu(gate) * up, ggml_swiglu: silu(x) = x / (1 + exp(-x))."""
    T, n = gate.shape
    for t in prange(T):
        for i in range(n):
            g = gate[t, i]
            out[t, i] = (g / (np.float32(1.0) + np.float32(math.exp(-g)))) * up[t, i]


GELU_COEF_A = 0.044715
SQRT_2_OVER_PI = 0.79788456080286535587989211986876


@njit(parallel=True, cache=True)
def geglu(gate, up, out):
    """gelu(gate) * up with ggml's tanh approximation of GELU (ggml_geglu)."""
    T, n = gate.shape
    for t in prange(T):
        for i in range(n):
            x = gate[t, i]
            g = np.float32(0.5) * x * (np.float32(1.0) + np.float32(
                math.tanh(np.float32(SQRT_2_OVER_PI) * x * (np.float32(1.0) + np.float32(GELU_COEF_A) * x * x))))
            out[t, i] = g * up[t, i]


@njit(cache=True)
def add_inplace(x, y):
    """x += y for (T, n) arrays."""
    T, n = x.shape
    for t in range(T):
        for i in range(n):
            x[t, i] += y[t, i]
