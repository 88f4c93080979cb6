"""The float and legacy codecs against their slow twins (gguf.quants, which mirrors ggml's C),
the fp16 / bf16 conversions against NumPy, and the NaN / Inf policy.

Adversarial rows (zeros, constants, one huge value among tiny ones, subnormals, exact halves)
sit beside random ones; a ggml-faithful NumPy twin covers the cases gguf.quants does not
handle as C does (a scale whose inverse overflows).
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, quants
from gguf import GGMLQuantizationType as T

from llamacli.kernels.codec import CODECS, NonFiniteError, codec
from llamacli.kernels.codec import _bits
from llamacli.kernels.registry import weight_type

FLOATS = (T.F32, T.F16, T.BF16)
LEGACY = (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0)
KQUANTS = (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K)
ALL = FLOATS + LEGACY + KQUANTS
NE0 = 512  # two super-blocks, sixteen 32-blocks


def adversarial_rows(ne0: int = NE0, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = np.float32
    rows = {
        "normal": rng.standard_normal((8, ne0)) * rng.uniform(1e-3, 10, (8, 1)),
        "heavy_tails": rng.standard_t(2, (8, ne0)),
        "positive": np.abs(rng.standard_normal((4, ne0))),
        "negative": -np.abs(rng.standard_normal((4, ne0))),
        "zeros": np.zeros((2, ne0)),
        "constant": np.full((2, ne0), 0.37),
        "neg_constant": np.full((2, ne0), -2.5),
        "one_huge_among_tiny": np.where(np.arange(ne0) % 97 == 5, 1e4, 1e-6 * rng.standard_normal((4, ne0))),
        "subnormals": rng.standard_normal((4, ne0)) * 1e-40,
        "tiny": rng.standard_normal((4, ne0)) * 1e-12,
        "integers": rng.integers(-8, 8, (4, ne0)),
        "halves": rng.integers(-64, 64, (4, ne0)) * 0.5,
        "large": rng.standard_normal((4, ne0)) * 1e3,
        "sparse": np.where(rng.random((4, ne0)) < 0.05, rng.standard_normal((4, ne0)), 0.0),
    }
    return {k: np.ascontiguousarray(v, dtype=f) for k, v in rows.items()}


ROWS = adversarial_rows()


# -- fp16 / bf16 scalar conversions ----------------------------------------------------------------

@pytest.fixture(scope="module")
def f32_patterns() -> np.ndarray:
    """Float32 bit patterns around every fp16 boundary: normals, subnormals, halfway cases."""
    rng = np.random.default_rng(1)
    r = rng.integers(0, 2**32, 2_000_000, dtype=np.uint64).astype(np.uint32)
    # exact halfway points and their neighbours between consecutive fp16 values
    h = np.arange(0, 0x7C00, dtype=np.uint32)
    mids = ((h.astype(np.uint16).view(np.float16).astype(np.float64)
             + (h + 1).astype(np.uint16).view(np.float16).astype(np.float64)) / 2).astype(np.float32).view(np.uint32)
    edges = np.concatenate([mids, mids - 1, mids + 1])
    edges = np.concatenate([edges, edges | 0x80000000])
    return np.concatenate([r, edges])


@pytest.fixture(scope="module")
def scalar_kernels():
    from numba import njit

    @njit
    def to16(x, out):
        for i in range(x.size):
            out[i] = _bits.fp32_to_fp16(x[i])

    @njit
    def from16(h, out):
        for i in range(h.size):
            out[i] = _bits.fp16_to_fp32(h[i])

    @njit
    def near(x, out):
        for i in range(x.size):
            out[i] = _bits.nearest_int(x[i])

    return to16, from16, near


def test_fp32_to_fp16_is_round_to_nearest_even(f32_patterns, scalar_kernels):
    to16 = scalar_kernels[0]
    u = f32_patterns
    finite = (u & 0x7F800000) != 0x7F800000
    got = np.empty(u.size, dtype=np.int64)
    with np.errstate(over="ignore"):
        to16(u.view(np.float32), got)
        want = u.view(np.float32).astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(got[finite], want[finite])
    # NaN -> 0x7E00 with its sign, infinities stay infinities (ggml_compute_fp32_to_fp16)
    special = np.array([0x7FC00000, 0xFFC00001, 0x7F800000, 0xFF800000], dtype=np.uint32)
    to16(special.view(np.float32), out := np.empty(4, dtype=np.int64))
    assert out.tolist() == [0x7E00, 0xFE00, 0x7C00, 0xFC00]


def test_fp16_to_fp32_every_value(scalar_kernels):
    from16 = scalar_kernels[1]
    h = np.arange(65536, dtype=np.uint16)
    got = np.empty(65536, dtype=np.float32)
    from16(h, got)
    want = h.view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(got.view(np.uint32)[~np.isnan(want)], want.view(np.uint32)[~np.isnan(want)])
    assert np.isnan(got[np.isnan(want)]).all()


def test_nearest_int_rounds_half_to_even(scalar_kernels):
    near = scalar_kernels[2]
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49999997, 3.7, -3.7, 4194303.0], dtype=np.float32)
    out = np.empty(x.size, dtype=np.int64)
    near(x, out)
    assert out.tolist() == [0, 2, 2, 0, -2, 0, 4, -4, 4194303]


# -- round trips and slow twins ----------------------------------------------------------------------

@pytest.mark.parametrize("qt", ALL, ids=lambda t: t.name)
def test_registry_geometry_from_gguf_constants(qt):
    c = CODECS[qt]
    assert (c.block_size, c.type_size) == GGML_QUANT_SIZES[qt]
    assert weight_type(qt).codec is c
    assert c.row_bytes(NE0) == NE0 // c.block_size * c.type_size


def test_unknown_type_is_an_error_naming_it():
    # Q8_K is the K-quants' activation type: llama-quantize writes no weights in it
    with pytest.raises(KeyError, match="Q8_K"):
        codec(T.Q8_K)


@pytest.mark.parametrize("qt", FLOATS + LEGACY, ids=lambda t: t.name)
@pytest.mark.parametrize("case", sorted(ROWS))
def test_quantize_matches_gguf_quants(qt, case):
    x = ROWS[case]
    ours = CODECS[qt].quantize(x, nthreads=2)
    with np.errstate(all="ignore"):
        want = legacy_twin(x, qt) if case == "subnormals" else quants.quantize(x, qt).view(np.uint8)
    np.testing.assert_array_equal(ours, want.reshape(ours.shape))


@pytest.mark.parametrize("qt", ALL, ids=lambda t: t.name)
def test_dequantize_matches_gguf_quants(qt):
    rng = np.random.default_rng(7)
    c = CODECS[qt]
    # random bytes with finite fp16 scales: quantize random data, then scramble the quants
    q = c.quantize(ROWS["normal"], nthreads=2)
    noise = rng.integers(0, 256, q.shape, dtype=np.uint8)
    if qt in LEGACY + KQUANTS:
        keep = _scale_mask(qt, q.shape[1])
        q = np.where(keep, q, noise)
    got = c.dequantize(q, nthreads=2)
    want = quants.dequantize(q, qt).astype(np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), want.reshape(got.shape).view(np.uint32))


def _scale_mask(qt, row_bytes) -> np.ndarray:
    """True on the bytes of fp16 scales (kept finite), False on quants and sub-scales."""
    from llamacli.kernels.codec import kquants as K

    block, ts = GGML_QUANT_SIZES[qt]
    offs = {T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q8_0: (0,),
            T.Q2_K: (K.Q2_D, K.Q2_DMIN), T.Q3_K: (K.Q3_D,), T.Q4_K: (K.Q4_D, K.Q4_DMIN),
            T.Q5_K: (K.Q5_D, K.Q5_DMIN), T.Q6_K: (K.Q6_D,)}[qt]
    m = np.zeros(ts, dtype=bool)
    for o in offs:
        m[o:o + 2] = True
    return np.tile(m, row_bytes // ts)[None, :]


@pytest.mark.parametrize("qt", ALL, ids=lambda t: t.name)
def test_round_trip_error_is_bounded(qt):
    x = ROWS["normal"]
    c = CODECS[qt]
    y = c.dequantize(c.quantize(x, nthreads=1), nthreads=1)
    bits = {T.F32: 24, T.F16: 11, T.BF16: 8, T.Q8_0: 7, T.Q6_K: 5, T.Q5_0: 4, T.Q5_1: 4, T.Q5_K: 4,
            T.Q4_0: 3, T.Q4_1: 3, T.Q4_K: 3, T.Q3_K: 2, T.Q2_K: 1}[qt]
    err = np.abs(y - x).max(axis=1) / np.abs(x).max(axis=1)
    assert (err <= 2.0 ** -bits * 1.01).all(), err


@pytest.mark.parametrize("qt", ALL, ids=lambda t: t.name)
def test_threads_do_not_change_bytes(qt):
    x = ROWS["heavy_tails"]
    c = CODECS[qt]
    assert np.array_equal(c.quantize(x, nthreads=1), c.quantize(x, nthreads=2))


# -- NaN / Inf policy ---------------------------------------------------------------------------------

@pytest.mark.parametrize("qt", ALL, ids=lambda t: t.name)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused(qt, bad):
    x = ROWS["normal"].copy()
    x[3, 100] = bad
    with pytest.raises(NonFiniteError, match="row 3"):
        CODECS[qt].quantize(x)


@pytest.mark.parametrize("qt", (T.F16,) + LEGACY + KQUANTS, ids=lambda t: t.name)
def test_overflowing_scale_fails_validation(qt):
    """A finite value too large for an fp16 scale gives Inf: llama.cpp's ggml_validate_row_data
    rejects the result, and so does Codec.validate."""
    x = ROWS["normal"].copy()
    x[2, 7] = 1e10  # finite, but every scale derived from it overflows fp16
    q = CODECS[qt].quantize(x)
    assert CODECS[qt].validate(q) == 2
    assert CODECS[qt].validate(CODECS[qt].quantize(ROWS["normal"])) == -1


def test_wrong_row_length_is_refused():
    with pytest.raises(ValueError, match="not a multiple of 256"):
        CODECS[T.Q4_K].quantize(np.zeros((2, 576), dtype=np.float32))
    with pytest.raises(TypeError, match="float32"):
        CODECS[T.Q8_0].quantize(np.zeros((2, 64), dtype=np.float64))


# -- a ggml-faithful twin of the legacy quantizers (x86 semantics for an infinite inverse scale) ----

def _c_f2i(v: np.ndarray) -> np.ndarray:
    """C float -> int on x86: truncation; NaN or out of int32 range -> INT_MIN."""
    ok = (v > -2147483649.0) & (v < 2147483648.0)
    return np.where(ok, np.trunc(np.where(ok, v, 0)), -2147483648).astype(np.int64)


def _i8(i):
    return ((i & 0xFF) ^ 0x80) - 0x80


def _f16(v) -> np.ndarray:
    return np.asarray(v, dtype=np.float32).astype(np.float16).view(np.uint8).reshape(-1, 2)


def legacy_twin(x: np.ndarray, qt) -> np.ndarray:
    """quantize_row_{q4_0,q4_1,q5_0,q5_1,q8_0}_ref over all blocks at once."""
    f = np.float32
    qk, ts = GGML_QUANT_SIZES[qt]
    b = x.reshape(-1, qk)
    if qt in (T.F32, T.F16, T.BF16):
        return quants.quantize(x, qt).view(np.uint8)
    if qt in (T.Q4_0, T.Q5_0, T.Q8_0):
        idx = np.argmax(np.abs(b), axis=1)  # the first largest |x| (C keeps the first on ties)
        vmax = b[np.arange(len(b)), idx]
        if qt == T.Q8_0:
            d = (np.abs(vmax) / f(127)).astype(f)
        else:
            d = (vmax / f(-8 if qt == T.Q4_0 else -16)).astype(f)
        idv = np.where(d != 0, f(1) / np.where(d != 0, d, f(1)), f(0)).astype(f)
        idv[(d != 0) & ~np.isfinite(f(1) / np.where(d != 0, d, f(1)))] = np.inf
        v = (b * idv[:, None]).astype(f)
        if qt == T.Q8_0:
            r = np.where(np.abs(v) < 8388608, np.trunc(v) + np.where(np.abs(v - np.trunc(v)) >= 0.5,
                                                                          np.sign(v), 0), v)
            qs = (_c_f2i(r) & 0xFF).astype(np.uint8)
            return np.concatenate([_f16(d), qs], axis=1).reshape(x.shape[0], -1)
        lim, off = (15, f(8.5)) if qt == T.Q4_0 else (31, f(16.5))
        L = np.minimum(lim, _i8(_c_f2i((v + off).astype(f))))
    else:
        vmin, vmax = b.min(axis=1), b.max(axis=1)
        lim = 15 if qt == T.Q4_1 else 31
        d = ((vmax - vmin) / f(lim)).astype(f)
        with np.errstate(divide="ignore"):
            idv = np.where(d != 0, f(1) / d, f(0)).astype(f)
        v = ((b - vmin[:, None]) * idv[:, None]).astype(f)
        L = _c_f2i((v + f(0.5)).astype(f))
        L = np.minimum(lim, _i8(L)) if qt == T.Q4_1 else L & 0xFF
    L = L & 0xFF
    lo, hi = L[:, :qk // 2], L[:, qk // 2:]
    qs = ((lo & 0xF) | ((hi & 0xF) << 4)).astype(np.uint8)
    parts = [_f16(d)]
    if qt in (T.Q4_1, T.Q5_1):
        parts.append(_f16(vmin))
    if qt in (T.Q5_0, T.Q5_1):
        bits = np.concatenate([(lo >> 4) & 1, (hi >> 4) & 1], axis=1).astype(np.uint64)
        qh = (bits << np.arange(qk, dtype=np.uint64)).sum(axis=1).astype("<u4")
        parts.append(qh.view(np.uint8).reshape(-1, 4))
    parts.append(qs)
    return np.concatenate(parts, axis=1).reshape(x.shape[0], -1)


@pytest.mark.parametrize("qt", LEGACY, ids=lambda t: t.name)
@pytest.mark.parametrize("case", sorted(ROWS))
def test_legacy_twin_agrees(qt, case):
    """The twin itself agrees with gguf.quants wherever gguf.quants follows C."""
    x = ROWS[case]
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(CODECS[qt].quantize(x), legacy_twin(x, qt))
