"""K-quant dot kernels with ggml's own AVX2 instruction sequence (kernels/simd.py row_dot_*).

Bit-identical to the portable kernels in kquants.py (tests/test_dot_kernels.py checks it) and
much faster; chosen by ``matmul.DOTS`` when the CPU has AVX2 and FMA.
"""

from __future__ import annotations

from numba import njit, prange

from ..simd import row_dot_q6_K
from .kquants import BS_Q6_K


@njit(parallel=True, cache=True)
def matmul_q6_K(W, q, d, bsums, out, scratch):
    """ggml_vec_dot_q6_K_q8_K (AVX2)."""
    nb = W.shape[1] // BS_Q6_K
    for r in prange(W.shape[0]):
        for t in range(q.shape[0]):
            out[t, r] = row_dot_q6_K(W[r], q[t], d[t], bsums[t], nb, BS_Q6_K)
