"""Every tensor of every mixture, byte for byte against llama.cpp (tests/golden/quant/*.json).

The golden files hold llama.cpp's own results (scripts/make_quant_reference.py): its F16
requantization of each real model, then that F16 quantized to every target type. Here the F16
file is made by *our* requantizer from the cached real model and must already match; then every
target is made from it and compared tensor by tensor (and as a whole file).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from gguf import GGMLQuantizationType

from llamacli.errors import LlamacliError
from llamacli.model.transformer import load_model
from llamacli.quantize import ggml_type_name, make_f16, quantize_file
from llamacli.quantize.scan import ScannedGGUF

from golden_metrics import kl_topk, row_hashes


MODELS = ("smollm2", "gemma3")


def _golden(golden, model: str) -> dict:
    path = golden / "quant" / f"{model}.json"
    return json.loads(path.read_text())


def _hashes(path) -> tuple[list[str], list[str]]:
    g = ScannedGGUF(path)
    names, hashes = [], []
    for v in g.tensors.values():  # file order
        names.append(v.name)
        hashes.append(f"{ggml_type_name(v.qtype)}:{hashlib.sha256(v.data).hexdigest()[:16]}")
    return names, hashes


def _file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def _compare(path, names: list[str], want: dict) -> None:
    """Identical files have identical tensors (names, order, types, bytes): one hash pass
    suffices. Otherwise hash tensor by tensor to name the ones that differ."""
    if _file_sha256(path) == want["file_sha256"]:
        return
    got_names, got = _hashes(path)
    assert got_names == names, "tensor order differs from llama.cpp's"
    bad = [f"{n}: ours {g}, llama.cpp {w}" for n, g, w in zip(names, got, want["tensors"]) if g != w]
    assert not bad, f"{len(bad)} of {len(names)} tensors differ:\n" + "\n".join(bad[:20])
    assert _file_sha256(path) == want["file_sha256"], "tensors match but the file bytes (metadata) differ"


class _F16Files:
    """Our F16 requantization of each real model, made once per session on first use."""

    def __init__(self, sources, tmpdir, golden):
        self.sources, self.tmpdir, self.golden, self.made = sources, tmpdir, golden, {}

    def __getitem__(self, model: str):
        if model not in self.made:
            doc = _golden(self.golden, model)
            src = self.sources[model]
            assert _file_sha256(src) == doc["source_sha256"], f"{src} is not the file the golden data came from"
            self.made[model] = make_f16(src, self.tmpdir / doc["f16_file"], nthreads=2)
        return self.made[model]


@pytest.fixture(scope="session")
def f16_files(smollm2_path, gemma3_path, tmp_path_factory, golden):
    return _F16Files({"smollm2": smollm2_path, "gemma3": gemma3_path}, tmp_path_factory.mktemp("f16"), golden)


@pytest.mark.parametrize("model", MODELS)
def test_f16_requantization_matches_llama_cpp(model, f16_files, golden):
    doc = _golden(golden, model)
    _compare(f16_files[model], doc["names"], doc["f16"])


# every mixture llama-quantize offers that this tool writes (the _M aliases Q3_K, Q4_K, Q5_K aside)
TARGETS = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L",
           "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "F16", "BF16", "F32", "MXFP4_MOE")


@pytest.mark.parametrize("model,target", [(m, t) for m in MODELS for t in TARGETS])
def test_every_tensor_matches_llama_cpp(model, target, f16_files, golden, tmp_path):
    doc = _golden(golden, model)
    want = doc["targets"][target]
    out = tmp_path / f"{target}.gguf"
    if want.get("refused"):
        with pytest.raises(LlamacliError, match="requires an imatrix"):
            quantize_file(f16_files[model], out, target, nthreads=2, log=None)
        assert not out.exists()
        assert list(tmp_path.iterdir()) == []
        return
    try:
        quantize_file(f16_files[model], out, target, nthreads=2, log=None)
        _compare(out, doc["names"], want)
    finally:  # gigabytes of outputs would otherwise pile up as dirty pages until the session ends
        out.unlink(missing_ok=True)


def test_golden_covers_every_mixture(golden):
    from llamacli.quantize.plan import QUANT_OPTIONS

    # the i-quant and ternary mixtures: their plans (and files made with an imatrix) are in
    # quant/iquant_plans.json, tests/test_quantize_imatrix.py
    iq = set(json.loads((golden / "quant" / "iquant_plans.json").read_text())["ftypes"])
    assert set(TARGETS) | iq == set(QUANT_OPTIONS) - {"Q3_K", "Q4_K", "Q5_K"}
    for model in MODELS:
        assert set(_golden(golden, model)["targets"]) == set(TARGETS)


def test_smollm2_plan_falls_back_on_180_tensors(golden, f16_files):
    """576-wide rows are not a multiple of 256: llama.cpp's count for K-quants."""
    r = quantize_file(f16_files["smollm2"], None, "Q4_K_M", dry_run=True, log=None)
    assert r.plan.n_fallback == 180
    assert len(r.plan.tensors) == 272
    types = {tp.name: tp.dst_type for tp in r.plan.tensors}
    assert types["token_embd.weight"] == GGMLQuantizationType.Q8_0  # tied: output rules, 576 % 256


LOGIT_TYPES = ("Q4_0", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K")


@pytest.mark.parametrize("target", LOGIT_TYPES)
def test_quantized_model_logits_match_llama_cpp(target, f16_files, golden, tmp_path):
    """SmolLM2 quantized here to each type runs as llama.cpp runs the same file: every dot
    kernel on real weights, in ggml's AVX2 float order (for Q4_0 and Q4_K, the order of the
    repacked gemv ggml uses for them; in vec_dot's order the Q4_0 model's logits were off by a
    mean KL of 4e-3 with no row identical). scripts/make_quant_logits_reference.py."""
    ref = np.load(golden / "smollm2" / "quant_logits" / f"{target}.npz")
    out = tmp_path / f"{target}.gguf"
    quantize_file(f16_files["smollm2"], out, target, nthreads=2, log=None)
    assert _file_sha256(out) == str(ref["file_sha256"])  # the very file llama.cpp ran
    m = load_model(out, n_ctx=256, n_batch=256, n_threads=2)
    ours = np.stack([m.eval([int(t)])[0].copy() for t in ref["tokens"]])
    kl = kl_topk(ref["topk_ids"], ref["topk_logits"], ref["logsumexp"], ours)
    identical = (np.array(row_hashes(ours)) == ref["row_sha256"]).sum()
    print(f"SmolLM2 {target}: mean KL {kl.mean():.3g}, bit-identical rows {identical}/{len(ours)}")
    assert kl.mean() <= 2e-3
    assert identical >= 0.95 * len(ours)


# one SmolLM2 mixture per i-quant and ternary type (its ffn_down), and the three most published
# mixtures on Gemma-3
IMATRIX_LOGIT_TYPES = ("IQ4_NL", "IQ4_XS", "IQ3_S", "IQ3_XXS", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S",
                       "TQ1_0", "TQ2_0")
IMATRIX_LOGIT_CASES = [("smollm2", t) for t in IMATRIX_LOGIT_TYPES] + [("gemma3", t) for t in ("IQ4_XS", "IQ3_M", "IQ2_M")]


@pytest.mark.parametrize("model,target", IMATRIX_LOGIT_CASES)
def test_iquant_model_logits_match_llama_cpp(model, target, f16_files, golden, tmp_path, monkeypatch):
    """Each real model quantized here with the synthetic imatrix (tests/imatrix_synthetic.py) to
    an i-quant or ternary mixture is llama-quantize's file, and runs as llama.cpp runs it: the
    i-quant codecs and dot kernels end to end on real weights. SmolLM2's 576-wide and Gemma-3's
    640-wide rows fall back to IQ4_NL / Q4_0 / Q5_x / Q8_0 where 256 does not divide them; the
    down projections (1536, 2048) hold the type itself."""
    from imatrix_synthetic import write_model_imatrix

    ref = np.load(golden / model / "quant_logits" / f"{target}.npz")
    monkeypatch.chdir(tmp_path)  # the imatrix path, relative, is part of the file's metadata
    imx = f"{model}.imatrix.gguf"
    write_model_imatrix(tmp_path / imx, [(v.name, v.ne) for v in ScannedGGUF(f16_files[model]).tensors.values()])
    out = tmp_path / f"{target}.gguf"
    try:
        quantize_file(f16_files[model], out.name, target, nthreads=2, imatrix=imx, log=None)
        assert _file_sha256(out) == str(ref["file_sha256"])  # the very file llama.cpp ran
        m = load_model(out, n_ctx=256, n_batch=256, n_threads=2)
        ours = np.stack([m.eval([int(t)])[0].copy() for t in ref["tokens"]])
    finally:
        out.unlink(missing_ok=True)
    kl = kl_topk(ref["topk_ids"], ref["topk_logits"], ref["logsumexp"], ours)
    identical = (np.array(row_hashes(ours)) == ref["row_sha256"]).sum()
    print(f"{model} {target}: mean KL {kl.mean():.3g}, bit-identical rows {identical}/{len(ours)}")
    assert identical == len(ours)
