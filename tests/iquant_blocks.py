"""Random weight rows of the i-quants and friends, every byte random but the scales finite.

Shared by tests/test_dot_iquants.py and scripts/make_iquant_dot_reference.py, which records
what ggml's own vec_dot returns for exactly these rows. Random bytes reach every grid index,
sign pattern and scale; the fp16 (or E4M3) scales are small and finite.
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

import naive

TYPES = (T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.IQ1_S, T.IQ1_M, T.IQ4_XS, T.IQ4_NL,
         T.TQ1_0, T.TQ2_0, T.NVFP4, T.Q1_0)
Q8_0_ACT = (T.IQ4_NL, T.NVFP4, T.Q1_0)


def random_rows(qtype: T, rows: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """naive.random_rows, with the scales of IQ1_M and NVFP4 set and TQ1_0's trits in range."""
    w = naive.random_rows(qtype, rows, n, rng)
    block, size = GGML_QUANT_SIZES[qtype]
    nb = n // block
    b = w.reshape(rows, nb, size)
    if qtype == T.IQ1_M:  # the fp16 scale lives in the top nibbles of the four u16 scales
        u = (rng.random((rows, nb)) * 0.02 + 0.001).astype(np.float16).view(np.uint16)
        sc = b[:, :, 48:56].copy().view(np.uint16).reshape(rows, nb, 4)
        for k in range(4):
            sc[:, :, k] = (sc[:, :, k] & 0x0FFF) | (((u >> (4 * k)) & 0xF) << 12)
        b[:, :, 48:56] = sc.view(np.uint8).reshape(rows, nb, 8)
    if qtype == T.TQ1_0:  # five trits a byte (< 243), four in qh (< 81), as a quantizer writes them
        b[:, :, :48] %= 243
        b[:, :, 48:52] %= 81
    if qtype == T.NVFP4:  # four E4M3 scales
        b[:, :, :4] = rng.integers(0x08, 0x50, size=(rows, nb, 4), dtype=np.uint8)
    return w


def activations(n: int, tokens: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((tokens, n)).astype(np.float32)


def make_case(qtype: T, seed: int, rows: int, n: int, tokens: int):
    """(weight rows, [(q, d, aux) per token], float activations) of one golden case."""
    from llamacli.kernels.dot import activations as A
    rng = np.random.default_rng(seed)
    W = random_rows(qtype, rows, n, rng)
    x = activations(n, tokens, rng)
    if qtype in Q8_0_ACT:
        q, d = np.zeros((tokens, n), np.int8), np.zeros((tokens, n // 32), np.float32)
        A.quantize_q8_0(x, q, d)
        aux = d
    else:
        q, d, aux = np.zeros((tokens, n), np.int8), np.zeros((tokens, n // 256), np.float32), np.zeros((tokens, n // 16), np.int32)
        A.quantize_q8_K(x, q, d, aux)
    return W, [(q[t], d[t], aux[t]) for t in range(tokens)], x, (q, d, aux)
