"""The differential test: every tiny family model (tests/families.py) against llama.cpp loading
the very same file with flash attention on, one token at a time and as prompt batches of 64 and
6 rows, against the AVX2 build and the native AVX-512 build, each at its CPU level
(tests/golden/differential.json, scripts/make_differential_reference.py). All paths: the three
flash-attention kernels, the decode dots, the repacked Q4_K gemm and gemv, the tiled Q6_K matmul,
tinyBLAS for F32 and F16 weights, the expert matmuls and their routing.

Measured when the golden data was made (2026-12-03), and asserted here: all 3 runs x 2 builds
bit-identical for all thirteen families. The mixtures of experts needed llamafile's tinyBLAS for
their F32 routers in batches (before it, olmoe's AVX2 batch_64 matched on 38/64 rows, llama_moe's
17/64, gpt_oss's 12/64) and the AVX-512 build's softmax for their routing weights (olmoe's
AVX-512 decode: 25/64, llama_moe's: 58/64)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from families import FAMILY_MODELS, family_tokens, write_family
from llamacli.model.transformer import load_model

GOLDEN = json.loads((Path(__file__).parent / "golden" / "differential.json").read_text())
CASES = [(name, level, run) for name in FAMILY_MODELS for level in ("avx2", "avx512") for run in GOLDEN["runs"]]


@pytest.fixture(scope="module")
def family_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("differential")
    return {name: write_family(name, d / f"{name}.gguf") for name in FAMILY_MODELS}


@pytest.mark.parametrize("name,level,run", CASES)
def test_family_rows_bit_identical_to_llama_cpp(name, level, run, family_files):
    path = family_files[name]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == GOLDEN["models"][name]["gguf_sha256"]
    n = GOLDEN["runs"][run]
    toks = family_tokens(name)[:n]
    m = load_model(path, n_ctx=4096, n_batch=512, n_threads=2, cpu_level=level, flash_attn="on")
    rows = [m.eval([t])[0].copy() for t in toks] if run == "decode" else list(m.eval(toks, want="all"))
    ours = [hashlib.sha256(np.ascontiguousarray(r).tobytes()).hexdigest()[:16] for r in rows]
    same = sum(a == b for a, b in zip(ours, GOLDEN["models"][name][level][run]))
    assert same == n, f"{name} {level} {run}: {same}/{n} rows identical"
