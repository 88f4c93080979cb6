"""Rows and importance weights the codec golden data was made from (scripts/make_codec_reference.py).

Both the script (through llama.cpp's ggml_quantize_chunk) and the tests (through our codecs)
build them here, from fixed seeds, so only the hashes of the quantized rows are committed.
"""

from __future__ import annotations

import numpy as np

N_PER_ROW = 512  # a multiple of every block size (32, 64, 128, 256)


def rows(case: str) -> np.ndarray:
    """float32[6, N_PER_ROW]: 'gauss' is plain noise, 'rough' the shapes that trip quantizers."""
    rng = np.random.default_rng({"gauss": 11, "rough": 12}[case])
    if case == "gauss":
        return rng.standard_normal((6, N_PER_ROW)).astype(np.float32)
    x = np.zeros((6, N_PER_ROW), np.float32)
    x[0] = rng.standard_normal(N_PER_ROW) * 1e-3                  # tiny scales
    x[1] = rng.laplace(size=N_PER_ROW)
    x[1, rng.integers(0, N_PER_ROW, 6)] *= 20                     # outliers
    x[2, 37] = 3.0                                                # one non-zero value
    x[3] = 0.5                                                    # constant
    # row 4 stays zero
    x[5] = rng.uniform(-1, 1, N_PER_ROW)
    x[5, ::64] = -4.0                                             # a large negative in every block
    x[5, 256:320] = np.abs(x[5, 256:320])                         # a one-signed stretch
    return x


def weights(kind: str) -> np.ndarray | None:
    """An importance matrix row: None, 'imatrix' (positive, uneven), 'holes' (a quarter zero)."""
    if kind == "none":
        return None
    rng = np.random.default_rng({"imatrix": 21, "holes": 22}[kind])
    w = ((np.abs(rng.standard_normal(N_PER_ROW)) + 0.05) ** 2).astype(np.float32)
    if kind == "holes":
        w[rng.random(N_PER_ROW) < 0.25] = 0.0
    return w


CASES = ("gauss", "rough")
WEIGHTS = ("none", "imatrix", "holes")
