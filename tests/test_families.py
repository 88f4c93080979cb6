"""Families with no real file here, against llama.cpp loading the very same tiny random models
(tests/families.py; golden data from scripts/make_family_reference.py, llama.cpp's AVX2 build):
teacher-forced logits of its decode path, and llama-perplexity's running estimates."""

import hashlib
import json

import numpy as np
import pytest

from llamacli import perplexity as ppl
from llamacli.model.transformer import load_model
from llamacli.tokenizer import load_tokenizer

from families import FAMILY_MODELS, family_tokens, write_family
from golden_metrics import kl_topk


@pytest.fixture(scope="module", params=list(FAMILY_MODELS))
def case(request, tmp_path_factory, golden):
    name = request.param
    ref = json.loads((golden / "families" / f"{name}.json").read_text())
    path = write_family(name, tmp_path_factory.mktemp(name) / f"{name}.gguf")
    # the golden data belong to exactly this file
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ref["gguf_sha256"], name
    assert ref["tokens"] == family_tokens(name)
    return name, path, ref


def test_logits_bit_identical_to_llamacpp_decode(case):
    name, path, ref = case
    m = load_model(path, n_ctx=256, n_batch=256, n_threads=2)
    ours = np.stack([m.eval([t])[0].copy() for t in ref["tokens"]])
    hashes = [hashlib.sha256(np.ascontiguousarray(r).tobytes()).hexdigest()[:16] for r in ours]
    identical = sum(a == b for a, b in zip(hashes, ref["row_sha256"]))
    kl = kl_topk(np.array(ref["top_ids"]), np.array(ref["top_logits"], np.float32), np.array(ref["lse"]), ours)
    print(f"{name}: bit-identical rows {identical}/{len(ours)}, mean KL {kl.mean():.3g}")
    assert identical == len(ours), f"{name}: {identical}/{len(ours)} rows identical, mean KL {kl.mean():.3g}"


def test_perplexity_estimates_to_the_printed_digit(case, golden):
    name, path, ref = case
    want = ref["perplexity"]["estimates"]
    args = ref["perplexity"]["args"]
    n_ctx = int(args[args.index("-c") + 1])
    m = load_model(path, n_ctx=n_ctx, n_batch=1, n_threads=2)
    tok = load_tokenizer(m.gguf)
    tokens = ppl.tokenize_text(tok, ppl.read_text(golden / ref["perplexity"]["text"]))
    res = ppl.perplexity(m, tokens, n_ctx, ppl.bos_of(tok), max_chunks=len(want))
    got = [float(f"{v:.4f}") for v in res.chunk_ppl]
    assert got == want, name


def test_model_description_names_the_family(case):
    name, path, ref = case
    from llamacli.bench import model_info
    m = load_model(path, n_ctx=8, n_batch=8, n_threads=1)
    assert model_info(m, str(path)).model_type == ref["desc"]  # llama_model_desc, the file type guessed


# -- what a spec refuses: one line on stderr, exit 1 ----------------------------------------

def _run_refused(capsys, path) -> str:
    from llamacli.cli import main
    code = main(["run", "-m", str(path), "-p", "a", "-n", "1", "--temp", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("how, expect", [
    (dict(arch="falcon"), "unsupported architecture 'falcon' (supported: llama, qwen2, qwen3, gemma2, gemma3, phi3"),
    (dict(extra={"blk.0.attn_q.scale": np.ones(1, np.float32)}), "tensor 'blk.0.attn_q.scale' is not used by the qwen3"),
    (dict(drop=("blk.1.attn_k_norm.weight",)), "tensor 'blk.1.attn_k_norm.weight' is missing (required by qwen3)"),
    (dict(meta={"expert_count": 8, "expert_used_count": 2}),
     "'qwen3.expert_count' = 8: the qwen3 architecture has no mixture-of-experts layers"),
    (dict(meta={"rope.scaling.type": "dynamic"}), "unknown rope scaling type 'dynamic'"),
    (dict(meta={"attention.causal": False}), "'qwen3.attention.causal' = False: non-causal attention"),
    (dict(extra={"blk.0.attn_q_norm.weight": np.ones(3, np.float32)}, drop=("blk.0.attn_q_norm.weight",)),
     "tensor 'blk.0.attn_q_norm.weight' has shape [3], expected [64]"),
])
def test_bad_models_are_refused_by_name(capsys, tmp_path, how, expect):
    path = write_family("qwen3", tmp_path / "bad.gguf", **how)
    assert expect in _run_refused(capsys, path)


def test_a_missing_required_key_is_named(capsys, tmp_path):
    path = write_family("granite", tmp_path / "g.gguf", meta={"logit_scale": None})
    assert "metadata key 'granite.logit_scale' is missing" in _run_refused(capsys, path)


@pytest.mark.parametrize("name, per_layer", [("qwen3", 7), ("phi3_longrope", 4)])
def test_matmuls_go_through_the_backend_chosen_at_load(tmp_path, name, per_layer):
    """The graph multiplies only through Model.be (the seam a GPU backend would plug into): a
    backend that counts its calls sees every projection of a token, fused ones once."""
    from llamacli.model.transformer import Backend

    class Counting(Backend):
        calls = 0

        def linear(self, act, w, out):
            Counting.calls += 1
            super().linear(act, w, out)

    path = write_family(name, tmp_path / f"{name}.gguf")
    m = load_model(path, n_ctx=16, n_batch=4, n_threads=1, backend=Counting())
    ref = load_model(path, n_ctx=16, n_batch=4, n_threads=1)
    got = m.eval([1, 2, 3])[0].copy()
    assert Counting.calls == m.cfg.n_layer * per_layer + 1
    assert np.array_equal(got, ref.eval([1, 2, 3])[0])


MOE_MODELS = [n for n, (_, _, opt, _) in FAMILY_MODELS.items() if opt.get("moe")]


@pytest.mark.parametrize("name", MOE_MODELS)
def test_moe_quantized_files_identical_to_llama_quantize(name, tmp_path, golden):
    """llama-quant's rules for expert tensors and the MXFP4_MOE mixture, byte for byte."""
    from llamacli.quantize import make_f16, quantize_file
    ref = json.loads((golden / "families" / f"{name}.json").read_text())
    path = write_family(name, tmp_path / f"{name}.gguf")
    f16 = make_f16(path, tmp_path / "f16.gguf", nthreads=2)
    got = {"F16": hashlib.sha256(f16.read_bytes()).hexdigest()}
    for ft in ref["quantized"]:
        if ft != "F16":
            out = quantize_file(f16, tmp_path / f"{ft}.gguf", ft, nthreads=2).output
            got[ft] = hashlib.sha256(out.read_bytes()).hexdigest()
    assert got == ref["quantized"]


def test_inspect_shows_experts_and_active_parameters(tmp_path, capsys):
    from gguf import GGUFReader
    from llamacli.cli import main
    path = write_family("qwen3moe", tmp_path / "m.gguf")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    r = GGUFReader(path)
    total = sum(int(t.n_elements) for t in r.tensors)
    exps = sum(int(t.n_elements) for t in r.tensors if "_exps." in t.name)
    active = total - exps + exps * 2 // 8  # 2 of 8 experts a token
    line = next(l for l in out.splitlines() if l.strip().startswith("experts"))
    assert "8, 2 used per token" in line and f"({active})" in line, line
    assert "qwen3moe ?B (guessed) all F32" in out
