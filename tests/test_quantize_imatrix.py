"""`quantize` with an importance matrix, and the i-quant mixtures, against llama-quantize.

* The plan (tensor -> type, in write order, and the fallback count) of every i-quant mixture and
  of the mixtures an imatrix changes (Q4_0, Q5_0: ffn_down; IQ3_XXS, IQ4_NL, IQ4_XS), with and
  without an imatrix, equals llama-quantize's for SmolLM2 and Gemma-3 F16
  (tests/golden/quant/iquant_plans.json, scripts/make_iquant_plan_reference.py). It needs no
  model: the golden data carries the F16 file's tensor list and hyper-parameters.
* The refusals: a mixture whose tensors need an imatrix is refused without one, with
  llama.cpp's message; so is a tensor the imatrix has no entry for.
* --include-weights / --exclude-weights select entries by substring, as quantize.cpp does.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from gguf import GGMLQuantizationType

from imatrix_synthetic import model_imatrix_stats, write_model_imatrix
from llamacli.cli import main
from llamacli.errors import LlamacliError
from llamacli.quantize import select_imatrix
from llamacli.quantize.plan import Hparams, PlanOptions, ggml_type_name, make_plan, parse_ftype

TYPE_BY_NAME = {ggml_type_name(t): t for t in GGMLQuantizationType}


@pytest.fixture(scope="module")
def plans(golden):
    return json.loads((golden / "quant" / "iquant_plans.json").read_text())


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_plans_are_llama_quantize_s(plans, model):
    m = plans["models"][model]
    hp = Hparams(**m["hparams"])
    tensors = [(n, tuple(ne), TYPE_BY_NAME[t]) for n, ne, t in m["tensors"]]
    bad = []
    for key, want in m["plans"].items():
        ft, mode = key.split("/")
        plan = make_plan(tensors, hp, PlanOptions(parse_ftype(ft)[0], has_imatrix=mode == "imatrix"))
        assert [tp.name for tp in plan.tensors] == m["order"], key
        got = [ggml_type_name(tp.dst_type) for tp in plan.tensors]
        diff = [f"{n}: ours {g}, llama.cpp {w}" for n, g, w in zip(m["order"], got, want["types"].split()) if g != w]
        if diff or plan.n_fallback != want["n_fallback"]:
            bad.append(f"{key}: {len(diff)} tensors differ ({diff[:3]}), fallbacks {plan.n_fallback} "
                       f"vs {want['n_fallback']}")
    assert not bad, "\n".join(bad)


def test_refused_without_an_imatrix(smollm2_path, tmp_path, capsys):
    rc = main(["quantize", "--allow-requantize", str(smollm2_path), str(tmp_path / "x.gguf"), "IQ2_XS"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "this quantization requires an imatrix!" in err
    assert not list(tmp_path.glob("x.gguf*"))


def test_missing_entry_is_refused(smollm2_path, tmp_path, capsys):
    """IQ2_XS: SmolLM2's 1536-wide ffn_down rows stay IQ2_XS (past the first n_layer/8 layers),
    which needs an imatrix; the others fall back to IQ4_NL / Q4_0 / Q2_K, which do not."""
    from llamacli.quantize.scan import ScannedGGUF

    g = ScannedGGUF(smollm2_path)
    tensors = [(v.name, v.ne) for v in g.tensors.values() if v.name != "blk.10.ffn_down.weight"]
    write_model_imatrix(tmp_path / "imx.gguf", tensors)
    rc = main(["quantize", "--allow-requantize", "--imatrix", str(tmp_path / "imx.gguf"), str(smollm2_path),
               str(tmp_path / "x.gguf"), "IQ2_XS"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "llamacli: error: Missing importance matrix for tensor blk.10.ffn_down.weight in a very low-bit " \
           "quantization" in err
    assert not list(tmp_path.glob("x.gguf*"))


def test_include_exclude_weights():
    tensors = [("blk.0.attn_q.weight", (64, 64)), ("blk.0.ffn_up.weight", (64, 128)),
               ("blk.1.attn_q.weight", (64, 64))]
    from llamacli.imatrix import Loaded

    loaded = Loaded(model_imatrix_stats(tensors), ["t.txt"], 1, 256, False, True)
    assert sorted(select_imatrix(loaded, exclude=["attn_q"])) == ["blk.0.ffn_up.weight"]
    assert sorted(select_imatrix(loaded, include=["blk.1."])) == ["blk.1.attn_q.weight"]
    w = select_imatrix(loaded)["blk.0.attn_q.weight"]
    assert w.tobytes() == (loaded.entries["blk.0.attn_q.weight"].values / np.float32(256)).tobytes()
    with pytest.raises(LlamacliError):
        select_imatrix(loaded, include=["a"], exclude=["b"])


# whole files checked here (the golden data has every mixture's sha256; these cover the
# metadata, every legacy and K-quant weighted quantizer, the imatrix-only ffn_down rule, a 32-
# and a 256-block i-quant; test_quantize_golden's logits tests check the other i-quant files)
# the i-quant mixtures' files (the same F16, imatrix and sha256) are checked by
# test_quantize_golden.py::test_iquant_model_logits_match_llama_cpp, which also runs them
FILES_TESTED = ("Q8_0", "Q4_0", "Q5_1", "Q2_K_S", "Q3_K_M", "Q4_K_M", "Q5_K_M")


def _ready(f16, ft) -> str | None:
    """None if this build can write mixture `ft` with an imatrix, else why not."""
    from llamacli.kernels.codec import CODECS
    from llamacli.quantize import _IGNORES_IMATRIX
    from llamacli.quantize.plan import hparams_of
    from llamacli.quantize.scan import ScannedGGUF

    g = ScannedGGUF(f16)
    plan = make_plan([(v.name, v.ne, v.qtype) for v in g.tensors.values()], hparams_of(g),
                     PlanOptions(parse_ftype(ft)[0], has_imatrix=True))
    for t in {tp.dst_type for tp in plan.tensors if tp.converts}:
        if t not in CODECS:
            return f"no codec for {t.name}"
        if t not in _IGNORES_IMATRIX and not CODECS[t].takes_weights:
            return f"the {t.name} codec takes no weights"
    return None


def test_files_with_an_imatrix_are_llama_quantize_s(smollm2_path, plans, tmp_path, monkeypatch):
    """Our F16 of SmolLM2 and the synthetic imatrix, then each mixture: the file's sha256 is
    llama-quantize's (same imatrix path, relative, as it lands in the metadata). A mixture whose
    codecs this build lacks must be refused in one line, not written wrong."""
    import hashlib

    from llamacli.quantize import make_f16, quantize_file
    from llamacli.quantize.scan import ScannedGGUF

    want = plans["files"]
    monkeypatch.chdir(tmp_path)
    f16 = make_f16(smollm2_path, tmp_path / "f16.gguf", nthreads=2)
    assert hashlib.sha256(f16.read_bytes()).hexdigest() == want["f16_sha256"]
    write_model_imatrix(tmp_path / want["imatrix"], [(v.name, v.ne) for v in ScannedGGUF(f16).tensors.values()])
    assert hashlib.sha256((tmp_path / want["imatrix"]).read_bytes()).hexdigest() == want["imatrix_sha256"]
    done = []
    for ft in FILES_TESTED:
        why = _ready(f16, ft)
        out = tmp_path / f"{ft}.gguf"
        if why is not None:
            with pytest.raises(LlamacliError, match="cannot write type|not available in this build"):
                quantize_file("f16.gguf", out.name, ft, nthreads=2, imatrix=want["imatrix"], log=None)
            assert not out.exists()
            continue
        quantize_file("f16.gguf", out.name, ft, nthreads=2, imatrix=want["imatrix"], log=None)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == want["sha256"][ft], f"{ft}: not llama-quantize's file"
        out.unlink()
        done.append(ft)
    assert "Q8_0" in done  # no weighted codec needed: the imatrix metadata at least
