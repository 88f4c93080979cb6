"""Every dot kernel against its slow NumPy twin (tests/naive.py)."""

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from llamacli.kernels.dot import DOTS, Activation

import naive

TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
         T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]


def _run(qtype, rows, x):
    dot = DOTS[qtype]
    act = Activation(dot.act, x.shape[1], x.shape[0])
    act.load(x)
    out = np.full((x.shape[0], rows.shape[0]), np.nan, np.float32)
    act.matmul(dot, rows, out)
    return out


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("shape", [(7, 512, 1), (33, 768, 3), (1, 256, 5)])
def test_matmul_matches_twin(qtype, shape):
    R, n, ntok = shape
    rng = np.random.default_rng(hash((qtype.value, shape)) % 2**32)
    rows = naive.random_rows(qtype, R, n, rng)
    x = (rng.standard_normal((ntok, n)) * rng.choice([1e-3, 1.0, 50.0], size=(ntok, 1))).astype(np.float32)
    got = _run(qtype, rows, x)
    want = naive.matmul(qtype, rows, x, DOTS[qtype].act)
    scale = np.abs(naive.weights_f64(qtype, rows)).sum(axis=1)[None, :] * np.abs(x).max(axis=1)[:, None]
    assert np.all(np.abs(got - want) <= 2e-6 * scale + 1e-30), qtype.name


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_edge_rows(qtype):
    """Zero activations, constant activations, one huge value among tiny ones."""
    rng = np.random.default_rng(7)
    n = 512
    rows = naive.random_rows(qtype, 5, n, rng)
    x = np.zeros((4, n), np.float32)
    x[1] = 0.25
    x[2] = rng.standard_normal(n).astype(np.float32) * 1e-6
    x[2, 100] = 1e4
    x[3] = -3.0
    got = _run(qtype, rows, x)
    want = naive.matmul(qtype, rows, x, DOTS[qtype].act)
    assert np.all(got[0] == 0)
    scale = np.abs(naive.weights_f64(qtype, rows)).sum(axis=1)[None, :] * np.abs(x).max(axis=1)[:, None]
    assert np.all(np.abs(got - want) <= 2e-6 * scale + 1e-30), qtype.name


def test_activation_quantizers_match_twin():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 512)) * 4).astype(np.float32)
    x[1, :32] = 0  # a zero block
    for kind in ("q8_0", "q8_1", "q8_K"):
        act = Activation(kind, 512, 3)
        act.load(x)
        q, d, aux = naive.quantize_act(x, kind)
        assert np.array_equal(act.q, q), kind
        assert np.array_equal(act.d, d), kind
        if kind != "q8_0":
            assert np.array_equal(act.aux, aux), kind


@pytest.mark.parametrize("name,n_rows", [("q4_0", 37), ("q4_0", 40), ("q4_1", 37), ("q5_0", 37), ("q5_1", 37), ("q8_0", 37),
                                         ("q6_K", 37), ("q4_K", 40), ("q4_K", 37)])
def test_avx2_kernels_bit_identical_to_portable(name, n_rows):
    """The AVX2 intrinsics kernels and the portable lane kernels compute the same bits (Q4_0 and
    Q4_K: 40 rows take the repacked-gemv order, 37 rows vec_dot's)."""
    from llamacli.kernels.dot import kquants, legacy, matmul
    if not matmul.HAS_AVX2:
        pytest.fail("this machine kind has AVX2; the fast kernels must be exercised")
    from llamacli.kernels.dot import kquants_avx2, legacy_avx2
    portable, fast = (kquants, kquants_avx2) if name.endswith("K") else (legacy, legacy_avx2)
    qtype = T[name.upper()]
    rng = np.random.default_rng(11)
    rows = naive.random_rows(qtype, n_rows, 1024, rng)
    for n_tok in (7, 3, 1):  # four + two + one a pass (prompt batches); two + one; decode
        x = (rng.standard_normal((n_tok, 1024)) * 2).astype(np.float32)
        act = Activation(DOTS[qtype].act, 1024, n_tok)
        act.load(x)
        a = np.zeros((n_tok, n_rows), np.float32)
        b = np.ones((n_tok, n_rows), np.float32)
        getattr(portable, f"matmul_{name}")(rows, act.q, act.d, act.aux, a, act.scratch)
        getattr(fast, f"matmul_{name}")(rows, act.q, act.d, act.aux, b, act.scratch)
        assert np.array_equal(a, b), n_tok


def _tinyblas_twin(w, x, lanes):
    """llamafile's tinyBLAS gemm_bloc for float weights, in NumPy: lane j of each output sums
    fma(w[l + j], x[l + j]) over l in steps of `lanes` (the fma as one float64 product-sum,
    rounded once to float32), then hsum: 16 lanes fold their halves first, 8 lanes go
    (0..3 + 4..7), then (0 + 2) + (1 + 3)."""
    T, R = x.shape[0], w.shape[0]
    acc = np.zeros((T, R, lanes), np.float32)
    for l in range(0, w.shape[1], lanes):
        prod = x[:, None, l:l + lanes].astype(np.float64) * w[None, :, l:l + lanes].astype(np.float64)
        acc = (prod + acc).astype(np.float32)
    if lanes == 16:
        acc = acc[..., 8:] + acc[..., :8]
    r = acc[..., 4:] + acc[..., :4]
    return (r[..., 0] + r[..., 2]) + (r[..., 1] + r[..., 3])


@pytest.mark.parametrize("qtype", [T.F32, T.F16], ids=lambda t: t.name)
@pytest.mark.parametrize("wide", [False, True], ids=["avx2", "avx512"])
def test_float_batches_take_tinyblas_order(qtype, wide):
    """A plain matmul of F32 / F16 weights over two or more tokens is llamafile_sgemm's when the
    rows are a multiple of 4 and the width of its vector (8 / 16 floats): bit for bit against
    the twin. Where tinyBLAS declines (one token, 6 rows, a width of 8 on AVX-512), the vector
    dot of the expert path (ID_DOTS: mul_mat_id never takes tinyBLAS) gives the same bits."""
    from llamacli.kernels.dot import matmul

    lanes = 16 if wide else 8
    dot = (matmul.WIDE_DOTS if wide else matmul.DOTS)[qtype]
    plain = (matmul.WIDE_ID_DOTS if wide else matmul.ID_DOTS)[qtype]
    rng = np.random.default_rng(5)
    for R, n, ntok, takes in ((12, 96, 5, True), (8, 64, 2, True), (8, 64, 1, False), (6, 64, 3, False),
                              (8, 72, 3, not wide)):
        rows = naive.random_rows(qtype, R, n, rng)
        x = rng.standard_normal((ntok, n)).astype(np.float32)
        act = Activation(dot.act, n, ntok)
        act.load(x)
        got = np.full((ntok, R), np.nan, np.float32)
        act.matmul(dot, rows, got)
        alone = np.full((ntok, R), np.nan, np.float32)
        act.matmul(plain, rows, alone)
        if takes:
            w = naive.weights_f64(qtype, rows).astype(np.float32)
            assert np.array_equal(got, _tinyblas_twin(w, act.x[:ntok], lanes)), (R, n, ntok)
            assert not np.array_equal(got, alone), (R, n, ntok)  # another order, other bits
        else:
            assert np.array_equal(got, alone), (R, n, ntok)
