"""The importance-weighted quantizers on a block where ggml divides by zero.

make_qkx3_quants (make_qkx2_quants given weights) keeps the best candidate's min in `min`, so
on a block of zeros and one negative value that the imatrix does not weigh, a later candidate's
inverse scale is (..)/(max - min) = (..)/0: C goes on with an infinity (and every level 0);
Numba's default error model would raise ZeroDivisionError. The rows are built from seeds, and
the hashes are ggml_quantize_chunk's bytes for them (scripts/peer_ggml.py, the AVX2 build).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from gguf import QK_K
from gguf import GGMLQuantizationType as T

from llamacli.kernels.codec import CODECS
from llamacli.kernels.codec import kquants as K


def zero_block_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32[1, QK_K] zeros but x[5] < 0, and an imatrix row that is 0 at 5, uneven elsewhere."""
    rng = np.random.default_rng(seed)
    x = np.zeros((1, QK_K), np.float32)
    x[0, 5] = -np.float32(rng.uniform(0.05, 1.0))
    qw = rng.uniform(0.5, 20, QK_K).astype(np.float32)
    qw[5] = 0
    return x, qw


# (type, seed, sub-block length, nmax, sigma2 factor, ggml's bytes' sha256[:16])
CASES = [
    (T.Q2_K, 23, 16, 3, 1, "7666419c1c1e03bc"),
    (T.Q4_K, 23, 32, 15, 2, "68ae94a12bd13f53"),
    (T.Q5_K, 1, 32, 31, 2, "8c5307fc204b8343"),
    (T.Q4_1, 23, 32, 15, None, "b405e3c97a2290c4"),
    (T.Q5_1, 1, 32, 31, None, "d0103c0a8e616c49"),
]


@pytest.mark.parametrize("qt, seed, n, nmax, two, want", CASES, ids=[c[0].name for c in CASES])
def test_divide_by_zero_block_is_ggml_s(qt, seed, n, nmax, two, want):
    x, qw = zero_block_case(seed)
    got = CODECS[qt].quantize(x, 1, weights=qw)
    assert hashlib.sha256(got.tobytes()).hexdigest()[:16] == want


@pytest.mark.parametrize("qt, seed, n, nmax, two, want", CASES[:3], ids=[c[0].name for c in CASES[:3]])
def test_the_case_reaches_the_division(qt, seed, n, nmax, two, want):
    """Not vacuous: the plain-Python make_qkx2_quants on the first sub-block divides by zero."""
    x, qw = zero_block_case(seed)
    sigma2 = np.float32(two) * K.sum_squares(x[0]) / np.float32(QK_K)
    w = np.zeros(n, np.float32)
    K.importance_weights(x[0, :n], qw[:n], sigma2, w)
    L, Laux = np.zeros(n, np.int32), np.zeros(n, np.int32)
    with np.errstate(all="raise"), pytest.raises(FloatingPointError, match="divide by zero"):
        K.make_qkx2_quants.py_func(n, nmax, x[0, :n], w, L, Laux, -0.9, 0.05, 36, False)
