"""kernels.flash against its slow twin: ggml_compute_forward_flash_attn_ext_f16 as written, one
query and one cell at a time in scalar code, with the portable fp16 dots and exponentials."""

import numpy as np
import pytest
from numba import njit

from llamacli.kernels import flash, ops
from llamacli.kernels.dot.fp16 import F16_TO_F32, f16_round
from llamacli.kernels.simd import fma32, libm_expf, libm_tanhf, v_expf
from llamacli.kernels.simd512 import dot_f16_ref, reduce16_ref, v_expf512_ref


@njit(cache=True)
def _score_f16(qh, kbits, kf, wide, acc):
    return dot_f16_ref(qh, kf, qh.shape[0]) if wide else ops.dot_f16(qh, kbits, qh.shape[0], acc)


@njit(cache=True)
def _one_chunk(qh, cache_k, cache_v, col, p, c0, c1, window, scale, softcap, wide):
    """ggml_compute_forward_flash_attn_ext_f16_one_chunk for one query over cells c0..c1-1:
    returns (M, S, VKQ as float32)."""
    D = qh.shape[0]
    acc = np.zeros(32, np.float32)
    vkq = np.zeros(D, np.float32)  # VKQ16, fp16 values
    M, S = np.float32(-np.inf), np.float32(0.0)
    for ic in range(c0, c1):
        if ic > p or (window > 0 and p - ic >= window):
            continue  # mv == -INFINITY
        kf = np.empty(D, np.float32)
        for d in range(D):
            kf[d] = F16_TO_F32[cache_k[ic, col + d]]
        s = _score_f16(qh, cache_k[ic, col:col + D], kf, wide, acc)
        s = np.float32(s * scale)
        if softcap != 0:
            s = np.float32(softcap * libm_tanhf(s))
        ms, vs = np.float32(1.0), np.float32(1.0)
        if s > M:
            Mold = M
            M = s
            ms = libm_expf(np.float32(Mold - M))
            for d in range(D):
                vkq[d] = f16_round(vkq[d] * ms)
        else:
            vs = libm_expf(np.float32(s - M))
        for d in range(D):
            vkq[d] = f16_round(fma32(F16_TO_F32[cache_v[ic, col + d]], vs, vkq[d]))
        S = fma32(ms, S, vs)  # GCC fuses S*ms + vs
    return M, S, vkq


@njit(cache=True)
def _sink(vkq, M, S, s):
    ms, vs = np.float32(1.0), np.float32(1.0)
    if s > M:
        ms = libm_expf(np.float32(M - s))
        M = s
        for d in range(vkq.shape[0]):
            vkq[d] = np.float32(vkq[d] * ms)
    else:
        vs = libm_expf(np.float32(s - M))
    return M, np.float32(np.float32(S * ms) + vs)


@njit(cache=True)
def _soft_max(x, mx, wide):
    """ggml_vec_soft_max_f32 over 64 scores in place: lane by lane, each group's sum in the
    order of hsum_float_8 (AVX2) or _mm512_reduce_add_ps."""
    total = 0.0
    gl = 16 if wide else 8
    for g in range(0, x.shape[0], gl):
        for j in range(gl):
            x[g + j] = v_expf512_ref(np.float32(x[g + j] - mx)) if wide else v_expf(np.float32(x[g + j] - mx))
        if wide:
            total += np.float64(reduce16_ref(x, g))
        else:
            e = x[g:g + 8]
            total += np.float64(((e[4] + e[0]) + (e[6] + e[2])) + ((e[5] + e[1]) + (e[7] + e[3])))
    return total


@njit(cache=True)
def _twin(q, cache_k, cache_v, pos, n_kv, graph_kv, nth, scale, window, softcap, sinks, wide, out):
    T, H, D = q.shape
    group = H // (cache_k.shape[1] // D)
    if softcap != 0:
        scale = np.float32(scale / softcap)
    for h in range(H):
        col = (h // group) * D
        for t in range(T):
            p = pos[t]
            if T >= 64:  # the tiled path, one row at a time
                qf = q[t, h].copy()
                vkq = np.zeros(D, np.float32)
                M, S = np.float32(-np.inf), np.float32(0.0)
                for ic in range(0, graph_kv, 64):
                    kq = np.zeros(64, np.float32)
                    for tk in range(64):
                        c = ic + tk
                        if c >= n_kv or c > p or (window > 0 and p - c >= window):
                            kq[tk] = -np.inf
                            continue
                        a = np.float32(0.0)
                        for d in range(D):
                            a = fma32(qf[d], F16_TO_F32[cache_k[c, col + d]], a)
                        a = np.float32(a * scale)
                        if softcap != 0:
                            a = np.float32(libm_tanhf(a) * softcap)
                        kq[tk] = a
                    mx = kq.max()
                    if mx == -np.inf:
                        continue
                    Mn = max(M, mx)
                    if Mn > M:
                        ms = libm_expf(np.float32(M - Mn))
                        for d in range(D):
                            vkq[d] = np.float32(vkq[d] * ms)
                        S = np.float32(S * ms)
                    M = Mn
                    S = np.float32(np.float64(S) + _soft_max(kq, Mn, wide))
                    for d in range(D):
                        a = vkq[d]
                        for tk in range(64):
                            v = F16_TO_F32[cache_v[ic + tk, col + d]] if ic + tk < n_kv else np.float32(0.0)
                            a = fma32(kq[tk], v, a)
                        vkq[d] = a
                if sinks.shape[0] > 0:
                    M, S = _sink(vkq, M, S, sinks[h])
                inv = np.float32(0.0) if S == 0 else np.float32(np.float32(1.0) / S)
                for d in range(D):
                    out[t, h * D + d] = np.float32(vkq[d] * inv)
                continue
            qh = np.empty(D, np.float32)
            for d in range(D):
                qh[d] = f16_round(q[t, h, d])
            if T == 1 and graph_kv >= 512:  # the split-KV path and its reduction
                chunk = (graph_kv + nth - 1) // nth
                Mf, Sf = np.float32(-np.inf), np.float32(0.0)
                fin = np.zeros(D, np.float32)
                for c in range(nth):
                    c0 = c * chunk
                    if c0 >= graph_kv:
                        continue
                    Mc, Sc, vc = _one_chunk(qh, cache_k, cache_v, col, p, c0, min(c0 + chunk, graph_kv), window,
                                            scale, softcap, wide)
                    if sinks.shape[0] > 0 and c == 0:
                        Mc, Sc = _sink(vc, Mc, Sc, sinks[h])
                    if Sc == 0:
                        continue
                    Mn = max(Mf, Mc)
                    so, sn = libm_expf(np.float32(Mf - Mn)), libm_expf(np.float32(Mc - Mn))
                    for d in range(D):
                        fin[d] = fma32(fin[d], so, np.float32(vc[d] * sn))
                    Sf = fma32(Sf, so, np.float32(Sc * sn))
                    Mf = Mn
                inv = np.float32(np.float32(1.0) / Sf) if Sf != 0 else np.float32(1.0)
                for d in range(D):
                    out[0, h * D + d] = np.float32(fin[d] * inv)
                continue
            M, S, vkq = _one_chunk(qh, cache_k, cache_v, col, p, 0, graph_kv, window, scale, softcap, wide)
            if sinks.shape[0] > 0:
                M, S = _sink(vkq, M, S, sinks[h])
            inv = np.float32(0.0) if S == 0 else np.float32(np.float32(1.0) / S)
            for d in range(D):
                out[t, h * D + d] = np.float32(vkq[d] * inv)


CASES = [  # D, H, HKV, T, past, window, softcap, sinks, graph_kv, nth
    (64, 9, 3, 1, 40, 0, 0.0, False, 256, 2),
    (64, 4, 2, 7, 30, 0, 0.0, False, 256, 2),
    (256, 4, 1, 1, 60, 16, 0.0, False, 256, 1),
    (64, 4, 4, 70, 0, 0, 0.0, False, 256, 2),
    (64, 2, 1, 130, 60, 40, 0.0, False, 256, 2),
    (80, 2, 1, 65, 9, 0, 50.0, False, 256, 2),
    (64, 4, 2, 3, 20, 0, 30.0, True, 256, 2),
    (64, 4, 2, 66, 3, 10, 0.0, True, 256, 2),
    (64, 4, 2, 1, 300, 0, 0.0, False, 512, 2),
    (64, 4, 2, 1, 600, 0, 0.0, False, 768, 3),
    (128, 2, 2, 1, 280, 0, 0.0, True, 512, 2),
    (64, 2, 1, 1, 400, 64, 0.0, True, 512, 2),
    (64, 2, 1, 1, 300, 0, 0.0, False, 512, 1),
    (96, 3, 1, 1, 530, 0, 20.0, False, 768, 2),
]


@pytest.mark.parametrize("wide", [False, True], ids=["avx2", "avx512"])
@pytest.mark.parametrize("D,H,HKV,T,past,window,softcap,sinks,graph_kv,nth", CASES)
def test_flash_attn_is_bit_identical_to_its_twin(D, H, HKV, T, past, window, softcap, sinks, graph_kv, nth, wide):
    rng = np.random.default_rng(D * 1000 + T + past)
    n_kv = past + T
    n_ctx = n_kv + 5
    ck = rng.integers(0, 0x7BFF, (n_ctx, HKV * D)).astype(np.uint16)  # stale cells past n_kv
    cv = rng.integers(0, 0x7BFF, (n_ctx, HKV * D)).astype(np.uint16)
    k = (rng.standard_normal((n_kv, HKV * D)) * 2).astype(np.float32)
    v = rng.standard_normal((n_kv, HKV * D)).astype(np.float32)
    flash.store_kv_rows(k, v, ck, cv, 0)
    q = (rng.standard_normal((T, H, D)) * 2).astype(np.float32)
    pos = np.arange(past, n_kv, dtype=np.int64)
    scale = np.float32(1 / np.sqrt(D))
    sk = (rng.standard_normal(H) * 3).astype(np.float32) if sinks else np.zeros(0, np.float32)
    slow = np.full((T, H * D), np.nan, np.float32)
    _twin(q.copy(), ck, cv, pos, n_kv, graph_kv, nth, scale, window, np.float32(softcap), sk, wide, slow)
    fast = np.full((T, H * D), np.nan, np.float32)
    flash.flash_attn(q, ck, cv, pos, n_kv, graph_kv, nth, scale, window, np.float32(softcap), sk,
                     flash.Scratch(4, H, D), fast, wide)
    assert np.array_equal(fast.view(np.uint32), slow.view(np.uint32))
    # and close to softmax attention in float64
    kf = ck[:n_kv].view(np.float16).astype(np.float64).reshape(n_kv, HKV, D)
    vf = cv[:n_kv].view(np.float16).astype(np.float64).reshape(n_kv, HKV, D)
    for t in range(0, T, max(1, T // 4)):
        for h in range(H):
            g = h // (H // HKV)
            sc = kf[:, g] @ q[t, h].astype(np.float64) * float(scale)
            if softcap:
                sc = softcap * np.tanh(sc / softcap)
            j = np.arange(n_kv)
            sc[(j > pos[t]) | ((window > 0) & (pos[t] - j >= window))] = -np.inf
            if sinks:
                sc = np.append(sc, sk[h])
            w = np.exp(sc - sc.max())
            ref = (w[:n_kv] @ vf[:, g]) / w.sum()
            assert np.allclose(fast[t, h * D:(h + 1) * D], ref, atol=2e-2, rtol=2e-2)


def test_graph_n_kv_is_llama_cpps():
    assert [flash.graph_n_kv(n, 4096) for n in (1, 256, 257, 600)] == [256, 256, 512, 768]
    assert flash.graph_n_kv(300, 300) == 512 and flash.graph_n_kv(10, 100) == 256


# -- both real models against llama.cpp with flash attention on ---------------------------------

FLASH_RUNS = [(model, level, run) for model, runs in (("smollm2", ("decode_t2", "decode_t1", "batch_100", "batch_40")),
                                                      ("gemma3", ("decode_t2", "batch_100", "batch_40", "batch_6")),
                                                      ("smollm2_f16", ("batch_40", "batch_6")))
              for level in ("avx2", "avx512") for run in runs]


@pytest.fixture(scope="module")
def flash_golden(golden):
    import json
    return json.loads((golden / "flash.json").read_text())


@pytest.fixture(scope="module")
def smollm2_f16_path(smollm2_path, flash_golden, tmp_path_factory):
    """SmolLM2 requantized to F16 here: the very file llama.cpp ran (llama-quantize's)."""
    import hashlib

    from llamacli.quantize import make_f16

    path = make_f16(smollm2_path, tmp_path_factory.mktemp("f16") / "smollm2.f16.gguf", nthreads=2)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == flash_golden["smollm2_f16"]["file_sha256"]
    return path


@pytest.mark.parametrize("model,level,run", FLASH_RUNS)
def test_flash_logits_match_llama_cpp(model, level, run, flash_golden, golden, request):
    """-fa on against the build of each level (scripts/make_flash_reference.py): decode past 256
    positions, where ggml splits the keys among the threads (so 1 and 2 threads differ), and
    prompt batches of 100 tokens (tiled) and 40 (a row at a time); Gemma-3's batches also take
    ggml's repacked Q4_K gemm and tiled Q6_K matmul (6 rows: the gemm's four and two of gemv);
    SmolLM2's F16 batches take llamafile's tinyBLAS (8 lanes on AVX2, 16 on AVX-512)."""
    import hashlib

    from llamacli.model.transformer import load_model

    rec = flash_golden[model][level][run]
    n, nth = rec["tokens"], rec["threads"]
    tokens = np.load(golden / model.removesuffix("_f16") / "logits.npz")["tokens"][:n]
    m = load_model(request.getfixturevalue(f"{model}_path"), n_ctx=4096, n_batch=512, n_threads=nth,
                   cpu_level=level, flash_attn="on")
    if run.startswith("decode"):
        rows = [m.eval([int(t)])[0].copy() for t in tokens]
    else:
        rows = list(m.eval(tokens, want="all"))
    ours = [hashlib.sha256(r.tobytes()).hexdigest()[:16] for r in rows]
    same = sum(a == b for a, b in zip(ours, rec["row_sha256"]))
    print(f"{model} {level} {run}: {same} of {n} rows bit-identical")
    assert same == n
