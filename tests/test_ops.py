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
    for n in (32, 64, 256, 1024):
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
