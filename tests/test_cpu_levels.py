"""Every CPU level (kernels/cpu.py) against the llama.cpp build that takes that path, and the
level kernels against their slow twins.

The golden rows (tests/golden/cpu_levels.json, scripts/make_cpu_level_reference.py) come from an
AVX2 build, an AVX-512 build without AMX (Zen 4 / 5's features) and a native build on a Xeon
with AMX-INT8. Each level is computed in software, so all three are checked on any machine.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from numba import njit

import naive
from golden_metrics import row_hashes
from llamacli.kernels import cpu, ops, simd512
from llamacli.kernels.dot import Activation, amx, matmul
from llamacli.model.transformer import load_model


@pytest.fixture(scope="module")
def levels_golden(golden):
    return json.loads((golden / "cpu_levels.json").read_text())


@pytest.fixture(scope="module")
def smollm2_f16_path(smollm2_path, tmp_path_factory):
    """SmolLM2 requantized to F16 (our quantize, byte-identical to llama-quantize's)."""
    from llamacli.quantize import make_f16
    return make_f16(smollm2_path, tmp_path_factory.mktemp("f16") / "smollm2-f16.gguf")


@pytest.mark.parametrize("level", cpu.LEVELS)
@pytest.mark.parametrize("model", ["smollm2", "gemma3", "smollm2_f16"])
def test_decode_logits_match_that_levels_build(model, level, levels_golden, golden, request):
    """The decode path (one token per step, no flash attention) of each level against the build
    that takes it; the F16 copy exercises the float dots (and, at amx, the AMX buffer's F16)."""
    path = request.getfixturevalue(f"{model}_path")
    ref = levels_golden["models"][model]["rows"]
    n = levels_golden["models"][model]["tokens"]
    tokens = np.load(golden / model.split("_")[0] / "logits.npz")["tokens"][:n]
    m = load_model(path, n_ctx=512, n_batch=512, n_threads=2, cpu_level=level)
    assert m.be.level == level
    ours = row_hashes(np.stack([m.eval([int(t)])[0].copy() for t in tokens]))
    same = {lv: sum(a == b for a, b in zip(ours, rows)) for lv, rows in ref.items()}
    print(f"{model} at {level}: rows identical to each build {same} of {n}")
    assert same[level] == n
    # and the builds do differ, so the level is what made the match
    assert all(same[lv] < n // 2 for lv in ref if lv != level)


def test_levels_resolve(monkeypatch):
    monkeypatch.setenv(cpu.ENV, "AVX512")
    assert cpu.resolve() == "avx512"
    assert cpu.resolve("amx") == "amx"
    monkeypatch.delenv(cpu.ENV)
    assert cpu.resolve() == cpu.detect() in cpu.LEVELS
    monkeypatch.setenv(cpu.ENV, "sse3")
    with pytest.raises(cpu.CpuLevelError, match="unknown CPU level 'sse3' .from .LLAMACLI_CPU.; choose one of"):
        cpu.resolve()


def test_cli_names_the_level_and_refuses_an_unknown_one(smollm2_path):
    base = [sys.executable, "-m", "llamacli", "run", "-m", str(smollm2_path), "-p", "Hi", "-n", "2", "--temp", "0"]
    r = subprocess.run(base, capture_output=True, text=True, env={**os.environ, "LLAMACLI_CPU": "amx"})
    assert r.returncode == 0, r.stderr
    assert "system_info: n_threads = 2 | CPU level = amx : " in r.stderr and "AMX_INT8 = 1" in r.stderr
    r = subprocess.run(base, capture_output=True, text=True, env={**os.environ, "LLAMACLI_CPU": "neon"})
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "llamacli: error: unknown CPU level 'neon' (from $LLAMACLI_CPU); choose one of avx2, avx512, amx"]


def test_placement_follows_llama_cpps_amx_rules():
    assert amx.eligible(T.Q4_1, 576, 1536) and amx.eligible(T.Q8_0, 640, 262144)
    assert not amx.eligible(T.Q4_1, 576, 200)  # rows not a multiple of 32
    assert not amx.eligible(T.Q4_K, 640, 256)  # a K-quant row of 640 is no whole number of tiles
    assert not amx.eligible(T.Q5_0, 640, 1024)  # no AMX kernel for Q5_0
    assert matmul.placed(T.Q4_1, 576, 1536, "amx") is matmul.AMX_DOTS[T.Q4_1]
    assert matmul.placed(T.Q4_1, 576, 1536, "amx", op="mul_mat_id") is matmul.DOTS[T.Q4_1]
    assert matmul.placed(T.Q4_1, 576, 1536, "avx512") is matmul.DOTS[T.Q4_1]


# -- the kernels against their twins ------------------------------------------------------------

AMX_REFS = {
    T.Q4_0: lambda w, q, d, s, bt, nb: amx.row_scaled_ref(w, q, d, nb, amx.BS_Q4_0, True),
    T.Q8_0: lambda w, q, d, s, bt, nb: amx.row_scaled_ref(w, q, d, nb, amx.BS_Q8_0, False),
    T.Q4_1: lambda w, q, d, s, bt, nb: amx.row_q4_1_ref(w, q, d, s, nb),
    T.Q4_K: lambda w, q, d, s, bt, nb: amx.row_q4_K_ref(w, q, d, bt, nb),
    T.Q6_K: lambda w, q, d, s, bt, nb: amx.row_q6_K_ref(w, q, d, nb),
}


@pytest.mark.parametrize("qtype", list(AMX_REFS), ids=lambda t: t.name)
def test_amx_kernels_match_their_twins(qtype):
    """The AMX-order kernels (fast and portable) against the scalar row twins, for decode (one
    token, eight rows a call) and prompt batches (four tokens a pass, then one)."""
    rng = np.random.default_rng(5)
    n, R = 1024, 64
    rows = naive.random_rows(qtype, R, n, rng)
    from llamacli.kernels.dot import amx_avx2
    nb = rows.shape[1] // (matmul.GGML_QUANT_SIZES[qtype][1])
    for n_tok in (1, 7):
        x = (rng.standard_normal((n_tok, n)) * 3).astype(np.float32)
        act = Activation(matmul.AMX_DOTS[qtype].act, n, n_tok)
        act.load(x)
        aux = act.aux
        want = np.array([[AMX_REFS[qtype](rows[r], act.q[t], act.d[t], aux[t], aux[t], nb) for r in range(R)]
                         for t in range(n_tok)], np.float32)
        for mod in (amx, amx_avx2):
            got = np.full((n_tok, R), np.nan, np.float32)
            getattr(mod, f"matmul_{qtype.name.lower().replace('_k', '_K')}")(rows, act.q, act.d, aux, got, act.scratch)
            assert np.array_equal(got, want), (mod.__name__, n_tok)
        # the CPU backend's kernel for the same rows: the AVX2 repacked gemv of Q4_0 is the AMX
        # order already; every other type sums in another order, which the test tells apart
        vec = np.zeros((n_tok, R), np.float32)
        act.matmul(matmul.DOTS[qtype], rows, vec)
        assert np.array_equal(vec, want) == (qtype == T.Q4_0)


def test_f16_dot_512_matches_twin():
    rng = np.random.default_rng(9)
    for n in (64, 256, 100, 7):
        x = rng.standard_normal(n).astype(np.float16).astype(np.float32)
        y = rng.standard_normal(n).astype(np.float16).view(np.uint16)
        assert ops.dot_f16_512(x, 0, y, 0, n) == simd512.dot_f16_ref(x, y.view(np.float16).astype(np.float32), n), n


@njit(cache=True)
def _soft_max_512(s, mx):
    """ggml_vec_soft_max_f32 (AVX-512) on whole groups of sixteen, as the attention runs it."""
    total = 0.0
    for j in range(0, s.shape[0], 16):
        total += np.float64(simd512.exp16_shifted(s, j, mx))
    return total


def test_softmax_and_silu_512_match_twins():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(64) * 30).astype(np.float32)
    x[:6] = [-np.inf, -200.0, -150.0, 0.0, -87.5, -103.0]
    mx = np.float32(x.max())
    want = np.zeros(64, np.float32)
    total = simd512.soft_max_ref(x, mx, want)
    got = x.copy()
    assert _soft_max_512(got, mx) == total
    assert np.array_equal(got, want)
    n = 4104  # 256 vectors of sixteen and eight scalar leftovers
    g = (rng.standard_normal((1, n)) * 8).astype(np.float32)
    g[0, :4] = [-100.0, 100.0, 0.0, -0.0]
    u = rng.standard_normal((1, n)).astype(np.float32)
    out = np.zeros_like(g)
    ops.swiglu_512(g, u, out)
    ref = np.zeros(n, np.float32)
    simd512.swiglu_ref(g[0], u[0], ref)
    assert np.array_equal(out[0], ref)
    # the AVX-512 exp is not the AVX2 one on every input: the level matters
    out2 = np.zeros_like(g)
    ops.swiglu(g, u, out2)
    assert not np.array_equal(out2[0], ref)
