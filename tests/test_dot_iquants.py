"""The i-quant, ternary, NVFP4 and Q1_0 dot kernels: bit for bit against ggml's own vec_dot
(golden data of scripts/make_iquant_dot_reference.py, recorded from the AVX2, AVX-512 and
native builds, which agree), and against a float64 twin of gguf-py's dequantization."""

import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from llamacli.kernels.dot import DOTS, Activation
from llamacli.kernels.dot import amx, iquants
from llamacli.kernels.registry import weight_type

import naive
from iquant_blocks import TYPES, make_case

GOLDEN = json.loads((Path(__file__).parent / "golden" / "iquant_dots.json").read_text())


def test_golden_covers_every_type_and_builds_agree():
    assert sorted(GOLDEN["cases"]) == sorted(t.name for t in TYPES)
    for build, agreed in GOLDEN["builds_agree"].items():
        assert sorted(agreed) == sorted(t.name for t in TYPES), build


def _matmul(dot, W, qda, tokens):
    q, d, aux = (a[:tokens] for a in qda)
    out = np.full((tokens, W.shape[0]), np.nan, np.float32)
    scratch = np.zeros((64, 64), np.float32)
    dot.matmul(W, q, d, aux, out, scratch)
    return out


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_bits_equal_ggml(qtype):
    c = {k: v for k, v in GOLDEN["cases"][qtype.name].items() if k != "out_bits"}
    W, _, _, qda = make_case(qtype, **c)
    want = np.array(GOLDEN["cases"][qtype.name]["out_bits"], np.uint32)
    dot = weight_type(qtype).dot
    assert dot.act == ("q8_0" if qtype in (T.IQ4_NL, T.NVFP4, T.Q1_0) else "q8_K")
    got = _matmul(dot, W, qda, c["tokens"])  # a batch of tokens
    np.testing.assert_array_equal(got.view(np.uint32), want)
    one = _matmul(dot, W, qda, 1)  # and one alone (the decode path)
    np.testing.assert_array_equal(one.view(np.uint32), want[:1])


def _q1_0_weights(rows):
    b = rows.reshape(rows.shape[0], -1, 18)
    d = b[:, :, :2].copy().view(np.float16).astype(np.float64)  # (R, nb, 1)
    bits = np.unpackbits(b[:, :, 2:], axis=2, bitorder="little").astype(np.float64) * 2 - 1
    return (bits * d).reshape(rows.shape[0], -1)


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_close_to_dequantized_twin(qtype):
    """What the integer lanes compute is the dot of gguf-py's dequantized weights."""
    c = {k: v for k, v in GOLDEN["cases"][qtype.name].items() if k != "out_bits"}
    W, _, x, qda = make_case(qtype, **c)
    got = _matmul(DOTS[qtype], W, qda, c["tokens"])
    w = _q1_0_weights(W) if qtype == T.Q1_0 else naive.weights_f64(qtype, W)
    q, d, _ = qda
    block = 32 if DOTS[qtype].act == "q8_0" else 256
    xd = q.astype(np.float64) * np.repeat(d.astype(np.float64), block, axis=1)
    want = xd @ w.T
    scale = np.abs(xd) @ np.abs(w).T
    assert np.all(np.abs(got - want) <= 1e-5 * scale + 1e-30), qtype.name


def test_repacked_iq4_nl_and_amx_chains():
    """IQ4_NL with a row count divisible by 8 (ggml repacks it: one fma chain a row) and the AMX
    buffer's IQ4_XS and Q5_K kernels stay within rounding of the dequantized twin, and differ
    from the lane kernels only by rounding."""
    rng = np.random.default_rng(5)
    for qtype, kernel in ((T.IQ4_NL, iquants.matmul_iq4_nl), (T.IQ4_XS, iquants.matmul_iq4_xs_amx),
                          (T.Q5_K, amx.matmul_q5_K)):
        W = naive.random_rows(qtype, 16, 512, rng)
        x = rng.standard_normal((2, 512)).astype(np.float32)
        act = Activation(DOTS[qtype].act, 512, 2)
        act.load(x)
        out = np.zeros((2, 16), np.float32)
        q, d, aux = act._rows(2)
        kernel(W, q, d, aux, out, act.scratch)
        want = naive.matmul(qtype, W, x, DOTS[qtype].act)
        scale = np.abs(naive.weights_f64(qtype, W)).sum(axis=1)[None, :] * np.abs(x).max(axis=1)[:, None]
        assert np.all(np.abs(out - want) <= 2e-6 * scale), qtype.name
