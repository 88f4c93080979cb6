"""Numba kernels, imported as ``llamacli.kernels`` (never as a bare top-level ``kernels``).

* ``registry``  the one table of GGML weight types: block geometry (from ``gguf.constants``),
                the activation type each is dotted against, and its kernels;
* ``codec/``    bit layouts: reference quantize and dequantize of each type, bit-exact with ggml;
* ``dot/``      arithmetic: activation quantizers (q8_0, q8_1, q8_K) and the dot-product
                kernels behind matrix-vector (decode) and matrix-matrix (prefill) products.
"""

import os as _os

import numba as _numba

# The threading layer, measured with `llamacli bench` on SmolLM2 Q4_1 (2 cores, t/s):
#   omp        pp512 148 (-t 1) / 250 (-t 2), tg128 71 / 87
#   tbb        pp512 140 / 233,             tg128 63 / 70   (tbb 2021.13 from PyPI)
#   workqueue  pp512 129 / 205,             tg128 19 / 18   (~130 us to start each region)
# A decode step starts hundreds of parallel regions, so the cost of starting one decides:
# OpenMP first, whichever of tbb or workqueue loads otherwise (numba's own order puts tbb first).
# NUMBA_THREADING_LAYER or NUMBA_THREADING_LAYER_PRIORITY in the environment still decide.
if "NUMBA_THREADING_LAYER" not in _os.environ and "NUMBA_THREADING_LAYER_PRIORITY" not in _os.environ:
    _numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
