"""Bit layouts of the GGML weight types: reference quantize and dequantize, bit-exact with ggml.

``CODECS`` maps a ``GGMLQuantizationType`` to an object with
``dequantize(rows: uint8[n, row_bytes]) -> float32[n, ne0]`` and
``quantize(rows: float32[n, ne0], nthreads) -> uint8[n, row_bytes]``.
"""

CODECS: dict = {}
