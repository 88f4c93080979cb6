"""The mixture-of-experts steps of build_moe_ffn (src/llama-graph.cpp), as ggml's CPU backend
computes them: the router's softmax, top-k selection, the chosen weights, grouping a batch's
tokens by expert for ggml_mul_mat_id, and the weighted sum of the experts' outputs.

Shapes are NumPy's: T tokens first. `sel` (T, k) holds each token's experts in ggml_argsort's
descending order, which is also the order their outputs are added in.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .simd import exp8_shifted, libm_expf
from .simd512 import exp16_shifted


@njit(inline="always", cache=True)
def _softmax_row(x, y, wide):
    """ggml_compute_forward_soft_max_f32 on one row without mask or scale: y = exp(x - max) by
    ggml_vec_soft_max_f32 (ggml_v_expf on eight lanes, hsum_float_8 of each group summed in
    double, the leftovers through the C library's expf), then y *= (float)(1.0 / sum).
    wide: an AVX-512 build's, groups of sixteen lanes (_mm512_reduce_add_ps) and no eight-lane
    groups after them (its #if takes the AVX-512 loop instead of the AVX2 one): a router of
    eight experts is all expf there."""
    n = x.shape[0]
    mx = -np.inf
    for i in range(n):
        if x[i] > mx:
            mx = np.float32(x[i])
    for i in range(n):
        y[i] = x[i]
    total = 0.0
    i = 0
    if wide:
        while i + 16 <= n:
            total += np.float64(exp16_shifted(y, i, np.float32(mx)))
            i += 16
    else:
        while i + 8 <= n:
            total += np.float64(exp8_shifted(y, i, np.float32(mx)))
            i += 8
    while i < n:
        v = libm_expf(np.float32(y[i] - mx))
        total += np.float64(v)
        y[i] = v
        i += 1
    inv = np.float32(1.0 / total)
    for i in range(n):
        y[i] = np.float32(y[i] * inv)


@njit(cache=True)
def route(logits, probs, sel, wts, gating_weight, norm, scale, wide=False):
    """From router logits (T, n_expert) to each token's experts sel (T, k) and their weights
    wts (T, k):
      softmax gating: probs = softmax(logits), the top k of probs, weights = their probs;
      gating_weight (gpt-oss): the top k of the logits, weights = softmax over those k;
      norm: weights / max(sum, 6.103515625e-5) (ggml_sum_rows sums in double);
      scale (not 0 or 1): weights * scale.
    The top k is a descending sort (ggml_argsort, std::sort; equal values are not expected).
    wide: the softmax of an AVX-512 build (_softmax_row)."""
    T, X = logits.shape
    k = sel.shape[1]
    for t in range(T):
        if gating_weight:
            for e in range(X):
                probs[t, e] = logits[t, e]
        else:
            _softmax_row(logits[t], probs[t], wide)
        order = np.argsort(-probs[t], kind="mergesort")
        for s in range(k):
            sel[t, s] = order[s]
            wts[t, s] = probs[t, order[s]]
        if gating_weight:
            _softmax_row(wts[t], wts[t], wide)  # in place: the row is copied before its exps
        if norm:
            total = 0.0
            for s in range(k):
                total += np.float64(wts[t, s])
            tot = max(np.float32(total), np.float32(6.103515625e-5))  # ggml_clamp to fp16's smallest normal
            for s in range(k):
                wts[t, s] = np.float32(wts[t, s] / tot)
        if scale != 0.0 and scale != 1.0:
            for s in range(k):
                wts[t, s] = np.float32(wts[t, s] * np.float32(scale))


@njit(cache=True)
def group_by_expert(sel, n_expert, counts, starts, order):
    """A counting sort of the (token, slot) pairs by expert: expert e's pairs are
    order[starts[e] : starts[e] + counts[e]], each t * k + s, tokens in ascending order, so
    that one expert's weights are read once for all the tokens of a batch that chose it."""
    T, k = sel.shape
    for e in range(n_expert):
        counts[e] = 0
    for t in range(T):
        for s in range(k):
            counts[sel[t, s]] += 1
    acc = 0
    for e in range(n_expert):
        starts[e] = acc
        acc += counts[e]
        counts[e] = 0  # counted again as the pairs are placed (no cursor array per call)
    for t in range(T):
        for s in range(k):
            e = sel[t, s]
            order[starts[e] + counts[e]] = t * k + s
            counts[e] += 1


@njit(cache=True)
def gather_rows(src, pairs, k, out):
    """out[i] = src[pairs[i] // k]: the inputs of the tokens an expert takes."""
    for i in range(pairs.shape[0]):
        t = pairs[i] // k
        for j in range(src.shape[1]):
            out[i, j] = src[t, j]


@njit(cache=True)
def add_bias_rows(y, bias):
    """ggml_add_id: each row of one expert's output plus that expert's bias row."""
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[i, j] += bias[j]


@njit(cache=True)
def scatter_weighted(y, pairs, k, wts, slots):
    """slots[t, s] = y[i] * w[t, s] for pair i = t * k + s (ggml_mul of the experts' outputs by
    their weights, before they are summed)."""
    for i in range(pairs.shape[0]):
        t, s = pairs[i] // k, pairs[i] % k
        w = wts[t, s]
        for j in range(y.shape[1]):
            slots[t, s, j] = np.float32(y[i, j] * w)


@njit(cache=True)
def sum_slots(slots, out):
    """ffn_moe_out = slot 0 + slot 1 + ... in selection order (the chain of ggml_add)."""
    T, k, n = slots.shape
    for t in range(T):
        for j in range(n):
            out[t, j] = slots[t, 0, j]
        for s in range(1, k):
            for j in range(n):
                out[t, j] += slots[t, s, j]


ALPHA_OAI = np.float32(1.702)  # build_moe_ffn, LLM_FFN_SWIGLU_OAI_MOE: hard-coded in llama.cpp
LIMIT_OAI = np.float32(7.0)


@njit(parallel=True, cache=True)
def swiglu_oai(gate, up, out):
    """ggml_compute_forward_swiglu_oai_f32: x = min(gate, limit), y = clamp(up, -limit, limit),
    out = x / (1 + expf(alpha * -x)) * (y + 1). gate, up, out: (T, n)."""
    T, n = gate.shape
    for t in prange(T):
        for i in range(n):
            x = gate[t, i]
            if LIMIT_OAI < x:
                x = LIMIT_OAI
            y = min(max(up[t, i], -LIMIT_OAI), LIMIT_OAI)
            glu = np.float32(x / np.float32(np.float32(1.0) + libm_expf(np.float32(ALPHA_OAI * -x))))
            out[t, i] = np.float32(glu * np.float32(y + np.float32(1.0)))
