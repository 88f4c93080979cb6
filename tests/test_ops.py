"""Transformer ops against slow twins."""

import numpy as np
from numba import njit

from llamacli.kernels import ops
from llamacli.kernels.simd import v_expf


@njit(cache=True)
def _both_dots(x, y, n, acc):
    return ops.dot_f16(x, y, n, acc), ops.dot_f16_avx(x, y, n)


def test_f16_dot_avx_is_bit_identical_to_portable_and_close_to_float64():
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
