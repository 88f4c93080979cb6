"""Architectures and weight mixes with no real file here, against llama.cpp's logits for tiny
random models (tests/synthetic.py; golden data from scripts/make_synthetic_reference.py):
qwen2 (q/k/v biases, NeoX RoPE) and a llama with an untied K-quant output."""

import hashlib

import numpy as np
import pytest

from llamacli.model.config import config_from_gguf
from llamacli.model.transformer import load_model

from golden_metrics import kl_topk, row_hashes
from synthetic import SYNTHETIC_MODELS, synthetic_tokens, write_synthetic


@pytest.fixture(scope="module", params=list(SYNTHETIC_MODELS))
def case(request, tmp_path_factory, golden):
    name = request.param
    ref = np.load(golden / "synthetic" / f"{name}.npz")
    path = write_synthetic(name, tmp_path_factory.mktemp(name) / f"{name}.gguf")
    # the golden logits belong to exactly this file
    assert hashlib.sha256(path.read_bytes()).hexdigest() == str(ref["gguf_sha256"]), name
    assert ref["tokens"].tolist() == synthetic_tokens(name)
    return name, path, ref


def test_logits_match_llamacpp(case):
    name, path, ref = case
    m = load_model(path, n_ctx=256, n_batch=256, n_threads=2)
    ours = np.stack([m.eval([int(t)])[0].copy() for t in ref["tokens"]])
    want = ref["logits"]
    top = np.argsort(-want, axis=1)[:, :64]
    lse = np.log(np.exp(want.astype(np.float64)).sum(axis=1))
    kl = kl_topk(top, np.take_along_axis(want, top, axis=1), lse, ours)
    top1 = (ours.argmax(axis=1) == want.argmax(axis=1)).mean()
    identical = (np.array(row_hashes(ours)) == np.array(row_hashes(want))).sum()
    print(f"{name}: mean KL {kl.mean():.3g}, top-1 {top1:.4f}, bit-identical rows {identical}/{len(ours)}")
    assert kl.mean() <= 2e-3
    assert top1 >= 0.95
    # Q4_K (repacked gemv and vec_dot), Q6_K, Q5_0, Q8_0 all follow ggml's AVX2 float order
    assert identical >= 0.95 * len(ours)


def test_qwen2_graph_pieces(tmp_path):
    path = write_synthetic("qwen2", tmp_path / "q.gguf")
    m = load_model(path, n_ctx=64, n_batch=8, n_threads=1)
    assert m.cfg.rope_neox and m.cfg.arch == "qwen2"
    assert all(L.bq is not None and L.bk is not None and L.bv is not None for L in m.weights.layers)
    cfg = config_from_gguf(m.gguf)
    assert cfg.attn_scale == np.float32(1) / np.float32(8)  # 1/sqrtf(head_dim 64)
