"""Numba kernels, imported as ``llamacli.kernels`` (never as a bare top-level ``kernels``).

* ``registry``  the one table of GGML weight types: block geometry (from ``gguf.constants``),
                the activation type each is dotted against, and its kernels;
* ``codec/``    bit layouts: reference quantize and dequantize of each type, bit-exact with ggml;
* ``dot/``      arithmetic: activation quantizers (q8_0, q8_1, q8_K) and the dot-product
                kernels behind matrix-vector (decode) and matrix-matrix (prefill) products.
"""
