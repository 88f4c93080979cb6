"""Every codec against llama.cpp's ggml_quantize_chunk, with and without importance weights.

tests/golden/codec_chunks.json holds, per type, each quantized row's hash as ggml writes it for
the rows and weights of codec_cases (scripts/make_codec_reference.py). A type ggml requires an
imatrix for must refuse to quantize without one. The quantized rows then decode as gguf-py's
dequantize does.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import quants as gq

import codec_cases
from llamacli.kernels.codec import CODECS

GOLDEN = json.loads((Path(__file__).parent / "golden/codec_chunks.json").read_text())


def _hashes(q: np.ndarray) -> list[str]:
    return [hashlib.sha256(r.tobytes()).hexdigest()[:16] for r in q]


@pytest.mark.parametrize("name", sorted(GOLDEN["types"]))
def test_quantize_chunk_is_ggml_s(name):
    qt = T[name]
    assert qt in CODECS, f"no codec for {name}"
    c = CODECS[qt]
    golden = GOLDEN["types"][name]
    for key, want in golden.items():
        case, kind = key.split("/")
        if not c.takes_weights:  # ggml's quantize_* ignores quant_weights for this type, so do we
            assert want == golden[f"{case}/none"], f"{name}: ggml uses the weights, the codec takes none"
            kind = "none"
        q = c.quantize(codec_cases.rows(case), 2, weights=codec_cases.weights(kind))
        got = _hashes(q)
        bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
        assert not bad, f"{name} {key}: rows {bad} differ from ggml_quantize_chunk"
    if c.requires_weights:
        with pytest.raises(ValueError, match="requires an importance matrix"):
            c.quantize(codec_cases.rows("gauss"), 2)


def _dequantize_ref(qt: T, q: np.ndarray) -> np.ndarray:
    if qt == T.Q1_0:  # not in gguf-py: fp16 d, then 128 sign bits (bit set: +d, clear: -d)
        blocks = q.reshape(-1, 18)
        d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
        bits = np.unpackbits(blocks[:, 2:], axis=1, bitorder="little").astype(np.float32)
        return ((2 * bits - 1) * d).reshape(q.shape[0], -1)
    return gq.dequantize(q, qt)


@pytest.mark.parametrize("name", sorted(GOLDEN["types"]))
def test_dequantize_is_gguf_py_s(name):
    qt = T[name]
    c = CODECS[qt]
    w = codec_cases.weights("imatrix")
    for case in codec_cases.CASES:
        q = c.quantize(codec_cases.rows(case), 2, weights=w if c.takes_weights else None)
        got = c.dequantize(q, 2)
        want = _dequantize_ref(qt, q).astype(np.float32)
        assert got.tobytes() == want.tobytes(), f"{name} {case}: dequantize differs"


def test_iq4_best_index_is_the_bisection():
    """best_index_int8 by table lookup against its slow twin, the bisection as ggml writes it,
    on random values and on every midpoint of the table and its float32 neighbours."""
    from llamacli.kernels.codec.iquants import UPPER_IQ4NL, best_index_int8, best_index_int8_slow
    from llamacli.kernels.grids import KVALUES_IQ4NL as v

    mids = (v[:-1].astype(np.float32) + v[1:]) / np.float32(2)
    xs = np.concatenate([np.random.default_rng(3).uniform(-140, 130, 4000).astype(np.float32), mids,
                         np.nextafter(mids, np.float32(-200)), np.nextafter(mids, np.float32(200)),
                         v.astype(np.float32), np.array([-0.0, 0.0, -1e-30, 127.5], np.float32)])
    got = [best_index_int8(v, UPPER_IQ4NL, x) for x in xs]
    want = [best_index_int8_slow(v, x) for x in xs]
    assert got == want
