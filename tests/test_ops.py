"""Transformer ops against slow twins."""

import numba
import numpy as np
import pytest
from numba import njit

from llamacli.kernels import ops
from llamacli.kernels.dot.fp16 import f16_round
from llamacli.kernels.simd import v_expf


@njit(cache=True)
def _both_dots(x, y, n, acc):
    return ops.dot_f16(x, y, n, acc), ops.dot_f16_fast(x, 0, y, 0, n)


def test_f16_dot_fast_is_bit_identical_to_portable_and_close_to_float64():
    rng = np.random.default_rng(0)
    for n in (16, 32, 48, 64, 80, 256, 1024):
        for _ in range(50):
            x = rng.standard_normal(n).astype(np.float16).astype(np.float32)
            y = rng.standard_normal(n).astype(np.float16)
            a, b = _both_dots(x, y.view(np.uint16), n, np.zeros(32, np.float32))
            assert a == b
            exact = float(x.astype(np.float64) @ y.astype(np.float64))
            assert abs(a - exact) <= 1e-5 * np.abs(x).dot(np.abs(y.astype(np.float64))) + 1e-30


@njit(cache=True)
def _exps(x, out):
    for i in range(x.shape[0]):
        out[i] = v_expf(x[i])


def test_ggml_expf_is_within_two_ulp_of_exp():
    x = np.linspace(-87, 88, 200001).astype(np.float32)
    out = np.zeros_like(x)
    _exps(x, out)
    ref = np.exp(x.astype(np.float64))
    assert np.all(np.abs(out - ref) <= 2.5e-7 * ref)
    big = np.array([-np.inf, -200.0, 100.0], np.float32)
    out = np.zeros_like(big)
    _exps(big, out)
    assert out[0] == 0 and out[1] == 0 and np.isinf(out[2])


def test_rms_norm_matches_float64():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 576)).astype(np.float32)
    w = rng.standard_normal(576).astype(np.float32)
    out = np.zeros_like(x)
    ops.rms_norm(x, w, np.float32(1e-5), out)
    ref = x / np.sqrt((x.astype(np.float64) ** 2).mean(axis=1, keepdims=True) + 1e-5) * w
    assert np.allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_attention_does_not_depend_on_batching_or_leftover_cache(tmp_path):
    """Heads narrower than 32 (leftover elements): the same logits one token at a time, in a
    batch, and after a reset over a cache holding other values."""
    from llamacli.model.transformer import load_model
    from synthetic import write_tiny_llama

    path = write_tiny_llama(tmp_path / "h16.gguf", n_embd=64, n_head=4, n_head_kv=2)  # head_dim 16
    m = load_model(path, n_ctx=64, n_batch=64, n_threads=1)
    toks = [5, 9, 200, 31, 7, 7, 100, 3]
    one = np.stack([m.eval([t])[0].copy() for t in toks])
    m.state.reset()
    m.eval([11, 12, 13, 14, 15, 16, 17, 18, 19])
    m.state.reset()
    batch = m.eval(toks, want="all")
    assert np.array_equal(one, batch)


@njit(cache=True)
def _attention_full_rows(q, cache_k, cache_vt, pos, n_kv, scale, window, out):
    """The slow twin of ops.attention: llama.cpp's non-flash path as written, one query at a
    time over the whole row of n_kv keys (masked ones too) with the portable scalar dot_f16,
    scalar v_expf, and the V dot over the full row padded to 32."""
    T, H, D = q.shape
    group = H // (cache_k.shape[1] // D)
    n8 = (n_kv + 7) // 8 * 8
    n32 = (n_kv + 31) // 32 * 32
    s = np.zeros(n32, np.float32)
    acc = np.zeros(32, np.float32)
    for h in range(H):
        g = h // group
        for t in range(T):
            p = pos[t]
            mx = -np.inf
            for j in range(n32):
                s[j] = -np.inf
            for j in range(n_kv):
                if j <= p and not (window > 0 and p - j >= window):
                    s[j] = ops.dot_f16(q[t, h], cache_k[j, g * D:(g + 1) * D], D, acc) * scale
                    mx = max(mx, s[j])
            total = 0.0
            for j in range(0, n8, 8):
                e = np.zeros(8, np.float32)
                for l in range(8):
                    e[l] = v_expf(s[j + l] - mx)
                    s[j + l] = e[l]
                total += np.float64(((e[4] + e[0]) + (e[6] + e[2])) + ((e[5] + e[1]) + (e[7] + e[3])))
            inv = np.float32(1.0 / total)
            for j in range(n8):
                s[j] = f16_round(s[j] * inv)
            for j in range(n8, n32):
                s[j] = 0.0
            for i in range(D):
                out[t, h * D + i] = ops.dot_f16(s, cache_vt[g * D + i], n32, acc)


@pytest.mark.parametrize("D,H,HKV,T,past,window", [(64, 9, 3, 70, 0, 0), (64, 4, 4, 1, 45, 0), (256, 4, 1, 40, 9, 0),
                                                   (80, 2, 1, 33, 20, 16), (16, 4, 2, 5, 3, 0), (64, 2, 2, 37, 60, 40)])
def test_attention_is_bit_identical_to_the_full_row_twin(D, H, HKV, T, past, window):
    """Computing only the keys a query sees, in vectorised IR, gives exactly the bits of the
    whole masked row; and it is close to softmax attention in float64."""
    rng = np.random.default_rng(D + T)
    n_kv = past + T
    n_ctx = n_kv + 7
    k = rng.standard_normal((n_kv, HKV * D)).astype(np.float32)
    v = rng.standard_normal((n_kv, HKV * D)).astype(np.float32)
    ck = rng.integers(0, 0x7BFF, (n_ctx, HKV * D)).astype(np.uint16)  # stale entries past n_kv
    cvt = rng.integers(0, 0x7BFF, (HKV * D, (n_ctx + 31) // 32 * 32)).astype(np.uint16)
    ops.store_kv(k, v, ck, cvt, 0)
    q = rng.standard_normal((T, H, D)).astype(np.float16).astype(np.float32)
    pos = np.arange(past, n_kv, dtype=np.int64)
    scale = np.float32(1 / np.sqrt(D))
    fast = np.full((T, H * D), np.nan, np.float32)
    ops.attention(q, ck, cvt, pos, n_kv, scale, window, 0.0, np.zeros(0, np.float32), np.zeros((numba.config.NUMBA_NUM_THREADS, n_ctx + 64),
                                                                         np.float32), fast)
    slow = np.full((T, H * D), np.nan, np.float32)
    _attention_full_rows(q, ck, cvt, pos, n_kv, scale, window, slow)
    assert np.array_equal(fast.view(np.uint32), slow.view(np.uint32))
    kf = ck[:n_kv].view(np.float16).astype(np.float64).reshape(n_kv, HKV, D)
    vf = cvt[:, :n_kv].view(np.float16).astype(np.float64).T.reshape(n_kv, HKV, D)
    for t in range(T):
        for h in range(H):
            g = h // (H // HKV)
            sc = kf[:, g] @ q[t, h].astype(np.float64) * float(scale)
            j = np.arange(n_kv)
            sc[(j > pos[t]) | ((window > 0) & (pos[t] - j >= window))] = -np.inf
            w = np.exp(sc - sc.max())
            ref = (w / w.sum()) @ vf[:, g]
            assert np.allclose(fast[t, h * D:(h + 1) * D], ref, rtol=0, atol=3e-3)


@njit(cache=True)
def _swiglu_scalar(gate, up, out):
    for t in range(gate.shape[0]):
        for i in range(gate.shape[1]):
            g = gate[t, i]
            out[t, i] = (g / (np.float32(1.0) + v_expf(np.float32(0.0) - g))) * up[t, i]


@pytest.mark.parametrize("T", [1, 7])
def test_swiglu_lanes_match_scalar_ggml_silu_and_float64(T):
    rng = np.random.default_rng(T)
    gate = (rng.standard_normal((T, 1536)) * 6).astype(np.float32)
    gate[0, :8] = [0.0, -0.0, 88.0, -88.0, 100.0, -100.0, 1e-30, -1e-30]
    up = rng.standard_normal((T, 1536)).astype(np.float32)
    fast, slow = np.zeros_like(gate), np.zeros_like(gate)
    ops.swiglu(gate, up, fast)
    _swiglu_scalar(gate, up, slow)
    assert np.array_equal(fast.view(np.uint32), slow.view(np.uint32))
    g = gate.astype(np.float64)
    assert np.allclose(fast, g / (1 + np.exp(-g)) * up, rtol=1e-6, atol=1e-30)
